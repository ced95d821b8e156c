"""recurse.py: a stand-in model that plays the gold oracle solves every task far beyond training
through the real decoding loop; runaway or malformed models end with the right failure, quickly;
on a real tiny model, batching changes nothing and a parent's cache after a return equals a full
forward of the same tokens."""
import random
from dataclasses import replace

import pytest
import torch
import torch.nn as nn

import tasks
from conftest import tiny_model
from model import ModelArgs
from cachepool import CacheBudgetError, CachePool, memory_budget
from recurse import Context, Limits, Lookup, Run, solve_problems, split_by_length, split_by_width
from train import encode_pair


@pytest.fixture
def tok(project_tokenizer):
    """conftest's project tokenizer (base.py's recipe): round-trips every task string exactly."""
    return project_tokenizer


HEX = torch.tensor([0, 4, 8, 12])  # shifts: a token id as 4 digits of 0-15, exact in any float type


class ScriptedModel(nn.Module):
    """A stand-in model: `script(context_text)` is the rest of the current step ("" means EOS), and
    its first token gets the top logit. It reads each context's tokens back from the cache, where
    it writes them itself into a layer of its own, so it sees exactly what the decoder keeps (a
    paused caller's cache saved and restored included); `seen` records each context's tokens after
    every forward. With `real`, a real model runs on the same cache underneath (its own layers) and
    `seen` keeps its last logits too; the script still picks the token."""

    def __init__(self, tokenizer, script, real=None):
        super().__init__()
        self.tokenizer, self.script, self.real = tokenizer, script, real
        # the cache gets one more layer than the real model has: the tokens go there, one head of 8 without it
        self.args = (replace(real.args, n_layers=real.args.n_layers + 1) if real else
                     ModelArgs(dim=8, n_layers=1, n_heads=1, vocab_size=tokenizer.n_words))
        # the decoder reads its cache's dtype and device from the first parameter: the real model's
        self.unused = nn.Parameter(torch.zeros(1, dtype=next(real.parameters()).dtype if real else None))
        self.seen, self.rows_used = [], set()

    def decode(self, tokens, cache, rows, n_new, logits_from=None):
        """As model.decode: a group of rows per tokens[i], logits from position logits_from[i] on."""
        logits_from = logits_from or [0] * len(tokens)
        starts = [cache.lengths[r].tolist() for r in rows]  # before the lengths advance
        if self.real is not None:
            real_logits = self.real.decode(tokens, cache, rows, n_new, logits_from)
        else:
            cache.lengths[torch.cat(rows)] += torch.cat(n_new)
            real_logits = [None] * len(tokens)
        store = cache.k[-1]  # (rows, 1+, slots, head_dim >= 4): a token id's 4 hex digits at [row, 0, position, :4]
        return [self.scripted(store, *group) for group in zip(tokens, rows, n_new, starts, logits_from, real_logits)]

    def scripted(self, store, tokens, rows, n_new, starts, lo, real_logits):
        self.rows_used.update(rows.tolist())
        B, T = tokens.shape
        logits = torch.zeros(B, T - lo, self.tokenizer.n_words)
        for b, (row, n, start) in enumerate(zip(rows.tolist(), n_new.tolist(), starts)):
            store[row, 0, start:start + T, :4] = ((tokens[b, :, None] >> HEX) & 15).to(store.dtype)  # exact in bf16
            history = (store[row, 0, :start + T, :4].long() << HEX).sum(-1).tolist()
            self.seen.append((history[:start + n], None if real_logits is None else real_logits[b, n - 1 - lo].clone()))
            for i in range(n - 1, T):  # past the n real tokens: the decoder's guesses (or padding)
                logits[b, i - lo, self.next_token(history[:start + i + 1])] = 1.0
        return logits

    def next_token(self, history):
        try:
            rest = self.script(self.tokenizer.decode(history))
        except ValueError:  # mid-prompt, the oracle sees no valid context; this token is never used
            return self.tokenizer.eos_id
        return self.tokenizer.encode(rest)[0] if rest else self.tokenizer.eos_id


def oracle_model(tokenizer, task, method="retuning", real=None):
    return ScriptedModel(tokenizer, lambda text: tasks.oracle(task, text, method), real)


