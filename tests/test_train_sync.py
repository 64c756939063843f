"""No host synchronisation inside a training step (issue 10).

CPU: every Python-level way of reading a tensor back to the host (`.item()`, `.cpu()`, `.tolist()`,
`.numpy()`, `bool/float/int/index` of a tensor) is counted during several steps that run every phase
(R1 and density every step, ADA adjusting every step, ViCiCo, camera swap): there must be none.
CUDA (skipped without a GPU): the same steps under `torch.cuda.set_sync_debug_mode("error")`, which
raises on any synchronising CUDA call (blocking copies either way, stream/device synchronise).
Also on CPU, for what the CUDA test alone would find only on a GPU: no ATen call in a step reads the
device from C++ (`_local_scalar_dense`) or has a data-dependent output size, and no autograd node in
a step's graphs has a CUDA backward that reads the device (cumprod's in the GPU images' torch 2.11).
Also: the statistics a step returns stay on the device, and tick statistics are read in one transfer.
"""
from __future__ import annotations

import collections
import traceback

import pytest
import torch

from torch.utils._python_dispatch import TorchDispatchMode

from balancehead.train.loop import Trainer
from balancehead.train.params import TrainParams
from balancehead.train.stats import TickStats
from balancehead.train.stream import BatchStream, make_loader

from train_fixtures import make_dataset

READS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("packed"))


def every_phase(mode: str, **kw) -> TrainParams:
    return TrainParams(batch=4, batch_gpu=2, total_kimg=0.008, kimg_per_tick=0.004, eval={"num_images": 8},
                       model={"n_coarse": 4, "n_importance": 4}, conditioning={"mode": mode, "swap_fade_kimg": 1},
                       loss={"r1_interval": 1, "density_reg_every": 1, "blur_init_sigma": 1.0},
                       augment={"enabled": True, "p_init": 0.3, "adjust_every": 1}, **kw)


class ReadCounter:
    """Patch torch.Tensor's host-read methods; record where each call came from."""

    def __init__(self):
        self.calls = collections.Counter()
        self._orig = {}

    def __enter__(self):
        for name in READS:
            orig = self._orig[name] = getattr(torch.Tensor, name)

            def counted(t, *a, _name=name, _orig=orig, **k):
                frame = traceback.extract_stack(limit=3)[0]
                self.calls[f"{_name} at {frame.filename}:{frame.lineno}"] += 1
                return _orig(t, *a, **k)
            setattr(torch.Tensor, name, counted)
        return self

    def __exit__(self, *exc):
        for name, orig in self._orig.items():
            setattr(torch.Tensor, name, orig)
        return False


# ATen ops that synchronise with the host on CUDA whoever calls them: C++ `.item()`, data-dependent
# output sizes, boolean answers.
SYNCING_OPS = {"_local_scalar_dense", "index with a boolean mask", "nonzero", "nonzero_static", "masked_select", "masked_scatter", "_unique",
               "_unique2", "unique_dim", "unique_consecutive", "repeat_interleave", "bincount", "histc",
               "embedding_dense_backward", "equal", "is_nonzero", "allclose"}
# Autograd nodes whose CUDA backward reads the device in a torch the project runs on.
SYNCING_BACKWARDS = {
    "CumprodBackward0": "asks `(input == 0).any().item()` in ATen versions before the pinned one",
    "ProdBackward0": "counts the input's zeros on the host",
    "ProdBackward1": "counts the input's zeros on the host",
    "EmbeddingBackward0": "the CUDA kernel copies its segment count to the host",
    "MaskedSelectBackward0": "data-dependent size",
    "NonzeroBackward0": "data-dependent size",
}


class AtenCensus(TorchDispatchMode):
    """Every ATen call below autograd (C++ callers included), and every graph a step differentiates."""

    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()
        self.nodes = collections.Counter()
        self._patched = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in ("index", "index_put", "index_put_", "_index_put_impl_") and any(
                isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in args[1] or ()):
            name = "index with a boolean mask"                  # nonzero inside the kernel
        self.ops[name] += 1
        return func(*args, **(kwargs or {}))

    def _walk(self, roots):
        seen, todo = set(), [t.grad_fn for t in roots if isinstance(t, torch.Tensor) and t.grad_fn is not None]
        while todo:
            node = todo.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            self.nodes[type(node).__name__] += 1
            todo.extend(n for n, _ in node.next_functions)

    def __enter__(self):
        census = self
        bw, grad = torch.Tensor.backward, torch.autograd.grad

        def backward(t, *a, **k):
            census._walk([t])
            return bw(t, *a, **k)

        def autograd_grad(outputs, *a, **k):
            census._walk(outputs if isinstance(outputs, (list, tuple)) else [outputs])
            return grad(outputs, *a, **k)
        self._patched = {"backward": bw, "grad": grad}
        torch.Tensor.backward, torch.autograd.grad = backward, autograd_grad
        return super().__enter__()

    def __exit__(self, *exc):
        torch.Tensor.backward, torch.autograd.grad = self._patched["backward"], self._patched["grad"]
        return super().__exit__(*exc)


