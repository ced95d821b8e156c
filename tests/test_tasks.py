"""Tests for tasks.py: exact PAPER.md strings, true answers, parsing, the oracle, the streams."""
import itertools
import json
import random
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

import tasks  # noqa: E402
from tasks import Addition, Pair  # noqa: E402

TASK_NAMES = list(tasks.TASKS)
SMALL_SIZES = {"addition": range(1, 9), "parity": range(1, 11), "dp": range(1, 9)}
FAR_SIZES = {"addition": 60, "parity": 40, "dp": 24}


def problems(task, sizes, per_size=3, seed=0):
    return [p for size in sizes for p in tasks.eval_problems(task, size, per_size, seed)]


def replay(task, sub_prompt, collected):
    """Solve a context the way the recursive decoder does, with the oracle as the model."""
    prompt = tasks.child_prompt(sub_prompt)
    segments, context = [prompt], prompt
    while True:
        step = tasks.oracle(task, context)
        collected.append(Pair(tuple(segments), step))
        segments.append(step)
        context += step
        call = tasks.find_call(step)
        if call is None:
            return tasks.child_result(context[len(prompt):])
        assert tasks.parse_prompt(task, call) is not None
        returned = tasks.return_text(replay(task, call, collected))
        segments.append(returned)
        context += returned


# ---------------------------------------------------------------- PAPER.md strings
def test_paper_addition_strings():
    problem = Addition("73199", "21439")
    assert tasks.TASKS["addition"].baseline(problem) == ("73199 + 21439\nAnswer: ", "94638")
    assert tasks.TASKS["addition"].scratchpad(problem) == (
        "73199 + 21439\nSolution: ",
        "Carry 1, Output 8\nCarry 1, Output 38\nCarry 0, Output 638\nCarry 0, Output 4638\n"
        "Carry 0, Output 94638",
    )
    pairs = {(p.prompt, p.target) for p in tasks.retuning("addition", Addition("1234", "5678"))}
    assert pairs == {
        ("1234 + 5678\nSolution: ", "Call: 234 + 678\n"),
        ("234 + 678\nSolution: ", "Call: 34 + 78\n"),
        ("34 + 78\nSolution: ", "Call: 4 + 8\n"),
        ("4 + 8\nSolution: ", "Carry 1, Output 2"),
        ("34 + 78\nSolution: Call: 4 + 8\nReturn: Carry 1, Output 2\nAnswer: ", "Carry 1, Output 12"),
        ("234 + 678\nSolution: Call: 34 + 78\nReturn: Carry 1, Output 12\nAnswer: ", "Carry 0, Output 912"),
        ("1234 + 5678\nSolution: Call: 234 + 678\nReturn: Carry 0, Output 912\nAnswer: ",
         "Carry 0, Output 6912"),
    }


def test_paper_parity_strings():
    bits = (1, 0, 1, 1)
    assert tasks.TASKS["parity"].baseline(bits) == ("What is the parity of [1, 0, 1, 1]?\nAnswer: ", "1")
    assert tasks.TASKS["parity"].scratchpad(bits) == (
        "What is the parity of [1, 0, 1, 1]?\nSolution: ", "Compute one element at a time. 1 1 0 1")
    pairs = {(p.prompt, p.target) for p in tasks.retuning("parity", bits)}
    assert ("What is the parity of [1, 0, 1, 1]?\nSolution: ",
            "Call: What is the parity of [0, 1, 1]?\n") in pairs
    assert ("What is the parity of [1, 0, 1, 1]?\nSolution: Call: What is the parity of [0, 1, 1]?\n"
            "Return: 0\nAnswer: ", "1") in pairs
    assert ("What is the parity of [1]?\nSolution: ", "1") in pairs
    assert len(pairs) == 7


