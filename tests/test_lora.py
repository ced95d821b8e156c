"""lora.py: a fresh adapter changes nothing, only adapters train, merging and disabling agree
with the unmerged model, adapter files round-trip and bad ones fail clearly."""
import copy

import pytest
import torch
import torch.nn as nn

from conftest import tiny_model
from lora import (LoRALinear, apply_lora, load_lora, lora_config, lora_state_dict, merge_lora,
                  save_lora, set_lora_enabled)

ATTN = ("wq", "wk", "wv", "wo")
MLP = ATTN + ("w1", "w2", "w3")


def tokens(seed=0, B=2, T=12):
    return torch.randint(0, 96, (B, T), generator=torch.Generator().manual_seed(seed))


def lora_copy(base, targets=ATTN, r=4, alpha=8, dropout=0.0):
    model = copy.deepcopy(base)
    apply_lora(model, targets=targets, r=r, alpha=alpha, dropout=dropout)
    return model


def randomize_b(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


@torch.no_grad()
def logits(model, seed=0):
    return model(tokens(seed))


def lora_modules_of(model):
    return [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]


def test_fresh_adapter_is_the_base_model():
    base = tiny_model()
    model = lora_copy(base)
    assert len(lora_modules_of(model)) == 2 * 4
    assert torch.equal(logits(model), logits(base))


def test_only_adapters_get_gradients_and_change():
    model = lora_copy(tiny_model(), dropout=0.05).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    for step in range(2):
        x = tokens(step)
        loss = nn.functional.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        for name, p in model.named_parameters():
            is_lora = name.endswith(("lora_A", "lora_B"))
            assert p.requires_grad == is_lora, name
            assert (p.grad is not None) == is_lora, name
        opt.step()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) != k.endswith(("lora_A", "lora_B")), k


@pytest.mark.parametrize("targets", [ATTN, MLP])
def test_merged_model_matches_unmerged(targets):
    base = tiny_model()
    model = lora_copy(base, targets=targets)
    randomize_b(model)
    expected = logits(model)
    assert not torch.allclose(expected, logits(base), atol=1e-3)  # the adapters do something
    assert len(merge_lora(model)) == 2 * len(targets)
    assert not lora_modules_of(model)
    assert all(type(m) is nn.Linear for n, m in model.named_modules() if n.endswith(targets))
    torch.testing.assert_close(logits(model), expected, atol=1e-5, rtol=0)
    assert list(model.state_dict()) == list(base.state_dict())


def test_disabled_adapter_is_the_base_model():
    base = tiny_model()
    model = lora_copy(base)
    randomize_b(model)
    set_lora_enabled(model, False)
    assert torch.equal(logits(model), logits(base))
    set_lora_enabled(model, True)
    assert not torch.allclose(logits(model), logits(base), atol=1e-3)


def test_save_load_round_trip(tmp_path):
    base = tiny_model()
    model = lora_copy(base)
    randomize_b(model)
    path = tmp_path / "sub" / "adapter.pt"
    save_lora(model, path, {"step": 7})
    assert not list(path.parent.glob("*.tmp"))
    fresh = lora_copy(base)
    assert load_lora(fresh, path) == {"step": 7}
    assert torch.equal(logits(fresh), logits(model))
    blob = torch.load(path, weights_only=True)
    assert blob["config"] == {"r": 4, "alpha": 8, "dropout": 0.0, "targets": sorted(ATTN)}
    assert set(blob["state"]) == set(lora_state_dict(model))


@pytest.mark.parametrize("kw, word", [(dict(r=8), "r="), (dict(targets=("wq", "wv")), "targets="),
                                      (dict(targets=MLP), "targets="), (dict(alpha=16), "alpha=")])
def test_load_into_mismatched_model_fails_clearly(tmp_path, kw, word):
    base = tiny_model()
    path = tmp_path / "adapter.pt"
    save_lora(lora_copy(base), path, {})
    with pytest.raises(ValueError, match=word) as e:
        load_lora(lora_copy(base, **kw), path)
    assert str(path) in str(e.value)


