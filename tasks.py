"""The three tasks of Re-Tuning (addition, parity, dynamic programming) as text.

Every other part of the project gets its data from here. For each task this file samples
problems, computes the true answers with plain code, and renders them for the three
training methods of PAPER.md: baseline (answer right away), scratchpad (every step in one
context) and Re-Tuning (a call on a smaller instance, solved in a fresh context, whose
result is returned into the caller). It also owns the call/return protocol that the
recursive decoder imports, a gold oracle that plays the model in any context, and the
seeded training streams. Try: `python tasks.py parity --method retuning --length 3`.
"""
from __future__ import annotations

import argparse
import itertools
import json
import random
import re
from dataclasses import dataclass
from typing import Callable, Iterator

METHODS = ("baseline", "scratchpad", "retuning")
TRAIN_LENGTHS = {"addition": (1, 15), "parity": (1, 21), "dp": (2, 5)}  # the paper's ranges

# The call/return protocol. The recursive decoder imports these; nothing re-implements them.
SOLUTION = "\nSolution: "  # a context starts as "<sub-prompt>\nSolution: "
CALL = "Call: "  # a step ending in the line "...Call: <sub-prompt>\n" makes a call,
CALL_END = "\n"  # so a context pauses when a call line ends here, and stops at EOS
RETURN = "Return: "
ANSWER = "Answer: "


@dataclass(frozen=True)
class Pair:
    """One training example. The decoder encodes segments one by one; the trainer must too."""

    segments: tuple[str, ...]  # context prompt, then (step text, return text) per earlier step
    target: str

    @property
    def prompt(self) -> str:
        return "".join(self.segments)


def find_call(generated: str) -> str | None:
    """The sub-prompt if the text of the current step ends with a complete call line."""
    if not generated.endswith(CALL_END):
        return None
    last_line = generated[: -len(CALL_END)].rsplit("\n", 1)[-1]
    return last_line.rsplit(CALL, 1)[1] if CALL in last_line else None


def child_prompt(sub_prompt: str) -> str:
    return sub_prompt + SOLUTION


def return_text(value: str) -> str:
    return f"{RETURN}{value}\n{ANSWER}"


def child_result(output: str) -> str:
    """What a finished context returns: the text after its last "Answer: " (a base case: all)."""
    return output.rsplit(ANSWER, 1)[-1]


# Small helpers shared by the tasks.
def _check_size(size: int) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"problem size must be a positive integer, got {size!r}")


def _int_list(text: str) -> list[int] | None:
    """Parse a list printed the way str(list) prints it, e.g. "[3, -2, 1]"."""
    if not re.fullmatch(r"\[-?\d+(, -?\d+)*\]", text):
        return None
    return [int(x) for x in text[1:-1].split(", ")]


def _returned(parse: Callable[[str], object], value: str):
    """Parse a value returned into a context; a malformed one cannot be continued."""
    parsed = parse(value)
    if parsed is None:
        raise ValueError(f"malformed returned value {value!r}")
    return parsed


# ---------------------------------------------------------------- addition
@dataclass(frozen=True)
class Addition:
    a: str  # both operands zero-padded to the same number of digits
    b: str

    def __len__(self) -> int:
        return len(self.a)


def _carry_line(a: str, b: str) -> str:
    """The line for the low digits a + b: the carry out of them, and their sum's digits."""
    total, width = int(a) + int(b), len(a)
    return f"Carry {total // 10 ** width}, Output {total % 10 ** width:0{width}d}"


def _parse_carry_line(text: str) -> tuple[int, str] | None:
    match = re.fullmatch(r"Carry ([01]), Output (\d+)", text)
    return (int(match[1]), match[2]) if match else None