def test_paper_dp_baseline_and_scratchpad():
    values = (3, 2, 1, 5, 2)
    assert tasks.TASKS["dp"].baseline(values) == (
        "Given a sequence of integers, find a subsequence with the highest sum, such that no two "
        "numbers in the subsequence are adjacent in the original sequence.\n\nOutput a list with "
        '"1" for chosen numbers and "2" for unchosen ones. If multiple solutions exist, select the '
        "lexicographically smallest. Input = [3, 2, 1, 5, 2].\nAnswer: ",
        "[1, 2, 2, 1, 2]",
    )
    prompt, target = tasks.TASKS["dp"].scratchpad(values)
    assert prompt == "Question: Let's solve input = [3, 2, 1, 5, 2]."
    assert target.startswith(
        "Scratchpad: dp[4] = max(input[4], 0) = max(2, 0) = 2\n"
        "dp[3] = max(input[3], input[4], 0) = max(5, 2, 0) = 5\n"
        "dp[2] = max(dp[3], input[2] + dp[4], 0) = max(5, 1 + 2, 0) = 5\n")
    assert ("Since dp[0] == input[0] + dp[2] (8 == 3 + 5) and can_use_next_item == True, we store "
            "output[0] = 1. We update can_use_next_item = False.") in target.split("\n")
    assert target.endswith("Reconstructing all together, output=[1, 2, 2, 1, 2].")
    # The whole of Dziri et al.'s format, as their generator writes it.
    assert target == (
        "Scratchpad: dp[4] = max(input[4], 0) = max(2, 0) = 2\n"
        "dp[3] = max(input[3], input[4], 0) = max(5, 2, 0) = 5\n"
        "dp[2] = max(dp[3], input[2] + dp[4], 0) = max(5, 1 + 2, 0) = 5\n"
        "dp[1] = max(dp[2], input[1] + dp[3], 0) = max(5, 2 + 5, 0) = 7\n"
        "dp[0] = max(dp[1], input[0] + dp[2], 0) = max(7, 3 + 5, 0) = 8\n\n"
        "Finally, we reconstruct the lexicographically smallest subsequence that fulfills the task "
        'objective by selecting numbers as follows. We store the result on a list named "output".\n\n'
        "Let can_use_next_item = True.\n"
        "Since dp[0] == input[0] + dp[2] (8 == 3 + 5) and can_use_next_item == True, we store "
        "output[0] = 1. We update can_use_next_item = False.\n"
        "Since dp[1] != input[1] + dp[3] (7 != 2 + 5) or can_use_next_item == False, we store "
        "output[1] = 2. We update can_use_next_item = True.\n"
        "Since dp[2] != input[2] + dp[4] (5 != 1 + 2) or can_use_next_item == False, we store "
        "output[2] = 2. We update can_use_next_item = True.\n"
        "Since dp[3] == input[3] (5 == 5) and can_use_next_item == True, we store output[3] = 1. "
        "We update can_use_next_item = False.\n"
        "Since dp[4] != input[4] (2 != 2) or can_use_next_item == False, we store output[4] = 2.\n\n"
        "Reconstructing all together, output=[1, 2, 2, 1, 2]."
    )


def test_paper_dp_retuning_strings():
    pairs = {(p.prompt, p.target) for p in tasks.retuning("dp", (3, -2, 1, 5))}
    top = "Compute the maximum sum of nonadjacent subsequences of [3, -2, 1, 5]\nSolution: "
    chosen_call = ("Create chosen indices array: sum array [8, 5, 5, 5], item array [3, -2, 1, 5], "
                   "can use item True")
    rule = "If there is only 1 item, return 1 if we should use it else 2."
    dp_call = "Call with array minus first element. Call: Create dp array [-2, 1, 5]\n"
    second_chosen = ("Create chosen indices array: sum array [5, 5, 5], item array [-2, 1, 5], "
                     "can use item False")
    expected = {
        (top, "Call: Create dp array [3, -2, 1, 5]\n"),
        (top + "Call: Create dp array [3, -2, 1, 5]\nReturn: [8, 5, 5, 5]\nAnswer: ", f"Call: {chosen_call}\n"),
        (top + "Call: Create dp array [3, -2, 1, 5]\nReturn: [8, 5, 5, 5]\nAnswer: "
         f"Call: {chosen_call}\nReturn: [1, 2, 2, 1]\nAnswer: ", "[1, 2, 2, 1]"),
        ("Create dp array [3, -2, 1, 5]\nSolution: ", dp_call),
        ("Create dp array [3, -2, 1, 5]\nSolution: " + dp_call + "Return: [5, 5, 5]\nAnswer: ",
         "Append max(return[0], array[0] + return[1]) to return.\nAnswer: [8, 5, 5, 5]"),
        ("Create dp array [5]\nSolution: ", "Return [0] if negative else element.\nAnswer: [5]"),
        (chosen_call + "\nSolution: ",
         f"{rule} If we should use the first item to get the sum, call False else True. "
         f"Call: {second_chosen}\n"),
        (chosen_call + f"\nSolution: {rule} If we should use the first item to get the sum, call False "
         f"else True. Call: {second_chosen}\nReturn: [2, 2, 1]\nAnswer: ",
         "Append 1 if False else 2.\nAnswer: [1, 2, 2, 1]"),
        ("Create chosen indices array: sum array [5], item array [5], can use item True\nSolution: ",
         f"{rule}\nAnswer: [1]"),
    }
    assert expected <= pairs
    assert len(pairs) == 3 + 7 + 7


