"""model.py: a LLaMA, written out in full, that loads Meta's checkpoints as they are.

Chapter 1 of the project. Everything else (LoRA, training, the recursive decoder) is built
on the `Transformer` below. It follows Meta's reference `model.py`: same parameter names,
rotary embeddings on adjacent pairs, grouped-query attention, SwiGLU, RMSNorm. Two things
differ: attention runs through `F.scaled_dot_product_attention`, and the KV cache is a
small explicit object (`KVCache`) passed to `forward`, holding many independent contexts
(rows) at once, so the recursive decoder can keep one cache per sub-call; `decode` runs groups
of them (one-token steps, prompts) in one pass, attention per group. `load_checkpoint`
reads Meta's format here and Hugging Face's through checkpoints.py.
"""
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

import sentencepiece as spm
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


@dataclass
class ModelArgs:
    # the fields of Meta's params.json, plus max_seq_len
    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: Optional[int] = None
    vocab_size: int = -1  # LLaMA-1 writes -1: taken from the tokenizer
    multiple_of: int = 256
    ffn_dim_multiplier: Optional[float] = None
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_seq_len: int = 2048
    ffn_hidden_dim: Optional[int] = None  # not Meta's: a feed-forward width off its rule (HF's intermediate_size)

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def hidden_dim(self) -> int:
        if self.ffn_hidden_dim:
            return self.ffn_hidden_dim
        # Meta's rule: 2/3 of 4*dim, optionally scaled, rounded up to a multiple
        hidden = int(2 * (4 * self.dim) / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()  # normalise in fp32 even when the weights are bf16
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return x32.type_as(x) * self.weight


def rope_angles(pos, head_dim: int, theta: float):
    """e^(i * pos * theta^(-2j/D)) for pair j at each position, as complex numbers, once per forward."""
    # computed on the fly in fp32: a stored buffer would lose its imaginary part to model.to(bfloat16)
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=pos.device, dtype=torch.float32) / head_dim)
    angle = pos.float()[..., None] * inv_freq  # (B, T, D/2)
    return torch.complex(angle.cos(), angle.sin())[:, :, None]  # (B, T, 1, D/2)