class AdditionTask:
    """Re-Tuning drops the most significant digit and puts it back onto the returned sum."""

    def sample(self, rng: random.Random, size: int) -> Addition:
        a, b = ("".join(rng.choice("0123456789") for _ in range(size)) for _ in range(2))
        return Addition(a, b)  # leading zeros allowed: operands are always `size` digits

    def answer(self, p: Addition) -> int:
        return int(p.a) + int(p.b)

    def baseline(self, p: Addition) -> tuple[str, str]:
        # The operands' width, plus a leading 1 on a final carry: the scratchpad's last line.
        return f"{p.a} + {p.b}\n{ANSWER}", str(self.answer(p)).zfill(len(p))

    def scratchpad(self, p: Addition) -> tuple[str, str]:
        lines = [_carry_line(p.a[-k:], p.b[-k:]) for k in range(1, len(p) + 1)]
        return child_prompt(self.sub_prompt(p)), "\n".join(lines)

    def sub_prompt(self, p: Addition) -> str:
        return f"{p.a} + {p.b}"

    def parse_prompt(self, text: str) -> Addition | None:
        match = re.fullmatch(r"(\d+) \+ (\d+)", text)
        return Addition(match[1], match[2]) if match and len(match[1]) == len(match[2]) else None

    def step(self, p: Addition, returns: list[str]) -> str:
        if len(p) == 1:
            return _carry_line(p.a, p.b)
        if not returns:  # drop the most significant digit
            return f"{CALL}{p.a[1:]} + {p.b[1:]}\n"
        carry, low_digits = _returned(_parse_carry_line, returns[0])
        column = int(p.a[0]) + int(p.b[0]) + carry
        return f"Carry {column // 10}, Output {column % 10}{low_digits}"

    def parse(self, method: str, output: str) -> int | None:
        if method == "baseline":
            return int(output) if re.fullmatch(r"\d+", output) else None
        last = output.rsplit("\n", 1)[-1] if method == "scratchpad" else child_result(output)
        line = _parse_carry_line(last)
        return None if line is None else line[0] * 10 ** len(line[1]) + int(line[1])


# ---------------------------------------------------------------- parity
class ParityTask:
    """Re-Tuning drops the first bit and flips the returned parity if that bit is 1."""

    def sample(self, rng: random.Random, size: int) -> tuple[int, ...]:
        return tuple(rng.randint(0, 1) for _ in range(size))

    def answer(self, bits: tuple[int, ...]) -> int:
        return sum(bits) % 2

    def baseline(self, bits: tuple[int, ...]) -> tuple[str, str]:
        return f"{self.sub_prompt(bits)}\n{ANSWER}", str(self.answer(bits))

    def scratchpad(self, bits: tuple[int, ...]) -> tuple[str, str]:
        running = " ".join(str(sum(bits[: i + 1]) % 2) for i in range(len(bits)))
        return child_prompt(self.sub_prompt(bits)), f"Compute one element at a time. {running}"

    def sub_prompt(self, bits: tuple[int, ...]) -> str:
        return f"What is the parity of {list(bits)}?"

    def parse_prompt(self, text: str) -> tuple[int, ...] | None:
        match = re.fullmatch(r"What is the parity of (.*)\?", text)
        bits = _int_list(match[1]) if match else None
        return tuple(bits) if bits and set(bits) <= {0, 1} else None

    def step(self, bits: tuple[int, ...], returns: list[str]) -> str:
        if len(bits) == 1:
            return str(bits[0])
        if not returns:  # drop the first element
            return f"{CALL}{self.sub_prompt(bits[1:])}\n"
        rest = _returned(lambda v: int(v) if v in ("0", "1") else None, returns[0])
        return str(bits[0] ^ rest)

    def parse(self, method: str, output: str) -> int | None:
        if method == "scratchpad":
            running = re.fullmatch(r"Compute one element at a time\.(?: [01])+", output)
            output = output[-1] if running else ""
        elif method == "retuning":
            output = child_result(output)
        return int(output) if output in ("0", "1") else None


# ---------------------------------------------------------------- dynamic programming
DP_VALUES = (-5, 5)
DP_INSTRUCTION = (
    "Given a sequence of integers, find a subsequence with the highest sum, such that no two "
    "numbers in the subsequence are adjacent in the original sequence.\n\nOutput a list with "
    '"1" for chosen numbers and "2" for unchosen ones. If multiple solutions exist, select the '
    "lexicographically smallest."
)
DP_TOP = "Compute the maximum sum of nonadjacent subsequences of "  # Re-Tuning's sub-prompts
DP_ARRAY = "Create dp array "
DP_RECONSTRUCT = (
    "Finally, we reconstruct the lexicographically smallest subsequence that fulfills the task "
    'objective by selecting numbers as follows. We store the result on a list named "output".'
)


