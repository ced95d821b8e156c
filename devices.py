"""devices.py: GPUs for train.py and eval.py: the precision of training, and several processes.

An appendix to chapters 4 and 6. On a GPU the frozen weights are bf16 but whatever trains stays
fp32 (`precision`). `torchrun --nproc_per_node N train.py ...` starts N copies of the script with
RANK, LOCAL_RANK and WORLD_SIZE set; each joins one process group (NCCL with one GPU per rank,
gloo on the CPU). Training splits every batch into contiguous shares and DistributedDataParallel
averages the gradients; evaluation splits the problems and gathers the outcomes on rank 0.
Without torchrun every function here is the one-process identity.
"""
import contextlib
import datetime
import functools
import os
from typing import Optional

import torch
import torch._dynamo  # noqa: F401  before any process group: see stop()
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def precision(full: bool, device, dtype) -> tuple:
    """(dtype to load the weights in, context for the forward). Trainable weights stay fp32: bf16
    rounds away any update below about 1/256 of a weight. LoRA trains fp32 adapters over the base
    in `dtype`; full tuning trains fp32 weights and runs the forward under autocast to `dtype`."""
    if not full or dtype == torch.float32:
        return dtype, contextlib.nullcontext
    return torch.float32, functools.partial(torch.autocast, device.type, dtype=dtype)


# ---- several processes under torchrun ----

def start(device: Optional[str]) -> Optional[str]:
    """Join the process group if torchrun started this process. Returns this process's device:
    cuda:LOCAL_RANK on a GPU machine; alone, the one asked for."""
    if "RANK" not in os.environ:
        return device
    if torch.cuda.is_available() and not (device or "cuda").startswith("cpu"):
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
        torch.cuda.set_device(device)
    # train.py's rank 0 alone evaluates held-out problems while the others wait: allow it an hour
    dist.init_process_group("nccl" if (device or "").startswith("cuda") else "gloo",
                            timeout=datetime.timedelta(hours=1))
    return device or "cpu"


def stop():
    """Leave the group; its gloo threads end here, not during the interpreter's exit, where one still
    releasing a tensor aborts the process. (Imported after the group exists, torch._dynamo, which
    loading a model imports, keeps references to it that outlive destroy_process_group.)"""
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_world() -> tuple:
    """(this process's rank, number of processes): (0, 1) without torchrun."""
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def data_parallel(model, device):
    """The model under DistributedDataParallel, which averages the gradients over the ranks
    during backward; alone, the model itself."""
    if not dist.is_initialized():
        return model
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def barrier():
    if dist.is_initialized():
        dist.barrier()


def share(items: list, rank: int, world: int) -> list:
    """This rank's contiguous share of a batch; the shares differ by at most one item."""
    return items[rank * len(items) // world:(rank + 1) * len(items) // world]


def sums(values: list, device) -> list:
    """Each number summed over the ranks, in one all_reduce."""
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def rng_states(world: int):
    """Every rank's CPU RNG state, one row each (dropout masks differ by rank), for a resume."""
    if world == 1:
        return torch.get_rng_state()[None]
    states = [None] * world
    dist.all_gather_object(states, torch.get_rng_state())
    return torch.stack(states)


def gather_interleaved(mine: list, rank: int, world: int) -> Optional[list]:
    """Rank 0: every rank's results of items[rank::world] put back in the items' order; others: None."""
    if world == 1:
        return mine
    parts = [None] * world if rank == 0 else None
    dist.gather_object(mine, parts, dst=0)
    if rank != 0:
        return None
    merged = [None] * sum(len(p) for p in parts)
    for r, part in enumerate(parts):
        merged[r::world] = part
    return merged
