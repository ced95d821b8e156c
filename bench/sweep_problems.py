"""bench/sweep_problems.py: accuracy against the number of training problems (the paper's third claim).

The paper says Re-Tuning is sample efficient: it gets further than the baseline and the scratchpad
from the same few training problems. For one task, this trains every method with `train.py
--problems N` for each N of a list: a fixed pool of N distinct problems, the same for every method,
cycled for the task's usual number of steps. A pool counts problems, not pairs: a Re-Tuning
problem gives a pair for each step of every context of its trajectory, as in the paper. Then it
decodes every run on the same problems at sizes inside and beyond the training range, none of them
in any pool (the pools nest, so leaving out the largest leaves out all).

    python bench/sweep_problems.py --task parity --threads 1     # N = 16, 64, 256, 1024
    python bench/sweep_problems.py --task dp --problems 16,64 --methods baseline retuning

Runs go to <runs>/N<N>/<task>-<method>/ (train.py's layout: `eval.py --runs <runs>/N64` reads
them too); a finished run is kept and an interrupted one resumed, so a stopped sweep picks up where
it was. It prints a table per size and writes <runs>/sweep-<task>.json (N -> method -> size ->
{correct, n}) and a plot beside it: accuracy against N, one panel per size, a line per method.
"""
import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tasks  # noqa: E402
import train  # noqa: E402
from eval import parse_lengths, positive_int  # noqa: E402
from recurse import Limits, solve_problems  # noqa: E402

# Four times apart: in 1,200 steps of 32 pairs the baseline sees each of 16 problems 2,400 times,
# each of 1,024 about 37 times (Re-Tuning, with about 20 pairs a problem, sees 1,024 twice).
DEFAULT_PROBLEMS = "16,64,256,1024"
DEFAULT_LENGTHS = {"parity": "10,20,30,40", "addition": "5,10,15,20", "dp": "3,5,6,8"}  # in range and past it
DEFAULT_STEPS = {"parity": 1200, "addition": 1200, "dp": 400}  # one count for every method (DP: the scratchpad's)


@dataclass
class SweepConfig:
    task: str = "parity"
    problems: Optional[list] = None  # pool sizes; default DEFAULT_PROBLEMS
    methods: tuple = tasks.METHODS
    lengths: Optional[list] = None  # sizes evaluated; default DEFAULT_LENGTHS of the task
    steps: Optional[int] = None  # default DEFAULT_STEPS of the task
    samples: int = 100  # problems per size
    seed: int = 0  # of the pools, the training and the evaluated problems
    batch_size: int = 64  # problems decoded together
    runs: str = "out/sweep"
    ckpt_dir: Optional[str] = None  # the base; default the embedded tiny LLaMA
    out: Optional[str] = None  # default <runs>/sweep-<task>.json
    threads: Optional[int] = None
    device: Optional[str] = None