def rope(x, rot):
    """Rotate adjacent pairs (x[2i], x[2i+1]) of each head, read as complex numbers, by rope_angles."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))  # (B, T, H, D/2)
    return torch.view_as_real(pairs * rot).flatten(-2).type_as(x)  # (B, T, H, D): one complex multiply


class KVCache:
    """Keys and values of `n_rows` independent contexts, each up to `max_len` tokens.

    A context is a row; `lengths[row]` is how many of its slots are filled. Slot i holds
    the token at position i of that context, so positions stay fixed for a context's life.
    """

    def __init__(self, args: ModelArgs, n_rows: int, max_len: int, device=None, dtype=torch.float32):
        shape = (n_rows, args.kv_heads, max_len, args.head_dim)  # as SDPA reads it; a tensor per layer
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(args.n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(args.n_layers)]
        self.lengths = torch.zeros(n_rows, dtype=torch.long, device=device)
        self.max_len = max_len

    def reset(self, rows):
        self.lengths[rows] = 0  # old slots are never read again: attention stops at lengths


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.kv_heads, args.head_dim
        self.wq = nn.Linear(args.dim, args.n_heads * args.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, self.n_kv_heads * args.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, self.n_kv_heads * args.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=False)

    def forward(self, x, rot, kv: Optional[tuple] = None):
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim)
        q, k = rope(q, rot), rope(k, rot)
        if kv is None:  # whole sequences from position 0: plain causal attention
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                 is_causal=True, enable_gqa=self.n_kv_heads != self.n_heads)
            return self.wo(out.transpose(1, 2).reshape(B, T, -1))  # (B, T, dim)
        cache_k, cache_v, rows, pos, groups = kv  # (R, Hkv, slots, D) this layer; rows, pos (M,): a token's slot
        cache_k[rows, :, pos] = k[0].to(cache_k.dtype)  # x is (1, M, dim): every group's tokens, one after another
        cache_v[rows, :, pos] = v[0].to(cache_v.dtype)  # the (M,) index pairs take (M, Hkv, D)
        outs = [self.attend(q[0, g.start:g.stop].view(g.B, g.T, self.n_heads, self.head_dim), cache_k, cache_v, g)
                for g in groups]
        return self.wo(torch.cat(outs)[None])  # (1, M, dim)

    def attend(self, q, cache_k, cache_v, g):
        """One group's queries (B, T, H, D) against its rows of the cache -> (B * T, H * D)."""
        B, T = q.shape[:2]
        S = g.mask.shape[-1]
        if g.span is not None:  # rows first..last read in place, no copy; rows between get a zero query
            k, v = cache_k[g.span, :, :S].type_as(q), cache_v[g.span, :, :S].type_as(q)  # (n, Hkv, S, D)
            if g.at is not None:
                q = q.new_zeros(k.shape[0], T, self.n_heads, self.head_dim).index_copy_(0, g.at, q)
        else:  # gather rows, each head's S slots one contiguous run: the fastest copy on a CPU
            k, v = (c.flatten(2)[:, :, :S * self.head_dim].index_select(0, g.rows)
                    .view(B, self.n_kv_heads, S, self.head_dim).type_as(q) for c in (cache_k, cache_v))
        n, Hkv, D = q.shape[0], self.n_kv_heads, self.head_dim
        G = self.n_heads // Hkv
        # the G query heads sharing a kv head as one query G*T long: one read of each key for all of them
        q = q.view(n, T, Hkv, G, D).permute(0, 2, 3, 1, 4).reshape(n, Hkv, G * T, D)  # (n, Hkv, G*T, D)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=g.mask)  # (n, Hkv, G*T, D)
        out = out.view(n, Hkv, G, T, D).permute(0, 3, 1, 2, 4).reshape(n, T, -1)  # (n, T, H*D)
        return (out if g.at is None else out[g.at]).reshape(B * T, -1)  # (B*T, H*D)


class FeedForward(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.w1 = nn.Linear(args.dim, args.hidden_dim, bias=False)
        self.w2 = nn.Linear(args.hidden_dim, args.dim, bias=False)
        self.w3 = nn.Linear(args.dim, args.hidden_dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))  # SwiGLU


FFN_ROWS = 1024  # the most tokens of a decoding pass one feed-forward takes: 1.14-1.30x on 2,000-6,400 (RESULTS 7)


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention = Attention(args)
        self.feed_forward = FeedForward(args)
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)

    def forward(self, x, rot, kv=None):
        h = x + self.attention(self.attention_norm(x), rot, kv)
        if kv is None or h.shape[1] <= FFN_ROWS:
            return h + self.feed_forward(self.ffn_norm(h))
        # a decoding pass of many tokens (prompts): a block of rows at a time, whose hidden activations stay
        # in a CPU's cache (a row's numbers do not depend on the others'); training keeps one matmul, as its
        # weight gradients would sum in another order
        parts = h.split(FFN_ROWS, dim=1)  # (1, <= FFN_ROWS, dim) each
        return h + torch.cat([self.feed_forward(self.ffn_norm(part)) for part in parts], dim=1)


@dataclass
class Group:
    """Contexts whose tokens share one attention call: B rows of the cache, T tokens each (right-padded),
    tokens start:stop of the forward's flat sequence."""
    start: int
    B: int
    T: int
    rows: torch.Tensor  # (B,)
    mask: torch.Tensor  # (n, 1, G*T, S): 0 where a query sees a slot, else -inf; a kv head's G query heads stacked
    span: Optional[slice]  # cache rows read in place (model.in_place), or None: gathered
    at: Optional[torch.Tensor]  # where each row sits in the span, None when the rows are the span

    @property
    def stop(self) -> int:
        return self.start + self.B * self.T


