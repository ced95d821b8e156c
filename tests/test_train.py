"""train.py: batches, loss masking, a short run that learns, exact resume, a fixed pool of
problems (--problems), and bad input."""
import hashlib
import itertools
import json
from collections import Counter

import pytest
import torch

import tasks
import train
from recurse import solve_problems
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


def test_default_steps():
    assert TrainConfig(task="parity").resolve().steps == 1200
    assert TrainConfig(task="dp", method="scratchpad").resolve().steps == train.STEPS["dp"]["scratchpad"]
    assert TrainConfig(task="dp").resolve().steps == train.STEPS["dp"]["retuning"]
    assert TrainConfig(task="dp", steps=7).resolve().steps == 7
    with pytest.raises(ValueError, match="--steps"):
        TrainConfig(task="dp", steps=0).resolve()  # 0 is refused, not taken for the default


def test_default_anchor():
    assert TrainConfig(task="dp").resolve().anchor == train.ANCHOR["dp"]["retuning"]
    assert TrainConfig(task="dp", method="baseline").resolve().anchor == 0.0
    assert TrainConfig(task="dp", ckpt_dir="/meta/llama-7b").resolve().anchor == 0.0  # LoRA: none
    assert TrainConfig(task="dp", anchor=0.0).resolve().anchor == 0.0  # 0 is taken, not the default


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


