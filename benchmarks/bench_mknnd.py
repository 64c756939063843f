"""MKNND (BalanceHead A.6.11, eq. 2) over 50k ArcFace-size (512-d) embeddings: seconds on this machine.

Target: <= 10 s on 2 cores (issue 12). Prints the wall time per block size, the thread count and the
load average (the figure is only meaningful on an otherwise idle machine), and checks the result on a
subset against the sample-by-sample brute force.

    PYTHONPATH=src python benchmarks/bench_mknnd.py [--n 50000] [--dim 512] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from balancehead.evaluation.diversity import mknnd, mknnd_brute_force


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunks", type=int, nargs="+", default=[2048])
    ap.add_argument("--modes", nargs="+", default=["fast", "float32"], choices=["fast", "float32"],
                    help="fast: bfloat16 pass + float32 re-check (the default); float32: the plain blocked pass")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    # clustered like identities: 5000 centres, samples around them (cosine neighbours are not trivial)
    centres = rng.standard_normal((a.n // 10, a.dim)).astype(np.float32)
    emb = centres[rng.integers(0, len(centres), a.n)] + 0.8 * rng.standard_normal((a.n, a.dim)).astype(np.float32)
    sub = emb[:1500]
    ref = mknnd_brute_force(sub, a.k)
    assert all(abs(mknnd(sub, a.k, chunk=512, fast=f) - ref) < 1e-6 for f in (True, False))
    print(f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}, N {a.n}, D {a.dim}, k {a.k}")
    for chunk, mode in [(c, m) for c in a.chunks for m in a.modes]:
        t, c = time.perf_counter(), time.process_time()
        v = mknnd(emb, a.k, chunk=chunk, fast=mode == "fast")
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        # on a shared machine the wall time includes waiting for a core; CPU seconds / threads is what
        # an idle machine with that many cores would take
        print(f"mknnd {mode} chunk {chunk}: {wall:.2f} s wall, {cpu:.2f} CPU s (~{cpu / a.threads:.2f} s on "
              f"{a.threads} idle cores) (MKNND {v:.5f})")


if __name__ == "__main__":
    main()
