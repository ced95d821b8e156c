"""bench/bench_decode.py: recursive decoding's throughput against what its matmuls alone allow (not a test).

Evaluation is mostly recurse.py's batched greedy decoding. Every token through the model costs
2 * N FLOPs in its weight matmuls (N: parameters outside the embedding table; attention over
the cache adds a little more, not counted), so this machine's matmul rate, measured in the same
run, bounds tokens/s: limit = matmul FLOP/s / (2 * N). Rounds alternate one decoding of the same
problems with a large matmul (the attainable rate) and with the model's own weight matmuls at the
decoder's shapes (one token per problem in flight: what skinny matmuls attain), so a machine
whose speed swings treats them alike; medians are reported.

    python bench/bench_decode.py --threads 1          # parity Re-Tuning, 32 problems of size 30
    python bench/bench_decode.py --threads 1 --problems 100 --batch-size 100   # as reproduce.sh decodes
    python bench/bench_decode.py --task addition --length 20 --problems 64 --batch-size 64

The model is out/<task>-retuning if train.py made it; otherwise the embedded tiny LLaMA steered by
the gold oracle (bench_recurse.Steered, its own time left out), so the workload is the same.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import tasks  # noqa: E402
from bench_recurse import load_model, timed  # noqa: E402
from model import Transformer  # noqa: E402


def weight_matrices(model):
    """The 2-D weights a token goes through (LoRA's frozen base weights included), not the table."""
    inner = getattr(model, "model", model)  # bench_recurse.Steered wraps the model
    assert isinstance(inner, Transformer)
    return [p for n, p in inner.named_parameters() if p.dim() == 2 and "tok_embeddings" not in n
            and "lora_" not in n]


def time_it(fn, repeat=1):
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main(argv=None):
    p = argparse.ArgumentParser(description="Recursive decoding tokens/s as a fraction of the matmul limit.")
    p.add_argument("--task", default="parity", choices=list(tasks.TASKS))
    p.add_argument("--length", type=int, default=30)
    p.add_argument("--problems", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32, help="problems decoded together")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--matmul", type=int, default=1024, help="size of the square matmul that measures the peak")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    model, tokenizer, description = load_model(a.task)
    problems = tasks.eval_problems(a.task, a.length, a.problems, seed=1)
    weights = weight_matrices(model)
    flop_per_token = 2 * sum(w.numel() for w in weights)
    print(f"{a.task} Re-Tuning, {a.problems} problems of size {a.length}, {a.batch_size} in flight; "
          f"model: {description}; {torch.get_num_threads()} thread(s); {flop_per_token / 1e6:.2f} MFLOP a token")
    square = [torch.randn(a.matmul, a.matmul) for _ in range(2)]
    rows = {w.shape[1]: torch.randn(a.batch_size, w.shape[1]) for w in weights}  # one token per problem in flight

    def skinny():  # each weight on a batch of rows of its input width
        for w in weights:
            F.linear(rows[w.shape[1]], w)

    timed(model, tokenizer, a.task, problems[:2], 2, False)  # warm-up
    decode, peak, shaped, tokens = [], [], [], None
    for r in range(a.rounds):
        seconds, outcomes = timed(model, tokenizer, a.task, problems, a.batch_size, False)
        tokens, correct = sum(o.tokens for o in outcomes), sum(o.correct for o in outcomes)
        decode.append(tokens / seconds)
        peak.append(2 * a.matmul ** 3 / time_it(lambda: torch.matmul(*square), 5))
        shaped.append(flop_per_token * a.batch_size / time_it(skinny, 50))
        print(f"round {r + 1}: {seconds:.2f} s, {tokens} tokens through the model, {decode[-1]:.0f} tokens/s, "
              f"{correct}/{len(outcomes)} correct; matmul {peak[-1] / 1e9:.1f} GFLOP/s, the model's "
              f"weights on {a.batch_size} rows {shaped[-1] / 1e9:.1f} GFLOP/s", flush=True)
    rate, limit, skinny_limit = (statistics.median(v) for v in (decode, peak, shaped))
    print(f"medians: decoding {rate:.0f} tokens/s; matmul limit {limit / flop_per_token:.0f} tokens/s "
          f"({limit / 1e9:.1f} GFLOP/s); the model's matmuls alone at {a.batch_size} rows "
          f"{skinny_limit / flop_per_token:.0f} tokens/s")
    print(f"decoding / matmul limit: {rate * flop_per_token / limit:.2f}; decoding / its own matmuls "
          f"at these shapes: {rate * flop_per_token / skinny_limit:.2f}")


if __name__ == "__main__":
    main()