# a gathered cache row (copied, then read) costs about 9/8 of a row read in place, measured on a CPU (RESULTS
# section 7); elsewhere only the speed changes with it, never the outputs
GATHER_COST = 9 / 8


def in_place(rows, B: int):
    """(span, at): read cache rows first..last as a slice when that costs no more than gathering them,
    rows between included (they get a zero query); `at` places each row in the span (None when the rows
    are exactly the span)."""
    first, last = int(rows.min()), int(rows.max())
    if last - first + 1 > GATHER_COST * B:
        return None, None
    at = rows - first
    return slice(first, last + 1), None if torch.equal(at, torch.arange(B, device=rows.device)) else at


def group_mask(pos, S: int, span, at, G: int, dtype):
    """Each query sees slots up to its own position: (n, 1, G*T, S), rows between a span's rows see every
    slot (finite, never NaN; their output is dropped). An explicit mask: is_causal would align top-left."""
    mask = torch.arange(S, device=pos.device) <= pos[:, :, None]  # (B, T, S)
    if at is not None:
        mask = mask.new_ones(span.stop - span.start, *mask.shape[1:]).index_copy_(0, at, mask)
    # added to the scores, as SDPA would turn a boolean mask in every layer: once here instead
    mask = torch.zeros(mask.shape, device=pos.device, dtype=dtype).masked_fill_(~mask, float("-inf"))
    return mask.repeat(1, G, 1)[:, None]  # (n, 1, G*T, S): the query heads of a group stacked


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        if args.vocab_size <= 0:
            raise ValueError("ModelArgs.vocab_size must be set (from the tokenizer) before building")
        self.args = args
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(TransformerBlock(args) for _ in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        self.grad_checkpoint = False  # recompute each block in backward to save memory

    def forward(self, tokens, cache: Optional[KVCache] = None, rows=None, n_new=None):
        """tokens (B, T) -> logits (B, T, vocab).

        Without a cache: T tokens at positions 0..T-1 (training). With a cache: the tokens
        continue context `rows[b]` (default b) from its current length; only the first
        `n_new[b]` tokens of row b are real (the rest is padding) and the length advances
        by that much: `decode` with one group.
        """
        B, T = tokens.shape
        if cache is not None:
            rows = torch.arange(B, device=tokens.device) if rows is None else rows
            n_new = torch.full((B,), T, device=tokens.device) if n_new is None else n_new
            return self.decode([tokens], cache, [rows], [n_new])[0]
        pos = torch.arange(T, device=tokens.device).expand(B, T)
        rot = rope_angles(pos, self.args.head_dim, self.args.rope_theta)  # once, for every layer
        h = self.tok_embeddings(tokens)  # (B, T, dim)
        for layer in self.layers:
            if self.grad_checkpoint and self.training:
                h = checkpoint(layer, h, rot, use_reentrant=False)
            else:
                h = layer(h, rot)
        return self.output(self.norm(h)).float()  # (B, T, vocab)

    def decode(self, tokens: list, cache: KVCache, rows: list, n_new: list,
               logits_from: Optional[list] = None) -> list:
        """Groups of contexts in one pass, for the recursive decoder: group i's tokens[i] (B_i, T_i)
        continue cache rows rows[i] as in `forward`; a row is in one group at most. The weights run
        once over every group's tokens together (one large matmul, not one per group); attention
        runs per group, each reading only its own rows up to its own longest context. Group i's logits
        start at its position logits_from[i] (default 0): the decoder needs none before a row's last
        real token."""
        groups, start = [], 0
        all_pos, all_rows = [], []
        G, dtype = self.args.n_heads // self.args.kv_heads, self.tok_embeddings.weight.dtype
        for t, r in zip(tokens, rows):
            B, T = t.shape
            pos = cache.lengths[r][:, None] + torch.arange(T, device=t.device)  # (B, T)
            S = int(pos.max()) + 1  # the slots this group's attention reads
            if S > cache.max_len:
                raise ValueError(f"context longer than the cache's max_len={cache.max_len}")
            span, at = in_place(r, B)
            groups.append(Group(start, B, T, r, group_mask(pos, S, span, at, G, dtype), span, at))
            start += B * T
            all_pos.append(pos.flatten())
            all_rows.append(r[:, None].expand(B, T).flatten())
        pos, rows_of = torch.cat(all_pos), torch.cat(all_rows)  # (M,): each token's slot and row
        rot = rope_angles(pos[None], self.args.head_dim, self.args.rope_theta)  # (1, M, 1, D/2)
        h = self.tok_embeddings(torch.cat([t.flatten() for t in tokens]))[None]  # (1, M, dim)
        for i, layer in enumerate(self.layers):
            h = layer(h, rot, (cache.k[i], cache.v[i], rows_of, pos, groups))
        cache.lengths[torch.cat(rows)] += torch.cat(n_new)
        logits_from = logits_from or [0] * len(groups)
        h = torch.cat([h[0, g.start:g.stop].view(g.B, g.T, -1)[:, lo:].flatten(0, 1)
                       for g, lo in zip(groups, logits_from)])  # (M', dim): the positions wanted
        logits = self.output(self.norm(h)).float()  # (M', vocab)
        sizes = [g.B * (g.T - lo) for g, lo in zip(groups, logits_from)]
        return [x.view(g.B, g.T - lo, -1) for x, g, lo in zip(logits.split(sizes), groups, logits_from)]


class Tokenizer:
    """A thin wrapper around a sentencepiece model (Meta's tokenizer.model or the project's)."""

    def __init__(self, path):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: tokenizer file not found")
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.Load(str(path))
        except Exception as e:  # sentencepiece raises a bare OSError/RuntimeError
            raise ValueError(f"{path}: not a readable sentencepiece model ({e})") from None
        self.path = path
        self.n_words = self.sp.GetPieceSize()
        self.bos_id, self.eos_id, self.pad_id = self.sp.bos_id(), self.sp.eos_id(), self.sp.pad_id()

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list:
        return [self.bos_id] * bos + self.sp.EncodeAsIds(text) + [self.eos_id] * eos

    def decode(self, ids) -> str:
        return self.sp.DecodeIds(list(ids))


# ---- Meta's checkpoint format: params.json, tokenizer.model, consolidated.NN.pth ----

# how model parallelism split each weight (Meta's fairscale layers): 0 = rows, 1 = columns
SHARD_DIM = {"wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "output": 0,
             "wo": 1, "w2": 1, "tok_embeddings": 1}


def shard_dim(name: str) -> Optional[int]:
    """The dimension a weight was split along, or None if every shard holds a copy (norms)."""
    for part in reversed(name.split(".")[:-1]):
        if part in SHARD_DIM:
            return SHARD_DIM[part]
    return None


def read_params(ckpt_dir: Path) -> ModelArgs:
    path = ckpt_dir / "params.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: params.json not found")
    try:
        params = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    known = {f.name for f in fields(ModelArgs)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"{path}: unknown fields {unknown}")
    return ModelArgs(**params)


