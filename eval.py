"""eval.py: exact-match accuracy against problem size for every trained method of a task.

Chapter 6. The paper's figures: train on small problems (train.py), then test each method on
the same problems at sizes inside and far beyond the training range. Every run found in
out/<task>-<method>/ (a train.py run, or a model exported from one with train.py --export) is
loaded with train.load_trained and decoded greedily by recurse.py (Re-Tuning recursively, the
others plainly). The result is a table on screen, a JSON file and, if matplotlib is installed, a
plot of accuracy against length with the training range shaded. Under torchrun each rank decodes
every N-th problem and rank 0 gathers them and writes the same files as one process.

    python eval.py --task parity --lengths 5:60:5 --samples 100
"""
import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tqdm import tqdm

import devices
import tasks
from recurse import CacheBudgetError, Limits, solve_problems
from train import is_export, load_trained, read_config

DEFAULT_LENGTHS = {"parity": "5:60:5", "addition": "5:60:5", "dp": "2:24:2"}  # out to the paper's farthest


@dataclass
class EvalConfig:
    task: str = "parity"
    methods: Optional[list] = None  # default: every method with a trained run
    lengths: Optional[list] = None  # default: DEFAULT_LENGTHS of the task
    samples: int = 100  # problems per length
    seed: int = 0  # the same problems for every method
    batch_size: int = 16  # problems in flight; the KV cache grows with batch x call depth
    runs: str = "out"  # where train.py wrote out/<task>-<method>/ (runs or exported models)
    out: Optional[str] = None  # default out/eval-<task>.json
    trace: bool = False
    max_new_tokens: Optional[int] = None  # default: twice the longest gold sequence (Limits.fitting)
    device: Optional[str] = None


