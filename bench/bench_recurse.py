"""bench/bench_recurse.py: what per-context caches and batching buy Re-Tuning's decoder (not a test).

One model, one set of problems, four ways through recurse.py, timed once each:
  (a) every context keeps its own KV cache; a return appends only its own tokens; batched
  (b) the authors' way: after every return the caller is re-encoded from scratch; batched
  (c) as (a), one problem at a time
  (d) as (b), one problem at a time (the authors' code: batch 1, re-encoding)
The model is out/<task>-retuning if train.py made it; otherwise the embedded tiny LLaMA (or a
random tiny one) steered by the tasks' gold oracle, so that it still does the whole recursive
workload (the oracle's own time is left out of the timings).

    python bench/bench_recurse.py [--task parity --length 21 --problems 16 --threads 1]
"""
import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tasks  # noqa: E402
from model import Transformer, load_checkpoint  # noqa: E402
from recurse import solve_problems  # noqa: E402


class Steered(nn.Module):
    """Runs `model` on the decoder's cache as usual, then puts the gold oracle's token on top, so a
    model not tuned on the task still walks the full call tree. It reads each context's tokens back
    from a cache layer of its own (one more than the model has), where it writes them: the decoder
    saves and restores it with the rest. `oracle_seconds`: time spent here."""

    def __init__(self, model, tokenizer, task):
        super().__init__()
        self.model, self.tokenizer, self.task = model, tokenizer, task
        self.args = replace(model.args, n_layers=model.args.n_layers + 1)
        self.oracle_seconds = 0.0

    def decode(self, tokens, cache, rows, n_new, logits_from=None):
        logits_from = logits_from or [0] * len(tokens)
        starts = [cache.lengths[r].tolist() for r in rows]  # before the lengths advance
        logits = self.model.decode(tokens, cache, rows, n_new, logits_from)  # (B_i, T_i - logits_from[i], vocab) each
        start = time.perf_counter()
        store = cache.k[-1]  # (rows, kv_heads, slots, head_dim): a token id's 4 hex digits at [row, 0, position, :4]
        hex_shifts = torch.tensor([0, 4, 8, 12], device=store.device)  # digits of 0-15: exact even in bf16
        for t, r, n_group, first_group, lo, x in zip(tokens, rows, n_new, starts, logits_from, logits):
            T = t.shape[1]
            for b, (row, n, first) in enumerate(zip(r.tolist(), n_group.tolist(), first_group)):
                store[row, 0, first:first + T, :4] = ((t[b, :, None] >> hex_shifts) & 15).to(store.dtype)
                history = (store[row, 0, :first + T, :4].long() << hex_shifts).sum(-1).tolist()
                for i in range(n - 1, T):  # past the n real tokens: the decoder's guesses (or padding)
                    x[b, i - lo, self.gold_token(history[:first + i + 1])] = x[b, i - lo].max() + 1
        self.oracle_seconds += time.perf_counter() - start
        return logits

    def gold_token(self, history):
        try:
            rest = tasks.oracle(self.task, self.tokenizer.decode(history))
        except ValueError:  # mid-prompt: not a whole context yet, and this token is never used
            return self.tokenizer.eos_id
        return self.tokenizer.encode(rest)[0] if rest else self.tokenizer.eos_id


def load_model(task):
    """(model, tokenizer, description): the tuned run if any, else a steered stand-in."""
    run = ROOT / "out" / f"{task}-retuning"
    if (run / "state.pt").is_file():
        from train import load_trained
        model, tokenizer, _ = load_trained(run)
        return model, tokenizer, f"{run.relative_to(ROOT)} (tuned; its own greedy tokens)"
    embedded = ROOT / "assets" / "tiny-llama"
    if (embedded / "params.json").is_file():
        model, tokenizer = load_checkpoint(embedded)
        note = f"{embedded.relative_to(ROOT)}, not tuned on {task}: steered by the gold oracle"
    else:
        from base import TINY, train_tokenizer
        tokenizer = train_tokenizer(Path(tempfile.mkdtemp()) / "tok")
        torch.manual_seed(0)
        model = Transformer(replace(TINY, vocab_size=tokenizer.n_words)).eval()
        print(f"note: neither {run.relative_to(ROOT)} nor {embedded.relative_to(ROOT)} exists; "
              "timing a random model")
        note = "a random tiny LLaMA, steered by the gold oracle"
    return Steered(model.eval(), tokenizer, task), tokenizer, note


def timed(model, tokenizer, task, problems, batch_size, reencode):
    if isinstance(model, Steered):
        model.oracle_seconds = 0.0
    start = time.perf_counter()
    outcomes = solve_problems(model, tokenizer, task, "retuning", problems, batch_size, reencode=reencode)
    seconds = time.perf_counter() - start - getattr(model, "oracle_seconds", 0.0)
    return seconds, outcomes


def main(argv=None):
    p = argparse.ArgumentParser(description="Tokens/s of recursive decoding: own caches vs re-encoding, "
                                            "batched vs one at a time.")
    p.add_argument("--task", default="parity", choices=list(tasks.TASKS))
    p.add_argument("--length", type=int, help="problem size (default: the top of the training range)")
    p.add_argument("--problems", type=int, default=16)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    length = a.length or tasks.TRAIN_LENGTHS[a.task][1]
    model, tokenizer, description = load_model(a.task)
    problems = tasks.eval_problems(a.task, length, a.problems, seed=1)
    print(f"{a.task}, {a.problems} problems of size {length}; model: {description}; "
          f"{torch.get_num_threads()} thread(s)")
    timed(model, tokenizer, a.task, problems[:2], 2, False)  # warm-up
    variants = {"a": ("own caches, batched", a.problems, False),
                "b": ("re-encode caller, batched", a.problems, True),
                "c": ("own caches, one at a time", 1, False),
                "d": ("re-encode, one at a time (authors)", 1, True)}
    print(f"{'variant':<40}{'seconds':>9}{'tokens run':>12}{'generated':>11}{'gen tok/s':>11}{'correct':>9}")
    speed, outputs = {}, {}
    for key, (label, batch_size, reencode) in variants.items():
        seconds, outcomes = timed(model, tokenizer, a.task, problems, batch_size, reencode)
        run, generated = sum(o.tokens for o in outcomes), sum(o.generated for o in outcomes)
        speed[key], outputs[key] = generated / seconds, [o.output for o in outcomes]
        print(f"({key}) {label:<36}{seconds:>9.2f}{run:>12}{generated:>11}{speed[key]:>11.0f}"
              f"{sum(o.correct for o in outcomes):>6}/{len(outcomes)}", flush=True)
    x = lambda k1, k2: f"x{speed[k1] / speed[k2]:.2f}"  # noqa: E731
    print(f"own caches vs re-encoding:   {x('a', 'b')} batched, {x('c', 'd')} one at a time")
    print(f"batched vs one at a time:    {x('a', 'c')} own caches, {x('b', 'd')} re-encoding")
    print(f"(a) vs the authors' way (d): {x('a', 'd')}; "
          f"same outputs in all four: {all(o == outputs['a'] for o in outputs.values())}")

if __name__ == "__main__":
    main()
