"""model.py against Hugging Face's LLaMA, its cache against itself, and its checkpoint loader
against every kind of bad input."""
import json
import os

import pytest
import torch

from conftest import tiny_args, tiny_model
from hf_reference import to_hf
from model import FFN_ROWS, KVCache, in_place, load_meta, save_meta, shard_dim


@pytest.mark.parametrize("n_kv_heads", [None, 2], ids=["multi-head", "grouped-query"])
def test_logits_match_transformers(n_kv_heads):
    model = tiny_model(n_kv_heads=n_kv_heads, rope_theta=500000.0)
    tokens = torch.randint(0, model.args.vocab_size, (2, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(tokens), to_hf(model)(tokens).logits
    diff = (ours - theirs).abs().max().item()
    print(f"max |logits - transformers| = {diff:.2e} (n_kv_heads={n_kv_heads})")
    assert diff < 1e-4


def test_meta_hidden_dim_rule():
    # LLaMA-1 7B: 11008; LLaMA-2 70B: 28672 (multiple_of 4096, ffn_dim_multiplier 1.3)
    assert tiny_args(dim=4096, multiple_of=256).hidden_dim == 11008
    assert tiny_args(dim=8192, multiple_of=4096, ffn_dim_multiplier=1.3).hidden_dim == 28672


@pytest.mark.parametrize("n_kv_heads", [None, 2])
def test_cached_decoding_matches_full_forward(n_kv_heads):
    model = tiny_model(n_kv_heads=n_kv_heads)
    tokens = torch.randint(0, model.args.vocab_size, (3, 30))
    with torch.no_grad():
        full = model(tokens)
        cache = KVCache(model.args, n_rows=3, max_len=64)
        steps = [model(tokens[:, :11], cache)] + [model(tokens[:, t:t + 1], cache) for t in range(11, 30)]
    assert torch.allclose(full, torch.cat(steps, 1), atol=1e-5)
    assert cache.lengths.tolist() == [30, 30, 30]


def test_cache_rows_are_independent_and_padding_is_ignored():
    """Contexts of different lengths in one batch, right-padded, in chosen rows of the cache."""
    model = tiny_model(n_kv_heads=2)
    a, b = torch.randint(0, 96, (1, 9)), torch.randint(0, 96, (1, 4))
    with torch.no_grad():
        ref_a, ref_b = model(a), model(b)
        cache = KVCache(model.args, n_rows=5, max_len=32)
        batch = torch.zeros(2, 9, dtype=torch.long)
        batch[0], batch[1, :4] = a[0], b[0]
        rows = torch.tensor([3, 1])
        out = model(batch, cache, rows=rows, n_new=torch.tensor([9, 4]))
        assert cache.lengths.tolist() == [0, 4, 0, 9, 0]
        assert torch.allclose(out[0], ref_a[0], atol=1e-5) and torch.allclose(out[1, :4], ref_b[0], atol=1e-5)
        # one more token for b only: same as a full forward of b + token
        nxt = torch.tensor([[7]])
        step = model(nxt, cache, rows=torch.tensor([1]))
        assert torch.allclose(step[0, -1], model(torch.cat([b, nxt], 1))[0, -1], atol=1e-5)


def test_rows_read_in_place_give_the_same_logits_as_gathered_rows():
    """Eight contexts in rows 1-8 are read as a slice of the cache; in rows 1 and 3-9 as a slice whose
    row 2 gets a zero query (one gap in nine rows costs less than a gather); scattered, they are gathered."""
    model = tiny_model(n_kv_heads=2)
    tokens, n_new = torch.randint(0, 96, (8, 8)), torch.tensor([7, 5, 6, 7, 2, 7, 1, 4])
    layouts = (torch.arange(1, 9), torch.tensor([1, 3, 4, 5, 6, 7, 8, 9]), torch.tensor([15, 0, 4, 9, 11, 13, 7, 5]))
    assert [in_place(rows, 8)[0] for rows in layouts] == [slice(1, 9), slice(1, 10), None]
    assert in_place(torch.tensor([1, 3, 4, 5, 6, 7, 8]), 7) == (None, None)  # one gap in eight: gathered
    logits = []
    with torch.no_grad():
        for rows in layouts:
            cache = KVCache(model.args, n_rows=16, max_len=32)
            cache.k[0][2].fill_(1e30)  # a row between, never written: finite garbage must not leak in
            first = model(tokens[:, :7], cache, rows=rows, n_new=n_new)
            logits.append(torch.cat([first, model(tokens[:, 7:], cache, rows=rows)], 1))
    assert torch.equal(logits[0], logits[1]) and torch.equal(logits[0], logits[2])
    full = model(tokens[:1])  # the first context took all 8 tokens: same as a plain forward
    assert torch.allclose(logits[0][0], full[0], atol=1e-5)


def test_a_pass_of_many_tokens_takes_the_feed_forward_in_blocks_and_gives_the_same_logits():
    """model.FFN_ROWS: a decoding pass over more tokens than that (3 prompts of 400) runs each layer's
    feed-forward on blocks of rows, and gives a plain forward's logits."""
    model = tiny_model(n_kv_heads=2)
    tokens = torch.randint(0, 96, (3, 400))  # 1,200 tokens: two blocks
    calls = []
    model.layers[0].feed_forward.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[1]))
    with torch.no_grad():
        cached = model(tokens, KVCache(model.args, n_rows=3, max_len=400))
        assert calls == [FFN_ROWS, 3 * 400 - FFN_ROWS]
        torch.testing.assert_close(cached, model(tokens), atol=1e-5, rtol=0)
    assert calls[2:] == [400]  # the plain forward: one matmul over each sequence, as training runs it