def load_shard(path: Path) -> dict:
    try:  # weights_only: a pickle holding anything but tensors is refused, never run
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise ValueError(f"{path}: cannot be read as a tensor checkpoint ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:300]})") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: expected a dict of tensors")
    return sd


def merge_shards(shards: list, paths: list) -> dict:
    """Concatenate model-parallel shards back into whole weights."""
    merged = {}
    for name in shards[0]:
        if name == "rope.freqs":
            continue  # recomputed by rope_angles()
        missing = [str(p) for p, s in zip(paths, shards) if name not in s]
        if missing:
            raise ValueError(f"{missing[0]}: weight {name!r} missing from this shard")
        dim = shard_dim(name)
        parts = [s[name] for s in shards]
        merged[name] = parts[0] if dim is None or len(parts) == 1 else torch.cat(parts, dim=dim)
    return merged


def default_device_dtype(device=None, dtype=None):
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    return device, dtype


def load_meta(ckpt_dir, device=None, dtype=None, max_seq_len: int = 2048):
    """Read a Meta checkpoint folder into (Transformer, Tokenizer)."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        raise FileNotFoundError(f"{ckpt_dir}: checkpoint directory not found")
    args = read_params(ckpt_dir)
    tokenizer = Tokenizer(ckpt_dir / "tokenizer.model")
    if args.vocab_size <= 0:
        args.vocab_size = tokenizer.n_words
    if tokenizer.n_words > args.vocab_size:
        raise ValueError(f"{ckpt_dir / 'tokenizer.model'}: vocabulary of {tokenizer.n_words} does "
                         f"not fit the model's vocab_size {args.vocab_size}")
    args.max_seq_len = max_seq_len
    paths = sorted(ckpt_dir.glob("consolidated.*.pth"))
    if not paths:
        raise FileNotFoundError(f"{ckpt_dir}: no consolidated.NN.pth shard found")
    expected = [ckpt_dir / f"consolidated.{i:02d}.pth" for i in range(len(paths))]
    if paths != expected:
        raise FileNotFoundError(f"{ckpt_dir}: shards must be consolidated.00.pth .. "
                                f"consolidated.{len(paths) - 1:02d}.pth, found {[p.name for p in paths]}")
    state = merge_shards([load_shard(p) for p in paths], paths)
    device, dtype = default_device_dtype(device, dtype)
    model = model_from_state(args, state, ckpt_dir, f"params.json and {len(paths)} shard(s)", device, dtype)
    return model, tokenizer


def model_from_state(args: ModelArgs, state: dict, source, implied_by: str, device, dtype):
    """A Transformer holding `state`'s tensors, each checked against the shape `args` implies."""
    with torch.device("meta"):  # no memory for weights yet: assign=True hands over the loaded ones
        model = Transformer(args)
    expected_shapes = {k: v.shape for k, v in model.state_dict().items()}
    for name, shape in expected_shapes.items():
        if name not in state:
            raise ValueError(f"{source}: weight {name!r} missing ({args.n_layers} layers expected "
                             f"from {implied_by})")
        if state[name].shape != shape:
            raise ValueError(f"{source}: weight {name!r} has shape {tuple(state[name].shape)}, "
                             f"expected {tuple(shape)} from {implied_by}")
    extra = sorted(set(state) - set(expected_shapes))
    if extra:
        raise ValueError(f"{source}: unexpected weights {extra[:5]}")
    model.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in state.items()}, assign=True)
    return model.eval()