@pytest.mark.parametrize("problems, anchor", [(None, 0.0), (5, 0.0), (None, 50.0)])
def test_interrupted_run_resumes_exactly(tiny_ckpt, tmp_path, problems, anchor):
    whole = cfg_for(tiny_ckpt, tmp_path / "whole", problems=problems, anchor=anchor)
    train.train(whole, log=lambda s: None, evaluate=no_eval)
    calls = []

    def interrupt_at_8(model, tokenizer, cfg):  # runs after the save of step 8
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return 0.0

    part = cfg_for(tiny_ckpt, tmp_path / "part", eval_every=4, problems=problems, anchor=anchor)
    with pytest.raises(KeyboardInterrupt):
        train.train(part, log=lambda s: None, evaluate=interrupt_at_8)
    assert torch.load(tmp_path / "part" / "state.pt", weights_only=True)["step"] == 8
    assert json.loads((tmp_path / "part" / "config.json").read_text())["problems"] == problems
    with pytest.raises(ValueError, match="different task/method/model/--problems/--replay/--anchor"):
        train.train(cfg_for(tiny_ckpt, tmp_path / "part", problems=(problems or 0) + 1, anchor=anchor), resume=True)
    with pytest.raises(ValueError, match="--anchor"):
        train.train(cfg_for(tiny_ckpt, tmp_path / "part", problems=problems, anchor=anchor + 1), resume=True)
    resumed = cfg_for(tiny_ckpt, tmp_path / "part", problems=problems, anchor=anchor)  # pulls to the base, not step 8
    train.train(resumed, resume=True, log=lambda s: None, evaluate=no_eval)
    a = torch.load(tmp_path / "whole" / "state.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "state.pt", weights_only=True)
    assert a["step"] == b["step"] == 12
    for name in a["weights"]:
        assert torch.equal(a["weights"][name], b["weights"][name]), name


# The first 64 pairs of tasks.stream(task, method, seed=3), as on main before --problems (25349b7).
STREAM_DIGESTS = {
    ("addition", "baseline"): "b2949c481109e27c", ("addition", "scratchpad"): "1edd13a8572f4b00",
    ("addition", "retuning"): "271491f048952840", ("parity", "baseline"): "89e352c544b9915d",
    ("parity", "scratchpad"): "816530874325dbe2", ("parity", "retuning"): "28b729ec40830fb2",
    ("dp", "baseline"): "6ec3beea4db5895a", ("dp", "scratchpad"): "04ad07975e119bb3",
    ("dp", "retuning"): "193e05784b7f6de7",
}


def test_without_problems_the_data_are_as_before():
    for (task, method), digest in STREAM_DIGESTS.items():
        cfg = TrainConfig(task=task, method=method).resolve()
        h = hashlib.sha256()
        for pair in itertools.islice(train.training_pairs(cfg)(3), 64):
            h.update(repr((pair.segments, pair.target)).encode())
        assert h.hexdigest()[:16] == digest, (task, method)


def test_replay_mixes_in_generic_requests():
    cfg = TrainConfig(task="parity", replay=0.25, lengths=(1, 6)).resolve()
    mixed = list(itertools.islice(train.training_pairs(cfg)(3), 400))
    assert mixed == list(itertools.islice(train.training_pairs(cfg)(3), 400))  # the same seed, the same data
    own = list(itertools.islice(tasks.stream("parity", "retuning", (1, 6), seed=3), 400))
    task_pairs = [p for p in mixed if p in own]
    assert task_pairs == own[:len(task_pairs)]  # the task's pairs in their order, none skipped
    assert 60 < len(mixed) - len(task_pairs) < 140  # about a quarter generic
    for bad in (dict(replay=1.0), dict(replay=-0.1), dict(replay=0.2, problems=5)):
        with pytest.raises(ValueError, match="--replay"):
            TrainConfig(task="parity", **bad).resolve()


def test_anchor_pulls_toward_the_base(tiny_ckpt, tmp_path):
    base, _ = train.load_checkpoint(tiny_ckpt, device="cpu")
    def distance(**kw):
        cfg = cfg_for(tiny_ckpt, tmp_path / str(kw), **kw)
        train.train(cfg, log=lambda s: None, evaluate=no_eval)
        tuned, _, _ = train.load_trained(cfg.out)
        return sum((a - b).norm() ** 2 for a, b in zip(tuned.parameters(), base.parameters())).item()
    free, pulled = distance(steps=6), distance(steps=6, anchor=100.0)  # 0.3 of the way back each step
    assert 0 < pulled < 0.5 * free
    assert distance(steps=1, warmup=1, lr=1e-3, anchor=1000.0) == 0.0  # all the way back: the base
    with pytest.raises(ValueError, match="--anchor"):
        TrainConfig(task="parity", lr=1e-3, anchor=1001.0).resolve()


def test_a_pool_is_n_distinct_problems_the_same_for_every_method():
    pool = tasks.problem_pool("parity", 300, (1, 21), seed=3)
    assert len(set(pool)) == 300 and all(1 <= len(p) <= 21 for p in pool)
    assert pool == tasks.problem_pool("parity", 300, (1, 21), seed=3)
    assert pool != tasks.problem_pool("parity", 300, (1, 21), seed=4)
    assert tasks.problem_pool("parity", 40, (1, 21), seed=3) == pool[:40]  # a larger pool extends it
    every_bit_string = {p for n in range(1, 5) for p in itertools.product((0, 1), repeat=n)}
    assert set(tasks.problem_pool("parity", 30, (1, 4))) == every_bit_string  # all 30 of sizes 1-4
    with pytest.raises(ValueError, match="only 2 distinct"):
        tasks.problem_pool("parity", 3, (1, 1))
    for method in tasks.METHODS:  # each pass: every pair of every pool problem once, then reshuffled
        cfg = TrainConfig(task="parity", method=method, problems=12, lengths=(1, 6), seed=3)
        problems = tasks.problem_pool("parity", 12, (1, 6), seed=3)
        every = [pair for p in problems for pair in tasks.pairs("parity", method, p)]
        assert len(every) == 12 if method != "retuning" else len(every) > 12  # a pair per step of every context
        stream = train.training_pairs(cfg)(0)
        first, second = (list(itertools.islice(stream, len(every))) for _ in range(2))
        assert Counter(first) == Counter(second) == Counter(every) and first != second
        assert train.training_pairs(cfg)(99) is not stream  # a fresh stream for each run...
        assert next(train.training_pairs(cfg)(99)) == first[0]  # ...of the same pairs in the same order


def test_a_resumed_pool_run_sees_the_same_batches(project_tokenizer):
    cfg = TrainConfig(task="addition", method="retuning", problems=10, lengths=(1, 4), batch_size=4, seed=1)
    whole = train.batches(train.training_pairs(cfg), project_tokenizer, 4, cfg.seed)
    wanted = [chunk for step, chunk in itertools.islice(whole, 40) if step >= 36]
    resumed = train.batches(train.training_pairs(cfg, 36), project_tokenizer, 4, cfg.seed, start_step=36)
    assert [chunk for _, chunk in itertools.islice(resumed, 4)] == wanted


def test_held_out_problems_are_not_in_the_pool(monkeypatch):
    decoded = []
    monkeypatch.setattr(train, "solve_problems", lambda m, t, task, method, problems: decoded.extend(problems) or [])
    cfg = TrainConfig(task="dp", method="baseline", problems=400, lengths=(2, 5), eval_samples=20)
    pool = set(tasks.problem_pool("dp", 400, (2, 5), seed=0))
    assert pool & set(tasks.eval_problems("dp", 2, 20, 12345))  # size 2 has 121 problems: a pool holds most
    train.held_out_accuracy(torch.nn.Linear(1, 1), None, cfg)
    assert decoded and not pool & set(decoded)
    assert Counter(len(p) for p in decoded) == {2: 20, 3: 20, 5: 20}
    decoded.clear()
    train.held_out_accuracy(torch.nn.Linear(1, 1), None, TrainConfig(task="dp", lengths=(2, 5), eval_samples=20))
    assert decoded == [p for n in (2, 3, 5) for p in tasks.eval_problems("dp", n, 20, 12345)]  # as before


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
    (["--problems", "some"], "invalid int"),
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
    with pytest.raises(SystemExit, match="--problems must be at least 1"):
        train.main(["--ckpt-dir", str(tiny_ckpt), "--out", str(tmp_path / "o4"), "--problems", "0"])
    assert train.parse_args(["--problems", "64"])[0].problems == 64


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


def test_bf16_base_with_fp32_adapters_trains_and_decodes_close_to_fp32(tiny_ckpt, tmp_path, project_tokenizer):
    from test_recurse import oracle_model
    runs = {}
    for dtype in ("float32", "bfloat16"):
        cfg = cfg_for(tiny_ckpt, tmp_path / dtype, full=False, lora_r=4, lora_dropout=0.0, steps=4, dtype=dtype)
        train.train(cfg, log=lambda s: None, evaluate=no_eval)
        state = torch.load(tmp_path / dtype / "state.pt", weights_only=True)
        assert all(w.dtype == torch.float32 for w in state["weights"].values())  # the adapters
        model, tok, _ = train.load_trained(cfg.out, dtype=getattr(torch, dtype))
        steered = oracle_model(tok, "parity", real=model)  # the gold calls, each step's logits kept
        outcomes = solve_problems(steered, tok, "parity", "retuning", [(1, 0, 1), (0, 1, 1, 1)], batch_size=2)
        assert all(o.correct for o in outcomes) and sum(o.calls for o in outcomes) == 2 + 3
        runs[dtype] = state["losses"], model, steered.seen
    (loss32, model32, seen32), (loss16, model16, seen16) = runs.values()
    assert model16.layers[0].attention.wq.weight.dtype == torch.bfloat16
    assert model16.layers[0].attention.wq.lora_B.dtype == torch.float32
    print(f"losses fp32 {loss32}\nlosses bf16 {loss16}")
    assert max(abs(a - b) for a, b in zip(loss32, loss16)) < 0.02 * max(loss32)
    assert [h for h, _ in seen32] == [h for h, _ in seen16] and len(seen32) > 20
    diff = max((x32 - x16.float()).abs().max().item() for (_, x32), (_, x16) in zip(seen32, seen16))
    scale = max(x.abs().max().item() for _, x in seen32)
    print(f"max |logits bf16 - fp32| = {diff:.3f} of max |logits| {scale:.2f}")
    assert diff < 0.03 * scale


def test_full_tuning_under_bf16_autocast_keeps_fp32_weights(tiny_ckpt, tmp_path):
    losses = {}
    for dtype in ("float32", "bfloat16"):
        train.train(cfg_for(tiny_ckpt, tmp_path / dtype, steps=2, lr=1e-5, warmup=1, dtype=dtype),
                    log=lambda s: None, evaluate=no_eval)
        losses[dtype] = torch.load(tmp_path / dtype / "state.pt", weights_only=True)["losses"][0]
    assert 0 < abs(losses["bfloat16"] - losses["float32"]) < 0.01 * losses["float32"]  # the forward ran in bf16
    after = torch.load(tmp_path / "bfloat16" / "state.pt", weights_only=True)["weights"]["layers.0.attention.wq.weight"]
    before = torch.load(tiny_ckpt / "consolidated.00.pth", weights_only=True)["layers.0.attention.wq.weight"]
    assert after.dtype == torch.float32
    moved = after != before
    lost_in_bf16 = moved & (after.bfloat16() == before.bfloat16())  # steps a bf16 weight would not have taken
    assert moved.float().mean() > 0.9 and lost_in_bf16.float().mean() > 0.5
