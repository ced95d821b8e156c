"""recurse.py: the recursive decoder of Re-Tuning (the paper's Algorithm 1), batched, one cache per context.

Chapter 5. A Re-Tuned model solves a problem by writing a call line, "Call: <smaller problem>\\n".
The decoder then pauses that context, solves the call in a fresh context (which may call again),
and appends "Return: <its result>\\nAnswer: " to the caller, which goes on from there. Every
context has its own KV cache: the active one in its problem's row of one `model.KVCache`, a
paused caller's copied out beside it until the return, so after a return only the return's
tokens run through the caller; nothing is re-encoded. (The authors' code re-encodes the whole
caller after every return; `reencode=True` does that too, for bench/bench_recurse.py.)

Many problems decode together: each step is one pass of the model (`model.decode`) over the active
context of every unfinished problem. The weights run once over all their tokens; attention runs in
groups: the contexts taking in the one token just generated, those of them that guess ahead, and
those taking in a prompt or a return (so a long chunk never pads a one-token row). Under Re-Tuning a
context guesses its next few tokens by copying its own earlier text or its caller's (`Lookup`: a call
line restates its caller's problem), more of them while a copy holds, and feeds them after its token;
the model's picks keep the guesses that were right, so the outputs are greedy decoding's, in fewer
steps. Every row of a group takes in as many tokens as its widest row, and attention reads it up to
the group's longest context, so the groups are split by both where that spares more than a group
costs (`split_by_width`, `split_by_length`).
Baseline and scratchpad use the same loop with calls turned off. train.py and eval.py call
`solve_problems`; the call/return protocol itself lives in tasks.py.

The price of never re-encoding is memory: a problem keeps the cache of every context on its
chain of calls (60 deep for parity 60), each as long as its own tokens (cachepool.py keeps them).
The caches stop with a clear error before they would pass 3/4 of the RAM (of a GPU's free memory):
then lower the batch size.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Callable, Optional

import torch

import tasks
from cachepool import CachePool, memory_budget
from model import GATHER_COST


@dataclass
class Limits:
    """Guards: a problem that breaks one ends as wrong, with the reason; never a crash or a hang.
    The defaults leave room for parity 60, addition 60 and DP 24, by Re-Tuning (contexts of a few
    hundred tokens, up to 60 deep) and by scratchpad (one context of over 2000 tokens)."""

    max_depth: int = 100  # calls nested below the top context
    max_calls: int = 500  # calls per problem (DP of size n makes 2n)
    max_new_tokens: int = 3072  # tokens one context may generate, over all its steps
    max_context_tokens: int = 4096  # tokens one context may hold: its cache row's length
    max_total_tokens: int = 100_000  # tokens run through the model per problem

    @classmethod
    def fitting(cls, tokenizer, task: str, method: str, size: int, slack: float = 2.0):
        """Room for `slack` times the longest gold sequence of this size: a model that never
        stops is cut off soon after it has gone wrong, not thousands of tokens later."""
        longest = tasks.longest_sequence(task, method, size, lambda s: len(tokenizer.encode(s)), samples=8)
        return cls(max_new_tokens=int(slack * longest) + 16)


@dataclass
class Outcome:
    output: str  # what the top context wrote after its prompt (returned values included)
    answer: object  # the answer parsed from output; None if malformed
    correct: bool
    failure: Optional[str]  # the guard that ended the problem, or a malformed call; None if it finished
    trace: str  # the call tree: every context's prompt and output, indented by depth
    tokens: int  # tokens run through the model: prompts, returns, generated tokens
    generated: int  # tokens the model generated, over all contexts
    calls: int
    depth: int  # deepest nesting reached (0: no call)


class Lookup:
    """Prompt lookup (Saxena 2023, "Prompt Lookup Decoding"): guess that a context goes on the way
    it went on after the first earlier occurrence of its last `n` tokens, and keep copying from there
    while the copy holds. Re-Tuning copies a lot: a call line restates its caller's problem, one
    step smaller, and a sub-call starts out as its caller did ("Solution: Call: ..."), so a context
    with nothing of its own to copy yet copies its caller's text (`caller`, that context's Lookup).
    The model checks each guess in the forward that feeds it (Decoder.take), so the outputs are
    greedy decoding's; a right guess only spares a forward."""

    stretch = 4  # a copy that has held for k tokens is trusted with 4k: a restated list goes faster

    def __init__(self, n: int = 3, caller: Optional[Lookup] = None):
        self.n, self.tokens, self.caller = n, [], caller  # tokens: every token the context has queued
        self.first = {}  # n tokens -> the index of the token after their first occurrence
        self.at = None  # the index of the token the copy being followed says comes next, if any
        self.held = 0  # tokens in a row that came as the copy said

    def extend(self, tokens: list):
        for token in tokens:
            follows = self.at is not None and self.tokens[self.at] == token
            self.held = self.held + 1 if follows else 0
            self.tokens.append(token)
            if len(self.tokens) > self.n:
                self.first.setdefault(tuple(self.tokens[-self.n - 1:-1]), len(self.tokens) - 1)
            self.at = self.at + 1 if follows else self.first.get(tuple(self.tokens[-self.n:]))

    def guess(self, k: int) -> list:
        """Up to k tokens, or up to stretch * k once the copy has held for k."""
        if self.at is not None:
            return self.tokens[self.at:self.at + (self.stretch * k if self.held >= k else k)]
        at = self.caller.first.get(tuple(self.tokens[-self.n:])) if self.caller else None
        return [] if at is None else self.caller.tokens[at:at + k]


