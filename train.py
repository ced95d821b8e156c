"""train.py: tune a model on one task in baseline, scratchpad or Re-Tuning form.

Chapter 4. `python train.py --task parity` fine-tunes the project's embedded tiny LLaMA
(assets/tiny-llama, made by base.py) on parity in Re-Tuning form; `--ckpt-dir
path/to/llama-7b` does the same to LLaMA's weights (Meta's or Hugging Face's format) with LoRA,
as the paper did. The data are the (prompt, target) pairs of tasks.py; the loss is on target
tokens and EOS only, each pair weighted equally (one-token answer steps must not drown among
long call steps). A run writes out/<task>-<method>/{config.json, state.pt}; eval.py reads them
back, and `--export DIR --format meta|hf` turns one into a standalone model, LoRA merged.

`torchrun --nproc_per_node N train.py ...` trains data-parallel (DistributedDataParallel): every
rank draws the same batches and takes its contiguous share of each, so the run sees exactly the
data of one process with the same --batch-size; rank 0 alone prints and writes checkpoints.

`--problems N` learns from a fixed pool of N problems, cycled, instead of a fresh problem for every
pair: the paper's sample efficiency (bench/sweep_problems.py sweeps N).
"""
import argparse
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from tqdm import tqdm

import devices
import tasks
from checkpoints import save_hf
from lora import apply_lora, merge_lora
from model import atomic_write, default_device_dtype, load_checkpoint, save_meta
from recurse import solve_problems

EMBEDDED = Path(__file__).resolve().parent / "assets" / "tiny-llama"
EXPORTED_CONFIG = "train_config.json"  # beside an exported model: the config of the run it came from
# Full fine-tuning of the tiny model, per task and method: of the rates tried, the one with the
# best held-out exact match inside the training range at the end of tuning (60 problems), the
# smaller on a tie, since a smaller step keeps more of the base's copying, which Re-Tuning's calls
# need past the tuned lengths (docs/RESULTS.md, "Why Re-Tuning falls short"). Held-out at each rate tried:
# parity baseline 73/82/77% at 5e-5/1e-4/5e-4, scratchpad 82/93/93%, Re-Tuning 98/100/100% at
# 2e-5/5e-5/1e-4; addition Re-Tuning 48/92% at 2e-4/5e-4 (its baseline and scratchpad: 5e-4 only).
# DP, 400 steps: baseline 95/90/90% at 5e-4/1e-3/2e-3; scratchpad 38/88% at 5e-4/2e-3; Re-Tuning
# 0/35/35/70/55% at 1e-4/5e-4/1e-3/2e-3/4e-3; at its 2,000 steps (STEPS) 77/80/78% at 5e-4/1e-3/2e-3
# (the baseline's 1,300 keep its 5e-4: 96.7%, as at 2,000).
FULL_LR = {"parity": {"baseline": 1e-4, "scratchpad": 1e-4, "retuning": 5e-5},
           "addition": {"baseline": 5e-4, "scratchpad": 5e-4, "retuning": 5e-4},
           "dp": {"baseline": 5e-4, "scratchpad": 2e-3, "retuning": 1e-3}}
# Training steps of 32 pairs: 1,200 (the default) for every method but DP's, which are sized so
# that no method reads fewer tokens than the scratchpad's 400 steps (5.3M; a scratchpad pair is
# 411 tokens, a Re-Tuning pair 90, a baseline pair 130): 2,000 for Re-Tuning (5.8M), 1,300 for the
# baseline (5.4M). Re-Tuning's DP needs them: 400 steps left it at 16% on arrays of 5.
STEPS = {"dp": {"baseline": 1300, "scratchpad": 400, "retuning": 2000}}
# --anchor for full tuning: on DP, each step pulls Re-Tuning's weights 1e-3 of the way back to the
# base's (lr 1e-3 x anchor 1), which keeps more of the base's copying: held-out 85.0% against 80.0%
# without. Tried on the others by the same rule and not kept (docs/RESULTS.md, section 4).
ANCHOR = {"dp": {"retuning": 1.0}}


