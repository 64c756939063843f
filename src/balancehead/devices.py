"""The one device picker (a leaf): `auto` takes CUDA when torch sees it; `cuda` without CUDA is an error,
never a silent fallback to the CPU. Also the thread policy of the stages that optimise (reproducible_threads)."""
from __future__ import annotations

from contextlib import contextmanager

import torch


def pick_device(name: str, index: int | None = None) -> torch.device:
    """`name` is auto / cpu / cuda (or cuda:N); `index` picks the local GPU of a distributed rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device '{name}' requested but torch sees no CUDA device; "
                               "set the device to cpu or auto")
        if index is not None and name == "cuda":
            return torch.device("cuda", index)
    return torch.device(name)


def configure_cuda(device: torch.device, cudnn_benchmark: bool, tf32: bool) -> None:
    """The CUDA backend settings of a stage that trains, as EG3D's training loop sets them: cuDNN times its
    convolution algorithms per new shape and keeps the fastest (`cudnn_benchmark`), and TF32 tensor cores
    stay off in convolutions and matmuls unless `tf32` (torch's own default lets convolutions use TF32).
    Process-wide flags of torch, so set once where a stage picks its device; nothing on a CPU."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
    torch.backends.cudnn.allow_tf32 = bool(tf32)
    torch.backends.cuda.matmul.allow_tf32 = bool(tf32)


@contextmanager
def reproducible_threads(device: torch.device):
    """Run a block that optimises (a backward pass) on `device` so that its result does not depend on the
    thread count: on the CPU with ONE torch intra-op thread, restored afterwards; on CUDA unchanged.

    Measured (torch 2.14 CPU, MKL 2024.2, oneDNN 3.12): oneDNN's convolution weight gradient and MKL's
    GEMM for some shapes (e.g. the decoder's (33, 3072) x (3072, 16) weight gradient) split their sums by
    thread count, so `workflow.threads: 2` gave other PTI deltas and other generator gradients than 1.
    Forward-only stages measured thread-invariant (sample_prior's outputs at 1/2/4 threads, CLIP features).
    `workflow.threads` promises never to change outputs, so the optimising stages trade intra-op
    parallelism on the CPU for that promise (GPU runs are unaffected)."""
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
