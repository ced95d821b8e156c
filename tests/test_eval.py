"""eval.py: lengths parse (ranges, steps, lists) and bad input fails with one clear message; an
end-to-end run on tiny runs saved by train.py prints the table and writes the JSON, the figure and
a dump from which the accuracy is recomputed; --plot-only draws saved JSON files without a model."""
import argparse
import json
import shutil
import sys

import pytest

import eval as evaluation  # not the builtin
import recurse
import tasks
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
    assert cfg.batch_size is None  # batch_size_for the device the run loads on


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
                     "--max-new-tokens", "6", "--trace", "--out", str(out), "--dump", str(tmp_path / "dump.jsonl")])
    text = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["task"] == "parity" and data["train_lengths"] == [1, 3]
    assert list(data["results"]) == ["baseline", "retuning"]
    for by_length in data["results"].values():
        assert list(by_length) == ["2", "4"]
        assert all(r["n"] == 3 and 0 <= r["correct"] <= 3 for r in by_length.values())
    assert "    2*" in text and "    4 " in text and "wall time" in text
    assert "What is the parity of" in text  # the traces
    assert is_png(out.with_suffix(".png"))
    lines = (tmp_path / "dump.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 2 * 3  # methods x lengths x samples
    dump = [json.loads(line) for line in lines]
    assert all(set(d) == DUMP_FIELDS | {"trace"} and d["trace"].startswith(d["prompt"]) for d in dump)
    assert recompute(dump) == data["results"]
    assert any(d["failure"] for d in dump)  # --max-new-tokens 6 stops some: the reason is there


DUMP_FIELDS = {"task", "method", "size", "prompt", "output", "answer", "true_answer", "correct", "failure"}


def recompute(dump: list) -> dict:
    """The results JSON's accuracy from the dump alone: right = not stopped, and the answer is the true one."""
    results = {}
    for d in dump:
        assert d["correct"] == (d["failure"] is None and d["answer"] == d["true_answer"])
        r = results.setdefault(d["method"], {}).setdefault(str(d["size"]), {"correct": 0, "n": 0})
        r["correct"] += d["correct"]
        r["n"] += 1
    return results


def is_png(path) -> bool:
    import matplotlib.image
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and min(matplotlib.image.imread(path).shape[:2]) > 0


def test_dump_rechecks_mixed_outcomes_without_trace(runs, tmp_path, monkeypatch):
    """A stand-in decoder writes the gold answer to every other problem and a guard stops every third:
    the dump still gives back the table's accuracy, and without --trace it holds no call trees."""
    batch_sizes = []

    def some_right(model, tokenizer, task, method, problems, batch_size, *args, **kw):
        batch_sizes.append(batch_size)
        outcomes = []
        for i, problem in enumerate(problems):
            output = tasks.pairs(task, method, problem)[0].target if i % 2 else "1 or 0"
            failure = None if i % 3 else "max_calls: more than 500 calls"
            outcomes.append(recurse.Outcome(output, tasks.parse_answer(task, method, output),
                                            failure is None and tasks.is_correct(task, method, problem, output),
                                            failure, "", 0, 0, 0, 0))
        return outcomes
    monkeypatch.setattr(evaluation, "solve_problems", some_right)
    evaluation.main(["--runs", str(runs), "--methods", "baseline", "--lengths", "2,3", "--samples", "4",
                     "--out", str(tmp_path / "e.json"), "--dump", str(tmp_path / "d.jsonl")])
    dump = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert all(set(d) == DUMP_FIELDS for d in dump) and [d["size"] for d in dump] == [2] * 4 + [3] * 4
    assert [d["correct"] for d in dump] == [i % 2 == 1 and i % 3 != 0 for i in range(8)]
    assert json.loads((tmp_path / "e.json").read_text())["results"] == recompute(dump)
    assert not list(tmp_path.glob("*.tmp"))  # written atomically
    assert batch_sizes == [100]  # no --batch-size, on a CPU


def results_file(path, task, train_lengths, accuracy):
    """A results JSON as eval.py writes it: accuracy {method: {size: correct of 10}}."""
    results = {m: {str(n): {"correct": c, "n": 10} for n, c in by_size.items()} for m, by_size in accuracy.items()}
    path.write_text(json.dumps({"task": task, "train_lengths": train_lengths, "seed": 0, "results": results}))
    return str(path)


def test_plot_only_draws_saved_results_without_a_model(tmp_path, capsys):
    parity = results_file(tmp_path / "parity.json", "parity", [1, 21],
                          {"baseline": {10: 10, 40: 5}, "retuning": {10: 10, 40: 9}})
    dp = results_file(tmp_path / "dp.json", "dp", [2, 5], {"scratchpad": {4: 10, 8: 3}})
    evaluation.main(["--plot-only", parity, dp, "--figure", str(tmp_path / "fig.png")])
    assert is_png(tmp_path / "fig.png") and "wrote" in capsys.readouterr().out
    evaluation.main(["--plot-only", parity])  # by default beside the JSON
    assert is_png(tmp_path / "parity.png")


def test_plot_only_draws_the_memory_table(tmp_path):
    rows = [{"task": t, "method": m, "size": n, "step_mb": 10.0 * (i + 1), "total_mb": 100.0 + i, "device": "cpu"}
            for t, n in (("parity", 21), ("dp", 5)) for i, m in enumerate(("baseline", "scratchpad", "retuning"))]
    (tmp_path / "mem.json").write_text(json.dumps({"model": "x", "settings": {"batch_size": 8}, "results": rows}))
    evaluation.main(["--plot-only", str(tmp_path / "mem.json"), "--figure", str(tmp_path / "mem.png")])
    assert is_png(tmp_path / "mem.png")


@pytest.mark.parametrize("content, words", [
    ('{"task": "parity", "results": {', "is not JSON"), (b"\x89PNG\xff\xfe", "is not JSON"),
    ('{"task": "parity", "train_lengths": [1, 21], "results": {"baseline": {"5": {"correct": 1}}}}', "neither"),
    ('[1, 2]', "neither"), (None, "cannot read"),
])
def test_plot_only_refuses_a_bad_file_with_one_clear_message(tmp_path, content, words):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(SystemExit) as e:
        evaluation.main(["--plot-only", str(path), "--figure", str(tmp_path / "fig.png")])
    assert e.value.code.startswith("error: ") and words in e.value.code and str(path) in e.value.code
    assert not (tmp_path / "fig.png").exists()


def test_without_matplotlib_one_clear_message(tmp_path, monkeypatch):
    parity = results_file(tmp_path / "parity.json", "parity", [1, 21], {"baseline": {10: 10}})
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if not installed
    with pytest.raises(SystemExit, match="error: no figure: plotting needs matplotlib: pip install"):
        evaluation.main(["--plot-only", parity])


def test_plot_only_takes_one_file_per_task_and_memory_alone(tmp_path):
    a = results_file(tmp_path / "a.json", "parity", [1, 21], {"baseline": {5: 10}})
    b = results_file(tmp_path / "b.json", "parity", [1, 21], {"retuning": {5: 10}})
    with pytest.raises(SystemExit, match="one results JSON per task"):
        evaluation.main(["--plot-only", a, b])
    (tmp_path / "mem.json").write_text(json.dumps({"results": [
        {"task": "dp", "method": "baseline", "size": 5, "step_mb": 1.0, "total_mb": 2.0}]}))
    with pytest.raises(SystemExit, match="one JSON of bench_memory.py alone"):
        evaluation.main(["--plot-only", a, str(tmp_path / "mem.json")])


def test_table_marks_training_lengths():
    results = {"baseline": {5: {"correct": 3, "n": 4}, 30: {"correct": 1, "n": 4}},
               "retuning": {5: {"correct": 4, "n": 4}, 30: {"correct": 4, "n": 4}}}
    lines = evaluation.format_table(results, [5, 30], (1, 21)).split("\n")
    assert lines[0].split() == ["length", "baseline", "retuning"]
    assert lines[1].split() == ["5*", "75.0%", "100.0%"] and lines[2].split() == ["30", "25.0%", "100.0%"]


def test_cache_budget_ends_with_one_clear_message(runs, monkeypatch):
    monkeypatch.setattr(recurse, "memory_budget", lambda device: 1)  # no cache can grow or be saved
    with pytest.raises(SystemExit) as e:
        evaluation.main(["--runs", str(runs), "--methods", "retuning", "--lengths", "30", "--samples", "2",
                         "--batch-size", "2", "--max-new-tokens", "40", "--out", "/dev/null"])
    assert e.value.code.startswith("error: retuning: the KV caches would grow") and "--batch-size 2" in e.value.code
