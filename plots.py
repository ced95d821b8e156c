"""plots.py: the figures eval.py draws, from the JSON files it and bench/bench_memory.py write.

Accuracy against problem size, one panel per task: a line per method (the same colour in every
panel), the training sizes shaded, and the earlier results the paper quotes as reference marks.
Training memory: bench_memory.py's table as grouped bars, a group per task and size, a bar per method.
matplotlib is imported here only, and only when a figure is drawn.
"""
import math

from tasks import METHODS

COLORS = {"baseline": "tab:blue", "scratchpad": "tab:orange", "retuning": "tab:green"}
NAMES = {"baseline": "baseline", "scratchpad": "scratchpad", "retuning": "Re-Tuning"}
TASKS = {"parity": ("Parity", "bits"), "addition": ("Addition", "digits"), "dp": ("DP", "array length")}
PRIOR_WORK = {  # the earlier results the paper quotes: task -> (size, accuracy %, whose)
    "parity": (40, 50, "Anil et al."),
    "addition": (21, 0, "Goat"),
    "dp": (6, 20, "Dziri et al."),
}
PRIOR_LABEL = "prior work (as the paper quotes it)"


def new_figure(**kw):
    """A matplotlib Figure without pyplot: no window, no global state."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install -r requirements.txt") from None
    return Figure(layout="constrained", **kw)


def by_method(names) -> list:
    """The paper's order (baseline, scratchpad, Re-Tuning), anything else after."""
    return sorted(names, key=lambda m: METHODS.index(m) if m in METHODS else len(METHODS))


def accuracy_figure(path, saved: list):
    """One panel per results JSON of eval.py (a task each), side by side, one legend below."""
    fig = new_figure(figsize=(1.4 + 4.6 * len(saved), 4.4))
    axes = fig.subplots(1, len(saved), sharey=True, squeeze=False)[0]
    for ax, data in zip(axes, saved):
        accuracy_panel(ax, data)
    axes[0].set_ylabel("exact-match accuracy")
    legend_below(fig, axes)
    fig.savefig(path, dpi=120)


def accuracy_panel(ax, data: dict):
    from matplotlib.ticker import MaxNLocator, PercentFormatter
    task = data["task"]
    title, unit = TASKS.get(task, (task, ""))
    lo, hi = data["train_lengths"]
    ax.axvspan(lo, hi, color="0.88", label="training sizes")
    counts, sizes = set(), set()
    for method in by_method(data["results"]):
        points = sorted((int(n), 100 * r["correct"] / r["n"]) for n, r in data["results"][method].items())
        counts |= {r["n"] for r in data["results"][method].values()}
        sizes |= {n for n, _ in points}
        ax.plot(*zip(*points), "o-", color=COLORS.get(method), label=NAMES.get(method, method),
                clip_on=False, zorder=3)  # a point at 0% or 100% is drawn whole, on the frame
    size, accuracy, whose = PRIOR_WORK.get(task, (None, None, None))
    if size is not None and min(sizes) <= size <= max(sizes):  # outside, it would only stretch the axis
        ax.plot(size, accuracy, "*", ms=16, mfc="none", mec="black", mew=1.3, label=PRIOR_LABEL,
                clip_on=False, zorder=4)  # hollow: the data under it stays visible
        last = size == max(sizes)  # its name to the left then, not over the next panel
        ax.annotate(whose, (size, accuracy), xytext=(-8 if last else 8, 6), textcoords="offset points",
                    ha="right" if last else "left", fontsize=9, bbox=dict(fc="white", ec="none", alpha=0.7, pad=1))
    per_size = f"{counts.pop()} problems per size" if len(counts) == 1 else "problems per size vary"
    ax.set_title(f"{title}  ({per_size})", fontsize=11, pad=8)
    ax.set(xlabel=f"problem size ({unit})" if unit else "problem size", ylim=(0, 100))
    ax.yaxis.set_major_formatter(PercentFormatter())
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.grid(alpha=0.3)


def legend_below(fig, axes):
    """Every panel's labels once, under the panels, where no data is."""
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", frameon=False,
               ncols=min(len(handles), 3 * len(axes)))  # one row if it fits


def memory_figure(path, data: dict):
    """bench_memory.py's two memory columns as grouped bars; on Re-Tuning's, its share of the scratchpad's."""
    rows = {(r["task"], r["size"], r["method"]): r for r in data["results"]}
    groups = list(dict.fromkeys((task, size) for task, size, _ in rows))  # in the order measured
    methods = by_method({method for _, _, method in rows})
    fig = new_figure(figsize=(12, 4.8))
    axes = fig.subplots(1, 2)
    columns = {"step_mb": "what one training step adds (mostly activations)",
               "total_mb": "peak of training (with weights, gradients, AdamW)"}
    width = 0.8 / len(methods)
    for ax, (column, title) in zip(axes, columns.items()):
        value = lambda g, m: rows[(*g, m)][column] if (*g, m) in rows else math.nan  # noqa: E731
        for i, method in enumerate(methods):
            x = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(groups))]
            bars = ax.bar(x, [value(g, method) for g in groups], width, color=COLORS.get(method),
                          label=NAMES.get(method, method))
            if method == "retuning" and "scratchpad" in methods:
                shares = [value(g, "retuning") / value(g, "scratchpad") for g in groups]
                ax.bar_label(bars, [f"{s:.0%}" if math.isfinite(s) else "" for s in shares], fontsize=9)
        ax.set_xticks(range(len(groups)), [f"{TASKS.get(t, (t,))[0]}\n{n}" for t, n in groups])
        ax.set(title=title, ylabel="MB", xlabel="task and problem size")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Training memory per method ({describe(data)}); over Re-Tuning's bars: its share of "
                 f"the scratchpad's", fontsize=11)
    legend_below(fig, axes[:1])
    fig.savefig(path, dpi=120)


def describe(data: dict) -> str:
    """The measurement's settings, in a few words."""
    settings, first = data.get("settings", {}), data["results"][0]
    tuning = "LoRA" if settings.get("lora") else "full fine-tuning"
    batch = f", batch {settings['batch_size']}" if "batch_size" in settings else ""
    return f"{first.get('device', '?')} {first.get('dtype', '')}, {tuning}{batch}"
