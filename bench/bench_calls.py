"""bench/bench_calls.py: why Re-Tuning falls short beyond the training sizes (a diagnosis, not a test).

A Re-Tuning solution of size n is a chain of contexts of sizes n, n-1, ..., 1, and it is right
for sure only if every step of every context is: each call line (the problem copied with one
element dropped) and each answer step. This measures, with teacher forcing (all argmaxes right
<=> greedy decoding writes the step exactly), for every size k:
  call    the tuned run's call line of a size-k context,
  answer  its answer step (for k = 1: the base case),
  base    the untuned embedded model dropping the first element of the same line, asked in its
          own pretraining wordings (base.py), with the instruction before the line (base:instr)
          or after it (base:line, the order of a task's prompt), and as base:line but with the
          target's leading words given (base:nums, the numbers alone): what pretraining gave,
  base:copy  (addition) the untuned model copying the digits the answer step copies (the returned
          output), asked as base.py's generic "copy" request; parity's answer copies nothing,
  chain   the product over sizes 1..k of call x answer: every step of a size-k solution exact,
          if errors were independent,
  eval    the accuracy eval.py measured (out/eval-<task>.json), when there is one.
Where "chain" follows "eval" down, the accuracy lost beyond the training range is copying errors
compounding over the chain; where "call" is far below "base", the tuning lost what pretraining
had. Parity's answer is a bit, so a broken chain still guesses right about half the time.

DP's solution has three kinds of context (the top one; "Create dp array", whose call drops the
first value; "Create chosen indices array", whose call drops the first of both arrays), so for
DP every step of each problem's whole trajectory is measured instead: per kind of step of the
size-n contexts (top.0 its first call, dp.1 the dp context's answer, ...), and `all`: the
problems whose every step, in every context, is exact (measured per problem, not a product).

    python bench/bench_calls.py --task parity --lengths 1:40     # needs out/parity-retuning
    python bench/bench_calls.py --task addition --lengths 1:30
    python bench/bench_calls.py --task dp --lengths 2:10
"""
import argparse
import json
import random
import re
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tasks  # noqa: E402
from base import VERBS, frame, teacher_forced_exact, teacher_forced_hits  # noqa: E402
from eval import parse_lengths, positive_int  # noqa: E402
from model import load_checkpoint  # noqa: E402
from train import EMBEDDED, load_trained  # noqa: E402


def step_pairs(task, size, samples, seed):
    """The top context's call pair and answer pair of `samples` problems (one pair at size 1)."""
    calls, answers = [], []
    for problem in tasks.eval_problems(task, size, samples, seed):
        trajectory = tasks.retuning(task, problem)  # the top context's steps come first and last
        if size > 1:
            calls.append(trajectory[0])
        answers.append(trajectory[-1])
    return calls, answers


def base_drop_pairs(task, calls, seed, line_first, words_given=False):
    """The same call lines as base.py's generic "drop the first item" requests, in one framing;
    with `words_given`, the target's words before its first number are put in the prompt."""
    rng = random.Random(seed)
    out = []
    for pair in calls:
        line = pair.segments[0].removesuffix(tasks.SOLUTION)  # the context's problem
        target = pair.target.removeprefix(tasks.CALL).removesuffix(tasks.CALL_END)  # the sub-problem
        prompt = frame(rng, rng.choice(VERBS["drop"]), line, line_first)
        cut = re.search(r"[\d-]", target).start() if words_given else 0
        out.append(tasks.Pair((prompt + target[:cut],), target[cut:]))
    return out


def base_copy_pairs(task, answers, seed):
    """Addition's answer step copies the returned output after the column's digit: the same digit
    string as base.py's generic "copy" request, instruction first."""
    rng = random.Random(seed)
    returned = [re.search(r"Output (\d+)\n", pair.prompt) for pair in answers] if task == "addition" else []
    return [tasks.Pair((frame(rng, rng.choice(VERBS["copy"]), m.group(1), False),), m.group(1))
            for m in returned if m]


def step_label(task, pair):
    """(kind of context, step number in it, context size): ("dp", 1, 7) is the answer step of a
    size-7 "Create dp array" context."""
    problem = tasks.parse_prompt(task, pair.segments[0].removesuffix(tasks.SOLUTION))
    kind = {tasks.DpArray: "dp", tasks.ChosenIndices: "chosen"}.get(type(problem), "top")
    return kind, (len(pair.segments) - 1) // 2, len(problem)


