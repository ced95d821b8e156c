"""bench_memory.py: peak memory of a real training step, per method, per task.

The paper's claim: Re-Tuning training needs 12-21% of the GPU memory of scratchpad training,
because every Re-Tuning context is short. For each task at the paper's largest training size
(addition 15, parity 21, dp 5) and at twice it, this runs train.py's step (forward, pair_loss,
backward, grad clip, AdamW) on --batch-size copies of the longest training sequence of each
method (Re-Tuning: the longest pair of a whole trajectory); memory is set by the longest one.
Each measurement runs in a fresh subprocess: a short warm-up step (so AdamW's state and the
gradients exist, as in every step of a run but the first), then the measured step:
  CUDA: torch.cuda.max_memory_allocated during the step, minus memory_allocated before it.
  CPU:  peak RSS (getrusage ru_maxrss, its high-water mark reset just before the step through
        /proc/self/clear_refs where the kernel allows) minus the RSS right before the step.
        glibc's malloc thresholds are fixed so freed memory goes back to the OS.
"step MB" is that difference: what a step adds on top of what lives between steps (weights,
gradients, AdamW state), mostly activations. "total MB" is the peak minus the memory before the
model was built, so it includes those too. Re-Tuning's share of the scratchpad's is shown for both.

    python bench/bench_memory.py                            # embedded tiny LLaMA, or a random twin
    python bench/bench_memory.py --config medium --lora     # dim 1024, 8 layers (slow on a CPU)
    python bench/bench_memory.py --out mem.json
    python eval.py --plot-only mem.json --figure mem.png      # the memory table as grouped bars
"""
import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import base  # noqa: E402
import tasks  # noqa: E402
from devices import precision  # noqa: E402
from lora import apply_lora  # noqa: E402
from model import ModelArgs, Tokenizer, Transformer, default_device_dtype  # noqa: E402
from train import EMBEDDED, TrainConfig, build_model, encode_pair, make_batch, pair_loss  # noqa: E402

SIZES = {t: (hi, 2 * hi) for t, (_, hi) in tasks.TRAIN_LENGTHS.items()}  # paper's largest, and 2x
CONFIGS = {  # random-init models when no --ckpt-dir; vocab_size comes from the tokenizer
    "tiny": base.TINY,  # the embedded model's shape
    "medium": ModelArgs(dim=1024, n_layers=8, n_heads=8, multiple_of=256, max_seq_len=2048),  # head_dim 128 as 7B
    "llama-7b": ModelArgs(dim=4096, n_layers=32, n_heads=32, multiple_of=256, max_seq_len=2048),  # GPU only
}
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
MB = 2 ** 20


# ---- the child: one measurement in a fresh process ----

def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss():
    """Reset the kernel's RSS high-water mark (ru_maxrss); False if not allowed here."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_now(device):
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else rss_bytes()


def start_peak(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return True
    return reset_peak_rss()


def read_peak(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes


def warm_up_runtime(device):
    """A step of a throwaway 1-layer model: torch's one-time lazy allocations (kernel set-up,
    thread pools; about 80 MB on CPU) happen here and are not counted as the model's."""
    model = Transformer(ModelArgs(dim=64, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=32, multiple_of=16))
    model.to(device)
    params = list(model.parameters())
    tokens = torch.randint(0, 32, (2, 16), device=device)
    train_step(model, torch.optim.AdamW(params), params, tokens, tokens)


def build(a, device, dtype):
    """train.build_model on a checkpoint; the same steps on a random init of a named config."""
    if a.ckpt_dir:
        cfg = TrainConfig(ckpt_dir=a.ckpt_dir, full=not a.lora, grad_checkpoint=a.grad_checkpoint)
        return build_model(cfg, device, dtype)
    tokenizer = Tokenizer(a.tokenizer)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # materialise weights in the training dtype directly
    with torch.device(device):
        model = Transformer(replace(CONFIGS[a.config], vocab_size=tokenizer.n_words))
    torch.set_default_dtype(default)
    if a.lora:
        d = TrainConfig()
        apply_lora(model, targets=d.lora_targets, r=d.lora_r, alpha=d.lora_alpha, dropout=d.lora_dropout)
    else:
        model.requires_grad_(True)
    model.grad_checkpoint = a.grad_checkpoint
    return model, tokenizer


