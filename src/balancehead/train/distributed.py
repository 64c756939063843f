"""Process groups: one process (CPU or one GPU), torchrun DDP, or SLURM srun tasks.

Where the ranks come from, in order:
1. torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT: use them.
2. srun with several tasks sets SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID: use them, with
   MASTER_ADDR from the environment or SLURM_LAUNCH_NODE_IPADDR, MASTER_PORT from the env or 29500.
3. Otherwise this is a single process; when `train.distributed.nproc_per_node` > 1 the stage
   relaunches itself as `python -m torch.distributed.run --nproc_per_node N [--nnodes ...] -m balancehead
   run train` (see `relaunch_command`), so the command stays `balancehead run train` everywhere.

Gradients are averaged by an explicit all-reduce after the accumulation rounds (as EG3D does), not by
a DDP wrapper: phases touch different parts of G (density regularisation skips the super-resolution),
which a DDP wrapper would flag as unused parameters.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def from_env(env=os.environ) -> DistInfo:
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistInfo(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env and "SLURM_STEP_ID" in env:
        return DistInfo(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)))
    return DistInfo()


def init_process_group(info: DistInfo, backend: str, device: torch.device) -> None:
    if not info.distributed or dist.is_initialized():
        return
    os.environ.setdefault("MASTER_ADDR", os.environ.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1"))
    os.environ.setdefault("MASTER_PORT", "29500")
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=info.rank, world_size=info.world_size)


def relaunch_command(nproc_per_node: int, args: list[str], env=os.environ) -> list[str]:
    """torchrun command that reruns this stage with `nproc_per_node` workers (multi-node under SLURM)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc_per_node}"]
    nnodes = int(env.get("SLURM_NNODES", env.get("SLURM_JOB_NUM_NODES", "1")))
    if nnodes > 1:
        host = env.get("MASTER_ADDR") or env.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1")
        cmd += [f"--nnodes={nnodes}", f"--node_rank={env.get('SLURM_NODEID', '0')}",
                f"--master_addr={host}", f"--master_port={env.get('MASTER_PORT', '29500')}"]
    else:
        cmd += ["--standalone"]
    return cmd + ["-m", "balancehead"] + list(args)


def all_reduce_grads(params: list[torch.nn.Parameter], info: DistInfo) -> None:
    """Sum gradients over ranks in one flat buffer (rounds already scaled by their global share)."""
    if not info.distributed:
        return
    # Parameters a phase does not reach have no gradient on any rank (every rank runs the same graph);
    # leave them None, as in one process, so Adam does not move them by momentum alone.
    params = [p for p in params if p.grad is not None]
    if not params:
        return
    flat = torch.cat([p.grad.flatten() for p in params])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p))
        offset += n


class StopPoll:
    """All ranks agree whether to stop (a preemption signal reached any of them) without a host sync per step.

    One process: the flag itself. Several on CPU (gloo): a blocking MAX all-reduce. Several on CUDA:
    each call starts a MAX all-reduce of this step's flag, copies it into pinned host memory
    asynchronously, and returns the agreed value of the *previous* call, waiting only for that earlier
    copy's event. Every rank reads the same step's value, so all stop after the same step (one later
    than the signal)."""

    def __init__(self, info: DistInfo, device: torch.device):
        self.info, self.device = info, device
        self.lagged = info.distributed and device.type == "cuda"
        self._pending = None                    # (pinned host tensor, event) of the previous call

    def poll(self, flag: bool) -> bool:
        if not self.info.distributed:
            return flag
        t = torch.full((1,), 1.0 if flag else 0.0, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        if not self.lagged:
            return bool(t.item() > 0)
        host = torch.empty(1, pin_memory=True)
        host.copy_(t, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        previous, self._pending = self._pending, (host, event)
        if previous is None:
            return False
        previous[1].synchronize()
        return bool(previous[0].item() > 0)


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when `flag` is true on any. One host read: for use outside training steps only
    (after an evaluation, at a checkpoint), never per step (StopPoll is the per-step form)."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()