def problem_counts(text: str) -> list:
    try:
        counts = sorted({int(x) for x in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a list like 16,64,256; got {text!r}") from None
    if counts[0] < 1:
        raise argparse.ArgumentTypeError(f"pool sizes must be positive, got {text!r}")
    return counts


def parse_args(argv=None) -> SweepConfig:
    d = SweepConfig()
    p = argparse.ArgumentParser(description="Accuracy against the number of training problems.")
    p.add_argument("--task", default=d.task, choices=list(tasks.TASKS))
    p.add_argument("--problems", type=problem_counts, help=f"pool sizes (default {DEFAULT_PROBLEMS})")
    p.add_argument("--methods", nargs="+", choices=tasks.METHODS, default=list(d.methods))
    p.add_argument("--lengths", type=parse_lengths, help="sizes evaluated: 5,10,20 or LO:HI:STEP (default per task)")
    p.add_argument("--steps", type=positive_int, help="training steps per run (default per task)")
    p.add_argument("--samples", type=positive_int, default=d.samples, help="problems per size")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="problems decoded together")
    p.add_argument("--runs", default=d.runs, help="folder of the runs, N<N>/<task>-<method>/")
    p.add_argument("--ckpt-dir", help="the base model (default: the embedded tiny LLaMA)")
    p.add_argument("--out", help="results JSON (default <runs>/sweep-<task>.json); the plot goes beside it")
    p.add_argument("--threads", type=positive_int, help="torch threads (default: torch's)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda if present)")
    cfg = SweepConfig(**vars(p.parse_args(argv)))
    cfg.problems = cfg.problems or problem_counts(DEFAULT_PROBLEMS)
    cfg.lengths = cfg.lengths or parse_lengths(DEFAULT_LENGTHS[cfg.task])
    cfg.steps = cfg.steps or DEFAULT_STEPS[cfg.task]
    cfg.out = cfg.out or str(Path(cfg.runs) / f"sweep-{cfg.task}.json")
    return cfg


# ---- train: one run per pool size and method ----

def train_run(cfg: SweepConfig, n: int, method: str) -> Path:
    """One method on a pool of n problems: trained, resumed if interrupted, kept if finished."""
    out = Path(cfg.runs) / f"N{n}" / f"{cfg.task}-{method}"
    run = train.TrainConfig(task=cfg.task, method=method, ckpt_dir=cfg.ckpt_dir, out=str(out),
                            steps=cfg.steps, eval_every=cfg.steps, seed=cfg.seed, problems=n,
                            device=cfg.device).resolve()
    started = (out / "state.pt").is_file()
    if started:
        saved = train.read_config(out)
        if (saved.steps, saved.seed, saved.ckpt_dir) != (run.steps, run.seed, run.ckpt_dir):
            raise ValueError(f"{out} holds a run of other --steps, --seed or base: delete it, or choose another --runs")
        if train.read_state(out)["step"] == cfg.steps:
            print(f"== {out}: finished, kept")
            return out
    print(f"== {'resuming' if started else 'training'} {out}")
    t0 = time.time()
    train.train(run, resume=started)
    print(f"== {out}: {time.time() - t0:.0f} s")
    return out


# ---- evaluate: the same problems for every run ----

def held_out(cfg: SweepConfig) -> dict:
    """size -> problems, none in the largest pool (which holds every smaller one)."""
    pool = set(tasks.problem_pool(cfg.task, max(cfg.problems), tasks.TRAIN_LENGTHS[cfg.task], cfg.seed))
    return {n: tasks.eval_problems(cfg.task, n, cfg.samples, cfg.seed, pool) for n in cfg.lengths}


def accuracy(run: Path, cfg: SweepConfig, problems: dict) -> dict:
    """size -> {"correct", "n"} of one run, every size decoded in one call."""
    model, tokenizer, saved = train.load_trained(run, device=cfg.device)
    flat = [p for n in cfg.lengths for p in problems[n]]
    limits = Limits.fitting(tokenizer, cfg.task, saved.method, max(cfg.lengths))
    with tqdm(total=len(flat), desc=f"eval {run.parent.name} {saved.method}") as bar:
        outcomes = solve_problems(model, tokenizer, cfg.task, saved.method, flat, cfg.batch_size,
                                  limits, progress=bar.update)
    results, i = {}, 0
    for n in cfg.lengths:
        chunk = outcomes[i:i + len(problems[n])]
        results[n] = {"correct": sum(o.correct for o in chunk), "n": len(chunk)}
        i += len(chunk)
    return results


# ---- report: table, JSON, plot ----

def format_table(results: dict, cfg: SweepConfig) -> str:
    lo, hi = tasks.TRAIN_LENGTHS[cfg.task]
    lines = []
    for length in cfg.lengths:
        mark = "*" if lo <= length <= hi else " "
        lines.append(f"{f'size {length}{mark}':<16}" + "".join(f"{m:>12}" for m in cfg.methods))
        for n in cfg.problems:
            cells = [results[n][m][length] for m in cfg.methods]
            percents = "".join(f"{100 * c['correct'] / max(1, c['n']):>11.1f}%" for c in cells)
            lines.append(f"{f'N = {n}':>12}    {percents}")
    lines.append(f"(accuracy; N training problems; * = inside the training sizes {lo}-{hi})")
    return "\n".join(lines)


def write_results(cfg: SweepConfig, results: dict):
    path = Path(cfg.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"task": cfg.task, "train_lengths": list(tasks.TRAIN_LENGTHS[cfg.task]), "steps": cfg.steps,
            "seed": cfg.seed, "samples": cfg.samples, "ckpt_dir": cfg.ckpt_dir,
            "results": {str(n): {m: {str(length): r for length, r in by_length.items()}
                                 for m, by_length in by_method.items()} for n, by_method in results.items()}}
    path.write_text(json.dumps(data, indent=2) + "\n")


def plot(path: Path, cfg: SweepConfig, results: dict) -> bool:
    """Accuracy against N (log 2), a panel per size, a line per method; False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only, no window
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    import plots
    lo, hi = tasks.TRAIN_LENGTHS[cfg.task]
    fig, axes = plt.subplots(1, len(cfg.lengths), figsize=(3 * len(cfg.lengths) + 1, 3.4), sharey=True,
                             squeeze=False)
    for ax, length in zip(axes[0], cfg.lengths):
        for method in cfg.methods:
            cells = [results[n][method][length] for n in cfg.problems]
            ax.plot(cfg.problems, [100 * c["correct"] / max(1, c["n"]) for c in cells], "o-",
                    color=plots.COLORS.get(method), label=plots.NAMES.get(method, method))  # as eval.py's
        ax.set_xscale("log", base=2)
        ax.set_xticks(cfg.problems, [str(n) for n in cfg.problems])
        ax.set(title=f"size {length}" + (" (trained)" if lo <= length <= hi else " (beyond)"),
               xlabel="training problems", ylim=(-5, 105))
    axes[0][0].set_ylabel("accuracy (%)")
    fig.suptitle(f"{cfg.task}: {cfg.steps} steps on a pool of N problems (sizes {lo}-{hi})")
    fig.tight_layout(rect=(0, 0.08, 1, 1))  # room for the legend below, where no data is
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncols=len(cfg.methods), frameon=False)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def run(cfg: SweepConfig) -> dict:
    """Train what is missing, evaluate every run, write the JSON and the plot; the results."""
    t0 = time.time()
    problems = held_out(cfg)
    results = {}
    for n in cfg.problems:
        for method in cfg.methods:
            results.setdefault(n, {})[method] = accuracy(train_run(cfg, n, method), cfg, problems)
    print(format_table(results, cfg))
    write_results(cfg, results)
    png = Path(cfg.out).with_suffix(".png")
    drawn = plot(png, cfg, results)
    print(f"wrote {cfg.out}" + (f" and {png}" if drawn else " (no plot: matplotlib is not installed)"))
    print(f"wall time {time.time() - t0:.0f} s")
    return results


def main(argv=None):
    cfg = parse_args(argv)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        run(cfg)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