def parse_lengths(text: str) -> list:
    """'5:40' (every size from 5 to 40), '5:40:5' (every 5th) or '5,10,20'."""
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) > 3:
                raise ValueError
            lo, hi, step = [int(x) for x in parts] + [1] * (3 - len(parts))
            if not 1 <= lo <= hi or step < 1:
                raise argparse.ArgumentTypeError(f"need 1 <= LO <= HI and STEP >= 1, got {text!r}")
            return list(range(lo, hi + 1, step))
        lengths = sorted({int(x) for x in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LO:HI, LO:HI:STEP or a list like 5,10,20; got {text!r}") from None
    if lengths[0] < 1:
        raise argparse.ArgumentTypeError(f"lengths must be positive, got {text!r}")
    return lengths


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def parse_args(argv=None) -> EvalConfig:
    d = EvalConfig()
    p = argparse.ArgumentParser(description="Accuracy against problem size for each trained method.")
    p.add_argument("--task", default=d.task, choices=list(tasks.TASKS))
    p.add_argument("--methods", nargs="+", choices=tasks.METHODS, help="default: every trained one")
    p.add_argument("--lengths", type=parse_lengths, help="LO:HI, LO:HI:STEP or 5,10,20 (default per task)")
    p.add_argument("--samples", type=positive_int, default=d.samples, help="problems per length")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size,
                   help="problems decoded together (memory grows with it)")
    p.add_argument("--runs", default=d.runs, help="folder holding <task>-<method>/ runs or exported models")
    p.add_argument("--out", help="results JSON (default <runs>/eval-<task>.json); the plot goes beside it")
    p.add_argument("--trace", action="store_true", help="print one problem's call tree per method")
    p.add_argument("--max-new-tokens", type=positive_int, default=d.max_new_tokens,
                   help="tokens one context may generate (default: twice the longest gold sequence)")
    p.add_argument("--device", help="cpu, cuda, ... (default: the run's)")
    cfg = EvalConfig(**vars(p.parse_args(argv)))
    cfg.lengths = cfg.lengths or parse_lengths(DEFAULT_LENGTHS[cfg.task])
    cfg.out = cfg.out or str(Path(cfg.runs) / f"eval-{cfg.task}.json")
    return cfg


def trained_methods(cfg: EvalConfig) -> list:
    """The requested methods, or every one with a saved run; each must have a readable config."""
    run_dir = lambda m: Path(cfg.runs) / f"{cfg.task}-{m}"  # noqa: E731
    found = lambda m: (run_dir(m) / "state.pt").is_file() or is_export(run_dir(m))  # noqa: E731
    methods = cfg.methods or [m for m in tasks.METHODS if found(m)]
    if not methods:
        raise FileNotFoundError(
            f"no trained run for {cfg.task} in {cfg.runs}/ (expected {cfg.runs}/{cfg.task}-<method>/"
            f"state.pt, or a model exported there); train one: python train.py --task {cfg.task}")
    for method in methods:
        saved = read_config(run_dir(method))
        if (saved.task, saved.method) != (cfg.task, method):
            raise ValueError(f"{run_dir(method)} holds a {saved.task}-{saved.method} run")
    return methods


def train_range(cfg: EvalConfig, methods: list) -> tuple:
    """The training sizes of the runs (they should agree; the widest is shown if not)."""
    ranges = {tuple(read_config(Path(cfg.runs) / f"{cfg.task}-{m}").lengths) for m in methods}
    if len(ranges) > 1 and devices.rank_world()[0] == 0:
        print(f"note: the runs were trained on different sizes {sorted(ranges)}")
    return min(lo for lo, _ in ranges), max(hi for _, hi in ranges)


def fail(message: str):
    """One message, from rank 0 (under torchrun the others exit too, and torchrun ends the rest)."""
    sys.exit(message if devices.rank_world()[0] == 0 else 1)


def evaluate(cfg: EvalConfig, method: str, bar, device) -> Optional[tuple]:
    """{length: {"correct", "n"}} of one method, one outcome at the largest length, failure counts.
    Under torchrun this rank decodes every N-th problem, and only rank 0 gets the answer."""
    try:
        model, tokenizer, _ = load_trained(Path(cfg.runs) / f"{cfg.task}-{method}", device=device)
    except (ValueError, FileNotFoundError, RuntimeError, OSError, ImportError) as e:
        fail(f"error: {e}")
    problems = [p for n in cfg.lengths for p in tasks.eval_problems(cfg.task, n, cfg.samples, cfg.seed)]
    rank, world = devices.rank_world()
    # all lengths in one call: a finished problem makes room for the next, whatever its size
    try:
        # the guards from all the problems, not this rank's share: every rank stops a runaway alike
        limits = (Limits(max_new_tokens=cfg.max_new_tokens) if cfg.max_new_tokens else
                  Limits.fitting(tokenizer, cfg.task, method, max(map(len, problems))))
        mine = solve_problems(model, tokenizer, cfg.task, method, problems[rank::world], cfg.batch_size,
                              limits, progress=bar.update)
    except CacheBudgetError as e:
        fail(f"error: {method}: {e} (--batch-size {cfg.batch_size})")
    outcomes = devices.gather_interleaved(mine, rank, world)  # rank 0: all, in the problems' order
    if outcomes is None:
        return None
    results = {}
    for i, n in enumerate(cfg.lengths):
        chunk = outcomes[i * cfg.samples:(i + 1) * cfg.samples]
        results[n] = {"correct": sum(o.correct for o in chunk), "n": len(chunk)}
    failures = Counter(o.failure.split(":")[0] for o in outcomes if o.failure)  # e.g. "max_depth"
    return results, outcomes[-cfg.samples], failures


def format_table(results: dict, lengths: list, train_lengths: tuple) -> str:
    methods = list(results)
    width = max(10, *map(len, methods))
    lines = ["length  " + "".join(f"{m:>{width + 2}}" for m in methods)]
    for n in lengths:
        mark = "*" if train_lengths[0] <= n <= train_lengths[1] else " "
        cells = "".join(f"{100 * r[n]['correct'] / r[n]['n']:>{width + 1}.1f}%" for r in results.values())
        lines.append(f"{n:>5}{mark}  {cells}")
    lines.append(f"(accuracy; * = inside the training range {train_lengths[0]}-{train_lengths[1]})")
    return "\n".join(lines)


def write_results(path: Path, task: str, train_lengths: tuple, results: dict, seed: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"task": task, "train_lengths": list(train_lengths), "seed": seed,
            "results": {m: {str(n): r for n, r in by_length.items()} for m, by_length in results.items()}}
    path.write_text(json.dumps(data, indent=2) + "\n")


def plot(path: Path, task: str, train_lengths: tuple, results: dict) -> bool:
    """Accuracy against length, one line per method, training range shaded; False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only, no window
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.axvspan(train_lengths[0], train_lengths[1], color="0.9", label="training lengths")
    for method, by_length in results.items():
        lengths = sorted(by_length)
        accuracy = [100 * by_length[n]["correct"] / by_length[n]["n"] for n in lengths]
        ax.plot(lengths, accuracy, "o-", label=method)
    ax.set(xlabel="problem size", ylabel="accuracy (%)", ylim=(-5, 105), title=task)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv=None):
    cfg = parse_args(argv)
    try:
        run(cfg, devices.start(cfg.device))
    finally:
        devices.stop()


def run(cfg: EvalConfig, device):
    """Every method on the same problems; under torchrun rank 0 alone prints and writes."""
    t0 = time.time()
    rank, world = devices.rank_world()
    try:
        methods = trained_methods(cfg)
        train_lengths = train_range(cfg, methods)
    except (ValueError, FileNotFoundError) as e:
        fail(f"error: {e}")
    results = {}
    mine = len(range(rank, len(cfg.lengths) * cfg.samples, world))  # this rank's problems per method
    bar = tqdm(total=len(methods) * mine, disable=None if rank == 0 else True, desc=f"eval {cfg.task}")
    for method in methods:
        start = time.time()
        answer = evaluate(cfg, method, bar, device)
        if answer is None:  # not rank 0: its outcomes went to rank 0
            continue
        results[method], example, failures = answer
        stopped = ", ".join(f"{reason} {count}" for reason, count in failures.most_common())
        bar.write(f"{method}: {time.time() - start:.1f} s" + (f"; stopped by {stopped}" if stopped else ""))
        if cfg.trace:
            bar.write(f"--- {method}, one problem of size {cfg.lengths[-1]} "
                      f"({'right' if example.correct else 'wrong'}):\n{example.trace}\n")
    bar.close()
    if rank != 0:
        return
    print(format_table(results, cfg.lengths, train_lengths))
    out = Path(cfg.out)
    write_results(out, cfg.task, train_lengths, results, cfg.seed)
    png = out.with_suffix(".png")
    drawn = plot(png, cfg.task, train_lengths, results)
    print(f"wrote {out}" + (f" and {png}" if drawn else " (no plot: matplotlib is not installed)"))
    print(f"wall time {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
