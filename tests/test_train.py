"""train.py: batches, loss masking, a short run that learns, exact resume, and bad input."""
import json

import pytest
import torch

import tasks
import train
from train import TrainConfig, encode_pair, make_batch, pair_loss


def cfg_for(tiny_ckpt, out, **kw):
    base = dict(task="parity", method="retuning", ckpt_dir=str(tiny_ckpt), out=str(out), full=True,
                steps=12, batch_size=8, lr=3e-3, warmup=2, eval_every=1000, save_every=4,
                lengths=(1, 4), seed=3)
    base.update(kw)
    return TrainConfig(**base)


def no_eval(model, tokenizer, cfg):
    return 0.0


def test_loss_only_on_target_and_eos(project_tokenizer):
    pair = tasks.Pair(segments=("What is the parity of [1]?", "\nSolution: "), target="1")
    prompt, target = encode_pair(project_tokenizer, pair)
    assert prompt == project_tokenizer.encode(pair.segments[0]) + project_tokenizer.encode(pair.segments[1])
    assert target[-1] == project_tokenizer.eos_id
    x, y = make_batch([(prompt, target), (prompt[:2], target)], 0, "cpu")
    assert (y[0] >= 0).sum() == len(target) and (y[1] >= 0).sum() == len(target)
    assert y[0, len(prompt) - 1:].tolist()[:len(target)] == target


def test_each_pair_weighs_the_same():
    logits = torch.zeros(2, 5, 4)
    logits[0, :, 0] = 10.0  # row 0 right on its 4 tokens, row 1 wrong on its one token
    y = torch.tensor([[0, 0, 0, 0, -1], [-1, -1, -1, -1, 1]])
    per_pair = [pair_loss(logits[i:i + 1], y[i:i + 1]).item() for i in range(2)]
    assert pair_loss(logits, y).item() == pytest.approx(sum(per_pair) / 2)


def test_default_learning_rates():
    assert TrainConfig(task="parity").resolve().lr == train.FULL_LR["parity"]["retuning"]  # embedded: full
    assert TrainConfig(task="parity", method="scratchpad").resolve().lr == train.FULL_LR["parity"]["scratchpad"]
    assert TrainConfig(task="addition").resolve().lr == train.FULL_LR["addition"]["retuning"]
    assert all(set(rates) == set(tasks.METHODS) for rates in train.FULL_LR.values())
    assert TrainConfig(task="parity", ckpt_dir="/meta/llama-7b").resolve().lr == 2e-4  # LoRA, the paper's
    assert TrainConfig(task="parity", lr=1e-3).resolve().lr == 1e-3


def test_short_run_lowers_loss(tiny_ckpt, tmp_path):
    cfg = cfg_for(tiny_ckpt, tmp_path / "run", steps=40)
    losses = []
    train.train(cfg, log=lambda s: None, evaluate=no_eval)
    # loss of the saved model against the initial one, on the same fixed batch
    model0, tok, _ = train.load_trained(cfg.out)
    batch = [encode_pair(tok, p) for p, _ in zip(tasks.stream("parity", "retuning", (1, 4), seed=99), range(32))]
    x, y = make_batch(batch, 0, "cpu")
    init, _ = train.load_checkpoint(tiny_ckpt, device="cpu")
    with torch.no_grad():
        losses = [pair_loss(m(x), y).item() for m in (init, model0)]
    assert losses[1] < 0.7 * losses[0], losses


def test_interrupted_run_resumes_exactly(tiny_ckpt, tmp_path):
    whole = cfg_for(tiny_ckpt, tmp_path / "whole")
    train.train(whole, log=lambda s: None, evaluate=no_eval)
    calls = []

    def interrupt_at_8(model, tokenizer, cfg):  # runs after the save of step 8
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return 0.0

    part = cfg_for(tiny_ckpt, tmp_path / "part", eval_every=4)
    with pytest.raises(KeyboardInterrupt):
        train.train(part, log=lambda s: None, evaluate=interrupt_at_8)
    assert torch.load(tmp_path / "part" / "state.pt", weights_only=True)["step"] == 8
    resumed = cfg_for(tiny_ckpt, tmp_path / "part")
    train.train(resumed, resume=True, log=lambda s: None, evaluate=no_eval)
    a = torch.load(tmp_path / "whole" / "state.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "state.pt", weights_only=True)
    assert a["step"] == b["step"] == 12
    for name in a["weights"]:
        assert torch.equal(a["weights"][name], b["weights"][name]), name


def test_lora_run_saves_only_adapters(tiny_ckpt, tmp_path):
    cfg = cfg_for(tiny_ckpt, tmp_path / "lora", full=False, lora_r=4, steps=4)
    train.train(cfg, log=lambda s: None, evaluate=no_eval)
    state = torch.load(tmp_path / "lora" / "state.pt", weights_only=True)
    assert state["weights"] and all("lora_" in n for n in state["weights"])
    model, _, saved = train.load_trained(cfg.out)
    assert saved.lora_r == 4 and any("lora_A" in n for n, _ in model.named_parameters())


@pytest.mark.parametrize("argv, message", [
    (["--task", "sorting"], "invalid choice"),
    (["--method", "magic"], "invalid choice"),
    (["--lengths", "9:3"], "LO <= HI"),
    (["--lengths", "x"], "LO:HI"),
    (["--steps", "many"], "invalid int"),
])
def test_bad_flags(argv, message, capsys):
    with pytest.raises(SystemExit):
        train.parse_args(argv)
    assert message in capsys.readouterr().err


def test_bad_paths_give_one_clear_message(tmp_path, tiny_ckpt):
    with pytest.raises(SystemExit, match="checkpoint directory not found"):
        train.main(["--ckpt-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="no config.json"):
        train.main(["--ckpt-dir", str(tiny_ckpt), "--out", str(tmp_path / "o2"), "--resume", "--full"])
    with pytest.raises(SystemExit, match="--steps must be at least 1"):
        train.main(["--ckpt-dir", str(tiny_ckpt), "--out", str(tmp_path / "o3"), "--steps", "0"])


def test_corrupt_or_mismatched_state_is_refused(tiny_ckpt, tmp_path):
    cfg = cfg_for(tiny_ckpt, tmp_path / "run", steps=4)
    train.train(cfg, log=lambda s: None, evaluate=no_eval)
    state = tmp_path / "run" / "state.pt"
    state.write_bytes(state.read_bytes()[:1000])
    with pytest.raises(ValueError, match="state.pt: unreadable"):
        train.load_trained(cfg.out)
    with pytest.raises(ValueError, match="different task"):
        train.train(cfg_for(tiny_ckpt, tmp_path / "run", method="baseline"), resume=True, evaluate=no_eval)
    (tmp_path / "run" / "config.json").write_text(json.dumps({"task": "parity", "bogus": 1}))
    with pytest.raises(ValueError, match="not a train.py config"):
        train.load_trained(cfg.out)