@dataclass(eq=False)
class Context:
    """The top prompt or one sub-call. While active it is in its problem's row of the cache pool;
    while paused on a call, `saved` holds its own cache."""

    prompt: str
    depth: int
    row: int
    parent: Optional[Context]
    pending: list  # tokens to run next: the prompt, a return, or the token just generated
    fed: list = field(default_factory=list)  # tokens already in its cache
    saved: Optional[list] = None  # its cache, (k, v) per layer, while a callee has the row
    step: list = field(default_factory=list)  # tokens generated in the current step
    generated: int = 0
    output: str = ""  # the text after the prompt: steps and returns
    parts: list = field(default_factory=list)  # output texts and child contexts in order (the trace)
    lookup: Optional[Lookup] = None  # its tokens so far, to guess the next ones (if the decoder guesses)

    def queue(self, tokens: list):
        """Tokens to run next, in the order the context reads them."""
        self.pending += tokens
        if self.lookup is not None:
            self.lookup.extend(tokens)


@dataclass(eq=False)
class Run:
    """One problem being solved: its live contexts are a chain from `top` down to `active`."""

    index: int
    top: Context
    active: Context
    done: bool = False
    failure: Optional[str] = None
    tokens: int = 0
    generated: int = 0
    calls: int = 0
    depth: int = 0