def repeating(step):
    """A script that writes `step` in every context, whatever the context says."""
    def script(text):
        current = text.rsplit(tasks.SOLUTION, 1)[-1]
        return step[len(current):] if step.startswith(current) else ""
    return script


def problems_of(task, lengths, seed=0):
    return [tasks.eval_problems(task, n, 1, seed)[0] for n in lengths]


@pytest.mark.parametrize("task, lengths", [
    ("parity", [40, 3, 1, 17]), ("addition", [60, 5, 1]), ("dp", [24, 2, 9]),
])
def test_oracle_model_solves_far_beyond_training(tok, task, lengths):
    problems = problems_of(task, lengths)
    outcomes = solve_problems(oracle_model(tok, task), tok, task, "retuning",
                              problems, batch_size=3)
    for problem, out in zip(problems, outcomes):
        assert out.failure is None and out.correct, out.trace[-2000:]
        assert out.answer == tasks.answer(task, problem)
    n = lengths[0]
    assert outcomes[0].calls == {"parity": n - 1, "addition": n - 1, "dp": 2 * n}[task]
    assert outcomes[0].depth == {"parity": n - 1, "addition": n - 1, "dp": n}[task]


@pytest.mark.parametrize("method", ["baseline", "scratchpad"])
@pytest.mark.parametrize("task", list(tasks.TASKS))
def test_plain_generation_on_the_same_loop(tok, task, method):
    problems = problems_of(task, [4, 2, 6])
    outcomes = solve_problems(oracle_model(tok, task, method), tok, task, method, problems, batch_size=2)
    assert all(o.correct and o.calls == 0 and o.failure is None for o in outcomes)
    assert [o.output for o in outcomes] == [tasks.pairs(task, method, p)[0].target for p in problems]


def test_contexts_are_tokenized_exactly_as_in_training(tok):
    """Every step starts from concat(encode(segment)) of its training pair (train.encode_pair)."""
    problems = [(1, 0, 1, 1, 0), (3, -2, 1, 5)]
    for task, problem in zip(("parity", "dp"), problems):
        model = oracle_model(tok, task)
        (out,) = solve_problems(model, tok, task, "retuning", [problem])
        assert out.correct
        seen = {tuple(history) for history, _ in model.seen}
        for pair in tasks.pairs(task, "retuning", problem):
            assert tuple(encode_pair(tok, pair)[0]) in seen, pair.prompt


def test_one_row_per_problem_in_flight_and_progress_is_reported(tok):
    model, finished = oracle_model(tok, "parity"), []
    problems = problems_of("parity", [4] * 12)
    outcomes = solve_problems(model, tok, "parity", "retuning", problems, batch_size=2,
                              progress=finished.append)
    assert all(o.correct for o in outcomes) and finished == [1] * 12
    assert model.rows_used == {0, 1}  # a row per problem in flight, 4 contexts deep: callers saved aside


def test_trace_shows_the_call_tree(tok):
    (out,) = solve_problems(oracle_model(tok, "parity"), tok, "parity", "retuning", [(1, 0, 1)])
    assert out.trace.split("\n") == [
        "What is the parity of [1, 0, 1]?",
        "Solution: Call: What is the parity of [0, 1]?",
        "    What is the parity of [0, 1]?",
        "    Solution: Call: What is the parity of [1]?",
        "        What is the parity of [1]?",
        "        Solution: 1",
        "    Return: 1",
        "    Answer: 1",
        "Return: 1",
        "Answer: 0",
    ]
    assert out.output == "Call: What is the parity of [0, 1]?\nReturn: 1\nAnswer: 0"


def test_reencoding_variant_gives_the_same_answers_with_more_tokens(tok):
    problems = problems_of("dp", [5, 3])
    kept, redone = (solve_problems(oracle_model(tok, "dp"), tok, "dp", "retuning", problems,
                                   batch_size=2, reencode=r) for r in (False, True))
    assert [o.output for o in kept] == [o.output for o in redone] and all(o.correct for o in redone)
    assert all(r.tokens > k.tokens for k, r in zip(kept, redone))


def growing(text):
    """Calls a list one bit longer than its own problem's: never a repeat, never an end."""
    if tasks.SOLUTION not in text:
        raise ValueError("mid-prompt")  # as the oracle does: this token is never used
    size = len(tasks.parse_prompt("parity", text.split("\n")[0]))
    return repeating("Call: What is the parity of [" + ", ".join(["1"] * (size + 1)) + "]?\n")(text)