def longest_pair(task, method, size, tokenizer, samples):
    """The pair tasks.longest_sequence measures: most tokens over the same problems."""
    def n_tokens(pair):
        prompt, target = encode_pair(tokenizer, pair)
        return len(prompt) + len(target)
    return max((p for prob in tasks.eval_problems(task, size, samples) for p in tasks.pairs(task, method, prob)),
               key=n_tokens)


def train_step(model, optimizer, params, x, y, autocast=contextlib.nullcontext):
    """train.py's loop body, in its order (zero_grad comes after the forward there)."""
    with autocast():
        logits = model(x)
    loss = pair_loss(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, TrainConfig.grad_clip)
    optimizer.step()
    return loss.item()


def measure_one(a):
    device, dtype = default_device_dtype(a.device)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    warm_up_runtime(device)
    empty = memory_now(device)
    weights_dtype, autocast = precision(not a.lora, device, dtype)  # as train.py: what trains is fp32
    model, tokenizer = build(a, device, weights_dtype)
    pair = longest_pair(a.task, a.method, a.size, tokenizer, a.samples)
    pad = tokenizer.pad_id if tokenizer.pad_id >= 0 else 0
    x, y = make_batch([encode_pair(tokenizer, pair)] * a.batch_size, pad, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95))
    model.train()
    train_step(model, optimizer, params, x[:1, :8], y[:1, :8], autocast)  # warm-up, short: creates AdamW's state
    before = memory_now(device)
    reset = start_peak(device)
    t0 = time.perf_counter()
    loss = train_step(model, optimizer, params, x, y, autocast)
    seconds = time.perf_counter() - t0
    peak = read_peak(device)
    return {"task": a.task, "method": a.method, "size": a.size, "tokens": x.shape[1], "batch": x.shape[0],
            "device": device.type, "dtype": str(dtype).removeprefix("torch."), "loss": loss,
            "trainable_params": sum(p.numel() for p in params),
            "params": sum(p.numel() for p in model.parameters()),
            "mb_before_model": empty / MB, "mb_before_step": before / MB, "mb_peak": peak / MB,
            "step_mb": (peak - before) / MB, "total_mb": (peak - empty) / MB,
            "peak_reset": reset, "step_seconds": seconds}


# ---- the parent: tokens table, one subprocess per measurement, memory table ----

def model_source(a, tmp):
    """(description, tokenizer, extra child argv): a checkpoint, or a random init of a config."""
    if a.ckpt_dir:
        return f"checkpoint {a.ckpt_dir}", Tokenizer(Path(a.ckpt_dir) / "tokenizer.model"), ["--ckpt-dir", a.ckpt_dir]
    tokenizer = base.train_tokenizer(Path(tmp))
    desc = f"random init of config {a.config!r} ({CONFIGS[a.config]}), tokenizer from base.train_tokenizer"
    return desc, tokenizer, ["--config", a.config, "--tokenizer", str(tokenizer.path)]


def token_table(tokenizer, samples):
    def count(text):
        return len(tokenizer.encode(text))
    return {(t, m, n): tasks.longest_sequence(t, m, n, count, samples=samples)
            for t in SIZES for n in SIZES[t] for m in tasks.METHODS}


def print_token_table(tokens):
    print("\ntokens per training sequence (tasks.longest_sequence, the tokenizer's encode length)")
    print(f"{'task':<9}{'size':>5} {'baseline':>9}{'scratchpad':>11}{'retuning':>9}  retuning/scratchpad")
    for t in SIZES:
        for n in SIZES[t]:
            b, s, r = (tokens[t, m, n] for m in tasks.METHODS)
            print(f"{t:<9}{n:>5} {b:>9}{s:>11}{r:>9}  {r / s:>8.0%}")


