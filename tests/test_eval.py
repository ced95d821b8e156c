"""eval.py: lengths parse (ranges, steps, lists) and bad input fails with one clear message; an
end-to-end run on tiny runs saved by train.py prints the table and writes the JSON."""
import argparse
import json
import shutil

import pytest

import eval as evaluation  # not the builtin
import train


@pytest.fixture(scope="module")
def runs(tiny_ckpt, tmp_path_factory):
    """Two one-step parity runs (baseline, retuning) trained on sizes 1-3, as train.py saves them."""
    root = tmp_path_factory.mktemp("runs")
    for method in ("baseline", "retuning"):
        cfg = train.TrainConfig(task="parity", method=method, ckpt_dir=str(tiny_ckpt),
                                out=str(root / f"parity-{method}"), full=True, steps=1, batch_size=2,
                                warmup=1, eval_every=1, save_every=1, lengths=(1, 3))
        train.train(cfg, log=lambda s: None, evaluate=lambda *a: 0.0)
    return root


@pytest.mark.parametrize("text, lengths", [
    ("5:8", [5, 6, 7, 8]), ("5:40:5", [5, 10, 15, 20, 25, 30, 35, 40]), ("5,10,20", [5, 10, 20]),
    ("20,5,5", [5, 20]), ("7", [7]), ("3:3", [3]),
])
def test_parse_lengths(text, lengths):
    assert evaluation.parse_lengths(text) == lengths


@pytest.mark.parametrize("text", ["40:5", "x", "5:", ":5", "0:3", "5:40:0", "1:2:3:4", "5,,6", "-3", "",
                                  "5:x"])
def test_bad_lengths(text):
    with pytest.raises(argparse.ArgumentTypeError):
        evaluation.parse_lengths(text)


@pytest.mark.parametrize("argv, words", [
    (["--lengths", "40:5"], "--lengths"), (["--lengths", "x"], "--lengths"),
    (["--task", "chess"], "invalid choice"), (["--samples", "0"], "--samples"),
    (["--methods", "magic"], "invalid choice"),
])
def test_bad_arguments_exit_with_usage(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        evaluation.parse_args(argv)
    assert e.value.code == 2 and words in capsys.readouterr().err


def test_defaults():
    cfg = evaluation.parse_args(["--task", "dp"])
    assert cfg.lengths == list(range(2, 25, 2)) and cfg.out.endswith("eval-dp.json") and cfg.methods is None


def test_no_trained_run(tmp_path):
    with pytest.raises(SystemExit) as e:
        evaluation.main(["--runs", str(tmp_path)])
    assert e.value.code.startswith("error: no trained run for parity")


def test_unreadable_checkpoint(runs, tmp_path):
    shutil.copytree(runs / "parity-retuning", tmp_path / "parity-retuning")
    (tmp_path / "parity-retuning" / "state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as e:
        evaluation.main(["--runs", str(tmp_path), "--lengths", "2", "--samples", "1"])
    assert e.value.code.startswith("error: ") and "state.pt" in e.value.code


def test_end_to_end(runs, tmp_path, capsys):
    out = tmp_path / "eval.json"
    evaluation.main(["--runs", str(runs), "--lengths", "2,4", "--samples", "3", "--batch-size", "4",
                     "--max-new-tokens", "6", "--trace", "--out", str(out)])
    text = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["task"] == "parity" and data["train_lengths"] == [1, 3]
    assert list(data["results"]) == ["baseline", "retuning"]
    for by_length in data["results"].values():
        assert list(by_length) == ["2", "4"]
        assert all(r["n"] == 3 and 0 <= r["correct"] <= 3 for r in by_length.values())
    assert "    2*" in text and "    4 " in text and "wall time" in text
    assert "What is the parity of" in text  # the traces


def test_table_marks_training_lengths():
    results = {"baseline": {5: {"correct": 3, "n": 4}, 30: {"correct": 1, "n": 4}},
               "retuning": {5: {"correct": 4, "n": 4}, 30: {"correct": 4, "n": 4}}}
    lines = evaluation.format_table(results, [5, 30], (1, 21)).split("\n")
    assert lines[0].split() == ["length", "baseline", "retuning"]
    assert lines[1].split() == ["5*", "75.0%", "100.0%"] and lines[2].split() == ["30", "25.0%", "100.0%"]


def test_cache_budget_ends_with_one_clear_message(runs, monkeypatch):
    import recurse
    monkeypatch.setattr(recurse, "memory_budget", lambda device: 1)  # no pool can grow
    with pytest.raises(SystemExit) as e:
        evaluation.main(["--runs", str(runs), "--methods", "retuning", "--lengths", "30", "--samples", "2",
                         "--batch-size", "2", "--max-new-tokens", "40", "--out", "/dev/null"])
    assert e.value.code.startswith("error: retuning: the KV cache pool") and "--batch-size 2" in e.value.code