def dp_array(values: tuple[int, ...]) -> list[int]:
    """dp[i] = the best sum of non-adjacent items of values[i:], choosing nothing allowed."""
    dp = [0] * (len(values) + 2)  # two zeros past the end
    for i in reversed(range(len(values))):
        dp[i] = max(dp[i + 1], values[i] + dp[i + 2], 0)
    return dp[: len(values)]


def _takes_first(items: tuple[int, ...], sums: tuple[int, ...], can_use: bool) -> bool:
    """Take items[0] iff allowed and it lies on an optimal choice (a dp past the end is 0)."""
    return can_use and sums[0] == items[0] + (sums[2] if len(sums) > 2 else 0)


def choose(values: tuple[int, ...]) -> list[int]:
    """Greedy from the left, taking whenever optimal: lexicographically smallest, as 1 < 2."""
    dp, output, can_use = dp_array(values), [], True
    for i in range(len(values)):
        taken = _takes_first(values[i:], dp[i:], can_use)
        output.append(1 if taken else 2)
        can_use = not taken  # the next item is adjacent to a taken one
    return output


@dataclass(frozen=True)
class DpArray:
    """Re-Tuning's first DP helper call: build the dp array of these values."""

    values: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class ChosenIndices:
    """Re-Tuning's second DP helper call: mark the items to take, given their dp array."""

    sums: tuple[int, ...]
    items: tuple[int, ...]
    can_use: bool

    def __len__(self) -> int:
        return len(self.items)


def _dp_line(i: int, values: tuple[int, ...], dp: list[int]) -> str:
    n, x = len(values), values[i]
    if i == n - 1:
        return f"dp[{i}] = max(input[{i}], 0) = max({x}, 0) = {dp[i]}"
    if i == n - 2:
        y = values[i + 1]
        return f"dp[{i}] = max(input[{i}], input[{i + 1}], 0) = max({x}, {y}, 0) = {dp[i]}"
    return (f"dp[{i}] = max(dp[{i + 1}], input[{i}] + dp[{i + 2}], 0) "
            f"= max({dp[i + 1]}, {x} + {dp[i + 2]}, 0) = {dp[i]}")


def _reconstruction_sentence(i: int, values: tuple[int, ...], dp: list[int], taken: bool) -> str:
    # As Dziri et al.: dp[i + 2] is left out past the end (it is 0); no update after the last item.
    past_end = i + 2 >= len(values)
    names = f"input[{i}]" + ("" if past_end else f" + dp[{i + 2}]")
    numbers = f"{values[i]}" + ("" if past_end else f" + {dp[i + 2]}")
    if taken:
        text = (f"Since dp[{i}] == {names} ({dp[i]} == {numbers}) and can_use_next_item == True, "
                f"we store output[{i}] = 1.")
    else:
        text = (f"Since dp[{i}] != {names} ({dp[i]} != {numbers}) or can_use_next_item == False, "
                f"we store output[{i}] = 2.")
    return text if i == len(values) - 1 else f"{text} We update can_use_next_item = {not taken}."