class Decoder:
    """Greedy decoding of many problems at once; with `recursive`, Re-Tuning's calls and returns."""

    def __init__(self, model, tokenizer, task: str, recursive: bool, limits: Limits,
                 reencode: bool = False, chunk: int = 64, split_slots: int = 2048, split_tokens: int = 8,
                 guesses: int = 0):
        self.model, self.tokenizer, self.task = model, tokenizer, task
        self.recursive, self.limits, self.reencode = recursive, limits, reencode
        self.chunk = chunk  # at most this many tokens of a prompt or return per step: less padding
        # contexts of very different lengths go in separate attention groups when that spares reading this
        # many cache slots (rows x slots): about what a group's own attention calls cost on this CPU
        # (docs/RESULTS.md section 7); a GPU reads faster, so there a larger value fits (outputs are the same)
        self.split_slots = split_slots
        # and contexts taking in very different numbers of tokens when that spares padding this many: a
        # padded token costs about 58 us through the weights here, a group's attention calls some 8 tokens
        self.split_tokens = split_tokens
        if not 0 <= guesses * Lookup.stretch < chunk:  # a guess and its sure token fit a chunk
            raise ValueError(f"guesses must be from 0 to {(chunk - 1) // Lookup.stretch} (a long copy's guesses "
                             f"are {Lookup.stretch} times as many, under chunk={chunk}), got {guesses}")
        self.guesses = guesses  # tokens each context may guess ahead per step (its Lookup), 0: none
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.pool = None
        # a call line ends with a token whose text ends the line: only then is the step decoded to look for it
        self.line_ends = {i for i in range(tokenizer.n_words) if tokenizer.decode([i]).endswith(tasks.CALL_END)}

    @torch.inference_mode()
    def solve(self, prompts: list, batch_size: int, progress: Optional[Callable] = None) -> list:
        """Runs for all prompts, `batch_size` problems in flight; a finished one makes room for the next."""
        self.pool = CachePool(self.model.args, self.device, self.dtype, rows=min(batch_size, len(prompts)),
                              max_bytes=memory_budget(self.device))
        waiting, flying, finished = deque(enumerate(prompts)), [], [None] * len(prompts)
        while waiting or flying:
            while waiting and len(flying) < batch_size:
                index, prompt = waiting.popleft()
                top = self.open(prompt, 0, None, self.pool.take())
                flying.append(Run(index, top, top))
            for run in flying:
                self.check(run)
            live = [run for run in flying if not run.done]
            if live:
                self.step(live)
            for run in flying:
                if run.done:
                    finished[run.index] = run
                    if progress:
                        progress(1)
            flying = [run for run in flying if not run.done]
        self.pool = None  # the caches are freed with it
        return finished

    def open(self, prompt: str, depth: int, parent: Optional[Context], row: int) -> Context:
        self.pool.cache.reset([row])
        lookup = Lookup(caller=parent.lookup if parent else None) if self.guesses else None
        ctx = Context(prompt, depth, row, parent, pending=[], lookup=lookup)
        ctx.queue(self.tokenizer.encode(prompt))
        return ctx

    def check(self, run: Run):
        """Fail a run before its next tokens would break a size limit."""
        ctx, lim = run.active, self.limits
        if len(ctx.fed) + len(ctx.pending) > lim.max_context_tokens:
            self.fail(run, f"max_context_tokens: a context grew past {lim.max_context_tokens} tokens")
        elif run.tokens + len(ctx.pending) > lim.max_total_tokens:
            self.fail(run, f"max_total_tokens: the problem needed more than {lim.max_total_tokens} tokens")

    def step(self, runs: list):
        """Advance the active context of every run, in one pass of the model. Contexts taking in one
        token (the one just generated) share an attention group, those of them that guess ahead another,
        and contexts taking in a prompt or a return a third, so a long chunk never pads a one-token row;
        each group is split again by the tokens its rows take in and by their lengths, where that spares
        more than it costs."""
        one = [run for run in runs if len(run.active.pending) == 1]
        many = [run for run in runs if len(run.active.pending) > 1]
        guesses = self.guesses_of(one)
        plain = [run for run in one if run not in guesses]

        def width(run):  # the tokens it takes in this step
            return min(len(run.active.pending), self.chunk) + len(guesses.get(run, []))

        parts = [part for group in (plain, list(guesses), many)
                 for same_width in split_by_width(group, width, self.split_tokens)
                 for part in split_by_length(same_width, self.chunk, self.split_slots)]
        self.forward(parts, guesses)

    def guesses_of(self, runs: list) -> dict:
        """{run: its guess} for the one-token runs whose Lookup has one: they form a group of their own.
        A guess stops at a line's end: after a call line the context pauses, and the rest would be wasted."""
        guesses = {}
        for run in runs if self.guesses else []:
            guess = run.active.lookup.guess(self.guesses)
            end = next((i + 1 for i, token in enumerate(guess) if token in self.line_ends), len(guess))
            if guess:
                guesses[run] = guess[:end]
        return guesses

    def forward(self, parts: list, guesses: dict):
        """One pass of the model (model.decode) over the active context of each run, a group per part:
        each takes up to `chunk` pending tokens, then its guesses, if it has any."""
        tokens, rows, n_new, first, feeds, longest = [], [], [], [], [], 0
        for part in parts:
            part = sorted(part, key=lambda run: run.active.row)  # rows close together are read in place
            sure = [run.active.pending[: self.chunk] for run in part]
            chunks = [c + guesses.get(run, []) for run, c in zip(part, sure)]
            T = max(map(len, chunks))
            # right padding is written past each row's end too, so every row needs its group's T free slots
            longest = max(longest, max(len(run.active.fed) for run in part) + T)
            tokens.append(torch.tensor([c + [0] * (T - len(c)) for c in chunks], device=self.device))  # (B_i, T_i)
            rows.append(torch.tensor([run.active.row for run in part], device=self.device))  # (B_i,)
            # the lengths move past the sure tokens only: a guess's slot is filled, but counts once it proves right
            n_new.append(torch.tensor([len(c) for c in sure], device=self.device))  # (B_i,)
            first.append(min(map(len, sure)) - 1)  # logits are wanted from each row's last sure token on
            feeds += [(run, chunk, len(c), first[-1]) for run, chunk, c in zip(part, chunks, sure)]
        self.pool.fit(longest, cap=self.limits.max_context_tokens + self.chunk)
        logits = self.model.decode(tokens, self.pool.cache, rows, n_new, first)  # (B_i, T_i - first_i, vocab) each
        picks = [row for x in logits for row in x.argmax(-1).tolist()]  # the model's next token after each position
        took = []
        for (run, chunk, n, lo), pick in zip(feeds, picks):
            ctx = run.active
            ctx.fed += chunk[:n]
            del ctx.pending[:n]
            run.tokens += n
            if not ctx.pending and self.take(run, chunk[n:], pick[n - 1 - lo:]):  # the last sure logits: the next token
                took.append((ctx.row, len(ctx.fed)))
        if took:  # slots past a row's length are never read; the next token overwrites them
            rows, lengths = (torch.tensor(x, device=self.device) for x in zip(*took))
            self.pool.cache.lengths[rows] = lengths

    def take(self, run: Run, guess: list, picks: list) -> bool:
        """Advance by picks[0], the model's token after the last sure one; while the guess fed after that
        was the model's own pick, by its pick after the guess too. True if a guessed token was taken and
        the context is still active (its row's length must then move past it)."""
        ctx = run.active
        for i, token in enumerate(picks[: len(guess) + 1]):
            self.advance(run, token)
            if run.done or run.active is not ctx:  # its end, a call, or a guard
                return False
            if i == len(guess) or token != guess[i]:  # the guesses after a wrong one saw the wrong token
                return i > 0
            self.check(run)  # the guards, as the next step would check them before feeding the token
            if run.done:
                return False
            ctx.fed += ctx.pending  # the guess was right: the token is in its slot already
            ctx.pending = []
            run.tokens += 1
        raise AssertionError("picks must cover every guess")

    def advance(self, run: Run, token: int):
        ctx = run.active
        if token == self.tokenizer.eos_id:  # never fed: the context is over
            return self.finish(run)
        ctx.step.append(token)
        ctx.queue([token])  # fed with the next forward (or, after a call line, with the return)
        ctx.generated += 1
        run.generated += 1
        if ctx.generated > self.limits.max_new_tokens:
            return self.fail(run, f"max_new_tokens: a context generated more than "
                                  f"{self.limits.max_new_tokens} tokens")
        if self.recursive and token in self.line_ends:
            sub_prompt = tasks.find_call(self.tokenizer.decode(ctx.step))
            if sub_prompt is not None:
                self.call(run, sub_prompt)

    def end_step(self, ctx: Context):
        text = self.tokenizer.decode(ctx.step)
        ctx.step = []
        ctx.output += text
        ctx.parts.append(text)

    def call(self, run: Run, sub_prompt: str):
        """Pause the active context after its call line; its child becomes the active context."""
        parent, lim = run.active, self.limits
        self.end_step(parent)
        if tasks.parse_prompt(self.task, sub_prompt) is None:
            return self.fail(run, f"malformed call: {sub_prompt[:200]!r}")
        if run.calls >= lim.max_calls:
            return self.fail(run, f"max_calls: more than {lim.max_calls} calls")
        if parent.depth >= lim.max_depth:
            return self.fail(run, f"max_depth: calls nested deeper than {lim.max_depth}")
        prompt = tasks.child_prompt(sub_prompt)
        if any(ctx.prompt == prompt for ctx in chain(parent)):
            # greedy decoding is deterministic: that context would replay, calling this one again
            return self.fail(run, f"cycle: a call repeats a problem already on its chain: {sub_prompt[:200]!r}")
        run.calls += 1
        parent.saved = self.pool.save(parent.row, len(parent.fed))  # the callee takes over the row
        child = self.open(prompt, parent.depth + 1, parent, parent.row)
        parent.parts.append(child)
        run.active, run.depth = child, max(run.depth, child.depth)

    def finish(self, run: Run):
        """The active context hit EOS: return its result to the caller, or end the problem."""
        ctx = run.active
        self.end_step(ctx)
        if ctx.parent is None:
            self.pool.give_back(ctx.row)
            run.done = True
            return
        parent = run.active = ctx.parent
        text = tasks.return_text(tasks.child_result(ctx.output))
        parent.output += text
        parent.parts.append(text)
        if self.reencode:  # the authors' way: run the whole caller again from position 0
            self.pool.forget(parent.saved)
            self.pool.cache.reset([parent.row])
            parent.pending, parent.fed = parent.fed + parent.pending, []
        else:
            self.pool.restore(parent.row, parent.saved)
        parent.saved = None
        parent.queue(self.tokenizer.encode(text))  # after the call line's last token

    def fail(self, run: Run, reason: str):
        ctx = run.active
        if ctx.step:
            self.end_step(ctx)  # keep the partial step for the trace
        run.done, run.failure = True, reason
        for ctx in chain(ctx.parent):
            self.pool.forget(ctx.saved)
            ctx.saved = None
        self.pool.give_back(run.active.row)


