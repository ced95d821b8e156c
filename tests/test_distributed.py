"""torchrun with 2 processes on the CPU (gloo): training matches one process with the same global
batch at every step, a run stopped and resumed under torchrun ends as an uninterrupted one, and
distributed evaluation writes the same JSON and dump as one process."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import eval as evaluation  # not the builtin
import train

ROOT = Path(__file__).resolve().parents[1]


def torchrun(script, argv):
    """`torchrun --nproc_per_node 2 script argv` on the CPU; its stdout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # gloo, even on a GPU machine
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(ROOT / script), *argv], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[:6000]
    return proc.stdout


def train_argv(ckpt, out, *extra, steps=8):
    return ["--ckpt-dir", str(ckpt), "--out", str(out), "--task", "parity", "--lengths", "1:4", "--steps", str(steps),
            "--lr", "3e-3", "--warmup", "6", "--eval-every", "1000", "--eval-samples", "2", "--save-every", "4",
            "--seed", "3", *extra]


def differences(a_dir, b_dir) -> tuple:
    """(largest loss difference over the steps, largest weight difference) of two finished runs."""
    a, b = (torch.load(Path(d) / "state.pt", weights_only=True) for d in (a_dir, b_dir))
    assert a["step"] == b["step"] == len(a["losses"]) == len(b["losses"]) == 8
    assert a["weights"].keys() == b["weights"].keys()
    losses = max(abs(x - y) for x, y in zip(a["losses"], b["losses"]))
    weights = max((a["weights"][k] - b["weights"][k]).abs().max().item() for k in a["weights"])
    return losses, weights


MODES = {"full, batch 7 split 4+3": ["--full", "--batch-size", "7"],
         "LoRA, grad checkpointing": ["--lora", "--lora-r", "4", "--lora-dropout", "0", "--batch-size", "8",
                                      "--grad-checkpoint"]}


@pytest.mark.parametrize("mode", MODES)
def test_two_processes_train_as_one(tiny_ckpt, tmp_path, mode):
    train.main(train_argv(tiny_ckpt, tmp_path / "one", *MODES[mode]))
    out = torchrun("train.py", train_argv(tiny_ckpt, tmp_path / "two", *MODES[mode]))
    assert out.count("done in") == 1  # rank 0 alone prints
    losses, weights = differences(tmp_path / "one", tmp_path / "two")
    print(f"{mode}: 2 processes vs 1, max |loss diff| over 8 steps {losses:.2e}, max |weight diff| {weights:.2e}")
    assert losses < 1e-5 and weights < 1e-5


def test_stopped_and_resumed_under_torchrun_ends_as_uninterrupted(tiny_ckpt, tmp_path):
    """Stopped after 4 of 8 steps (inside the warm-up, so the learning rates are the same), then
    resumed to 8: weights, AdamW's state, data position and losses all carry over."""
    torchrun("train.py", train_argv(tiny_ckpt, tmp_path / "whole", "--full", "--batch-size", "7"))
    torchrun("train.py", train_argv(tiny_ckpt, tmp_path / "part", "--full", "--batch-size", "7", steps=4))
    assert torch.load(tmp_path / "part" / "state.pt", weights_only=True)["step"] == 4
    assert "resumed" in torchrun("train.py", train_argv(tiny_ckpt, tmp_path / "part", "--full", "--batch-size", "7",
                                                        "--resume"))
    losses, weights = differences(tmp_path / "whole", tmp_path / "part")
    print(f"resumed vs uninterrupted (both 2 processes): max |loss diff| {losses:.2e}, max |weight diff| {weights:.2e}")
    assert losses < 1e-5 and weights < 1e-5


def test_two_processes_evaluate_as_one(tiny_ckpt, tmp_path, capsys):
    for method in ("baseline", "retuning"):
        train.main(train_argv(tiny_ckpt, tmp_path / "runs" / f"parity-{method}", "--method", method, "--full",
                              "--batch-size", "7"))
    argv = ["--runs", str(tmp_path / "runs"), "--lengths", "2,4,7", "--samples", "7", "--batch-size", "3",
            "--max-new-tokens", "8", "--trace"]
    capsys.readouterr()
    evaluation.main(argv + ["--out", str(tmp_path / "one.json"), "--dump", str(tmp_path / "one.jsonl")])
    one_out = capsys.readouterr().out
    two_out = torchrun("eval.py", argv + ["--out", str(tmp_path / "two.json"), "--dump", str(tmp_path / "two.jsonl")])
    one, two = (tmp_path / "one.json").read_bytes(), (tmp_path / "two.json").read_bytes()
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()  # rank 0 wrote all
    # the screen too: table, traced problem, guards' counts; not the timings or the file's name
    screen = lambda out: re.sub(r"[\d.]+ s\b|wrote .*", "", out)  # noqa: E731
    print(f"eval JSON, 1 process vs 2: {len(one)} bytes, identical: {one == two}\n{screen(one_out)}")
    assert one == two and screen(one_out) == screen(two_out)
    results = json.loads(one)["results"]
    assert len({r["correct"] for by_length in results.values() for r in by_length.values()}) > 2  # not all alike
