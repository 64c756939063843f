"""Training throughput (img/s, sec/kimg, peak memory) at the tiny and the paper config on this device.

    python benchmarks/bench_train.py [--steps 3] [--paper]

Builds a small procedural packed dataset in a temporary directory (at the config's resolution) and
times full training steps (G main, density reg, D main with ViCiCo, R1) after one warm-up step.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from train_fixtures import make_dataset  # noqa: E402

from balancehead.train.loop import Trainer, _peak_memory_mb  # noqa: E402
from balancehead.train.params import TrainParams  # noqa: E402
from balancehead.train.stream import BatchStream, make_loader  # noqa: E402

CONFIGS = {
    "tiny": dict(batch=8, batch_gpu=8),
    "paper": dict(batch=32, batch_gpu=4, model={"preset": "paper", "representation": "hyplane", "output_resolution": 512,
                                                "neural_resolution": 64, "n_coarse": 48, "n_importance": 48}),
}


def bench(name: str, steps: int) -> None:
    cfg = CONFIGS[name]
    tp = TrainParams(**cfg)
    with tempfile.TemporaryDirectory() as tmp:
        ds_root = make_dataset(Path(tmp) / "packed", n_subjects=8, size=tp.model.output_resolution)
        tr = Trainer(tp, ds_root, Path(tmp) / "work", seed=0)
        loader = make_loader(BatchStream(tr.ds, tp.batch), 0)
        tr.step(next(loader))
        if tr.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.time()
        for _ in range(steps):
            tr.step(next(loader))
        if tr.device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.time() - t0
    n = steps * tp.batch
    print(f"{name}: device={tr.device} precision={tr.precision} batch={tp.batch} "
          f"img/s={n / dt:.2f} sec/kimg={dt / n * 1000:.1f} peak_memory_mb={_peak_memory_mb(tr.device):.0f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--paper", action="store_true", help="also the paper config (slow on a CPU)")
    args = ap.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    bench("tiny", args.steps)
    if args.paper:
        bench("paper", 1)


if __name__ == "__main__":
    main()
