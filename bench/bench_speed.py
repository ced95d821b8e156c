"""bench_speed.py: training-step throughput of model.py's Transformer vs Hugging Face's LLaMA.

Both get the same configuration, the same weights (ours copied into transformers'
LlamaForCausalLM with the rotary permutation of q/k rows, as in tests/hf_reference.py), the
same batch of random tokens, the same loss (train.pair_loss), the same step as train.py
(AdamW, grad clip) and SDPA attention (HF: attn_implementation="sdpa"). Their losses are
checked to agree within 1e-4 in fp32 before anything is timed. Timing runs fp32 on CPU, bf16
on CUDA: warm-up steps, then rounds that time one step of each model and one large matmul, in
rotating order, so a machine whose speed swings treats all three alike; medians are reported.
Achieved FLOP/s counts 6*N*tokens + 12*n_layers*dim*T*tokens per step (PaLM, appendix B:
N = parameters outside the embedding table; attention counted as full T x T, though a causal
kernel does about half) and is compared to the matmul rate measured in the same rounds.
Numbers are one run on this machine at this moment: read the ratios, not the absolutes.

    python bench/bench_speed.py                          # base.TINY, batch 16 x 128
    python bench/bench_speed.py --dim 512 --n-layers 8 --n-heads 8 --batch 8 --seq 256
"""
import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import transformers  # noqa: E402

import base  # noqa: E402
from model import Tokenizer, Transformer, default_device_dtype  # noqa: E402
from tests.hf_reference import to_hf  # noqa: E402
from train import EMBEDDED, TrainConfig, pair_loss  # noqa: E402

LOSS_TOLERANCE = 1e-4


def model_args(a):
    args = replace(base.TINY, vocab_size=a.vocab, dim=a.dim, n_layers=a.n_layers, n_heads=a.n_heads,
                   n_kv_heads=a.n_kv_heads, max_seq_len=max(base.TINY.max_seq_len, a.seq))
    if args.dim % args.n_heads or args.n_heads % args.kv_heads:
        sys.exit(f"error: dim {args.dim}, n_heads {args.n_heads}, n_kv_heads {args.kv_heads} do not divide")
    return args


def logits_fn(model):
    """tokens -> fp32 logits, for either model (HF: no KV cache while training)."""
    if isinstance(model, Transformer):
        return model
    return lambda x: model(input_ids=x, use_cache=False).logits.float()