def test_load_with_other_shapes_or_no_adapters_fails_clearly(tmp_path):
    path = tmp_path / "adapter.pt"
    save_lora(lora_copy(tiny_model()), path, {})
    with pytest.raises(ValueError, match="shape"):
        load_lora(lora_copy(tiny_model(dim=32)), path)
    with pytest.raises(ValueError, match="apply_lora"):
        load_lora(tiny_model(), path)


def test_missing_or_truncated_file_fails_clearly(tmp_path):
    model = lora_copy(tiny_model())
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_lora(model, missing)
    path = tmp_path / "adapter.pt"
    save_lora(model, path, {})
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="adapter.pt"):
        load_lora(model, path)
    torch.save({"weights": 1}, path)  # readable, but not an adapter
    with pytest.raises(ValueError, match="not a LoRA adapter"):
        load_lora(model, path)


def test_mlp_option_adapts_feed_forward():
    model = tiny_model()
    names = apply_lora(model, targets=MLP, r=4, alpha=8)
    assert "layers.1.feed_forward.w2" in names and len(names) == 2 * 7
    w2 = model.layers[0].feed_forward.w2
    a = model.args
    assert w2.lora_A.shape == (4, a.hidden_dim) and w2.lora_B.shape == (a.dim, 4)
    assert lora_config(model)["targets"] == sorted(MLP)


def test_meta_state_dict_loads_into_adapted_model():
    base = tiny_model()
    model = lora_copy(tiny_model(seed=1))
    result = model.load_state_dict(base.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert set(result.missing_keys) == set(lora_state_dict(model))
    assert torch.equal(logits(model), logits(base))


def test_bad_arguments():
    with pytest.raises(ValueError, match="w9"):
        apply_lora(tiny_model(), targets=("wq", "w9"))
    with pytest.raises(ValueError, match="rank"):
        apply_lora(tiny_model(), r=0)
    model = lora_copy(tiny_model())
    with pytest.raises(ValueError, match="already"):
        apply_lora(model)


def test_adapters_are_fp32_over_a_bf16_base():
    model = tiny_model().to(torch.bfloat16)
    apply_lora(model, r=4)
    wq = model.layers[0].attention.wq
    assert wq.lora_A.dtype == wq.lora_B.dtype == torch.float32 and wq.weight.dtype == torch.bfloat16
    assert wq(torch.ones(2, 64, dtype=torch.bfloat16)).dtype == torch.bfloat16  # the layer's output: the base's
    assert logits(model).dtype == torch.float32  # the forward pass runs in bf16
    merge_lora(model)
    assert model.layers[0].attention.wq.weight.dtype == torch.bfloat16


def test_an_update_bf16_would_round_away_still_changes_the_fp32_adapter():
    model = tiny_model().to(torch.bfloat16)
    apply_lora(model, r=4, alpha=4, dropout=0.0)
    adapters = [p for p in model.parameters() if p.requires_grad]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.fill_(1.0)  # bf16's spacing at 1.0 is 2^-7: a step of 1e-3 rounds back to 1.0
    x = tokens()
    nn.functional.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten()).backward()
    as_bf16 = [p.detach().to(torch.bfloat16).requires_grad_() for p in adapters]
    for p, q in zip(adapters, as_bf16):
        q.grad = p.grad.to(torch.bfloat16)
    before = [p.detach().clone() for p in adapters]
    torch.optim.AdamW(adapters, lr=1e-3, weight_decay=0.0).step()
    torch.optim.AdamW(as_bf16, lr=1e-3, weight_decay=0.0).step()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    b = [i for i, n in enumerate(names) if n.endswith("lora_B")]
    assert all((adapters[i] - before[i]).abs().max() > 5e-4 for i in b)  # fp32: every B moved by ~lr
    assert all(torch.equal(as_bf16[i], before[i].to(torch.bfloat16)) for i in b)  # bf16: not at all
