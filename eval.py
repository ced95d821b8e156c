"""eval.py: exact-match accuracy against problem size for every trained method of a task.

Chapter 6. The paper's figures: train on small problems (train.py), then test each method on
the same problems at sizes inside and far beyond the training range. Every run found in
out/<task>-<method>/ (a train.py run, or a model exported from one with train.py --export) is
loaded with train.load_trained and decoded greedily by recurse.py (Re-Tuning recursively, the
others plainly). The result is a table on screen, a JSON file and a plot of accuracy against
size with the training range shaded (plots.py); --dump adds every problem's prompt, output and
answers, one JSON line each, from which anyone can check the accuracy. --plot-only redraws saved
JSON files without a model: several tasks side by side, or bench/bench_memory.py's memory table.
Under torchrun each rank decodes every N-th problem and rank 0 gathers them and writes the same
files as one process.

    python eval.py --task parity --lengths 5:60:5 --samples 100 --dump out/problems-parity.jsonl
    python eval.py --plot-only out/eval-parity.json out/eval-addition.json out/eval-dp.json --figure fig.png
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
from cachepool import CacheBudgetError
from model import atomic_write
from recurse import Limits, solve_problems
from train import is_export, load_trained, read_config

DEFAULT_LENGTHS = {"parity": "5:60:5", "addition": "5:60:5", "dp": "2:24:2"}  # out to the paper's farthest


@dataclass
class EvalConfig:
    task: str = "parity"
    methods: Optional[list] = None  # default: every method with a trained run
    lengths: Optional[list] = None  # default: DEFAULT_LENGTHS of the task
    samples: int = 100  # problems per length
    seed: int = 0  # the same problems for every method
    batch_size: Optional[int] = None  # problems in flight (default: batch_size_for the device)
    runs: str = "out"  # where train.py wrote out/<task>-<method>/ (runs or exported models)
    out: Optional[str] = None  # default out/eval-<task>.json
    trace: bool = False
    dump: Optional[str] = None  # a JSONL file: one line per problem and method
    plot_only: Optional[list] = None  # saved JSON files to draw, with no model
    figure: Optional[str] = None  # default: the (first) JSON's path with .png
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
                   help="problems decoded together (memory grows with it; default 100 on a CPU, 16 on a GPU)")
    p.add_argument("--runs", default=d.runs, help="folder holding <task>-<method>/ runs or exported models")
    p.add_argument("--out", help="results JSON (default <runs>/eval-<task>.json)")
    p.add_argument("--trace", action="store_true",
                   help="print one problem's call tree per method (with --dump: every problem's, in the dump)")
    p.add_argument("--dump", metavar="PATH", help="write every problem as a JSON line: prompt, output, "
                   "parsed and true answer, correct, why a guard stopped it")
    p.add_argument("--plot-only", nargs="+", metavar="JSON", help="load no model, just draw: results JSONs "
                   "of eval.py (a panel per task), or one JSON of bench/bench_memory.py --out")
    p.add_argument("--figure", metavar="PNG", help="the figure (default: the first JSON's path with .png)")
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


def batch_size_for(device) -> int:
    """Problems in flight by default. On a CPU 100: the embedded model's caches take 3 KB a token, and
    parity's evaluation ran 1.7x faster than with 16 (docs/RESULTS.md section 7). On a GPU 16: a 7B
    LLaMA's take 0.5 MB a token (bf16), and 16 long scratchpads already fill some 16 GB."""
    return 100 if device.type == "cpu" else 16


def evaluate(cfg: EvalConfig, method: str, problems: list, bar, device) -> Optional[list]:
    """One method's outcome of every problem, in order. Under torchrun this rank decodes every N-th
    problem, and only rank 0 gets the answer (None on the others)."""
    try:
        model, tokenizer, _ = load_trained(Path(cfg.runs) / f"{cfg.task}-{method}", device=device)
    except (ValueError, FileNotFoundError, RuntimeError, OSError, ImportError) as e:
        fail(f"error: {e}")
    rank, world = devices.rank_world()
    batch_size = cfg.batch_size or batch_size_for(next(model.parameters()).device)
    # all lengths in one call: a finished problem makes room for the next, whatever its size
    try:
        # the guards from all the problems, not this rank's share: every rank stops a runaway alike
        limits = (Limits(max_new_tokens=cfg.max_new_tokens) if cfg.max_new_tokens else
                  Limits.fitting(tokenizer, cfg.task, method, max(map(len, problems))))
        mine = solve_problems(model, tokenizer, cfg.task, method, problems[rank::world], batch_size,
                              limits, progress=bar.update)
    except CacheBudgetError as e:
        fail(f"error: {method}: {e} (--batch-size {batch_size})")
    return devices.gather_interleaved(mine, rank, world)  # rank 0: all, in the problems' order


def accuracy(sizes: list, outcomes: list) -> dict:
    """{size: {"correct", "n"}}"""
    results = {}
    for n, o in zip(sizes, outcomes):
        r = results.setdefault(n, {"correct": 0, "n": 0})
        r["correct"] += int(o.correct)
        r["n"] += 1
    return results


def dump_lines(cfg: EvalConfig, method: str, sizes: list, problems: list, outcomes: list) -> list:
    """One JSON line per problem: enough to re-check every answer, and so the accuracy, from the file alone
    (correct = no failure and answer == true_answer)."""
    lines = []
    for n, problem, o in zip(sizes, problems, outcomes):
        line = {"task": cfg.task, "method": method, "size": n,
                "prompt": tasks.inference_prompt(cfg.task, method, problem), "output": o.output,
                "answer": o.answer, "true_answer": tasks.answer(cfg.task, problem), "correct": o.correct,
                "failure": o.failure}
        if cfg.trace:
            line["trace"] = o.trace
        lines.append(json.dumps(line))
    return lines


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


