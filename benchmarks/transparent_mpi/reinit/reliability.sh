#!/bin/bash
# How reliable are repeated MPICH session cycles? RUNS jobs of NP ranks x CYCLES cycles each.
# usage: reliability.sh [RUNS] [CYCLES] [NP]   (env MPIR_CVAR_CH4_NETMOD=ofi to try libfabric,
# PROBE_BARRIER=1 a barrier before each finalize, PROBE_SLEEP_MS=n a pause after it, TMO=s per run)
cd "$(dirname "$0")"
[ probe_mpich -nt probe.c ] || ../../../.venv/bin/mpicc -O2 -Wno-format-truncation -o probe_mpich probe.c
RUNS=${1:-10}; CYC=${2:-10}; NP=${3:-2}; ok=0
for i in $(seq $RUNS); do
  timeout ${TMO:-60} ./cleanexec ../../../.venv/bin/mpiexec -n $NP ./probe_mpich sessions $CYC > /tmp/reinit_rel.txt 2>&1
  rc=$?; n=$(grep -c 'round.*want' /tmp/reinit_rel.txt)
  [ $rc = 0 ] && [ $n = $((CYC * NP)) ] && ok=$((ok + 1)) || echo "run $i: rc=$rc, $n of $((CYC * NP)) rank-cycles: $(grep -m1 -i 'error\|fail' /tmp/reinit_rel.txt | cut -c1-160)"
done
echo "$ok of $RUNS runs completed all $CYC cycles on $NP ranks (load: $(cut -d' ' -f1-3 /proc/loadavg))"
