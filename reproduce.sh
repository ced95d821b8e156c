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
# --batch-size: problems decoded together, a length's 100 in one wave. Each problem holds one cache row
# and its paused callers' caches, each as long as its own tokens (recurse.py): parity's evaluation
# at 100 peaks at 1.6 GB, addition's at 1.2 GB (measured with /usr/bin/time -v)
$py eval.py --task "$task" --lengths "$lengths" --samples 100 --batch-size 100 "$@"
echo "== reproduce.sh $task: $(( $(date +%s) - start )) s in all"