def results_json(task: str, train_lengths: tuple, results: dict, seed: int) -> dict:
    return {"task": task, "train_lengths": list(train_lengths), "seed": seed,
            "results": {m: {str(n): r for n, r in by_length.items()} for m, by_length in results.items()}}


def write_text(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(text.encode()))


def draw(figure, path: Path, data, note: str = ""):
    """A figure of plots.py (which imports matplotlib only then); one clear message if it cannot be drawn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        figure(path, data)
    except (ImportError, OSError, ValueError) as e:  # ValueError: a format matplotlib does not know
        fail(f"error: no figure: {e}{note}")


# ---- --plot-only: figures from saved JSON files, no model ----

def read_saved(path: Path) -> dict:
    """A results JSON of eval.py or a JSON of bench_memory.py --out; one clear message if neither."""
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        fail(f"error: cannot read {path}: {e.strerror}")
    except ValueError as e:  # not JSON, or not text at all
        fail(f"error: {path} is not JSON ({e})")
    if not well_formed(data):
        fail(f"error: {path} is neither a results JSON of eval.py nor a JSON of bench/bench_memory.py --out")
    return data


def well_formed(data) -> bool:
    """eval.py's {task, train_lengths, results: {method: {size: {correct, n}}}}, or bench_memory.py's
    {results: [{task, method, size, step_mb, total_mb, ...}, ...]}."""
    try:  # reading every value the figures read: a KeyError, TypeError, ... if one is missing or wrong
        if is_memory(data):
            rows = [(r["task"], r["method"], int(r["size"]), float(r["step_mb"]), float(r["total_mb"]))
                    for r in data["results"]]
            return len(rows) > 0
        lo, hi = map(int, data["train_lengths"])
        cells = [(int(n), r["correct"] / r["n"]) for by_size in data["results"].values() for n, r in by_size.items()]
        return isinstance(data["task"], str) and lo <= hi and len(cells) > 0 and all(data["results"].values())
    except (KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError):
        return False


def is_memory(data: dict) -> bool:
    return isinstance(data["results"], list)  # bench_memory.py's rows; eval.py's are by method


def plot_saved(cfg: EvalConfig):
    """Results JSONs as one figure, a panel per task; or bench_memory.py's table as bars."""
    import plots  # matplotlib only where figures are drawn
    saved = [read_saved(Path(path)) for path in cfg.plot_only]
    figure = Path(cfg.figure or Path(cfg.plot_only[0]).with_suffix(".png"))
    if any(map(is_memory, saved)):
        if len(saved) > 1:
            fail("error: --plot-only takes results JSONs of eval.py, or one JSON of bench_memory.py alone")
        draw(plots.memory_figure, figure, saved[0])
    else:
        names = [data["task"] for data in saved]
        if len(set(names)) < len(names):
            fail(f"error: --plot-only takes one results JSON per task (a panel each), got tasks {names}")
        draw(plots.accuracy_figure, figure, saved)
    print(f"wrote {figure}")


# ---- the evaluation ----

def main(argv=None):
    cfg = parse_args(argv)
    if cfg.plot_only:
        return plot_saved(cfg)
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
    problems = [p for n in cfg.lengths for p in tasks.eval_problems(cfg.task, n, cfg.samples, cfg.seed)]
    sizes = [n for n in cfg.lengths for _ in range(cfg.samples)]  # each problem's
    results, dump = {}, []
    mine = len(range(rank, len(problems), world))  # this rank's problems per method
    bar = tqdm(total=len(methods) * mine, disable=None if rank == 0 else True, desc=f"eval {cfg.task}")
    for method in methods:
        start = time.time()
        outcomes = evaluate(cfg, method, problems, bar, device)
        if outcomes is None:  # not rank 0: its outcomes went to rank 0
            continue
        results[method] = accuracy(sizes, outcomes)
        failures = Counter(o.failure.split(":")[0] for o in outcomes if o.failure)  # e.g. "max_depth"
        stopped = ", ".join(f"{reason} {count}" for reason, count in failures.most_common())
        bar.write(f"{method}: {time.time() - start:.1f} s" + (f"; stopped by {stopped}" if stopped else ""))
        if cfg.trace:
            example = outcomes[-cfg.samples]  # the first problem of the largest size
            bar.write(f"--- {method}, one problem of size {cfg.lengths[-1]} "
                      f"({'right' if example.correct else 'wrong'}):\n{example.trace}\n")
        if cfg.dump:
            dump += dump_lines(cfg, method, sizes, problems, outcomes)
    bar.close()
    if rank != 0:
        return
    print(format_table(results, cfg.lengths, train_lengths))
    out, data = Path(cfg.out), results_json(cfg.task, train_lengths, results, cfg.seed)
    write_text(out, json.dumps(data, indent=2) + "\n")
    written = [out]
    if cfg.dump:
        written.append(Path(cfg.dump))
        write_text(written[-1], "".join(line + "\n" for line in dump))
    import plots  # matplotlib only where figures are drawn
    figure = Path(cfg.figure or out.with_suffix(".png"))
    draw(plots.accuracy_figure, figure, [data], note=f" (written: {', '.join(map(str, written))})")
    print(f"wrote {', '.join(map(str, written + [figure]))}")
    print(f"wall time {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
