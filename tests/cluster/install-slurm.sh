#!/bin/sh
# Install what the emulated cluster's SLURM needs (Debian: slurmctld, slurmd, the client tools and
# munge), without starting any service: the tests start their own daemons with their own
# configuration. Nothing to do when the programs are there already. Needs root and apt-get.
set -eu
need=""
for prog in slurmctld slurmd srun sbatch scontrol munged; do
    command -v "$prog" >/dev/null 2>&1 || [ -x "/usr/sbin/$prog" ] || need=yes
done
[ -f /usr/lib/x86_64-linux-gnu/slurm-wlm/mpi_pmi2.so ] || ls /usr/lib/*/slurm-wlm/mpi_pmi2.so >/dev/null 2>&1 || need=yes
[ -z "$need" ] && exit 0
command -v apt-get >/dev/null || { echo "install-slurm.sh: no apt-get: install SLURM and munge by hand" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "install-slurm.sh: needs root" >&2; exit 1; }

# Keep the packages' maintainer scripts from starting munge or slurm daemons (on a machine
# without systemd, invoke-rc.d would run the init scripts): a policy-rc.d that forbids every
# action, ours only if there was none, removed afterwards.
policy=/usr/sbin/policy-rc.d
ours=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    ours=yes
fi
cleanup() { [ -n "$ours" ] && rm -f "$policy"; return 0; }
trap cleanup EXIT INT TERM

export DEBIAN_FRONTEND=noninteractive
packages="slurmctld slurmd slurm-client munge"
if ! apt-get install -y -q --no-install-recommends $packages </dev/null; then
    apt-get update -q </dev/null
    apt-get install -y -q --no-install-recommends $packages </dev/null
fi
