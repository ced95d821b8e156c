"""checkpoints.py: tiny random Hugging Face LLaMAs (multi-head and grouped-query, one file or
shards, safetensors or .bin, tied embeddings) load with transformers' own logits; tuned runs
export to both formats and read back with the same logits; bad folders fail with one clear
message."""
import json
import shutil
import sys

import pytest
import torch
import transformers

import eval as evaluation  # not the builtin
import train
from checkpoints import from_hf_rotary, to_hf_rotary
from model import load_checkpoint, load_meta


def hf_folder(path, tokenizer, kv_heads=4, tied=False, shard_size=None, bin_shards=0, seed=0):
    """A tiny random LlamaForCausalLM written by save_pretrained, the test tokenizer beside it.
    bin_shards > 0: its weights rewritten as that many pytorch_model*.bin files instead."""
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=tokenizer.n_words, hidden_size=64, intermediate_size=100,  # off Meta's rule
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=kv_heads, rms_norm_eps=1e-5,
        rope_theta=500000.0, tie_word_embeddings=tied, bos_token_id=tokenizer.bos_id,
        eos_token_id=tokenizer.eos_id)
    hf = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in hf.parameters():  # the default init is too tame to catch small bugs
            p.normal_(1.0 if p.dim() == 1 else 0.0, 0.3 if p.dim() == 1 else 0.08)
    hf.save_pretrained(path, **({"max_shard_size": shard_size} if shard_size else {}))
    shutil.copy(tokenizer.path, path / "tokenizer.model")
    if bin_shards:
        for f in path.glob("model*.safetensors*"):
            f.unlink()
        state = hf.state_dict()
        names = [f"pytorch_model-{i + 1:05d}-of-{bin_shards:05d}.bin" for i in range(bin_shards)]
        names = names if bin_shards > 1 else ["pytorch_model.bin"]
        weight_map = {k: names[i % bin_shards] for i, k in enumerate(state)}
        for name in names:
            torch.save({k: v.clone() for k, v in state.items() if weight_map[k] == name}, path / name)
        if bin_shards > 1:
            (path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return hf


def tokens(vocab, seed=1):
    return torch.randint(0, vocab, (2, 40), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def max_diff(ours, theirs, x):
    a = ours(x)
    b = theirs(x).logits if hasattr(theirs, "config") else theirs(x)
    return (a - b).abs().max().item()


def test_rotary_orders_invert_each_other():
    w = torch.randn(4 * 16, 8)
    assert torch.equal(from_hf_rotary(to_hf_rotary(w, 4), 4), w)
    assert not torch.equal(to_hf_rotary(w, 4), w)


@pytest.mark.parametrize("kw", [
    dict(kv_heads=4), dict(kv_heads=2, shard_size="40KB"), dict(kv_heads=2, bin_shards=1),
    dict(kv_heads=4, bin_shards=3), dict(kv_heads=2, tied=True, shard_size="40KB"),
], ids=["mha-safetensors", "gqa-safetensors-shards", "gqa-bin", "mha-bin-shards", "gqa-tied-shards"])
def test_hf_folder_loads_with_transformers_logits(tmp_path, tokenizer, kw):
    hf = hf_folder(tmp_path, tokenizer, **kw)
    files = sorted(f.name for f in tmp_path.iterdir())
    assert sum(f.endswith((".safetensors", ".bin")) for f in files) == (
        kw.get("bin_shards") or (1 if "shard_size" not in kw else sum(f.endswith(".safetensors") for f in files)))
    ours, tok = load_checkpoint(tmp_path, device="cpu")
    assert tok.n_words == tokenizer.n_words and ours.args.hidden_dim == 100 and ours.args.rope_theta == 500000.0
    assert (ours.output.weight is ours.tok_embeddings.weight) == kw.get("tied", False)  # one parameter
    diff = max_diff(ours, hf, tokens(tokenizer.n_words))
    print(f"{kw}: max |logits - transformers| = {diff:.2e}")
    assert diff < 1e-5


@pytest.fixture(scope="module")
def lora_run(tiny_ckpt, tmp_path_factory):
    """A short LoRA run (r 4, no dropout) on the project's tiny Meta-format model: B is nonzero."""
    out = tmp_path_factory.mktemp("lora") / "parity-retuning"
    train.main(["--ckpt-dir", str(tiny_ckpt), "--out", str(out), "--lora", "--lora-r", "4", "--lora-dropout", "0",
                "--lora-targets", "wq,wk,wv,wo,w2", "--steps", "3", "--batch-size", "4", "--lr", "1e-2",
                "--warmup", "1", "--eval-every", "100", "--lengths", "1:4"])
    return out


@pytest.mark.parametrize("fmt", ["meta", "hf"])
def test_export_merges_lora_and_reads_back_with_the_same_logits(lora_run, tmp_path, fmt):
    tuned, tok, _ = train.load_trained(lora_run)
    base, _ = load_checkpoint(train.read_config(lora_run).ckpt_dir)
    x = tokens(tok.n_words)
    assert max_diff(tuned, base, x) > 1e-3  # the adapters change something
    train.main(["--out", str(lora_run), "--export", str(tmp_path / "x"), "--format", fmt])
    files = {f.name for f in (tmp_path / "x").iterdir()}
    assert {"tokenizer.model", "train_config.json"} <= files
    readers = [load_checkpoint(tmp_path / "x")[0]]
    if fmt == "meta":
        readers.append(load_meta(tmp_path / "x")[0])
    else:
        assert "model.safetensors" in files
        readers.append(transformers.LlamaForCausalLM.from_pretrained(tmp_path / "x").eval())
    for reader in readers:
        diff = max_diff(tuned, reader, x)
        print(f"{fmt} export read by {type(reader).__name__}: max |logits - tuned run| = {diff:.2e}")
        assert diff < 1e-5
    assert (tmp_path / "x" / "tokenizer.model").read_bytes() == tok.path.read_bytes()


def test_eval_reads_an_export_as_it_reads_the_run(lora_run, tmp_path):
    (tmp_path / "exported").mkdir()
    train.main(["--out", str(lora_run), "--export", str(tmp_path / "exported" / "parity-retuning"), "--format", "hf"])
    argv = ["--lengths", "2,5", "--samples", "4", "--batch-size", "4", "--max-new-tokens", "10"]
    evaluation.main(argv + ["--runs", str(lora_run.parent), "--out", str(tmp_path / "run.json")])
    evaluation.main(argv + ["--runs", str(tmp_path / "exported"), "--out", str(tmp_path / "exported.json")])
    assert (tmp_path / "run.json").read_text() == (tmp_path / "exported.json").read_text()


def test_hf_base_tuned_and_exported_both_ways(tmp_path, project_tokenizer):
    """Full tuning of a grouped-query, tied, off-rule Hugging Face base: the tie survives, and both
    exports read back (Meta's params.json carries the feed-forward width)."""
    hf_folder(tmp_path / "base", project_tokenizer, kv_heads=2, tied=True)
    run = tmp_path / "run"
    train.main(["--ckpt-dir", str(tmp_path / "base"), "--out", str(run), "--full", "--steps", "2", "--batch-size",
                "4", "--lr", "1e-3", "--warmup", "1", "--eval-every", "100", "--lengths", "1:3"])
    assert "tok_embeddings.weight" in torch.load(run / "state.pt", weights_only=True)["weights"]
    tuned, tok, _ = train.load_trained(run)
    assert tuned.output.weight is tuned.tok_embeddings.weight
    x = tokens(tok.n_words)
    for fmt in ("hf", "meta"):
        train.main(["--out", str(run), "--export", str(tmp_path / fmt), "--format", fmt])
    assert json.loads((tmp_path / "meta" / "params.json").read_text())["ffn_hidden_dim"] == 100
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.tie_word_embeddings and hf.lm_head.weight is hf.model.embed_tokens.weight
    for reader in (hf, load_meta(tmp_path / "meta")[0], load_checkpoint(tmp_path / "hf")[0]):
        assert max_diff(tuned, reader, x) < 1e-5


def test_export_keeps_the_base_dtype(tiny_ckpt, tmp_path):
    run = tmp_path / "run"
    train.main(["--ckpt-dir", str(tiny_ckpt), "--out", str(run), "--lora", "--lora-r", "4", "--steps", "1",
                "--batch-size", "2", "--eval-every", "100", "--lengths", "1:3", "--dtype", "bfloat16"])
    assert all(w.dtype == torch.float32 for w in torch.load(run / "state.pt", weights_only=True)["weights"].values())
    train.main(["--out", str(run), "--export", str(tmp_path / "x"), "--format", "hf"])
    from safetensors import safe_open
    with safe_open(str(tmp_path / "x" / "model.safetensors"), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    assert json.loads((tmp_path / "x" / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_without_safetensors(tmp_path, tokenizer, monkeypatch):
    hf = hf_folder(tmp_path / "st", tokenizer)
    ours, _ = load_checkpoint(tmp_path / "st")
    monkeypatch.setitem(sys.modules, "safetensors", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(ImportError, match="model.safetensors: reading safetensors files needs the safetensors"):
        load_checkpoint(tmp_path / "st")
    from checkpoints import save_hf
    save_hf(ours, tokenizer, tmp_path / "bin")
    assert (tmp_path / "bin" / "pytorch_model.bin").is_file() and not (tmp_path / "bin" / "model.safetensors").exists()
    assert max_diff(load_checkpoint(tmp_path / "bin")[0], hf, tokens(tokenizer.n_words)) < 1e-5


# ---- bad folders: one clear error each ----

def edit_config(path, **changes):
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    (path / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("spoil, error, message", [
    (lambda p: ((p / "tokenizer.model").unlink(), (p / "tokenizer.json").write_text("{}")),
     FileNotFoundError, "tokenizer.json but no tokenizer.model"),
    (lambda p: edit_config(p, model_type="mistral", architectures=["MistralForCausalLM"]),
     ValueError, "only LLaMA"),
    (lambda p: edit_config(p, rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}),
     ValueError, "rope scaling not supported"),
    (lambda p: edit_config(p, attention_bias=True), ValueError, "attention_bias not supported"),
    (lambda p: edit_config(p, num_hidden_layers=3), ValueError, "'layers.2.attention.wq.weight' missing"),
    (lambda p: sorted(p.glob("model-*.safetensors"))[1].unlink(), FileNotFoundError,
     r"names shards that are missing: \['model-00002-of-00004.safetensors'\]"),
    (lambda p: [f.unlink() for f in p.glob("model*")], FileNotFoundError, "no model.safetensors"),
    (lambda p: (p / "config.json").unlink(), FileNotFoundError, "neither params.json"),
    (lambda p: (p / "state.pt").write_bytes(b""), ValueError, "a train.py run folder, not a model"),
])
def test_bad_hf_folder(tmp_path, tokenizer, spoil, error, message):
    hf_folder(tmp_path, tokenizer, shard_size="100KB")
    assert len(list(tmp_path.glob("model-*.safetensors"))) == 4
    spoil(tmp_path)
    with pytest.raises(error, match=message):
        load_checkpoint(tmp_path)


def test_export_refuses_a_folder_in_use(lora_run, tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="x: not empty"):
        train.main(["--out", str(lora_run), "--export", str(tmp_path / "x")])
    with pytest.raises(SystemExit):
        train.main(["--out", str(lora_run), "--format", "hf"])
    assert "--format goes with --export" in capsys.readouterr().err