def test_groups_in_one_decode_give_each_group_its_own_logits():
    """model.decode: a one-token group, a guessing group and a prompt group in one pass give what each
    gives alone, and logits_from drops the first positions; the lengths advance by n_new."""
    model = tiny_model(n_kv_heads=2)
    prompts = torch.randint(0, 96, (5, 10))
    groups = [(torch.randint(0, 96, (2, 1)), torch.tensor([0, 1]), torch.tensor([1, 1])),
              (torch.randint(0, 96, (2, 4)), torch.tensor([2, 4]), torch.tensor([1, 1])),
              (torch.randint(0, 96, (1, 6)), torch.tensor([3]), torch.tensor([6]))]
    with torch.no_grad():
        alone, together = [], None
        for packed in (False, True):
            cache = KVCache(model.args, n_rows=6, max_len=32)
            model(prompts, cache, rows=torch.arange(5), n_new=torch.tensor([10, 7, 9, 3, 8]))
            if packed:
                tokens, rows, n_new = (list(x) for x in zip(*groups))
                together = model.decode(tokens, cache, rows, n_new, logits_from=[0, 0, 5])
            else:
                alone = [model(t, cache, rows=r, n_new=n) for t, r, n in groups]
        assert cache.lengths.tolist() == [11, 8, 10, 9, 9, 0]
    for x, y, lo in zip(alone, together, [0, 0, 5]):
        torch.testing.assert_close(x[:, lo:], y, atol=1e-5, rtol=0)


def test_cache_overflow_is_an_error():
    model = tiny_model()
    cache = KVCache(model.args, n_rows=1, max_len=8)
    with pytest.raises(ValueError, match="max_len=8"):
        model(torch.zeros(1, 9, dtype=torch.long), cache)


def test_gradient_checkpointing_gives_same_loss_and_gradients():
    tokens = torch.randint(0, 96, (2, 24))
    results = []
    for ckpt in (False, True):
        model = tiny_model().train()
        model.grad_checkpoint = ckpt
        logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.allclose(g0, g1, atol=1e-6) for g0, g1 in zip(results[0][1], results[1][1]))


# ---- Meta checkpoints ----

def make_ckpt(tmp_path, tokenizer, n_kv_heads=2):
    model = tiny_model(n_kv_heads=n_kv_heads, vocab_size=tokenizer.n_words)
    save_meta(model, tokenizer, tmp_path)
    return model


def split_into_shards(ckpt_dir, n):
    """Split consolidated.00.pth the way Meta's model parallelism does."""
    state = torch.load(ckpt_dir / "consolidated.00.pth", weights_only=True)
    shards = [{} for _ in range(n)]
    for name, w in state.items():
        dim = shard_dim(name)
        parts = [w] * n if dim is None else w.chunk(n, dim=dim)
        for shard, part in zip(shards, parts):
            shard[name] = part.clone()
    shards[0]["rope.freqs"] = torch.ones(8)  # Meta's files carry this; it must be ignored
    os.remove(ckpt_dir / "consolidated.00.pth")
    for i, shard in enumerate(shards):
        torch.save(shard, ckpt_dir / f"consolidated.{i:02d}.pth")


def test_save_load_roundtrip(tmp_path, tokenizer):
    model = make_ckpt(tmp_path, tokenizer)
    loaded, tok = load_meta(tmp_path, device="cpu")
    assert tok.n_words == tokenizer.n_words
    tokens = torch.randint(0, tokenizer.n_words, (1, 12))
    with torch.no_grad():
        assert torch.equal(model(tokens), loaded(tokens))


def test_two_shards_load_to_the_same_model(tmp_path, tokenizer):
    model = make_ckpt(tmp_path, tokenizer)
    split_into_shards(tmp_path, 2)
    loaded, _ = load_meta(tmp_path, device="cpu")
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_llama1_vocab_size_from_tokenizer(tmp_path, tokenizer):
    make_ckpt(tmp_path, tokenizer)
    params = json.loads((tmp_path / "params.json").read_text())
    params["vocab_size"] = -1
    (tmp_path / "params.json").write_text(json.dumps(params))
    loaded, _ = load_meta(tmp_path, device="cpu")
    assert loaded.args.vocab_size == tokenizer.n_words


