"""checkpoints.py: Hugging Face LLaMA folders in, and tuned models out in either format.

A companion to chapter 1. Most people have LLaMA in Hugging Face's layout, not Meta's: a
`config.json`, weights in `model.safetensors` (or shards listed in `model.safetensors.index.json`,
or `pytorch_model*.bin`) under names like `model.layers.0.self_attn.q_proj.weight`, and the same
sentencepiece `tokenizer.model`. `model.load_checkpoint` sends such a folder to `load_hf`, which
renames the weights to Meta's names and undoes the one real difference: Hugging Face rotates each
head's two halves against each other (`rotate_half`), Meta rotates adjacent pairs, so the rows of
q_proj and k_proj are reordered (the inverse of transformers' `convert_llama_weights_to_hf.py`).
`save_hf` goes the other way, for `train.py --export DIR --format hf`. safetensors is imported
only when a safetensors file is read or written: the project runs without it.
"""
import json
from pathlib import Path

import torch

from model import ModelArgs, Tokenizer, atomic_write, default_device_dtype, load_shard, model_from_state

# Meta's names (model.py) -> Hugging Face's, inside a layer and at the top
LAYER_NAMES = {"attention.wq": "self_attn.q_proj", "attention.wk": "self_attn.k_proj",
               "attention.wv": "self_attn.v_proj", "attention.wo": "self_attn.o_proj",
               "feed_forward.w1": "mlp.gate_proj", "feed_forward.w2": "mlp.down_proj",
               "feed_forward.w3": "mlp.up_proj", "attention_norm": "input_layernorm",
               "ffn_norm": "post_attention_layernorm"}
TOP_NAMES = {"tok_embeddings": "model.embed_tokens", "norm": "model.norm", "output": "lm_head"}


def hf_name(name: str) -> str:
    """'layers.3.attention.wq.weight' -> 'model.layers.3.self_attn.q_proj.weight'."""
    module, _, kind = name.rpartition(".")
    if module.startswith("layers."):
        _, i, rest = module.split(".", 2)
        return f"model.layers.{i}.{LAYER_NAMES[rest]}.{kind}"
    return f"{TOP_NAMES[module]}.{kind}"


