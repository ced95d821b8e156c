"""bench/bench_sizes.py: every shape is timed and reported against the embedded one."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_sizes  # noqa: E402


def test_bench_sizes_times_every_shape_against_the_embedded_one(capsys):
    bench_sizes.main(["--batch", "2", "--seq", "8", "--rounds", "1", "--vocab", "64"])
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [r.split()[0] for r in rows] == [name.split()[0] for name in bench_sizes.SHAPES]
    assert "x1.00" in rows[0] and float(rows[-1].split("x")[-1]) > 0
