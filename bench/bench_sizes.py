"""bench_sizes.py: what a larger embedded model would cost, as training-step time ratios.

The issue's last lever is a larger model "where the CPU budget allows". This times one train.py
step (forward, train.pair_loss, backward, AdamW) of the embedded shape (base.TINY) and of larger
ones on the same random batch, in turn within each round so a machine whose speed swings treats
them alike, and prints medians as ratios to the embedded model. One run, this machine, this
moment: read the ratios, not the absolutes.

    python bench/bench_sizes.py --threads 1
"""
import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import base  # noqa: E402
from model import Transformer  # noqa: E402
from train import pair_loss  # noqa: E402

SHAPES = {"192x4 (embedded)": {}, "256x4": dict(dim=256, n_heads=8, n_kv_heads=4),
          "256x6": dict(dim=256, n_layers=6, n_heads=8, n_kv_heads=4),
          "320x6": dict(dim=320, n_layers=6, n_heads=10, n_kv_heads=5)}


def main(argv=None):
    p = argparse.ArgumentParser(description="Training-step time of larger models, as ratios.")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=100, help="tokens per sequence")
    p.add_argument("--vocab", type=int, default=512)
    p.add_argument("--rounds", type=int, default=8, help="timed rounds (after 2 of warm-up)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    models = {name: Transformer(replace(base.TINY, vocab_size=a.vocab, **shape)) for name, shape in SHAPES.items()}
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in models.items()}
    x = torch.randint(0, a.vocab, (a.batch, a.seq))  # (B, T)
    y = torch.randint(0, a.vocab, (a.batch, a.seq))  # (B, T)
    times = {name: [] for name in models}
    for r in range(a.rounds + 2):
        for name, m in models.items():
            t0 = time.perf_counter()
            pair_loss(m(x), y).backward()
            optimizers[name].step()
            optimizers[name].zero_grad(set_to_none=True)
            if r >= 2:  # the first rounds allocate and warm caches
                times[name].append(time.perf_counter() - t0)
    ref = statistics.median(times["192x4 (embedded)"])
    print(f"batch {a.batch} x {a.seq} tokens, {torch.get_num_threads()} thread(s), median of {a.rounds}")
    for name, m in models.items():
        med = statistics.median(times[name])
        params = sum(q.numel() for q in m.parameters())
        print(f"{name:17s} {params / 1e6:5.2f}M parameters {a.batch * a.seq / med:7.0f} tokens/s "
              f"step time x{med / ref:.2f}")


if __name__ == "__main__":
    main()
