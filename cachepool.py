"""cachepool.py: the recursive decoder's KV caches, a row per problem in flight, paused callers saved aside.

A companion to chapter 5 (recurse.py). A problem in flight keeps one row of a `model.KVCache` for its
active context. When that context calls, its filled slots are copied out, exactly as long as they
are, and copied back on the return, so memory follows the tokens held, not the deepest chain times
the longest context. Rows grow in length by half at a time, one layer at a time, and the whole
stops with a clear error before it would pass its memory budget.
"""
import os
from typing import Optional

import torch

from model import KVCache


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
    """The decoder's KV caches. Each problem in flight has a row of one KVCache (its lane) for its
    active context; a paused caller's filled slots are copied out and kept, exactly as long as it
    is, until its callee returns and they are copied back. So memory follows the tokens held (no
    row per context stretched to the longest), and the contexts of one forward mostly sit in
    rows close together, read in place (model.in_place). The lanes grow in length by half at a time (doubling would
    strand up to half of them), one layer at a time (the old layer is freed as the new one fills);
    lanes and saved caches together stop with a clear error before they would pass the budget."""

    def __init__(self, args, device, dtype, rows: int, length: int = 64, max_bytes: Optional[int] = None):
        self.args, self.device, self.dtype, self.max_bytes = args, device, dtype, max_bytes
        self.cache = KVCache(args, rows, length, device, dtype)
        self.free = list(range(rows - 1, -1, -1))  # pop() lends the lowest row first
        self.saved_bytes = 0  # held by the saved caches of paused contexts

    @property
    def rows(self) -> int:
        return len(self.cache.lengths)

    def take(self) -> int:
        return self.free.pop()  # the decoder never has more problems in flight than rows

    def give_back(self, row: int):
        self.free.append(row)

    def nbytes(self, rows: int, length: int, layers: Optional[int] = None) -> int:
        a = self.args
        return 2 * (layers or a.n_layers) * rows * a.kv_heads * length * a.head_dim * self.cache.k[0].element_size()

    def check_budget(self, length: int, extra: int):
        """Rows of `length` slots, the saved caches and `extra` bytes must fit the budget."""
        need = self.nbytes(self.rows, length) + self.saved_bytes + extra
        if self.max_bytes is not None and need > self.max_bytes:
            raise CacheBudgetError(
                f"the KV caches would grow to {self.rows} rows x {length} tokens and the paused contexts' "
                f"caches, {need / 2**30:.1f} GiB, over their budget of {self.max_bytes / 2**30:.1f} GiB (3/4 of "
                f"the RAM, or of a GPU's free memory): lower the batch size, the problems decoded together")

    def save(self, row: int, n: int) -> list:
        """Copy out the first n slots (the filled ones) of a row whose context pauses: its own cache,
        (k, v) per layer."""
        self.check_budget(self.cache.max_len, self.nbytes(1, n))
        self.saved_bytes += self.nbytes(1, n)
        return [(k[row, :, :n].clone(), v[row, :, :n].clone()) for k, v in zip(self.cache.k, self.cache.v)]

    def restore(self, row: int, saved: list):
        """Copy a paused context's cache back into a row, to go on from where it paused."""
        n = saved[0][0].shape[1]
        for (k, v), (saved_k, saved_v) in zip(zip(self.cache.k, self.cache.v), saved):
            k[row, :, :n], v[row, :, :n] = saved_k, saved_v
        self.cache.lengths[row] = n
        self.forget(saved)

    def forget(self, saved: list):
        self.saved_bytes -= self.nbytes(1, saved[0][0].shape[1])

    def fit(self, length: int, cap: int):
        """Make every lane at least `length` slots long: half as long again, but not past `cap`."""
        if length > self.cache.max_len:
            self.resize(max(length, min(self.cache.max_len * 3 // 2, cap)))

    def resize(self, length: int):
        cache, R, S = self.cache, self.rows, self.cache.max_len
        self.check_budget(length, self.nbytes(R, S, layers=1))  # and one old layer, while it is copied
        for i in range(self.args.n_layers):  # layer by layer: an old one is freed as soon as it is copied
            for layers in (cache.k, cache.v):
                new = torch.empty((R, self.args.kv_heads, length, self.args.head_dim),
                                  device=self.device, dtype=self.dtype)  # (rows, kv_heads, slots, head_dim)
                new[:, :, :S] = layers[i]  # each slot written once
                new[:, :, S:] = 0  # masked slots are read too: zeros, never NaN from garbage
                layers[i] = new
        cache.max_len = length