def test_bf16_keeps_rotary_exact(tokenizer):
    model = tiny_model()
    tokens = torch.randint(0, 96, (1, 40))
    with torch.no_grad():
        ref = model(tokens)
        low = model.to(torch.bfloat16)(tokens)
    assert (ref - low).abs().max() < 0.1 * ref.abs().max()


# ---- bad input: one clear error naming the file and the problem ----

def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint directory not found"):
        load_meta(tmp_path / "nope")


def test_missing_params(tmp_path, tokenizer):
    make_ckpt(tmp_path, tokenizer)
    os.remove(tmp_path / "params.json")
    with pytest.raises(FileNotFoundError, match="params.json not found"):
        load_meta(tmp_path)


def test_missing_shard(tmp_path, tokenizer):
    make_ckpt(tmp_path, tokenizer)
    split_into_shards(tmp_path, 2)
    os.remove(tmp_path / "consolidated.00.pth")
    with pytest.raises(FileNotFoundError, match="consolidated.00.pth"):
        load_meta(tmp_path)


def test_no_shard(tmp_path, tokenizer):
    make_ckpt(tmp_path, tokenizer)
    os.remove(tmp_path / "consolidated.00.pth")
    with pytest.raises(FileNotFoundError, match="no consolidated"):
        load_meta(tmp_path)


def test_shape_disagrees_with_params(tmp_path, tokenizer):
    make_ckpt(tmp_path, tokenizer)
    params = json.loads((tmp_path / "params.json").read_text())
    params["dim"] = 128
    (tmp_path / "params.json").write_text(json.dumps(params))
    with pytest.raises(ValueError, match="has shape"):
        load_meta(tmp_path)


def test_shard_count_disagrees_with_weights(tmp_path, tokenizer):
    """Three shards of a model whose params say otherwise: the merged shapes are wrong."""
    make_ckpt(tmp_path, tokenizer)
    split_into_shards(tmp_path, 2)
    (tmp_path / "consolidated.02.pth").write_bytes((tmp_path / "consolidated.01.pth").read_bytes())
    with pytest.raises(ValueError, match="3 shard"):
        load_meta(tmp_path)


def test_too_few_layers(tmp_path, tokenizer):
    make_ckpt(tmp_path, tokenizer)
    params = json.loads((tmp_path / "params.json").read_text())
    params["n_layers"] = 3
    (tmp_path / "params.json").write_text(json.dumps(params))
    with pytest.raises(ValueError, match="missing"):
        load_meta(tmp_path)


def test_tokenizer_too_big_for_model(tmp_path, tokenizer):
    make_ckpt(tmp_path, tokenizer)
    params = json.loads((tmp_path / "params.json").read_text())
    params["vocab_size"] = tokenizer.n_words - 5
    (tmp_path / "params.json").write_text(json.dumps(params))
    with pytest.raises(ValueError, match="does not fit"):
        load_meta(tmp_path)


def test_corrupt_tokenizer(tmp_path, tokenizer):
    make_ckpt(tmp_path, tokenizer)
    (tmp_path / "tokenizer.model").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="tokenizer.model"):
        load_meta(tmp_path)


def test_bad_params_json(tmp_path, tokenizer):
    make_ckpt(tmp_path, tokenizer)
    (tmp_path / "params.json").write_text("{dim: 3")
    with pytest.raises(ValueError, match="params.json: not valid JSON"):
        load_meta(tmp_path)


def test_truncated_shard(tmp_path, tokenizer):
    make_ckpt(tmp_path, tokenizer)
    path = tmp_path / "consolidated.00.pth"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="consolidated.00.pth: cannot be read"):
        load_meta(tmp_path)


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path, tokenizer):
    make_ckpt(tmp_path, tokenizer)
    marker = tmp_path / "pwned"
    torch.save({"tok_embeddings.weight": Payload(marker)}, tmp_path / "consolidated.00.pth")
    with pytest.raises(ValueError, match="consolidated.00.pth: cannot be read"):
        load_meta(tmp_path)
    assert not marker.exists()
    # the payload is real: an unsafe load would have run it
    torch.load(tmp_path / "consolidated.00.pth", weights_only=False)
    assert marker.exists()


def test_non_tensor_content_is_refused(tmp_path, tokenizer):
    make_ckpt(tmp_path, tokenizer)
    torch.save({"tok_embeddings.weight": [1, 2, 3]}, tmp_path / "consolidated.00.pth")
    with pytest.raises(ValueError, match="expected a dict of tensors"):
        load_meta(tmp_path)


def test_atomic_save_leaves_no_partial_file(tmp_path, tokenizer, monkeypatch):
    model = make_ckpt(tmp_path, tokenizer)
    before = (tmp_path / "consolidated.00.pth").read_bytes()

    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with torch.no_grad():
        model.output.weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        save_meta(model, tokenizer, tmp_path)
    assert (tmp_path / "consolidated.00.pth").read_bytes() == before