def split_by_width(runs: list, width: Callable, min_saving: int) -> list:
    """The runs of one forward in groups by the tokens each takes in (`width`), fewest first: a group is
    cut in two where its two parts then take in at least `min_saving` fewer tokens, padding included,
    than the whole group would (every row padded to its widest); and each part again, as long as that holds."""
    runs = sorted(runs, key=width)
    if len(runs) < 2:
        return [runs] if runs else []
    widths = [width(run) for run in runs]
    saving, k = max((k * (widths[-1] - widths[k - 1]), k) for k in range(1, len(runs)))
    if saving < min_saving:
        return [runs]
    return split_by_width(runs[:k], width, min_saving) + split_by_width(runs[k:], width, min_saving)


def split_by_length(runs: list, chunk: int, min_saving: int) -> list:
    """The runs of one step in groups, one forward each, shortest contexts first: a group is cut in
    two where its two parts then read at least `min_saving` fewer cache slots (rows x slots) than
    the whole group, padded to its longest context, would; and each part again, as long as that holds."""
    def end(run):  # its context's length after this forward
        return len(run.active.fed) + min(len(run.active.pending), chunk)
    runs = sorted(runs, key=end)
    if len(runs) < 2:
        return [runs] if runs else []
    ends, rows = [end(run) for run in runs], [run.active.row for run in runs]

    def read(n, lo, hi, S):  # n rows in lo..hi, as model.in_place reads them: the slice, or a gather
        return min(hi - lo + 1, GATHER_COST * n) * S

    low, high = list(accumulate(rows, min)), list(accumulate(rows, max))  # of the k shortest
    low_after, high_after = (list(accumulate(rows[::-1], f))[::-1] for f in (min, max))  # of the rest
    B = len(runs)
    parts, k = min((read(k, low[k - 1], high[k - 1], ends[k - 1]) +
                    read(B - k, low_after[k], high_after[k], ends[-1]), k) for k in range(1, B))
    if read(B, low[-1], high[-1], ends[-1]) - parts < min_saving:
        return [runs]
    return split_by_length(runs[:k], chunk, min_saving) + split_by_length(runs[k:], chunk, min_saving)


