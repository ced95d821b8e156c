"""recurse.py: the recursive decoder of Re-Tuning (the paper's Algorithm 1), batched, one cache per context.

Chapter 5. A Re-Tuned model solves a problem by writing a call line, "Call: <smaller problem>\\n".
The decoder then pauses that context, solves the call in a fresh context (which may call again),
and appends "Return: <its result>\\nAnswer: " to the caller, which goes on from there. Every
context owns a row of one growing `model.KVCache`, so after a return only the return's tokens
run through the caller; nothing is re-encoded. (The authors' code re-encodes the whole caller
after every return; `reencode=True` does that too, for bench/bench_recurse.py.)

Many problems decode together: each step runs the active context of every unfinished problem,
those taking in the one token just generated in one forward, those taking in a prompt or a
return in another (so a long chunk never pads the one-token rows).
Baseline and scratchpad use the same loop with calls turned off. train.py and eval.py call
`solve_problems`; the call/return protocol itself lives in tasks.py.

The price of never re-encoding is memory: a problem keeps the cache of every context on its
chain of calls (60 deep for parity 60), and all rows are as long as the longest, so the pool
holds about batch x depth x longest-context tokens. It grows by half at a time, and it stops
with a clear error before it would pass 3/4 of the RAM (of a GPU's free memory): then lower the
batch size.
"""
from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

import tasks
from model import KVCache


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


@dataclass(eq=False)
class Context:
    """The top prompt or one sub-call, with its own row of the cache pool."""

    prompt: str
    depth: int
    row: int
    parent: Optional[Context]
    pending: list  # tokens to run next: the prompt, a return, or the token just generated
    fed: list = field(default_factory=list)  # tokens already in the cache row
    step: list = field(default_factory=list)  # tokens generated in the current step
    generated: int = 0
    output: str = ""  # the text after the prompt: steps and returns
    parts: list = field(default_factory=list)  # output texts and child contexts in order (the trace)


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