def to_hf_rotary(w, n_heads: int):
    """Meta's q/k rows of a head, pairs (x0 x1)(x2 x3)..., to HF's: the pairs' firsts, then their seconds."""
    rows, cols = w.shape
    return w.view(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def from_hf_rotary(w, n_heads: int):
    """The inverse of to_hf_rotary."""
    rows, cols = w.shape
    return w.view(n_heads, 2, rows // n_heads // 2, cols).transpose(1, 2).reshape(rows, cols)


# ---- in: config.json -> ModelArgs, weight files -> Meta-named tensors ----

def read_hf_config(path: Path) -> tuple:
    """(ModelArgs, tied embeddings?) from a LLaMA config.json; anything this LLaMA lacks is refused."""
    try:
        c = json.loads((path / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path / 'config.json'}: not valid JSON ({e})") from None
    arch = c.get("architectures") or ["LlamaForCausalLM"]  # optional in the file
    if c.get("model_type") != "llama" or arch != ["LlamaForCausalLM"]:
        raise ValueError(f"{path / 'config.json'}: model_type {c.get('model_type')!r}, architectures {arch}; "
                         f"only LLaMA (LlamaForCausalLM) is supported")
    required = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "intermediate_size")
    missing = [k for k in required if k not in c]
    if missing:
        raise ValueError(f"{path / 'config.json'}: {missing} missing")
    rope = c.get("rope_parameters") or c.get("rope_scaling") or {}  # transformers 5 / 4
    theta = c.get("rope_theta") or rope.get("rope_theta") or 10000.0
    head_dim = c["hidden_size"] // c["num_attention_heads"]  # model.py's, as Meta's
    unsupported = {"rope scaling": rope.get("rope_type", rope.get("type", "default")) != "default",
                   "attention_bias": c.get("attention_bias", False), "mlp_bias": c.get("mlp_bias", False),
                   f"hidden_act {c.get('hidden_act')!r}": c.get("hidden_act", "silu") != "silu",
                   f"head_dim {c.get('head_dim')}": c.get("head_dim", head_dim) != head_dim}
    bad = [name for name, present in unsupported.items() if present]
    if bad:
        raise ValueError(f"{path / 'config.json'}: {', '.join(bad)} not supported by model.py")
    args = ModelArgs(dim=c["hidden_size"], n_layers=c["num_hidden_layers"], n_heads=c["num_attention_heads"],
                     n_kv_heads=c.get("num_key_value_heads"), vocab_size=c["vocab_size"],
                     norm_eps=c.get("rms_norm_eps", 1e-6), rope_theta=float(theta),
                     max_seq_len=c.get("max_position_embeddings", 2048))
    if args.hidden_dim != c["intermediate_size"]:  # Meta's rule (multiple_of 256) gives another width
        args.ffn_hidden_dim = c["intermediate_size"]
    return args, bool(c.get("tie_word_embeddings", False))


def weight_files(path: Path) -> list:
    """The weight files, safetensors before .bin; every shard an index names must be there."""
    for index, single in (("model.safetensors.index.json", "model.safetensors"),
                          ("pytorch_model.bin.index.json", "pytorch_model.bin")):
        if (path / index).is_file():
            try:
                names = sorted(set(json.loads((path / index).read_text())["weight_map"].values()))
            except (json.JSONDecodeError, KeyError, AttributeError) as e:
                raise ValueError(f"{path / index}: not a weight index ({e!r})") from None
            missing = [n for n in names if not (path / n).is_file()]
            if missing:
                raise FileNotFoundError(f"{path / index} names shards that are missing: {missing}")
            return [path / n for n in names]
        if (path / single).is_file():
            return [path / single]
    raise FileNotFoundError(f"{path}: no model.safetensors, model.safetensors.index.json, "
                            f"pytorch_model.bin or pytorch_model.bin.index.json")


def read_tensors(files: list, device, dtype) -> dict:
    """Every tensor of the files, each moved to device and dtype as it is read: the files are
    memory-mapped, so the model is never held twice."""
    state = {}
    for f in files:
        if f.suffix == ".safetensors":
            try:
                from safetensors import safe_open
            except ImportError:
                raise ImportError(f"{f}: reading safetensors files needs the safetensors package "
                                  f"(pip install safetensors)") from None
            with safe_open(str(f), framework="pt", device="cpu") as st:
                state.update({k: st.get_tensor(k).to(device=device, dtype=dtype) for k in st.keys()})
        else:  # .bin: a pickle, read with weights_only=True and memory-mapped
            state.update({k: t.to(device=device, dtype=dtype) for k, t in load_shard(f).items()})
    return state


def from_hf_state(hf: dict, args: ModelArgs, tied: bool) -> dict:
    """Hugging Face's names and rotary order -> Meta's."""
    names = {"model.embed_tokens.weight": "tok_embeddings.weight", "model.norm.weight": "norm.weight",
             "lm_head.weight": "output.weight"}
    for i in range(args.n_layers):
        names.update({f"model.layers.{i}.{h}.weight": f"layers.{i}.{m}.weight" for m, h in LAYER_NAMES.items()})
    state = {names.get(k, k): w for k, w in hf.items() if not k.endswith("rotary_emb.inv_freq")}
    for i in range(args.n_layers):
        for key, heads in ((f"layers.{i}.attention.wq.weight", args.n_heads),
                           (f"layers.{i}.attention.wk.weight", args.kv_heads)):
            if key in state:
                state[key] = from_hf_rotary(state[key], heads)
    if tied and "tok_embeddings.weight" in state:  # one matrix for both ends: files may leave lm_head out
        state["output.weight"] = state["tok_embeddings.weight"]
    return state


def load_hf(path, device=None, dtype=None):
    """Read a Hugging Face LLaMA folder into (Transformer, Tokenizer) with Meta's names."""
    path = Path(path)
    if (path / "state.pt").is_file():
        raise ValueError(f"{path}: a train.py run folder, not a model (write one with "
                         f"train.py --out {path} --export DIR)")
    if not (path / "tokenizer.model").is_file() and (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{path}: tokenizer.json but no tokenizer.model; this project reads "
                                f"sentencepiece tokenizers only (LLaMA 1 and 2 ship tokenizer.model)")
    args, tied = read_hf_config(path)
    tokenizer = Tokenizer(path / "tokenizer.model")
    if tokenizer.n_words > args.vocab_size:
        raise ValueError(f"{path / 'tokenizer.model'}: vocabulary of {tokenizer.n_words} does not fit "
                         f"the model's vocab_size {args.vocab_size}")
    files = weight_files(path)
    device, dtype = default_device_dtype(device, dtype)
    state = from_hf_state(read_tensors(files, device, dtype), args, tied)
    model = model_from_state(args, state, path, f"config.json and {len(files)} weight file(s)", device, dtype)
    if tied:
        model.output.weight = model.tok_embeddings.weight  # one parameter, trained once
    return model, tokenizer


# ---- out: a Hugging Face folder that LlamaForCausalLM.from_pretrained reads ----

def hf_config(model, tokenizer) -> dict:
    a = model.args
    tied = model.output.weight is model.tok_embeddings.weight
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": a.dim,
            "intermediate_size": a.hidden_dim, "num_hidden_layers": a.n_layers,
            "num_attention_heads": a.n_heads, "num_key_value_heads": a.kv_heads, "head_dim": a.head_dim,
            "vocab_size": a.vocab_size, "rms_norm_eps": a.norm_eps, "rope_theta": a.rope_theta,
            "rope_scaling": None, "max_position_embeddings": a.max_seq_len, "hidden_act": "silu",
            "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": tied,
            "bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id,
            "torch_dtype": str(model.tok_embeddings.weight.dtype).removeprefix("torch.")}


def hf_state(model) -> dict:
    """Meta's names and rotary order -> Hugging Face's; each tensor keeps its dtype."""
    a, tied = model.args, model.output.weight is model.tok_embeddings.weight
    state = {}
    for name, w in model.state_dict().items():
        if tied and name == "output.weight":
            continue  # written once, as the embedding
        w = w.detach().cpu()
        if name.endswith(("attention.wq.weight", "attention.wk.weight")):
            w = to_hf_rotary(w, a.n_heads if ".wq." in name else a.kv_heads)
        state[hf_name(name)] = w.contiguous()
    return state


def save_hf(model, tokenizer, out_dir):
    """config.json, tokenizer.model and model.safetensors (pytorch_model.bin without safetensors);
    each file written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = hf_state(model)
    try:
        from safetensors.torch import save_file
    except ImportError:
        save_file = None
    if save_file:  # it writes by name: into the temporary file atomic_write has opened
        atomic_write(out / "model.safetensors", lambda f: save_file(state, f.name, metadata={"format": "pt"}))
    else:
        atomic_write(out / "pytorch_model.bin", lambda f: torch.save(state, f))
    atomic_write(out / "config.json", lambda f: f.write(json.dumps(hf_config(model, tokenizer), indent=2).encode()))
    atomic_write(out / "tokenizer.model", lambda f: f.write(tokenizer.path.read_bytes()))