def test_the_census_sees_syncing_ops_and_backwards():
    x = torch.rand(4, requires_grad=True)
    with AtenCensus() as census:
        torch.cumprod(x, 0).sum().backward()
        torch.ones(3)[torch.tensor([True, False, True])].sum()      # boolean index: nonzero
        torch.nn.functional.embedding(torch.tensor([1]), torch.rand(3, 2, requires_grad=True)).sum().backward()
    assert census.nodes["CumprodBackward0"] == 1 and census.nodes["EmbeddingBackward0"] == 1
    assert census.ops["index with a boolean mask"] == 1 and census.ops["index"] == 0
    with AtenCensus() as census:
        torch.rand(3).sum().item()
        torch.ones(3)[torch.tensor([0, 2])].sum()
    assert census.ops["_local_scalar_dense"] == 1 and census.ops["index"] == 1


@pytest.mark.parametrize("mode", ["semantic", "view"])
def test_steps_never_read_tensors_back_on_cpu(dataset, tmp_path, mode):
    tr = Trainer(every_phase(mode), dataset, tmp_path, seed=0)
    loader = make_loader(BatchStream(tr.ds, tr.tp.batch), 0)
    batches = [next(loader) for _ in range(3)]
    with ReadCounter() as rc, AtenCensus() as census:
        results = [tr.step(b) for b in batches]
    assert not rc.calls, dict(rc.calls)
    # nor from C++: no syncing ATen call, no syncing autograd node (the census saw the steps)
    assert census.ops["convolution"] > 0 and census.nodes["ConvolutionBackward0"] > 0
    assert census.nodes["_CumprodPositiveBackward"] > 0        # the renderer's transmittance is in G's graph
    assert not {op: n for op, n in census.ops.items() if op in SYNCING_OPS}
    assert not {SYNCING_BACKWARDS[k]: n for k, n in census.nodes.items() if k in SYNCING_BACKWARDS}
    assert {"r1_penalty", "r1_penalty_mask", "loss_density", "loss_vicico" if mode == "semantic" else "loss_g"} <= set(results[0])
    assert all(isinstance(results[0][k], torch.Tensor) for k in ("loss_g", "loss_d", "grad_norm_D_main", "skipped_G_main"))
    assert isinstance(tr._augment_p, torch.Tensor)              # ADA moved p on the device
    assert float(tr.sync_counters().augment_p) != pytest.approx(0.3)


def test_the_counter_sees_a_host_read():
    with ReadCounter() as rc:
        float(torch.ones(()) * 2)
        torch.zeros(2).tolist()
    assert sum(rc.calls.values()) == 2


def test_tick_statistics_are_one_transfer():
    ts = TickStats()
    for i in range(3):
        ts.add({"a": torch.tensor(float(i)), "b": torch.tensor(2.0), "res": 16})
    ts.add({"a": torch.tensor(3.0)})
    with ReadCounter() as rc:
        means = ts.means()
    assert means == {"a": 1.5, "b": 2.0, "res": 16.0}
    assert sum(v for k, v in rc.calls.items() if k.startswith("cpu")) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_steps_run_under_sync_debug_error(dataset, tmp_path, precision):
    tp = every_phase("semantic", distributed={"device": "cuda", "precision": precision})
    tr = Trainer(tp, dataset, tmp_path, seed=0)
    loader = make_loader(BatchStream(tr.ds, tp.batch), 0, pin_memory=True)
    tr.step(next(loader))                                       # warm-up: lazy CUDA init, Adam state
    batches = [next(loader) for _ in range(2)]
    assert all(b["image"].is_pinned() for b in batches)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for b in batches:
            tr.step(b)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    assert tr.sync_counters().skipped["D_main"] == 0