def run_child(a, extra, task, method, size):
    argv = [sys.executable, __file__, "--one", task, method, str(size), "--batch-size", str(a.batch_size),
            "--samples", str(a.samples), *extra]
    argv += ["--lora"] * a.lora + ["--grad-checkpoint"] * a.grad_checkpoint
    argv += ["--device", a.device] if a.device else []
    argv += ["--threads", str(a.threads)]
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **MALLOC_ENV})
    if proc.returncode != 0:
        sys.exit(f"measurement {task} {method} {size} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_row(rows):
    b, s, r = rows
    print(f"{b['task']:<9}{b['size']:>5} {b['tokens']:>6}{s['tokens']:>6}{r['tokens']:>6} |"
          f"{b['step_mb']:>8.1f}{s['step_mb']:>8.1f}{r['step_mb']:>8.1f} |"
          f"{b['total_mb']:>8.1f}{s['total_mb']:>8.1f}{r['total_mb']:>8.1f} |"
          f"{r['step_mb'] / s['step_mb']:>7.0%}{r['total_mb'] / s['total_mb']:>7.0%}", flush=True)


def parse_args():
    p = argparse.ArgumentParser(description="Peak training-step memory per method (the paper's 12-21% claim).")
    p.add_argument("--ckpt-dir", help="LLaMA weights, Meta's or Hugging Face's format (default: the embedded tiny LLaMA if present)")
    p.add_argument("--config", choices=list(CONFIGS), help="a random init of this shape (default: tiny if no checkpoint)")
    p.add_argument("--lora", action="store_true", help="LoRA r=64 on wq,wk,wv,wo (the paper) instead of full")
    p.add_argument("--grad-checkpoint", action="store_true")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--samples", type=int, default=32, help="problems searched for the longest sequence")
    p.add_argument("--device", help="cpu, cuda ... (default: cuda if present)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads per measurement (0: torch's default); memory barely depends on it")
    p.add_argument("--out", help="write the results here as JSON")
    p.add_argument("--one", nargs=3, metavar=("TASK", "METHOD", "SIZE"), help=argparse.SUPPRESS)
    p.add_argument("--tokenizer", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.ckpt_dir is None and a.config is None and (EMBEDDED / "params.json").is_file():
        a.ckpt_dir = str(EMBEDDED)
    a.config = a.config or "tiny"
    return a


def main():
    a = parse_args()
    if a.one:
        a.task, a.method, a.size = a.one[0], a.one[1], int(a.one[2])
        print(json.dumps(measure_one(a)))
        return
    device, dtype = default_device_dtype(a.device)
    with tempfile.TemporaryDirectory() as tmp:
        desc, tokenizer, extra = model_source(a, tmp)
        print(f"model: {desc}; {'LoRA r=64 on wq,wk,wv,wo' if a.lora else 'full fine-tuning'}"
              f"{', gradient checkpointing' if a.grad_checkpoint else ''}; {device.type} {dtype}; "
              f"batch {a.batch_size} copies of the longest sequence; threads {a.threads or torch.get_num_threads()}")
        tokens = token_table(tokenizer, a.samples)
        print_token_table(tokens)
        how = "CUDA max_memory_allocated" if device.type == "cuda" else "peak RSS (ru_maxrss)"
        print(f"\none training step per cell, each in a fresh process; {how} minus memory before the step")
        print(f"{'':<14} {'tokens':^18} | {'step MB':^24} | {'total MB':^24} | retuning/scratch")
        print(f"{'task':<9}{'size':>5} {'base':>6}{'scr':>6}{'ret':>6} |{'base':>8}{'scr':>8}{'ret':>8} |"
              f"{'base':>8}{'scr':>8}{'ret':>8} |{'step':>7}{'total':>7}")
        results, t0 = [], time.time()
        for t in SIZES:
            for n in SIZES[t]:
                rows = [run_child(a, extra, t, m, n) for m in tasks.METHODS]
                print_row(rows)
                results += rows
    mismatched = [r for r in results if r["tokens"] != tokens[r["task"], r["method"], r["size"]]]
    r0 = results[0]
    print(f"\nbefore the model: {r0['mb_before_model']:.0f} MB RSS/allocated; model {r0['params'] / 1e6:.2f}M params, "
          f"{r0['trainable_params'] / 1e6:.2f}M trainable; peak high-water mark reset before each step: "
          f"{all(r['peak_reset'] for r in results)}; {time.time() - t0:.0f} s")
    print("(the paper, LLaMA 7B/13B with LoRA on a GPU: Re-Tuning uses 12-21% of the scratchpad's memory)")
    if mismatched:
        print(f"WARNING: trained length differs from tasks.longest_sequence for {len(mismatched)} cells")
    if a.out:
        settings = {k: v for k, v in vars(a).items() if k not in ("one", "tokenizer", "out")}
        Path(a.out).write_text(json.dumps({"model": desc, "settings": settings, "results": results}, indent=2))
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