# ---------------------------------------------------------------- true answers
def brute_force_dp(values):
    """Lexicographically smallest best choice (itertools.product yields 1 before 2)."""
    best, best_sum = None, None
    for marks in itertools.product((1, 2), repeat=len(values)):
        if any(a == b == 1 for a, b in zip(marks, marks[1:])):
            continue
        total = sum(v for v, m in zip(values, marks) if m == 1)
        if best_sum is None or total > best_sum:
            best, best_sum = list(marks), total
    return best


def test_dp_answer_matches_brute_force_with_ties_and_negatives():
    arrays = [a for n in range(1, 7) for a in itertools.product((-1, 0, 1), repeat=n)]  # many ties
    rng = random.Random(0)
    arrays += [tuple(rng.randint(-5, 5) for _ in range(n)) for n in range(1, 9) for _ in range(40)]
    arrays += [tuple(rng.randint(-5, -1) for _ in range(n)) for n in range(1, 9)]
    arrays += [(2, 2, 2, 2), (3, 1, 2, 0, 4), (0, 0, 0)]
    for values in arrays:
        truth = brute_force_dp(values)
        assert tasks.answer("dp", values) == truth, values
        assert tasks.parse_answer("dp", "retuning", tasks.solve_context(
            "dp", tasks.TASKS["dp"].sub_prompt(values))[1]) == truth, values


def test_all_negative_dp_chooses_nothing():
    values = (-3, -1, -5, -2)
    assert tasks.answer("dp", values) == [2, 2, 2, 2]
    for method in tasks.METHODS:
        assert tasks.parse_answer("dp", method, final_output("dp", method, values)) == [2, 2, 2, 2]


def test_addition_and_parity_answers():
    assert tasks.answer("addition", Addition("99", "01")) == 100
    assert tasks.answer("parity", (1, 1, 0, 1)) == 1
    assert tasks.answer("parity", (0,)) == 0


# ---------------------------------------------------------------- rendering and parsing
def final_output(task, method, problem):
    """The full output a model would produce after the inference prompt."""
    if method != "retuning":
        return tasks.pairs(task, method, problem)[0].target
    top = tasks.inference_prompt(task, method, problem)
    last = [p for p in tasks.retuning(task, problem) if p.segments[0] == top][-1]
    return last.prompt[len(top):] + last.target


