"""bench/sweep_problems.py: a tiny sweep trains, keeps finished runs, and writes its JSON and plot."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import sweep_problems  # noqa: E402


def test_a_tiny_sweep_writes_accuracy_by_pool_size(tiny_ckpt, tmp_path, capsys):
    argv = ["--task", "parity", "--problems", "8,2", "--methods", "baseline", "--steps", "2",
            "--lengths", "3,25", "--samples", "2", "--runs", str(tmp_path), "--ckpt-dir", str(tiny_ckpt)]
    sweep_problems.main(argv)
    data = json.loads((tmp_path / "sweep-parity.json").read_text())
    assert data["train_lengths"] == [1, 21] and data["steps"] == 2 and data["samples"] == 2
    assert list(data["results"]) == ["2", "8"] and list(data["results"]["2"]) == ["baseline"]
    for by_method in data["results"].values():
        cells = by_method["baseline"]
        assert list(cells) == ["3", "25"] and all(c["n"] == 2 and 0 <= c["correct"] <= 2 for c in cells.values())
    assert (tmp_path / "sweep-parity.png").stat().st_size > 1000
    config = json.loads((tmp_path / "N8" / "parity-baseline" / "config.json").read_text())
    assert config["problems"] == 8 and config["steps"] == 2
    assert "size 25 " in capsys.readouterr().out
    sweep_problems.main(argv)  # again: both runs are kept, not trained
    assert capsys.readouterr().out.count("finished, kept") == 2
    longer = list(argv)
    longer[argv.index("--steps") + 1] = "3"
    with pytest.raises(SystemExit, match="other --steps, --seed or base"):  # not resumed past its schedule
        sweep_problems.main(longer)
