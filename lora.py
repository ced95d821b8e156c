"""lora.py: low-rank adapters, so fine-tuning trains a few million numbers instead of billions.

Chapter 2 of the project. LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language
Models") freezes a pretrained weight W (out, in) and learns a low-rank change to it:
W + (alpha / r) * B A, with A (r, in) and B (out, r). B starts at zero, so a freshly adapted
model computes exactly what the base model computes. train.py calls `apply_lora` on a
`Transformer` from model.py; the Re-Tuning paper uses r = 64, alpha = 64, dropout 0.05 on the
attention projections wq, wk, wv, wo (the defaults below). The base weight keeps its name
`weight`, so Meta's state dicts load into an adapted model unchanged, and `merge_lora` folds
the adapters back in to give a plain model that `save_meta` can write as a Meta checkpoint.
The adapters are fp32 whatever the base's dtype (as peft does): over a frozen bf16 base, a bf16
B would round away every update smaller than about 1/256 of its entries.
"""
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from model import atomic_write

LORA_PARAMS = ("lora_A", "lora_B")


class LoRALinear(nn.Module):
    """An nn.Linear with a frozen weight plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float):
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        # the base's own tensors under their own names: state-dict keys stay Meta's
        self.weight = base.weight
        self.bias = base.bias
        like = dict(device=base.weight.device, dtype=torch.float32)  # trainable: fp32 over any base
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, **like))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, **like))  # zero: starts as W
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as in Microsoft's loralib
        self.dropout = nn.Dropout(dropout)
        self.enabled = True  # False: behave exactly like the base layer

    def forward(self, x):
        out = F.linear(x, self.weight, self.bias)  # (..., out), in the base's dtype
        if not self.enabled:
            return out
        h = F.linear(self.dropout(x).to(self.lora_A.dtype), self.lora_A)  # (..., r), fp32
        return out + (F.linear(h, self.lora_B) * self.scaling).to(out.dtype)  # (..., out)

    def extra_repr(self):
        return f"in={self.in_features}, out={self.out_features}, r={self.r}, alpha={self.alpha}"


def lora_modules(model: nn.Module) -> list:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoRALinear)]


def replace_module(model: nn.Module, name: str, new: nn.Module):
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


def is_lora_param(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in LORA_PARAMS


def apply_lora(model: nn.Module, targets=("wq", "wk", "wv", "wo"), r: int = 64,
               alpha: float = 64, dropout: float = 0.05) -> list:
    """Wrap every nn.Linear whose last name part is in `targets`; freeze all but the adapters.

    Add "w1", "w2", "w3" to `targets` to adapt the feed-forward layers too.
    Returns the names of the wrapped modules.
    """
    targets = (targets,) if isinstance(targets, str) else tuple(targets)
    if r < 1:
        raise ValueError(f"LoRA rank r must be >= 1, got {r}")
    if lora_modules(model):
        raise ValueError("model already has LoRA adapters (merge_lora it first to stack another)")
    names = [name for name, m in model.named_modules()
             if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in targets]
    found = {name.rsplit(".", 1)[-1] for name in names}
    missing = [t for t in targets if t not in found]
    if missing:
        raise ValueError(f"no nn.Linear named {missing} in the model (targets={list(targets)})")
    for name in names:
        replace_module(model, name, LoRALinear(model.get_submodule(name), r, alpha, dropout))
    for name, p in model.named_parameters():
        p.requires_grad = is_lora_param(name)  # embeddings, norms and output are frozen too
    return names


def set_lora_enabled(model: nn.Module, flag: bool):
    for _, m in lora_modules(model):
        m.enabled = flag


def lora_config(model: nn.Module) -> dict:
    """r, alpha, dropout and targets, read back from the model's LoRALinear modules."""
    mods = lora_modules(model)
    if not mods:
        raise ValueError("model has no LoRA adapters: call apply_lora first")
    configs = {(m.r, m.alpha, m.dropout.p) for _, m in mods}
    if len(configs) > 1:
        raise ValueError(f"LoRA modules disagree on (r, alpha, dropout): {sorted(configs)}")
    (r, alpha, dropout), = configs
    targets = sorted({name.rsplit(".", 1)[-1] for name, _ in mods})
    return {"r": r, "alpha": alpha, "dropout": dropout, "targets": targets}


def lora_state_dict(model: nn.Module) -> dict:
    return {k: v for k, v in model.state_dict().items() if is_lora_param(k)}


def save_lora(model: nn.Module, path, meta: dict = None):
    """Write the adapters, their config and `meta` (anything plain: step, base model...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in lora_state_dict(model).items()}
    blob = {"config": lora_config(model), "meta": dict(meta or {}), "state": state}
    atomic_write(path, lambda f: torch.save(blob, f))


def load_lora(model: nn.Module, path) -> dict:
    """Copy adapters saved by `save_lora` into an already LoRA'd model; returns their meta."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: LoRA adapter file not found")
    try:  # weights_only: tensors and plain containers only, no code from the pickle is run
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: cannot be read as a LoRA adapter ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:300]})") from None
    if not (isinstance(blob, dict) and isinstance(blob.get("config"), dict)
            and isinstance(blob.get("state"), dict)
            and all(isinstance(t, torch.Tensor) for t in blob["state"].values())):
        raise ValueError(f"{path}: not a LoRA adapter file (expected a config and a dict of tensors)")
    saved, ours = blob["config"], lora_config(model)
    for key in ("r", "alpha", "targets"):  # dropout only shapes training: it may differ
        if saved.get(key) != ours[key]:
            raise ValueError(f"{path}: adapter has {key}={saved.get(key)}, model has {key}={ours[key]}")
    state = blob["state"]
    expected = {k: p for k, p in model.named_parameters() if is_lora_param(k)}
    if set(state) != set(expected):
        odd = sorted(set(state) ^ set(expected))
        raise ValueError(f"{path}: adapter tensors do not match the model's, e.g. {odd[:3]}")
    for k, t in expected.items():
        if state[k].shape != t.shape:
            raise ValueError(f"{path}: {k} has shape {tuple(state[k].shape)}, model has {tuple(t.shape)}")
    with torch.no_grad():  # copy_ keeps the model's dtype and device
        for k, t in expected.items():
            t.copy_(state[k])
    return blob.get("meta", {})


def merge_lora(model: nn.Module) -> list:
    """Fold W + (alpha / r) B A into each weight and put plain nn.Linear modules back.

    The adapters are folded whether or not they are enabled. Returns the merged names.
    """
    names = []
    for name, m in lora_modules(model):
        with torch.no_grad():  # sum in fp32: a bf16 B A would lose the small update
            delta = (m.lora_B.float() @ m.lora_A.float()) * m.scaling  # (out, in)
            w = (m.weight.float() + delta).to(m.weight.dtype)
        # built on "meta": no memory or random init for a weight replaced on the next line
        linear = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None, device="meta")
        linear.weight = nn.Parameter(w, requires_grad=m.weight.requires_grad)
        linear.bias = m.bias
        replace_module(model, name, linear)
        names.append(name)
    return names