def chain(ctx: Optional[Context]):
    """A context and its callers, up to the top."""
    while ctx is not None:
        yield ctx
        ctx = ctx.parent


def render_trace(run: Run) -> str:
    """Each context's prompt and output, a child's lines indented under its caller's call line."""
    lines = []

    def emit(text: str, indent: str):
        if text:
            lines.extend(indent + line for line in text.removesuffix("\n").split("\n"))

    def walk(ctx: Context, indent: str):
        text = ctx.prompt
        for part in ctx.parts:
            if isinstance(part, Context):
                emit(text, indent)
                walk(part, indent + "    ")
                text = ""
            else:
                text += part
        emit(text, indent)

    walk(run.top, "")
    if run.failure:
        lines.append(f"!! {run.failure}")
    return "\n".join(lines)


def outcome(task: str, method: str, problem, run: Run) -> Outcome:
    output = run.top.output
    return Outcome(
        output=output, answer=tasks.parse_answer(task, method, output),
        correct=run.failure is None and tasks.is_correct(task, method, problem, output),
        failure=run.failure, trace=render_trace(run), tokens=run.tokens, generated=run.generated,
        calls=run.calls, depth=run.depth)


def solve_problems(model, tokenizer, task: str, method: str, problems: list, batch_size: int = 32,
                   limits: Optional[Limits] = None, progress: Optional[Callable] = None,
                   reencode: bool = False, split_slots: int = 2048, guesses: Optional[int] = None) -> list:
    """Greedy outcomes of `problems`, `batch_size` decoded together. Re-Tuning recurses; the other
    methods generate plainly. `progress(1)` is called as each problem finishes. `guesses`: tokens a
    context may guess ahead per step; by default 4 for Re-Tuning, whose call lines copy their caller's
    problem, and none for the others, whose long scratchpads measured slower with guesses (docs/RESULTS.md
    section 7). Outputs are the same either way."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    prompts = [tasks.inference_prompt(task, method, problem) for problem in problems]
    if not problems:
        return []
    decoder = Decoder(model, tokenizer, task, recursive=method == "retuning",
                      limits=limits or Limits.fitting(tokenizer, task, method, max(map(len, problems))),
                      reencode=reencode, split_slots=split_slots,
                      guesses=(4 if method == "retuning" else 0) if guesses is None else guesses)
    runs = decoder.solve(prompts, batch_size, progress)
    return [outcome(task, method, problem, run) for problem, run in zip(problems, runs)]
