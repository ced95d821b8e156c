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
# batch: problems decoded together. DP's 100 put a length's problems in one wave (scratchpad at
# size 8: 42 s against 56 s with 64); parity's and addition's Re-Tuning chains run 30-40 contexts
# deep, each holding a cache row: at 100, parity's evaluation once ran out of memory; at 64 it
# peaks at 4.3 GB (recurse.py's cache pool; 6.4 GB before it grew a layer at a time)
case "$task" in
  parity)   lengths=5:40:5; batch=64 ;;
  addition) lengths=5:30:5; batch=64 ;;
  dp)       lengths=2:10;   batch=100 ;;
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
$py eval.py --task "$task" --lengths "$lengths" --samples 100 --batch-size "$batch" "$@"
echo "== reproduce.sh $task: $(( $(date +%s) - start )) s in all"