class DpTask:
    """Re-Tuning: the top level calls two recursive helpers, DpArray, then ChosenIndices."""

    def sample(self, rng: random.Random, size: int) -> tuple[int, ...]:
        return tuple(rng.randint(*DP_VALUES) for _ in range(size))

    def answer(self, values: tuple[int, ...]) -> list[int]:
        return choose(values)

    def baseline(self, values: tuple[int, ...]) -> tuple[str, str]:
        return f"{DP_INSTRUCTION} Input = {list(values)}.\n{ANSWER}", str(self.answer(values))

    def scratchpad(self, values: tuple[int, ...]) -> tuple[str, str]:
        # Dziri et al.'s prompt ends at the "."; the target starts right after it.
        dp, output = dp_array(values), self.answer(values)
        dp_lines = [_dp_line(i, values, dp) for i in reversed(range(len(values)))]
        sentences = [_reconstruction_sentence(i, values, dp, m == 1) for i, m in enumerate(output)]
        target = "\n\n".join([
            "Scratchpad: " + "\n".join(dp_lines), DP_RECONSTRUCT,
            "Let can_use_next_item = True.\n" + "\n".join(sentences),
            f"Reconstructing all together, output={output}.",
        ])
        return f"Question: Let's solve input = {list(values)}.", target

    def sub_prompt(self, p: tuple[int, ...] | DpArray | ChosenIndices) -> str:
        if isinstance(p, DpArray):
            return f"{DP_ARRAY}{list(p.values)}"
        if isinstance(p, ChosenIndices):
            return (f"Create chosen indices array: sum array {list(p.sums)}, "
                    f"item array {list(p.items)}, can use item {p.can_use}")
        return f"{DP_TOP}{list(p)}"

    def parse_prompt(self, text: str) -> tuple[int, ...] | DpArray | ChosenIndices | None:
        if text.startswith(DP_TOP) and (values := _int_list(text.removeprefix(DP_TOP))):
            return tuple(values)
        if text.startswith(DP_ARRAY) and (values := _int_list(text.removeprefix(DP_ARRAY))):
            return DpArray(tuple(values))
        pattern = (r"Create chosen indices array: sum array (\[.*?\]), item array (\[.*?\]), "
                   r"can use item (True|False)")
        if match := re.fullmatch(pattern, text):
            sums, items = _int_list(match[1]), _int_list(match[2])
            if sums and items and len(sums) == len(items):
                return ChosenIndices(tuple(sums), tuple(items), match[3] == "True")
        return None

    def step(self, p: tuple[int, ...] | DpArray | ChosenIndices, returns: list[str]) -> str:
        if isinstance(p, DpArray):
            return self._dp_array_step(p.values, returns)
        if isinstance(p, ChosenIndices):
            return self._chosen_indices_step(p, returns)
        if not returns:  # the top level: two calls in sequence, then it copies the final answer
            return f"{CALL}{self.sub_prompt(DpArray(p))}\n"
        sums = tuple(_returned(_int_list, returns[0]))
        if len(returns) == 1:
            return f"{CALL}{self.sub_prompt(ChosenIndices(sums, p, True))}\n"
        return str(_returned(_int_list, returns[1]))

    def _dp_array_step(self, values: tuple[int, ...], returns: list[str]) -> str:
        if len(values) == 1:
            return f"Return [0] if negative else element.\n{ANSWER}{[max(values[0], 0)]}"
        if not returns:
            rest = self.sub_prompt(DpArray(values[1:]))
            return f"Call with array minus first element. {CALL}{rest}\n"
        rest = _returned(_int_list, returns[0])
        best = max(rest[0], values[0] + (rest[1] if len(rest) > 1 else 0))
        return f"Append max(return[0], array[0] + return[1]) to return.\n{ANSWER}{[best] + rest}"

    def _chosen_indices_step(self, p: ChosenIndices, returns: list[str]) -> str:
        rule = "If there is only 1 item, return 1 if we should use it else 2."
        mark = 1 if _takes_first(p.items, p.sums, p.can_use) else 2
        if len(p) == 1:
            return f"{rule}\n{ANSWER}{[mark]}"
        if not returns:
            rest = ChosenIndices(p.sums[1:], p.items[1:], mark == 2)
            return (f"{rule} If we should use the first item to get the sum, call False else True. "
                    f"{CALL}{self.sub_prompt(rest)}\n")
        return f"Append 1 if False else 2.\n{ANSWER}{[mark] + _returned(_int_list, returns[0])}"

    def parse(self, method: str, output: str) -> list[int] | None:
        if method == "scratchpad":
            match = re.search(r"\nReconstructing all together, output=(\[[^\]\n]*\])\.\Z", output)
            output = match[1] if match else ""
        elif method == "retuning":
            output = child_result(output)
        marks = _int_list(output)
        return marks if marks and set(marks) <= {1, 2} else None


# ---------------------------------------------------------------- one interface for all tasks
# Each task offers sample, answer, baseline, scratchpad, sub_prompt, parse_prompt, step, parse.
TASKS = {"addition": AdditionTask(), "parity": ParityTask(), "dp": DpTask()}


def _task(name: str):
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def sample(task: str, rng: random.Random, size: int):
    _check_size(size)
    return _task(task).sample(rng, size)


def answer(task: str, problem):
    return _task(task).answer(problem)


def parse_prompt(task: str, sub_prompt: str):
    """The (sub)problem a Re-Tuning sub-prompt asks for; None if it is malformed."""
    return _task(task).parse_prompt(sub_prompt)


def next_step(task: str, problem, returns: list[str]) -> str:
    """The gold text of a context's next step, given the values returned into it so far."""
    return _task(task).step(problem, returns)