SMALL = Limits(max_depth=6, max_calls=8, max_new_tokens=40, max_context_tokens=200, max_total_tokens=2000)


@pytest.mark.parametrize("script, limits, reason", [
    (lambda text: "1 0", SMALL, "max_new_tokens"),  # never stops
    (repeating("Call: What is the parity of [1, 0]?\n"), SMALL, "cycle"),  # calls itself forever
    (growing, SMALL, "max_depth"),  # ever longer calls: no repeat, but no end
    (growing, Limits(max_calls=3), "max_calls"),
    (repeating("Call: banana\n"), SMALL, "malformed call"),
    (growing, Limits(max_depth=50, max_calls=50, max_total_tokens=300), "max_total_tokens"),
    (lambda text: "1 " * 90, Limits(max_new_tokens=500, max_context_tokens=100), "max_context_tokens"),
])
def test_runaway_models_end_with_the_reason(tok, script, limits, reason):
    problems = problems_of("parity", [5, 2, 8])
    ends = []
    for guesses in (4, 0):  # a runaway repeats itself, so its guesses come true: the guards hold all the same
        outcomes = solve_problems(ScriptedModel(tok, script), tok, "parity", "retuning", problems,
                                  batch_size=2, limits=limits, guesses=guesses)
        for out in outcomes:
            assert not out.correct and out.failure.startswith(reason), out.failure
            assert out.trace.endswith(f"!! {out.failure}")
            assert out.tokens <= limits.max_total_tokens
        ends.append([(o.output, o.tokens, o.generated, o.failure) for o in outcomes])
    assert ends[0] == ends[1]


def test_garbage_that_stops_is_just_wrong(tok):
    outcomes = solve_problems(ScriptedModel(tok, repeating("banana")), tok, "addition", "retuning",
                              problems_of("addition", [3, 4]), batch_size=2)
    assert all(o.failure is None and not o.correct and o.answer is None for o in outcomes)


def random_problems(rng, n):
    return [tasks.sample("parity", rng, rng.randint(1, 12)) for _ in range(n)]


@pytest.mark.parametrize("method", tasks.METHODS)
def test_batched_equals_one_at_a_time_on_a_real_model(tok, method):
    """Prompts of mixed lengths: problems start, call and finish at different steps."""
    model = tiny_model(vocab_size=tok.n_words)
    problems = random_problems(random.Random(0), 6)
    limits = Limits(max_new_tokens=24)
    one, many = (solve_problems(model, tok, "parity", method, problems, batch_size=b, limits=limits)
                 for b in (1, 4))
    assert [(o.output, o.tokens, o.failure) for o in one] == [(o.output, o.tokens, o.failure) for o in many]


class Recording(nn.Module):
    """A real model that records each group's (T, n_new) in `shapes`: a group per part of a step."""

    def __init__(self, real, shapes: list):
        super().__init__()
        self.real, self.args, self.shapes = real, real.args, shapes

    def decode(self, tokens, cache, rows, n_new, logits_from=None):
        self.shapes += [(t.shape[1], n.tolist()) for t, n in zip(tokens, n_new)]
        return self.real.decode(tokens, cache, rows, n_new, logits_from)


def test_one_token_steps_are_never_padded_to_a_chunk(tok):
    """A context taking in one token shares no attention group with one taking in a prompt or return."""
    shapes = []
    model = oracle_model(tok, "parity", real=Recording(tiny_model(vocab_size=tok.n_words), shapes))
    problems = random_problems(random.Random(2), 6)
    outcomes = solve_problems(model, tok, "parity", "retuning", problems, batch_size=4)
    assert all(o.correct for o in outcomes) and sum(o.calls for o in outcomes) > 6
    assert any(T == 1 for T, _ in shapes) and any(T > 1 for T, _ in shapes)
    # one-token rows go alone, or with their guesses (1 sure token, up to 4 guessed, 16 once a copy holds)
    assert all(T == 1 or min(n_new) > 1 or (max(n_new) == 1 and T <= 17) for T, n_new in shapes)
    assert any(max(n_new) == 1 and T > 5 for T, n_new in shapes)  # a restated list goes 16 at a time


