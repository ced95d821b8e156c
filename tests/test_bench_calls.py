"""bench/bench_calls.py: the base's requests ask for exactly what the tuned step writes."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_calls  # noqa: E402

import tasks  # noqa: E402


def test_base_requests_match_the_tuned_steps():
    calls, answers = bench_calls.step_pairs("addition", 6, 5, seed=0)
    drops = bench_calls.base_drop_pairs("addition", calls, seed=0, line_first=False)
    for call, drop in zip(calls, drops):
        assert call.target == tasks.CALL + drop.target + tasks.CALL_END  # the sub-problem itself
    copies = bench_calls.base_copy_pairs("addition", answers, seed=0)
    assert len(copies) == len(answers)
    for answer, copy in zip(answers, copies):
        assert answer.target.endswith(copy.target) and len(answer.target.split()[-1]) == len(copy.target) + 1
        assert copy.prompt.split(": ", 1)[1].startswith(copy.target + "\n")
    assert bench_calls.base_copy_pairs("parity", bench_calls.step_pairs("parity", 6, 5, 0)[1], 0) == []