def load_checkpoint(path, device=None, dtype=None):
    """(Transformer, Tokenizer) from Meta's format (params.json) or a Hugging Face LLaMA folder
    (config.json), told apart by their files."""
    path = Path(path)
    if path.is_dir() and not (path / "params.json").is_file():
        if (path / "config.json").is_file():
            from checkpoints import load_hf  # Hugging Face's format: the next chapter
            return load_hf(path, device, dtype)
        raise FileNotFoundError(f"{path}: neither params.json (Meta's format) nor config.json "
                                f"(Hugging Face's) found")
    return load_meta(path, device, dtype)


def save_meta(model: Transformer, tokenizer: Tokenizer, ckpt_dir):
    """Write params.json, tokenizer.model and consolidated.00.pth; each file atomically."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    params = {f.name: getattr(model.args, f.name) for f in fields(ModelArgs) if f.name != "max_seq_len"}
    if params["ffn_hidden_dim"] is None:
        del params["ffn_hidden_dim"]  # Meta's own readers know only their fields
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(ckpt_dir / "params.json", lambda f: f.write(json.dumps(params, indent=2).encode()))
    atomic_write(ckpt_dir / "tokenizer.model", lambda f: f.write(tokenizer.path.read_bytes()))
    atomic_write(ckpt_dir / "consolidated.00.pth", lambda f: torch.save(state, f))


def atomic_write(path: Path, write):
    """Write to a temporary file beside `path`, then rename: readers see old or new, never half."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