def test_lookup_follows_the_first_occurrence_of_the_last_tokens():
    lookup = Lookup(n=3)
    lookup.extend([1, 2])
    assert lookup.guess(4) == []  # fewer than n tokens
    lookup.extend([3, 8, 1, 2, 3, 9, 1, 2, 3])
    assert lookup.guess(2) == [8, 1]  # what followed the first (1, 2, 3)
    lookup.extend([8])
    assert lookup.guess(3) == [1, 2, 3]  # the copy holds: it goes on from there
    lookup.extend([5])  # it did not: (3, 8, 5) never occurred before
    assert lookup.guess(3) == []
    lookup.extend([1, 2, 3])
    assert lookup.guess(1) == [8]


def test_lookup_copies_its_callers_text_until_it_has_its_own_and_trusts_a_copy_that_holds():
    caller = Lookup(n=2)
    caller.extend([7, 1, 2, 3, 4])
    lookup = Lookup(n=2, caller=caller)
    lookup.extend([5, 7, 1])
    assert lookup.guess(2) == [2, 3]  # nothing of its own to copy: what followed (7, 1) in its caller
    lookup.extend([2, 3, 5, 7, 1])
    assert lookup.guess(2) == [2, 3] and lookup.held == 1  # its own now: (5, 7) went on with 1, 2, 3
    lookup.extend([2, 3])  # the copy has held for 3 tokens: 2 guesses become 4 x 2
    assert lookup.held == 3 and lookup.guess(2) == [5, 7, 1, 2, 3]  # all there is after it
    lookup.extend([9])  # it broke: (3, 9) is nowhere, in either text
    assert lookup.held == 0 and lookup.guess(2) == []