@dataclass
class TrainConfig:
    task: str = "parity"
    method: str = "retuning"
    ckpt_dir: Optional[str] = None  # Meta's or Hugging Face's format; None: the embedded tiny LLaMA
    out: Optional[str] = None  # default out/<task>-<method>
    lengths: Optional[tuple] = None  # training sizes (lo, hi); default: the paper's
    full: Optional[bool] = None  # full fine-tuning; default: LoRA on Meta weights, full on the tiny model
    lora_r: int = 64
    lora_alpha: float = 64.0
    lora_dropout: float = 0.05
    lora_targets: tuple = ("wq", "wk", "wv", "wo")
    steps: Optional[int] = None  # default: STEPS[task][method], else 1,200
    batch_size: int = 32
    lr: Optional[float] = None  # default: 2e-4 with LoRA (the paper), FULL_LR[task][method] full
    warmup: int = 50
    weight_decay: float = 0.0
    grad_clip: float = 10.0
    eval_every: int = 300
    eval_samples: int = 20
    save_every: int = 100
    grad_checkpoint: bool = False
    device: Optional[str] = None
    dtype: Optional[str] = None  # the frozen base's (LoRA) or the forward's (full); default bfloat16 on CUDA
    seed: int = 0
    problems: Optional[int] = None  # learn from a fixed pool of this many distinct problems; None: fresh ones
    replay: float = 0.0  # this share of the pairs drawn from base.py's generic corpus (rehearsal)
    anchor: Optional[float] = None  # decay toward the base's weights; default ANCHOR[task][method] full, else 0

    def resolve(self, own_data=False):
        """Fill in the defaults that depend on other settings (own_data: base.py's corpus)."""
        if self.task not in tasks.TASKS and not own_data:
            raise ValueError(f"unknown task {self.task!r}; choose from {list(tasks.TASKS)}")
        if self.method not in tasks.METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {list(tasks.METHODS)}")
        self.ckpt_dir = str(self.ckpt_dir or EMBEDDED)
        self.out = self.out or f"out/{self.task}-{self.method}"
        self.lengths = tuple(self.lengths or tasks.TRAIN_LENGTHS.get(self.task, (1, 1)))
        if self.full is None:
            self.full = Path(self.ckpt_dir).resolve() == EMBEDDED
        if self.steps is None:
            self.steps = STEPS.get(self.task, {}).get(self.method, 1200)
        self.lr = self.lr or (FULL_LR.get(self.task, {}).get(self.method, 5e-4) if self.full else 2e-4)
        if self.anchor is None:
            self.anchor = ANCHOR.get(self.task, {}).get(self.method, 0.0) if self.full else 0.0
        self.lora_targets = tuple(self.lora_targets)
        if self.dtype not in (None, "bfloat16", "float32"):
            raise ValueError(f"dtype must be bfloat16 or float32, got {self.dtype!r}")
        self.dtype = self.dtype or str(default_device_dtype(self.device)[1]).removeprefix("torch.")
        for name in ("steps", "batch_size", "eval_every", "save_every", "lora_r"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.problems is not None and self.problems < 1:
            raise ValueError("--problems must be at least 1")
        if not 0.0 <= self.replay < 1.0:
            raise ValueError(f"--replay takes a share in [0, 1), got {self.replay}")
        if not 0.0 <= self.anchor * self.lr <= 1.0:
            raise ValueError("--anchor must be >= 0 and at most 1/lr (a step pulls lr * anchor of the way back)")
        if self.replay and self.problems:
            raise ValueError("--replay and --problems do not go together (a pool counts task pairs only)")
        return self


# ---- data: pairs -> token ids -> length-grouped batches ----

LENGTH_POOL = 16  # batches drawn together and sorted by length


def encode_pair(tokenizer, pair):
    """Prompt tokens segment by segment, exactly as the decoder builds a context; then target + EOS."""
    prompt = [t for seg in pair.segments for t in tokenizer.encode(seg)]
    return prompt, tokenizer.encode(pair.target) + [tokenizer.eos_id]


def make_batch(encoded, pad_id, device):
    """Right-padded inputs and targets; -1 marks positions without loss (prompt, padding)."""
    T = max(len(p) + len(t) for p, t in encoded) - 1
    x = torch.full((len(encoded), T), pad_id, dtype=torch.long)
    y = torch.full((len(encoded), T), -1, dtype=torch.long)
    for i, (p, t) in enumerate(encoded):
        seq = torch.tensor(p + t)
        x[i, :len(seq) - 1] = seq[:-1]
        y[i, len(p) - 1:len(seq) - 1] = seq[len(p):]  # predict target tokens and EOS only
    return x.to(device), y.to(device)


def batches(pairs_stream, tokenizer, batch_size, seed, start_step=0, pool=LENGTH_POOL):
    """Yield (step, batch) forever. Pools of `pool` batches are sorted by length so a batch pads
    little, then shuffled; pool k depends only on (seed, k), so a resumed run sees the same data."""
    k = start_step // pool
    while True:
        pairs = pairs_stream(seed * 1_000_003 + k)
        enc = sorted((encode_pair(tokenizer, next(pairs)) for _ in range(batch_size * pool)),
                     key=lambda e: len(e[0]) + len(e[1]))
        chunks = [enc[i:i + batch_size] for i in range(0, len(enc), batch_size)]
        random.Random(k).shuffle(chunks)
        for j, chunk in enumerate(chunks):
            if k * pool + j >= start_step:
                yield k * pool + j, chunk
        k += 1


def training_pairs(cfg, start_step=0):
    """`batches`'s stream(seed): fresh problems for each pool of batches, or with --problems one
    endless stream of the fixed pool's pairs, begun where the pool of batches of start_step begins.
    With --replay, that share of the pairs comes from the generic corpus instead."""
    if not cfg.problems:
        task_pairs = lambda seed: tasks.stream(cfg.task, cfg.method, cfg.lengths, seed=seed)
    else:
        problems = tasks.problem_pool(cfg.task, cfg.problems, cfg.lengths, cfg.seed)
        start = start_step // LENGTH_POOL * LENGTH_POOL * cfg.batch_size
        pairs = tasks.pool_stream(cfg.task, cfg.method, problems, cfg.seed, start)
        task_pairs = lambda seed: pairs  # every pool of batches takes the next pairs of the same stream
    return replayed(task_pairs, cfg.replay) if cfg.replay else task_pairs


def replayed(task_pairs, share):
    """Mix in requests of the committed base's last corpus (long lists, one line): rehearsal,
    so tuning keeps the generic copying that calls need past the tuned lengths."""
    from base import generic_stream  # base.py imports this file: imported where it is needed

    def stream(seed):
        rng, own, generic = random.Random(seed), task_pairs(seed), generic_stream(seed + 1, long_lists=True)
        while True:
            yield next(generic) if rng.random() < share else next(own)
    return stream


def pair_loss(logits, y):
    """Mean over pairs of each pair's mean token loss."""
    tok = F.cross_entropy(logits.flatten(0, 1), y.flatten().clamp(min=0), reduction="none").view_as(y)
    mask = (y >= 0).float()
    return ((tok * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()


def lr_at(step, cfg):
    """Linear warm-up, then cosine decay to a tenth."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


# ---- model set-up and checkpoints ----

def build_model(cfg, device, dtype):
    """The base model, with LoRA applied unless full fine-tuning."""
    model, tokenizer = load_checkpoint(cfg.ckpt_dir, device=device, dtype=dtype)
    if cfg.full:
        model.requires_grad_(True)
    else:
        apply_lora(model, targets=cfg.lora_targets, r=cfg.lora_r, alpha=cfg.lora_alpha,
                   dropout=cfg.lora_dropout)
    model.grad_checkpoint = cfg.grad_checkpoint
    return model, tokenizer


def trainable_state(model):
    return {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}


def save_state(cfg, model, optimizer, step, losses, rngs):
    """One file holds everything a resume needs, and the loss of every step so far; written
    atomically, config beside it. Trainable weights and AdamW's state are fp32."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "config.json", lambda f: f.write(json.dumps(asdict(cfg), indent=2).encode()))
    state = {"step": step, "weights": trainable_state(model), "optimizer": optimizer.state_dict(),
             "rng": rngs, "losses": list(losses)}
    atomic_write(out / "state.pt", lambda f: torch.save(state, f))


def read_state(out):
    path = Path(out) / "state.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training state (was this run started?)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: unreadable training state ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200]})") from None


def is_export(folder) -> bool:
    return (Path(folder) / EXPORTED_CONFIG).is_file()


def read_config(out):
    """The TrainConfig of a run folder (config.json) or of a model exported from one."""
    path = Path(out) / (EXPORTED_CONFIG if is_export(out) else "config.json")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no config.json; not a train.py output folder")
    try:
        return TrainConfig(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as e:
        raise ValueError(f"{path}: not a train.py config ({e})") from None


def load_weights(model, weights, source):
    params = dict(model.named_parameters())
    bad = [n for n, w in weights.items() if n not in params or params[n].shape != w.shape]
    if bad or not weights:
        raise ValueError(f"{source}: weights do not match the model (e.g. {bad[:3]})")
    with torch.no_grad():
        for n, w in weights.items():
            params[n].copy_(w)


def load_trained(out, device=None, dtype=None):
    """(model, tokenizer, config) of a finished or interrupted run, or of a model exported from
    one, ready for evaluation."""
    cfg = read_config(out)
    device, dtype = default_device_dtype(device or cfg.device, dtype)
    if is_export(out):
        model, tokenizer = load_checkpoint(out, device, dtype)
        return model, tokenizer, cfg
    model, tokenizer = build_model(cfg, device, dtype)
    load_weights(model, read_state(out)["weights"], Path(out) / "state.pt")
    return model.eval(), tokenizer, cfg


def export_run(out, dest, fmt: str):
    """A finished or interrupted run as a standalone model, LoRA merged, in Meta's format or
    Hugging Face's; each weight in the dtype the base had in training (config.json's dtype)."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ValueError(f"{dest}: not empty; export into a new folder")
    dtype = getattr(torch, read_config(out).dtype or "float32")
    model, tokenizer, cfg = load_trained(out, device="cpu", dtype=dtype)
    merge_lora(model)  # on this copy, loaded for the export: the run's files stay as they are
    (save_hf if fmt == "hf" else save_meta)(model, tokenizer, dest)
    atomic_write(dest / EXPORTED_CONFIG, lambda f: f.write(json.dumps(asdict(cfg), indent=2).encode()))


# ---- the loop ----

def held_out_accuracy(model, tokenizer, cfg, seed=12345):
    """Exact match on fresh problems at sizes inside the training range, decoded as at test time;
    with --problems, none of the pool's (drawn by another seed, they would coincide on small sizes)."""
    lo, hi = cfg.lengths
    sizes = sorted({lo, (lo + hi) // 2, hi})
    pool = set(tasks.problem_pool(cfg.task, cfg.problems, cfg.lengths, cfg.seed)) if cfg.problems else ()
    problems = [p for n in sizes for p in tasks.eval_problems(cfg.task, n, cfg.eval_samples, seed, pool)]
    was_training = model.training
    model.eval()
    outcomes = solve_problems(model, tokenizer, cfg.task, cfg.method, problems)
    model.train(was_training)
    return sum(o.correct for o in outcomes) / len(outcomes) if outcomes else float("nan")  # the pool has them all


def train(cfg: TrainConfig, resume=False, log=print, stream=None, evaluate=held_out_accuracy, device=None):
    """Train to cfg.steps; returns the final loss. Under torchrun every rank runs this on its share
    of each batch. base.py passes its own `stream(seed)` of pairs and its own
    `evaluate(model, tokenizer, cfg) -> accuracy`."""
    cfg.resolve(own_data=stream is not None)
    rank, world = devices.rank_world()
    if cfg.batch_size < world:
        raise ValueError(f"--batch-size {cfg.batch_size} is smaller than the {world} processes")
    log = log if rank == 0 else (lambda s: None)
    torch.manual_seed(cfg.seed)
    device, dtype = default_device_dtype(device or cfg.device, getattr(torch, cfg.dtype))
    weights_dtype, autocast = devices.precision(cfg.full, device, dtype)
    model, tokenizer = build_model(cfg, device, weights_dtype)
    if rank > 0:
        torch.manual_seed(cfg.seed + 7919 * rank)  # its own dropout masks; the weights above are every rank's
    params = [p for p in model.parameters() if p.requires_grad]
    base_weights = [p.detach().clone() for p in params] if cfg.anchor else []  # before a resume loads its own
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    start, losses = 0, []
    if resume:
        saved = read_config(cfg.out)
        saved.anchor = saved.anchor or 0.0  # runs saved before --anchor existed had none
        if (saved.task, saved.method, saved.full, saved.ckpt_dir, saved.problems, saved.replay, saved.anchor) != (
                cfg.task, cfg.method, cfg.full, cfg.ckpt_dir, cfg.problems, cfg.replay, cfg.anchor):
            raise ValueError(f"{cfg.out}: --resume with a different task/method/model/--problems/--replay/--anchor "
                             "than the saved run")
        state = read_state(cfg.out)
        load_weights(model, state["weights"], Path(cfg.out) / "state.pt")
        optimizer.load_state_dict(state["optimizer"])
        rngs = torch.atleast_2d(state["rng"])  # a row per rank that saved it
        if rank < len(rngs):
            torch.set_rng_state(rngs[rank].clone())  # a row of its own: torch crashes on a view
        start, losses = state["step"], state.get("losses", [])[:state["step"]]
        log(f"resumed {cfg.out} at step {start}")
    net = devices.data_parallel(model, device)
    stream = stream or training_pairs(cfg, start)
    model.train()
    bar = tqdm(total=cfg.steps, initial=start, disable=None if rank == 0 else True, desc=f"{cfg.task}-{cfg.method}")
    tokens_seen, t0, loss_value = 0, time.time(), float("nan")
    for step, chunk in batches(stream, tokenizer, cfg.batch_size, cfg.seed, start):
        if step >= cfg.steps:
            break
        mine = devices.share(chunk, rank, world)
        x, y = make_batch(mine, tokenizer.pad_id if tokenizer.pad_id >= 0 else 0, device)
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast():
            logits = net(x)
        loss = pair_loss(logits, y) * (len(mine) / len(chunk))  # the share's part of the mean over pairs
        (loss * world).backward()  # DDP divides the ranks' sum by world: the gradient of the whole mean
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        with torch.no_grad():  # decoupled, as AdamW's decay: each step pulls lr * anchor of the way back
            for p, p0 in zip(params, base_weights):
                p.lerp_(p0, lr * cfg.anchor)
        optimizer.zero_grad(set_to_none=True)  # now, not before backward: no stale grads beside activations
        loss_value, n_tokens = devices.sums([loss.item(), x.numel()], device)  # the whole batch's
        losses.append(loss_value)
        tokens_seen += n_tokens
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}", tok_s=f"{tokens_seen / (time.time() - t0):.0f}")
        done = step + 1
        if done % cfg.save_every == 0 or done == cfg.steps:
            rngs = devices.rng_states(world)  # every rank takes part
            if rank == 0:
                save_state(cfg, model, optimizer, done, losses, rngs)
        if done % cfg.eval_every == 0 or done == cfg.steps:
            if rank == 0:
                with autocast():
                    acc = evaluate(model, tokenizer, cfg)
                log(f"step {done}: loss {loss_value:.4f}, held-out exact match {acc:.1%}, "
                    f"{tokens_seen / (time.time() - t0):.0f} tokens/s")
            devices.barrier()  # the others wait for rank 0's evaluation
    bar.close()
    return loss_value


def parse_args(argv=None) -> tuple:
    d = TrainConfig()
    p = argparse.ArgumentParser(description="Tune a LLaMA on a compositional task.")
    p.add_argument("--task", default=d.task, choices=list(tasks.TASKS))
    p.add_argument("--method", default=d.method, choices=list(tasks.METHODS))
    p.add_argument("--ckpt-dir", help="LLaMA weights, Meta's or Hugging Face's format (default: the embedded tiny LLaMA)")
    p.add_argument("--out", help="output folder (default out/<task>-<method>)")
    p.add_argument("--lengths", help="training sizes LO:HI (default: the paper's)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", default=None, help="full fine-tuning")
    mode.add_argument("--lora", dest="full", action="store_false", help="LoRA (default with --ckpt-dir)")
    for name in ("lora_r", "steps", "batch_size", "warmup", "eval_every", "eval_samples",
                 "save_every", "seed"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    for name in ("lora_alpha", "lora_dropout", "lr", "weight_decay", "grad_clip"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name))
    p.add_argument("--anchor", type=float, default=d.anchor, metavar="A",
                   help="each step pulls the weights lr * A of the way back to the base's (default: "
                        "ANCHOR[task][method] for full tuning, else 0)")
    p.add_argument("--replay", type=float, default=d.replay, metavar="SHARE",
                   help="this share of the pairs from base.py's generic corpus (default 0: none)")
    p.add_argument("--problems", type=int, metavar="N",
                   help="learn from a fixed pool of N distinct problems, cycled (default: fresh ones)")
    p.add_argument("--lora-targets", default=",".join(d.lora_targets), help="e.g. wq,wk,wv,wo,w1,w2,w3")
    p.add_argument("--grad-checkpoint", action="store_true")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if present; one GPU per rank under torchrun)")
    p.add_argument("--dtype", choices=("bfloat16", "float32"),
                   help="the frozen base's (LoRA) or the forward's (full); trainable weights stay fp32 "
                        "(default: bfloat16 on CUDA, float32 on the CPU)")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--export", metavar="DIR", help="write the run in --out to DIR as a standalone model, LoRA merged")
    p.add_argument("--format", choices=("meta", "hf"), help="--export's format: Meta's (default) or Hugging Face's")
    a = vars(p.parse_args(argv))
    resume, export, fmt = a.pop("resume"), a.pop("export"), a.pop("format")
    if fmt and not export:
        p.error("--format goes with --export DIR")
    a["lora_targets"] = tuple(t for t in a["lora_targets"].split(",") if t)
    if a["lengths"]:
        try:
            lo, hi = (int(v) for v in a["lengths"].split(":"))
        except ValueError:
            p.error(f"--lengths must be LO:HI, got {a['lengths']!r}")
        if not 1 <= lo <= hi:
            p.error(f"--lengths needs 1 <= LO <= HI, got {lo}:{hi}")
        a["lengths"] = (lo, hi)
    return TrainConfig(**a), resume, (export, fmt or "meta") if export else None


def main(argv=None):
    cfg, resume, export = parse_args(argv)
    try:
        cfg.resolve()  # also fails early on a malformed --device
        if export:
            export_run(cfg.out, *export)
            print(f"exported {cfg.out} to {export[0]} ({export[1]} format)")
            return
        if not resume and (Path(cfg.out) / "state.pt").exists():
            raise ValueError(f"{cfg.out} already holds a run: pass --resume, or another --out")
        device = devices.start(cfg.device)
        t0 = time.time()
        train(cfg, resume=resume, device=device)
        if devices.rank_world()[0] == 0:
            print(f"done in {time.time() - t0:.0f} s; saved to {cfg.out}")
    except (ValueError, FileNotFoundError, RuntimeError, ImportError) as e:
        sys.exit(f"error: {e}" if devices.rank_world()[0] == 0 else 1)  # one message, from rank 0
    finally:
        devices.stop()


if __name__ == "__main__":
    main()