class Trainer:
    """One model with its own AdamW; step() is train.py's loop body, timed."""

    def __init__(self, name, model, device):
        self.name, self.model, self.device = name, model.train(), device
        self.forward = logits_fn(model)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=1e-4, betas=(0.9, 0.95))
        self.times = []

    def step(self, x, y, record=True):
        sync(self.device)
        t0 = time.perf_counter()
        loss = pair_loss(self.forward(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, TrainConfig.grad_clip)
        self.optimizer.step()
        sync(self.device)
        if record:
            self.times.append(time.perf_counter() - t0)


class Matmul:
    """An n x n matmul, timed like a step: this machine's attainable matrix-multiply rate now."""

    def __init__(self, n, device, dtype):
        self.name, self.device, self.n = f"matmul {n}x{n}", device, n
        g = torch.Generator(device=device).manual_seed(0)
        self.a, self.b = (torch.randn(n, n, generator=g, device=device, dtype=dtype) for _ in range(2))
        self.times = []

    def step(self, x=None, y=None, record=True):
        sync(self.device)
        t0 = time.perf_counter()
        torch.matmul(self.a, self.b)
        sync(self.device)
        if record:
            self.times.append(time.perf_counter() - t0)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_losses(ours, hf, x, y):
    """Both models' loss on the batch, in fp32 without gradients, and their largest logit gap."""
    with torch.no_grad():
        a, b = ours(x), logits_fn(hf)(x)
        return pair_loss(a, y).item(), pair_loss(b, y).item(), (a - b).abs().max().item()


def flops_per_step(args, n_params, batch, seq):
    tokens = batch * seq
    return 6 * n_params * tokens + 12 * args.n_layers * args.dim * seq * tokens


def parse_args():
    t = base.TINY
    p = argparse.ArgumentParser(description="Training-step tokens/s: model.py vs transformers' LLaMA.")
    p.add_argument("--dim", type=int, default=t.dim)
    p.add_argument("--n-layers", type=int, default=t.n_layers)
    p.add_argument("--n-heads", type=int, default=t.n_heads)
    p.add_argument("--n-kv-heads", type=int, default=t.n_kv_heads)
    p.add_argument("--vocab", type=int, help="default: the embedded tokenizer's, else 512 (base.train_tokenizer's)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=128, help="tokens per sequence")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=10, help="timed steps of each model")
    p.add_argument("--matmul", type=int, default=2048, help="size of the matmul that measures the peak")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--device", help="cpu, cuda ... (default: cuda if present)")
    a = p.parse_args()
    if a.vocab is None:
        tok = EMBEDDED / "tokenizer.model"
        a.vocab = Tokenizer(tok).n_words if tok.is_file() else 512
    return a


def report(name, times, flops, tokens, peak):
    med = statistics.median(times)
    print(f"  {name:<13} {med * 1e3:8.1f} ms/step (min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f})"
          f"  {tokens / med:9.0f} tokens/s  {flops / med / 1e9:7.2f} GFLOP/s = {flops / med / peak:.2f} of matmul")
    return med


def main():
    a = parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    device, dtype = default_device_dtype(a.device)
    args = model_args(a)
    torch.manual_seed(0)
    ours = Transformer(args).to(device)
    hf = to_hf(ours).to(device)
    load, cores = os.getloadavg()[0], os.cpu_count()
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, {device.type}, "
          f"{torch.get_num_threads()} threads, {cores} cores, load average {load:.1f} before starting; "
          f"HF attention: {hf.config._attn_implementation}")
    if device.type == "cpu" and load + torch.get_num_threads() > cores + 0.5:
        print("note: other processes are using these cores; threads that wait for each other slow small "
              "ops the most and unevenly: absolutes too low, ratio noisy (try --threads 1)")
    print(f"config: {args}")
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, args.vocab_size, (a.batch, a.seq + 1), generator=g).to(device)
    x, y = tokens[:, :-1], tokens[:, 1:]
    loss_ours, loss_hf, logit_gap = check_losses(ours, hf, x, y)
    diff = abs(loss_ours - loss_hf)
    print(f"loss check (fp32, same weights and batch): model.py {loss_ours:.6f}, transformers {loss_hf:.6f}, "
          f"|difference| {diff:.2e} (tolerance {LOSS_TOLERANCE:g}); max |logit difference| {logit_gap:.2e}")
    if not diff < LOSS_TOLERANCE:
        sys.exit("error: the two models disagree; timing them would compare different computations")
    ours, hf = ours.to(dtype), hf.to(dtype)
    runners = [Trainer("model.py", ours, device), Trainer("transformers", hf, device),
               Matmul(a.matmul, device, dtype)]
    for _ in range(a.warmup):
        for r in runners:
            r.step(x, y, record=False)
    for i in range(a.steps):  # rotate the order each round: no runner always goes first
        for r in runners[i % 3:] + runners[:i % 3]:
            r.step(x, y)
    n_params = sum(p.numel() for p in ours.parameters()) - ours.tok_embeddings.weight.numel()
    flops = flops_per_step(args, n_params, a.batch, a.seq)
    peak = 2 * a.matmul ** 3 / statistics.median(runners[2].times)
    n_tok = a.batch * a.seq
    print(f"batch {a.batch} x {a.seq} = {n_tok} tokens, {str(dtype).removeprefix('torch.')}; "
          f"{a.warmup} warm-up and {a.steps} timed steps of each, interleaved; medians")
    print(f"FLOPs per step = 6*N*tokens + 12*n_layers*dim*T*tokens = {flops / 1e9:.2f} GFLOP "
          f"(N = {n_params / 1e6:.2f}M parameters outside the embedding table)")
    print(f"  matmul peak  {a.matmul}x{a.matmul} {str(dtype).removeprefix('torch.')}: "
          f"{peak / 1e9:.1f} GFLOP/s (median of {a.steps})")
    t_ours = report("model.py", runners[0].times, flops, n_tok, peak)
    t_hf = report("transformers", runners[1].times, flops, n_tok, peak)
    paired = sorted(h / o for o, h in zip(runners[0].times, runners[1].times))  # same round: same machine state
    print(f"model.py / transformers tokens/s, this run: {t_hf / t_ours:.2f} (ratio of medians); per round: "
          f"median {statistics.median(paired):.2f}, min {paired[0]:.2f}, max {paired[-1]:.2f}")


if __name__ == "__main__":
    main()