def solve_context(task: str, sub_prompt: str) -> tuple[list[Pair], str]:
    """Run one context with gold steps, recursing into calls: all their pairs, and its result."""
    problem = parse_prompt(task, sub_prompt)
    if problem is None:
        raise ValueError(f"malformed {task} sub-prompt {sub_prompt!r}")
    segments, returns, collected = [child_prompt(sub_prompt)], [], []
    while True:
        step = next_step(task, problem, returns)
        collected.append(Pair(tuple(segments), step))
        segments.append(step)
        call = find_call(step)
        if call is None:
            return collected, child_result("".join(segments[1:]))
        child_pairs, value = solve_context(task, call)
        collected += child_pairs
        returns.append(value)
        segments.append(return_text(value))


def retuning(task: str, problem) -> list[Pair]:
    """One pair per step of every context of the whole trajectory, base cases included."""
    return solve_context(task, _task(task).sub_prompt(problem))[0]


def pairs(task: str, method: str, problem) -> list[Pair]:
    _check_method(method)
    if method == "retuning":
        return retuning(task, problem)
    render = _task(task).baseline if method == "baseline" else _task(task).scratchpad
    prompt, target = render(problem)  # a single context: one pair, one segment
    return [Pair((prompt,), target)]


def inference_prompt(task: str, method: str, problem) -> str:
    """What the model is given at test time (for Re-Tuning: the top context)."""
    if method == "retuning":
        return child_prompt(_task(task).sub_prompt(problem))
    return pairs(task, method, problem)[0].prompt


def parse_answer(task: str, method: str, output: str):
    """The answer in a finished output (all text after the prompt); None if malformed."""
    _check_method(method)
    return _task(task).parse(method, output)


def is_correct(task: str, method: str, problem, output: str) -> bool:
    return parse_answer(task, method, output) == answer(task, problem)


# ---------------------------------------------------------------- the gold oracle
_RETURNED = re.compile(re.escape(RETURN) + r"([^\n]*)\n" + re.escape(ANSWER))


def _problem_in(task: str, context: str):
    """Loosely find the problem in a baseline/scratchpad context; re-rendering checks it."""
    if task == "addition":
        match = re.search(r"(\d+) \+ (\d+)", context)
        return Addition(match[1], match[2]) if match and len(match[1]) == len(match[2]) else None
    match = re.search(r"\[[^\]]*\]", context)
    values = _int_list(match[0]) if match else None
    return tuple(values) if values else None


def _single_context_oracle(task: str, method: str, context: str) -> str:
    problem = _problem_in(task, context)
    pair = None if problem is None else pairs(task, method, problem)[0]
    if pair is None or not context.startswith(pair.prompt) or not pair.target.startswith(
            context[len(pair.prompt):]):
        raise ValueError(f"not a gold {task} {method} context: {context!r}")
    return pair.target[len(context) - len(pair.prompt):]


def oracle(task: str, context: str, method: str = "retuning") -> str:
    """The correct rest of the current step, for a pair's prompt maybe plus a prefix of its target.

    Re-Tuning contexts are parsed, not looked up, so any size works, and the values returned
    into the context are used as they are (so the oracle mirrors whatever the decoder passes in).
    """
    _check_method(method)
    if method != "retuning":
        return _single_context_oracle(task, method, context)
    sub_prompt, _, generated = context.partition(SOLUTION)
    problem = parse_prompt(task, sub_prompt)
    if problem is None:
        raise ValueError(f"not a {task} Re-Tuning context: {context!r}")
    *finished, current = _RETURNED.split(generated)
    steps, returns = finished[0::2], finished[1::2]
    for i, step in enumerate(steps):
        if step != next_step(task, problem, returns[:i]) or find_call(step) is None:
            raise ValueError(f"step {step!r} is not the gold step of {sub_prompt!r}")
    step = next_step(task, problem, returns)
    if not step.startswith(current):
        raise ValueError(f"{current!r} does not begin the gold step {step!r}")
    return step[len(current):]


# ---------------------------------------------------------------- data sets
def eval_problems(task: str, length: int, n: int, seed: int = 0, exclude=()) -> list:
    """The same n problems for every method (the seed leaves the method out), none in `exclude`
    (a training pool): those are redrawn, so fewer than n only if the size has few others."""
    rng = random.Random(f"eval/{task}/{length}/{seed}")
    draws = (sample(task, rng, length) for _ in range(100 * n))  # lazy: without `exclude`, n draws
    return list(itertools.islice((p for p in draws if p not in exclude), n))