def memory_budget(device) -> Optional[int]:
    """Bytes the cache pool may take, counting the layer being copied while it grows: 3/4 of a GPU's free
    memory (the weights are already on it), or of a CPU machine's RAM (None where the OS does not say)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] * 3 // 4
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 3 // 4
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows)
        return None


class CacheBudgetError(RuntimeError):
    """The cache pool would outgrow its memory budget."""


class CachePool:
    """Rows of one KVCache, lent to contexts and given back; it grows rows or length on demand,
    by half at a time (doubling would strand up to half of a pool that can reach gigabytes), one
    layer at a time (the old pool is freed as the new one fills: a peak of the new pool and one old layer)."""

    def __init__(self, args, device, dtype, rows: int, length: int = 64, max_bytes: Optional[int] = None):
        self.args, self.device, self.dtype, self.max_bytes = args, device, dtype, max_bytes
        self.cache = KVCache(args, rows, length, device, dtype)
        self.free = list(range(rows - 1, -1, -1))  # pop() lends the lowest row first

    @property
    def rows(self) -> int:
        return len(self.cache.lengths)

    def take(self) -> int:
        if not self.free:
            self.resize(self.rows + max(1, self.rows // 2), self.cache.max_len)
        row = self.free.pop()
        self.cache.reset([row])
        return row

    def give_back(self, row: int):
        self.free.append(row)

    def fit(self, length: int, cap: int):
        """Make every row at least `length` slots long: half as long again, but not past `cap`."""
        if length > self.cache.max_len:
            self.resize(self.rows, max(length, min(self.cache.max_len * 3 // 2, cap)))

    def nbytes(self, rows: int, length: int, layers: Optional[int] = None) -> int:
        a = self.args
        return 2 * (layers or a.n_layers) * rows * a.kv_heads * length * a.head_dim * self.cache.k[0].element_size()

    def resize(self, rows: int, length: int):
        cache, R, S = self.cache, self.rows, self.cache.max_len
        need = self.nbytes(rows, length) + self.nbytes(R, S, layers=1)  # the new pool and one old layer
        if self.max_bytes is not None and need > self.max_bytes:
            raise CacheBudgetError(
                f"the KV cache pool would grow to {rows} contexts x {length} tokens, {need / 2**30:.1f} GiB "
                f"while copying, over its budget of {self.max_bytes / 2**30:.1f} GiB (3/4 of the RAM, or of a GPU's "
                f"free memory): lower the batch size, the problems decoded together")
        for i in range(self.args.n_layers):  # layer by layer: an old one is freed as soon as it is copied
            for layers in (cache.k, cache.v):
                new = torch.empty((rows, self.args.kv_heads, length, self.args.head_dim),
                                  device=self.device, dtype=self.dtype)  # (rows, kv_heads, slots, head_dim)
                new[:R, :, :S] = layers[i]  # each slot written once
                new[:R, :, S:] = 0  # masked slots are read too: zeros, never NaN from garbage
                new[R:] = 0
                layers[i] = new
        cache.lengths = torch.cat([cache.lengths, cache.lengths.new_zeros(rows - R)])
        cache.max_len = length
        self.free = list(range(rows - 1, R - 1, -1)) + self.free


class Decoder:
    """Greedy decoding of many problems at once; with `recursive`, Re-Tuning's calls and returns."""

    def __init__(self, model, tokenizer, task: str, recursive: bool, limits: Limits,
                 reencode: bool = False, chunk: int = 64):
        self.model, self.tokenizer, self.task = model, tokenizer, task
        self.recursive, self.limits, self.reencode = recursive, limits, reencode
        self.chunk = chunk  # at most this many tokens of a prompt or return per forward: less padding
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.pool = None

    @torch.inference_mode()
    def solve(self, prompts: list, batch_size: int, progress: Optional[Callable] = None) -> list:
        """Runs for all prompts, `batch_size` problems in flight; a finished one makes room for the next."""
        self.pool = CachePool(self.model.args, self.device, self.dtype, rows=batch_size,
                              max_bytes=memory_budget(self.device))
        waiting, flying, finished = deque(enumerate(prompts)), [], [None] * len(prompts)
        while waiting or flying:
            while waiting and len(flying) < batch_size:
                index, prompt = waiting.popleft()
                top = self.open(prompt, 0, None)
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

    def open(self, prompt: str, depth: int, parent: Optional[Context]) -> Context:
        return Context(prompt, depth, self.pool.take(), parent, pending=self.tokenizer.encode(prompt))

    def check(self, run: Run):
        """Fail a run before its next tokens would break a size limit."""
        ctx, lim = run.active, self.limits
        if len(ctx.fed) + len(ctx.pending) > lim.max_context_tokens:
            self.fail(run, f"max_context_tokens: a context grew past {lim.max_context_tokens} tokens")
        elif run.tokens + len(ctx.pending) > lim.max_total_tokens:
            self.fail(run, f"max_total_tokens: the problem needed more than {lim.max_total_tokens} tokens")

    def step(self, runs: list):
        """Advance the active context of every run: contexts taking in one token (the one just
        generated) share one forward, contexts taking in a prompt or a return another, so one long
        chunk does not pad every one-token row to its length."""
        one = [run for run in runs if len(run.active.pending) == 1]
        many = [run for run in runs if len(run.active.pending) > 1]
        for group in (one, many):
            if group:
                self.forward(group)

    def forward(self, runs: list):
        """One forward over the active context of each run: each takes up to `chunk` pending tokens."""
        runs = sorted(runs, key=lambda run: run.active.row)  # consecutive rows are read in place
        contexts = [run.active for run in runs]
        chunks = [ctx.pending[: self.chunk] for ctx in contexts]
        T = max(map(len, chunks))
        # right padding is written past each row's end too, so every row needs T free slots
        longest = max(len(ctx.fed) for ctx in contexts)
        self.pool.fit(longest + T, cap=self.limits.max_context_tokens + self.chunk)
        tokens = torch.tensor([c + [0] * (T - len(c)) for c in chunks], device=self.device)  # (B, T)
        rows = torch.tensor([ctx.row for ctx in contexts], device=self.device)  # (B,)
        n_new = torch.tensor([len(c) for c in chunks], device=self.device)  # (B,)
        logits = self.model(tokens, self.pool.cache, rows=rows, n_new=n_new)  # (B, T, vocab)
        last = logits[torch.arange(len(runs), device=self.device), n_new - 1]  # (B, vocab)
        for run, ctx, chunk, token in zip(runs, contexts, chunks, last.argmax(-1).tolist()):
            ctx.fed += chunk
            del ctx.pending[: len(chunk)]
            run.tokens += len(chunk)
            if not ctx.pending:  # all of it is in: the last logits give the next token
                self.advance(run, token)

    def advance(self, run: Run, token: int):
        ctx = run.active
        if token == self.tokenizer.eos_id:  # never fed: the context is over
            return self.finish(run)
        ctx.step.append(token)
        ctx.pending = [token]  # fed with the next forward (or, after a call line, with the return)
        ctx.generated += 1
        run.generated += 1
        if ctx.generated > self.limits.max_new_tokens:
            return self.fail(run, f"max_new_tokens: a context generated more than "
                                  f"{self.limits.max_new_tokens} tokens")
        if self.recursive:
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
        child = self.open(prompt, parent.depth + 1, parent)
        parent.parts.append(child)
        run.active, run.depth = child, max(run.depth, child.depth)

    def finish(self, run: Run):
        """The active context hit EOS: return its result to the caller, or end the problem."""
        ctx = run.active
        self.end_step(ctx)
        self.pool.give_back(ctx.row)
        if ctx.parent is None:
            run.done = True
            return
        parent = run.active = ctx.parent
        text = tasks.return_text(tasks.child_result(ctx.output))
        parent.output += text
        parent.parts.append(text)
        if self.reencode:  # the authors' way: run the whole caller again from position 0
            self.pool.cache.reset([parent.row])
            parent.pending, parent.fed = parent.fed + parent.pending, []
        parent.pending += self.tokenizer.encode(text)  # after the call line's last token

    def fail(self, run: Run, reason: str):
        ctx = run.active
        if ctx.step:
            self.end_step(ctx)  # keep the partial step for the trace
        run.done, run.failure = True, reason
        for ctx in chain(ctx):
            self.pool.give_back(ctx.row)


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
                   reencode: bool = False) -> list:
    """Greedy outcomes of `problems`, `batch_size` decoded together. Re-Tuning recurses; the other
    methods generate plainly. `progress(1)` is called as each problem finishes."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    prompts = [tasks.inference_prompt(task, method, problem) for problem in problems]
    if not problems:
        return []
    decoder = Decoder(model, tokenizer, task, recursive=method == "retuning",
                      limits=limits or Limits.fitting(tokenizer, task, method, max(map(len, problems))),
                      reencode=reencode)
    runs = decoder.solve(prompts, batch_size, progress)
    return [outcome(task, method, problem, run) for problem, run in zip(problems, runs)]