@pytest.mark.parametrize("task", TASK_NAMES)
@pytest.mark.parametrize("method", tasks.METHODS)
def test_every_rendering_parses_to_the_truth(task, method):
    for problem in problems(task, list(SMALL_SIZES[task]) + [FAR_SIZES[task] // 2]):
        output = final_output(task, method, problem)
        assert tasks.parse_answer(task, method, output) == tasks.answer(task, problem)
        assert tasks.is_correct(task, method, problem, output)
        assert not tasks.is_correct(task, method, problem, "")
        assert tasks.parse_answer(task, method, output[:-1] + "#") is None


@pytest.mark.parametrize("method", tasks.METHODS)
def test_addition_edge_cases(method):
    for a, b, total in [("99", "01", 100), ("9", "9", 18), ("007", "003", 10), ("000", "000", 0)]:
        output = final_output("addition", method, Addition(a, b))
        assert tasks.parse_answer("addition", method, output) == total
    assert tasks.TASKS["addition"].baseline(Addition("99", "01"))[1] == "100"
    assert tasks.TASKS["addition"].baseline(Addition("007", "003"))[1] == "010"  # keeps the width
    assert tasks.TASKS["addition"].scratchpad(Addition("99", "01"))[1] == \
        "Carry 1, Output 0\nCarry 1, Output 00"
    assert tasks.solve_context("addition", "99 + 01")[1] == "Carry 1, Output 00"


@pytest.mark.parametrize("task,single,truth", [
    ("parity", (1,), 1), ("parity", (0,), 0), ("dp", (4,), [1]), ("dp", (0,), [1]), ("dp", (-3,), [2])])
def test_single_element_lists(task, single, truth):
    for method in tasks.METHODS:
        assert tasks.parse_answer(task, method, final_output(task, method, single)) == truth


def test_dp_scratchpad_of_one_item():
    target = tasks.TASKS["dp"].scratchpad((-3,))[1]
    assert target.startswith("Scratchpad: dp[0] = max(input[0], 0) = max(-3, 0) = 0\n\nFinally,")
    assert target.endswith("Since dp[0] != input[0] (0 != -3) or can_use_next_item == False, we store "
                           "output[0] = 2.\n\nReconstructing all together, output=[2].")


def test_malformed_outputs_parse_to_none():
    for task in TASK_NAMES:
        for method in tasks.METHODS:
            for junk in ("", "banana", "Answer: ", "\n"):
                assert tasks.parse_answer(task, method, junk) is None
    assert tasks.parse_answer("dp", "baseline", "[1, 3]") is None
    assert tasks.parse_answer("parity", "scratchpad", "Compute one element at a time.") is None


# ---------------------------------------------------------------- the protocol
def test_find_call():
    assert tasks.find_call("Call: 4 + 8\n") == "4 + 8"
    assert tasks.find_call("Call: 4 + 8") is None  # the line is not finished
    assert tasks.find_call("Call: What is the par") is None
    assert tasks.find_call("Carry 1, Output 2\n") is None
    assert tasks.find_call("Call: x\nAppend 1 if False else 2.\n") is None  # the call is not the last line
    assert tasks.find_call("Call with array minus first element. Call: Create dp array [5]\n") == \
        "Create dp array [5]"
    assert tasks.find_call("Call: a Call: b\n") == "b"
    assert tasks.find_call("Call: 1 + 2\nReturn: Carry 0, Output 3\nAnswer: Call: 3 + 4\n") == "3 + 4"
    assert tasks.find_call("") is None


def test_child_protocol():
    assert tasks.child_prompt("4 + 8") == "4 + 8\nSolution: "
    assert tasks.return_text("Carry 1, Output 2") == "Return: Carry 1, Output 2\nAnswer: "
    assert tasks.child_result("Carry 1, Output 2") == "Carry 1, Output 2"
    assert tasks.child_result("Return [0] if negative else element.\nAnswer: [5]") == "[5]"
    assert tasks.child_result("Call: 4 + 8\nReturn: Carry 1, Output 2\nAnswer: Carry 1, Output 12") == \
        "Carry 1, Output 12"


def test_parse_prompt_rejects_malformed_calls():
    bad = {
        "addition": ["12 + 3", "1 +2", "a + b", "", "12 + 34\n"],
        "parity": ["What is the parity of [1, 2]?", "What is the parity of []?", "parity of [1]"],
        "dp": ["Create dp array []", "Create dp array [1,2]",
               "Create chosen indices array: sum array [1, 2], item array [1], can use item True",
               "Create chosen indices array: sum array [1], item array [1], can use item maybe"],
    }
    for task, texts in bad.items():
        for text in texts:
            assert tasks.parse_prompt(task, text) is None, text
    assert tasks.parse_prompt("addition", "05 + 17") == Addition("05", "17")
    assert tasks.parse_prompt("dp", "Create dp array [-5, 3]") == tasks.DpArray((-5, 3))


# ---------------------------------------------------------------- the oracle
@pytest.mark.parametrize("task", TASK_NAMES)
def test_oracle_replay_rebuilds_the_training_pairs(task):
    for problem in problems(task, range(1, 7), per_size=2):
        collected = []
        result = replay(task, tasks.TASKS[task].sub_prompt(problem), collected)
        assert Counter(collected) == Counter(tasks.retuning(task, problem))
        assert tasks.parse_answer(task, "retuning", result) == tasks.answer(task, problem)


@pytest.mark.parametrize("task", TASK_NAMES)
def test_oracle_far_beyond_training(task):
    for problem in tasks.eval_problems(task, FAR_SIZES[task], 2, seed=7):
        collected = []
        result = replay(task, tasks.TASKS[task].sub_prompt(problem), collected)
        assert tasks.parse_answer(task, "retuning", result) == tasks.answer(task, problem)
        assert len(collected) == len(tasks.retuning(task, problem))


@pytest.mark.parametrize("task", TASK_NAMES)
@pytest.mark.parametrize("method", tasks.METHODS)
def test_oracle_completes_any_prefix_of_a_target(task, method):
    for problem in problems(task, [1, 2, 5], per_size=2):
        for pair in tasks.pairs(task, method, problem):
            for cut in {0, 1, len(pair.target) // 2, len(pair.target)}:
                context = pair.prompt + pair.target[:cut]
                assert tasks.oracle(task, context, method=method) == pair.target[cut:]


def test_oracle_uses_the_returned_value():
    context = ("What is the parity of [1, 0, 1]?\nSolution: Call: What is the parity of [0, 1]?\n"
               "Return: {}\nAnswer: ")
    assert tasks.oracle("parity", context.format("1")) == "0"
    assert tasks.oracle("parity", context.format("0")) == "1"  # wrong, but faithful to the return
    wrong = "34 + 78\nSolution: Call: 4 + 8\nReturn: Carry 0, Output 7\nAnswer: "
    assert tasks.oracle("addition", wrong) == "Carry 1, Output 07"


def test_oracle_rejects_contexts_off_the_gold_trajectory():
    with pytest.raises(ValueError):
        tasks.oracle("parity", "What is the parity of [1, 0]?\nSolution: 1")  # should call first
    with pytest.raises(ValueError):
        tasks.oracle("addition", "34 + 78\nSolution: Call: 4 + 8\nReturn: twelve\nAnswer: ")
    with pytest.raises(ValueError):
        tasks.oracle("dp", "Create dp array [1,\nSolution: ")
    with pytest.raises(ValueError):
        tasks.oracle("parity", "What is the parity of [1]?\nAnswer: 0", method="baseline")


# ---------------------------------------------------------------- data sets and the CLI
@pytest.mark.parametrize("task", TASK_NAMES)
@pytest.mark.parametrize("method", tasks.METHODS)
def test_streams_are_deterministic(task, method):
    first = list(itertools.islice(tasks.stream(task, method, seed=3), 30))
    assert first == list(itertools.islice(tasks.stream(task, method, seed=3), 30))
    assert first != list(itertools.islice(tasks.stream(task, method, seed=4), 30))
    assert all(isinstance(p, Pair) and p.target for p in first)


@pytest.mark.parametrize("task", TASK_NAMES)
def test_retuning_stream_covers_every_context_size(task):
    hi = tasks.TRAIN_LENGTHS[task][1]
    sizes = Counter(tasks.context_size(task, p)
                    for p in itertools.islice(tasks.stream(task, "retuning", seed=0), 40 * hi))
    assert set(sizes) == set(range(1, hi + 1))
    assert max(sizes.values()) < 3 * min(sizes.values())  # roughly uniform


def test_eval_problems_are_the_same_for_every_method():
    for task in TASK_NAMES:
        first = tasks.eval_problems(task, 4, 5, seed=1)
        assert first == tasks.eval_problems(task, 4, 5, seed=1)
        assert first != tasks.eval_problems(task, 4, 5, seed=2)
        assert all(len(p) == 4 for p in first)
        for method in tasks.METHODS:  # every method's prompt asks the same question
            output = final_output(task, method, first[0])
            assert tasks.parse_answer(task, method, output) == tasks.answer(task, first[0])


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_sizes_raise(bad):
    for task in TASK_NAMES:
        with pytest.raises(ValueError, match="positive integer"):
            tasks.sample(task, random.Random(0), bad)
        with pytest.raises(ValueError):
            tasks.eval_problems(task, bad, 3)
        with pytest.raises(ValueError):
            next(tasks.stream(task, "baseline", lengths=(bad, 3)))


def test_unknown_task_or_method_raises():
    with pytest.raises(ValueError, match="unknown task"):
        tasks.eval_problems("sorting", 3, 1)
    with pytest.raises(ValueError, match="unknown method"):
        tasks.pairs("parity", "cot", (1,))


def test_longest_sequence():
    for task, size in [("addition", 15), ("dp", 5)]:  # parity: both are short, Re-Tuning's a bit longer
        lengths = {m: tasks.longest_sequence(task, m, size, samples=4) for m in tasks.METHODS}
        assert lengths["baseline"] < lengths["retuning"] < lengths["scratchpad"]
    assert tasks.longest_sequence("addition", "scratchpad", 2) == \
        len("12 + 34\nSolution: Carry 0, Output 6\nCarry 0, Output 46")
    # A counter of pieces, not characters: a Re-Tuning pair after one return has 3 segments + target.
    assert tasks.longest_sequence("parity", "retuning", 3, count_tokens=lambda s: 1) == 4


def test_cli_prints_json_pairs(capsys):
    tasks.main(["parity", "--method", "retuning", "--length", "3", "--seed", "1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 5 and set(lines[0]) == {"prompt", "target"}
    for argv in (["parity", "--method", "retuning", "--length", "0"],
                 ["dp", "--method", "baseline", "--length", "-2"],
                 ["sorting", "--method", "baseline", "--length", "3"],
                 ["dp", "--method", "cot", "--length", "3"]):
        with pytest.raises(SystemExit) as error:
            tasks.main(argv)
        assert error.value.code == 2