def every_step_table(tuned, tokenizer, task, sizes, samples, seed, measured):
    """For each size n: exactness of each kind of step of the size-n contexts, and of whole problems."""
    for n in sizes:
        trajectories = [tasks.retuning(task, p) for p in tasks.eval_problems(task, n, samples, seed)]
        flat = [pair for t in trajectories for pair in t]
        hits = iter(teacher_forced_hits(tuned, tokenizer, flat))
        by_label, whole = {}, 0
        for t in trajectories:
            oks = [next(hits) for _ in t]
            whole += all(oks)
            for pair, ok in zip(t, oks):
                kind, step, size = step_label(task, pair)
                if size == n:
                    by_label.setdefault(f"{kind}.{step}", []).append(ok)
        if n == sizes[0]:
            print(f"{'size':>4} " + " ".join(f"{k:>8}" for k in by_label) + f" {'all':>6} {'eval':>6}")
        r = measured.get(str(n))
        cells = [f"{100 * sum(v) / len(v):8.1f}" for v in by_label.values()]
        cells += [f"{100 * whole / samples:6.1f}", f"{100 * r['correct'] / r['n']:6.1f}" if r else f"{'-':>6}"]
        print(f"{n:>4} " + " ".join(cells), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description="Per-step exactness of a Re-Tuning run by size.")
    p.add_argument("--task", default="parity", choices=["parity", "addition", "dp"])
    p.add_argument("--lengths", type=parse_lengths, default="1:40",
                   help="LO:HI: rows for LO..HI (the chain always starts at size 1)")
    p.add_argument("--samples", type=positive_int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default="out")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    lo, hi = min(a.lengths), max(a.lengths)
    run = Path(a.runs) / f"{a.task}-retuning"
    try:
        tuned, tokenizer, cfg = load_trained(run)
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as e:
        sys.exit(f"error: {e} (train it: python train.py --task {a.task} --method retuning)")
    base_dir = cfg.ckpt_dir if Path(cfg.ckpt_dir).is_dir() else EMBEDDED
    base, base_tokenizer = load_checkpoint(base_dir, device=next(tuned.parameters()).device)
    base.eval()
    measured = {}
    eval_json = Path(a.runs) / f"eval-{a.task}.json"
    if eval_json.is_file():
        measured = json.loads(eval_json.read_text())["results"].get("retuning", {})
    print(f"{run} (trained on sizes {cfg.lengths[0]}-{cfg.lengths[1]}), "
          f"{a.samples} problems per size, teacher-forced exact match in %")
    if a.task == "dp":
        return every_step_table(tuned, tokenizer, a.task, range(lo, hi + 1), a.samples, a.seed, measured)
    print(f"{'size':>4} {'call':>6} {'answer':>7} {'base:instr':>10} {'base:line':>9} {'base:nums':>9} "
          f"{'base:copy':>9} {'chain':>6} {'eval':>6}")
    chain = 1.0
    for k in range(1, hi + 1):
        calls, answers = step_pairs(a.task, k, a.samples, a.seed)
        call = teacher_forced_exact(tuned, tokenizer, calls) if calls else 1.0
        answer = teacher_forced_exact(tuned, tokenizer, answers)
        chain *= call * answer
        if k < lo:
            continue
        base_sets = [base_drop_pairs(a.task, calls, a.seed, *how) if calls else []
                     for how in ((False,), (True,), (True, True))] + [base_copy_pairs(a.task, answers, a.seed)]
        base_cols = [teacher_forced_exact(base, base_tokenizer, s) if s else None for s in base_sets]
        r = measured.get(str(k))
        cells = [f"{100 * call:6.1f}", f"{100 * answer:7.1f}",
                 *(f"{100 * b:{w}.1f}" if b is not None else f"{'-':>{w}}" for b, w in zip(base_cols, (10, 9, 9, 9))),
                 f"{100 * chain:6.1f}", f"{100 * r['correct'] / r['n']:6.1f}" if r else f"{'-':>6}"]
        print(f"{k:>4} " + " ".join(cells), flush=True)


if __name__ == "__main__":
    main()