@pytest.mark.parametrize("task, method, lengths", [
    ("parity", "retuning", [9, 2, 5]), ("addition", "retuning", [7, 3]), ("dp", "retuning", [4, 2]),
    ("addition", "scratchpad", [6, 3]),
])
def test_guessing_ahead_changes_no_output(tok, task, method, lengths):
    """The gold steps copy their prompts, so guesses come true and forwards are fewer; outputs, token
    counts and the real model's logits at every sure position are those of decoding without guesses."""
    runs = []
    for guesses in (0, 4):
        shapes = []
        model = oracle_model(tok, task, method, real=Recording(tiny_model(vocab_size=tok.n_words), shapes))
        outcomes = solve_problems(model, tok, task, method, problems_of(task, lengths), batch_size=2,
                                  guesses=guesses)
        assert all(o.correct for o in outcomes)
        runs.append(([(o.output, o.tokens, o.generated, o.calls) for o in outcomes], shapes, model.seen))
    (plain, plain_shapes, plain_seen), (guessed, guessed_shapes, guessed_seen) = runs
    assert guessed == plain
    assert len(guessed_shapes) < len(plain_shapes)
    assert any(T > 1 and max(n_new) == 1 for T, n_new in guessed_shapes)  # a forward of guesses
    logits = {tuple(h): x for h, x in plain_seen}  # a taken guess skips a position: guessed_seen is fewer
    assert len(guessed_seen) < len(plain_seen)
    for history, x in guessed_seen:
        torch.testing.assert_close(x, logits[tuple(history)], atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", ["retuning", "scratchpad"])
def test_a_real_model_decodes_the_same_with_guesses(tok, method):
    """Its own greedy tokens, checked against its guesses: the same outputs as one token at a time."""
    model = tiny_model(vocab_size=tok.n_words)
    problems = random_problems(random.Random(4), 6)
    limits = Limits(max_new_tokens=40)
    runs = []
    for guesses in (0, 1, 4):
        shapes = []
        outcomes = solve_problems(Recording(model, shapes), tok, "parity", method, problems, batch_size=6,
                                  limits=limits, guesses=guesses)
        runs.append([(o.output, o.tokens, o.failure) for o in outcomes])
        assert any(T > 1 and max(n_new) == 1 for T, n_new in shapes) == (guesses > 0)  # it repeats itself
    assert runs[0] == runs[1] == runs[2]


def test_guesses_must_fit_a_chunk(tok):
    with pytest.raises(ValueError, match="guesses"):
        solve_problems(oracle_model(tok, "parity"), tok, "parity", "retuning", [(1, 0)], guesses=64)
    with pytest.raises(ValueError, match="guesses"):  # 16 guesses would grow to 64 along a copy
        solve_problems(oracle_model(tok, "parity"), tok, "parity", "retuning", [(1, 0)], guesses=16)


def run_of(fed: int, pending: int, row: int) -> Run:
    ctx = Context("", 0, row, None, pending=[1] * pending, fed=[1] * fed)
    return Run(0, ctx, ctx)


def test_the_longest_contexts_get_a_forward_of_their_own():
    ends = lambda groups: [[len(r.active.fed) + min(len(r.active.pending), 64) for r in g] for g in groups]  # noqa: E731
    runs = [run_of(10, 1, row) for row in range(9)] + [run_of(200, 1, 9)]
    assert ends(split_by_length(runs, 64, min_saving=1000)) == [[11] * 9, [201]]  # spares 10 x 201 - 9 x 11 - 201
    assert ends(split_by_length(runs, 64, min_saving=2000)) == [[11] * 9 + [201]]  # not worth a forward
    assert ends(split_by_length([run_of(50, 1, row) for row in range(5)], 64, min_saving=1)) == [[51] * 5]
    three = [run_of(n, 1, row) for row, n in enumerate([9] * 5 + [99] * 5 + [299] * 5)]  # each part split again
    assert ends(split_by_length(three, 64, min_saving=400)) == [[10] * 5, [100] * 5, [300] * 5]
    assert ends(split_by_length(three, 64, min_saving=1500)) == [[10] * 5 + [100] * 5, [300] * 5]
    # a prompt counts one chunk: 100 pending tokens add 64 slots to this forward's row
    prompts = [run_of(0, 100, 0), run_of(0, 10, 1), run_of(0, 10, 2)]
    assert ends(split_by_length(prompts, 64, min_saving=100)) == [[10, 10], [64]]
    # long rows between short ones: the ten rows are one slice, while a part with gaps is gathered at 9/8 a
    # row (model.in_place): a split spares 10 x 201 - 4.5 x 11 (the 4 short rows) - 6.75 x 201 (the 6 long) = 603.75
    between = [run_of(10 if row % 3 == 0 else 200, 1, row) for row in range(10)]
    assert len(split_by_length(between, 64, min_saving=603)) == 2
    assert len(split_by_length(between, 64, min_saving=604)) == 1
    # nine long rows with one short row among them: the long ones' forward reads it too, in place
    among = [run_of(10 if row == 4 else 200, 1, row) for row in range(10)]  # spares 10 x 201 - 11 - 10 x 201 < 0
    assert len(split_by_length(among, 64, min_saving=1)) == 1
    assert split_by_length([], 64, min_saving=1) == []


def test_rows_taking_in_few_tokens_are_not_padded_to_many():
    width = lambda run: min(len(run.active.pending), 64)  # noqa: E731
    widths = lambda groups: [[width(r) for r in g] for g in groups]  # noqa: E731
    returns, prompts = [run_of(90, 7, row) for row in range(3)], [run_of(0, 80, row) for row in range(3, 5)]
    assert widths(split_by_width(prompts + returns, width, min_saving=171)) == [[7] * 3, [64] * 2]  # 3 x 57 spared
    assert widths(split_by_width(prompts + returns, width, min_saving=172)) == [[7] * 3 + [64] * 2]
    three = [run_of(0, n, row) for row, n in enumerate([2, 2, 30, 30, 60])]
    assert widths(split_by_width(three, width, min_saving=50)) == [[2, 2], [30, 30], [60]]
    assert split_by_width([], width, min_saving=1) == []


@pytest.mark.parametrize("method", ["retuning", "scratchpad"])
def test_split_forwards_change_no_output(tok, method):
    """Contexts of mixed lengths, split into forwards at every saving, decode as one at a time."""
    forwards = []
    model = tiny_model(vocab_size=tok.n_words)
    problems = random_problems(random.Random(3), 6)
    limits = Limits(max_new_tokens=24)
    one = solve_problems(model, tok, "parity", method, problems, batch_size=1, limits=limits)
    for split_slots in (10**9, 1):  # never split, split at any saving
        forwards.append([])
        outcomes = solve_problems(Recording(model, forwards[-1]), tok, "parity", method, problems, batch_size=6,
                                  limits=limits, split_slots=split_slots)
        assert [(o.output, o.tokens, o.failure) for o in one] == [(o.output, o.tokens, o.failure) for o in outcomes]
    assert len(forwards[1]) > len(forwards[0])


def test_steered_real_model_recurses_the_same_batched(tok):
    """A real model steered along the gold calls: batched, its logits match one at a time (without
    guesses, whose forwards depend on the batch: test_guessing_ahead_changes_no_output checks them)."""
    problems = random_problems(random.Random(1), 5)
    runs = []
    for batch_size in (1, 3):
        model = oracle_model(tok, "parity", real=tiny_model(vocab_size=tok.n_words))
        outcomes = solve_problems(model, tok, "parity", "retuning", problems, batch_size, guesses=0)
        assert all(o.correct for o in outcomes)
        runs.append(([(o.output, o.tokens) for o in outcomes], model.seen))
    (out1, seen1), (out3, seen3) = runs
    assert out1 == out3
    key = lambda seen: sorted((tuple(h), tuple(x.tolist())) for h, x in seen)  # noqa: E731
    for (h1, x1), (h3, x3) in zip(key(seen1), key(seen3)):
        assert h1 == h3 and torch.allclose(torch.tensor(x1), torch.tensor(x3), atol=1e-4)


def test_cache_after_return_equals_full_forward(tok):
    real = tiny_model(vocab_size=tok.n_words)
    model = oracle_model(tok, "parity", real=real)
    solve_problems(model, tok, "parity", "retuning", [(1, 1, 0, 1), (0, 1), (1, 0, 0)], batch_size=3)
    after_return = [(h, x) for h, x in model.seen if tok.decode(h).endswith(tasks.ANSWER)]
    assert len(after_return) == 3 + 1 + 2  # one per call
    with torch.no_grad():
        for history, logits in after_return:
            full = real(torch.tensor([history]))[0, -1]  # (vocab,)
            torch.testing.assert_close(logits, full, atol=1e-4, rtol=0)


def test_bad_arguments(tok):
    model = oracle_model(tok, "parity")
    with pytest.raises(ValueError, match="batch_size"):
        solve_problems(model, tok, "parity", "retuning", [(1,)], batch_size=0)
    with pytest.raises(ValueError, match="unknown method"):
        solve_problems(model, tok, "parity", "chain", [(1,)])
    assert solve_problems(model, tok, "parity", "retuning", []) == []


def test_cache_pool_saves_a_paused_context_and_stops_at_its_budget():
    args = tiny_model().args
    pool = CachePool(args, "cpu", torch.float32, rows=2, length=64)
    row = pool.take()
    for k, v in zip(pool.cache.k, pool.cache.v):
        k[row].normal_(), v[row].normal_()
    pool.cache.lengths[row] = 5
    caller = [(k[row, :, :5].clone(), v[row, :, :5].clone()) for k, v in zip(pool.cache.k, pool.cache.v)]
    saved = pool.save(row, int(pool.cache.lengths[row]))
    assert pool.saved_bytes == pool.nbytes(1, 5)
    pool.cache.reset([row])  # a callee takes the row and writes over it
    for k, v in zip(pool.cache.k, pool.cache.v):
        k[row].normal_(), v[row].normal_()
    pool.fit(100, cap=1000)  # the rows grow meanwhile: what was asked, as 1.5 x 64 = 96 is short of it
    assert pool.cache.max_len == 100
    pool.fit(101, cap=1000)
    assert pool.cache.max_len == 150
    pool.restore(row, saved)
    assert pool.cache.lengths[row] == 5 and pool.saved_bytes == 0
    assert all(torch.equal(k[row, :, :5], ck) and torch.equal(v[row, :, :5], cv)
               for k, v, (ck, cv) in zip(pool.cache.k, pool.cache.v, caller))
    budget = pool.nbytes(2, 64) + pool.nbytes(1, 9)  # two rows of 64 and a saved context of 9 tokens
    tight = CachePool(args, "cpu", torch.float32, rows=2, length=64, max_bytes=budget)
    tight.cache.lengths[0] = 10
    with pytest.raises(CacheBudgetError, match="lower the batch size"):
        tight.save(0, int(tight.cache.lengths[0]))
    tight.cache.lengths[0] = 9
    tight.save(0, int(tight.cache.lengths[0]))
    with pytest.raises(CacheBudgetError, match="lower the batch size"):
        tight.fit(65, cap=1000)
    assert memory_budget("cpu") > 0  # this OS reports its memory