def context_size(task: str, pair: Pair) -> int:
    """The size of the (sub)problem whose context a Re-Tuning pair belongs to."""
    return len(parse_prompt(task, pair.segments[0].removesuffix(SOLUTION)))


def _train_range(task: str, lengths: tuple[int, int] | None) -> tuple[int, int]:
    _task(task)  # a clear error for an unknown task
    lo, hi = lengths or TRAIN_LENGTHS[task]
    for size in (lo, hi):
        _check_size(size)
    if lo > hi:
        raise ValueError(f"empty range of lengths {lo}..{hi}")
    return lo, hi


def stream(task: str, method: str, lengths: tuple[int, int] | None = None,
           seed: int = 0) -> Iterator[Pair]:
    """Endless seeded training pairs, problem sizes uniform in lengths (default: the paper's).

    Re-Tuning: a context size k uniform in 1..hi, then one step of a size-k context drawn from a
    size-max(k, lo) problem's trajectory, so every context size is equally represented.
    """
    _check_method(method)
    lo, hi = _train_range(task, lengths)
    rng = random.Random(f"stream/{task}/{method}/{seed}")
    while True:
        if method != "retuning":
            yield pairs(task, method, sample(task, rng, rng.randint(lo, hi)))[0]
            continue
        size = rng.randint(1, hi)
        trajectory = retuning(task, sample(task, rng, max(size, lo)))
        yield rng.choice([pair for pair in trajectory if context_size(task, pair) == size])


def problem_pool(task: str, n: int, lengths: tuple[int, int] | None = None, seed: int = 0) -> list:
    """n distinct training problems, sizes uniform in lengths: a fixed training set. The seed
    leaves the method out, so every method learns from the same problems, and a pool of n is
    the first n of any larger one. A repeat is redrawn at a random size, so a size with few
    problems (parity's shortest lists) has fewer than its share, and the others make up the rest."""
    lo, hi = _train_range(task, lengths)
    if n < 1:
        raise ValueError(f"a pool needs at least 1 problem, got {n}")
    rng = random.Random(f"pool/{task}/{lo}/{hi}/{seed}")
    pool: dict = {}  # a dict keeps the order of drawing
    for _ in range(100 * n + 1000):
        pool.setdefault(sample(task, rng, rng.randint(lo, hi)), None)
        if len(pool) == n:
            return list(pool)
    raise ValueError(f"{task} sizes {lo}..{hi} gave only {len(pool)} distinct problems, not {n}")


def pool_stream(task: str, method: str, problems: list, seed: int = 0, start: int = 0) -> Iterator[Pair]:
    """Endless training pairs of a fixed set of problems, from the start-th pair on: every pair
    of every problem (Re-Tuning: each step of every context of its trajectory, as the paper
    trains) once a pass, in a fresh seeded order each pass. Unlike `stream`, small Re-Tuning
    contexts come more often than large ones: every problem has them."""
    all_pairs = [pair for problem in problems for pair in pairs(task, method, problem)]
    passes, skip = divmod(start, len(all_pairs))
    for k in itertools.count(passes):
        yield from random.Random(f"pass/{seed}/{k}").sample(all_pairs, len(all_pairs))[skip:]
        skip = 0


def longest_sequence(task: str, method: str, size: int, count_tokens: Callable[[str], int] = len,
                     samples: int = 32, seed: int = 0) -> int:
    """The longest training sequence (prompt + target, no EOS) over a few problems of one size."""
    return max(
        sum(count_tokens(piece) for piece in (*pair.segments, pair.target))  # pieces as trained
        for problem in eval_problems(task, size, samples, seed)
        for pair in pairs(task, method, problem)
    )


# ---------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print one problem's training pairs as JSON.")
    parser.add_argument("task", choices=list(TASKS))
    parser.add_argument("--method", choices=METHODS, required=True)
    parser.add_argument("--length", type=int, required=True, help="problem size (at least 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.length < 1:
        parser.error(f"--length must be a positive integer, got {args.length}")
    problem = eval_problems(args.task, args.length, 1, args.seed)[0]
    for pair in pairs(args.task, args.method, problem):
        print(json.dumps({"prompt": pair.prompt, "target": pair.target}))


if __name__ == "__main__":
    main()
