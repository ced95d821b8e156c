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


def test_every_step_labels_name_each_step_of_the_longest_contexts_once():
    for task, size, expected in (("dp", 4, ["top.0", "dp.0", "dp.1", "top.1", "chosen.0", "chosen.1", "top.2"]),
                                 ("parity", 6, ["top.0", "top.1"]), ("addition", 6, ["top.0", "top.1"])):
        problem = tasks.eval_problems(task, size, 1, seed=0)[0]
        labels = [bench_calls.step_label(task, pair) for pair in tasks.retuning(task, problem)]
        assert [f"{k}.{s}" for k, s, n in labels if n == size] == expected
        assert {n for _, _, n in labels} == set(range(1, size + 1))  # every smaller context is there too
