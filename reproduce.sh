#!/usr/bin/env bash
# The paper's comparison on one task with the embedded tiny LLaMA: train baseline, scratchpad and
# Re-Tuning from the same base, then evaluate all three on the same problems out to twice (or more)
# the longest training size. Usage: bash reproduce.sh parity|addition|dp [extra eval.py flags]
# Runs already finished in out/<task>-<method> are kept (delete them to retrain).
set -euo pipefail
cd "$(dirname "$0")"
task=${1:-parity}
shift || true
py=${PYTHON:-python}
case "$task" in
  parity)   lengths=5:40:5 ;;
  addition) lengths=5:30:5 ;;
  dp)       lengths=2:10 ;;
  *) echo "error: unknown task '$task' (parity, addition or dp)" >&2; exit 2 ;;
esac
start=$(date +%s)
for method in baseline scratchpad retuning; do
  if [ -f "out/$task-$method/state.pt" ]; then
    echo "== out/$task-$method exists: kept"
  else
    echo "== training $task $method"
    $py train.py --task "$task" --method "$method"  # steps and rate: train.py's STEPS and FULL_LR
  fi
done
echo "== evaluating"
# One process per GPU, or on a CPU one per core (up to 4, sharing the cores' threads), torchrun splitting
# the problems between them: eval.py gathers the same results as one process would write. A model this
# small spends much of a step in small ops and Python, which a second thread barely speeds up and a
# second process does: parity's evaluation on 2 cores took 62-84 s as two processes, 96-110 s as one.
counts=$($py -c "import os, torch; cores = os.cpu_count() or 1
n = torch.cuda.device_count() or min(cores, 4); print(n, max(1, cores // n))")
read -r procs threads <<< "$counts"
# --batch-size: problems decoded together in each process. Each problem holds one cache row and its
# paused callers' caches, each as long as its own tokens (recurse.py): a process of parity's evaluation
# at 100 peaks at 1.3 GB, of addition's at 1.0 GB (/usr/bin/time -v, two processes)
OMP_NUM_THREADS=${OMP_NUM_THREADS:-$threads} $py -m torch.distributed.run --standalone --nproc_per_node "$procs" \
  eval.py --task "$task" --lengths "$lengths" --samples 100 --batch-size 100 "$@"
echo "== reproduce.sh $task: $(( $(date +%s) - start )) s in all"
