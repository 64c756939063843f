"""Throughput of the procedural head world and accuracy of the offline pose estimator (prints figures).

Run: python benchmarks/bench_world.py [--n 400] [--size 128]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm import tqdm

from balancehead.backends.offline_pose import OfflinePoseEstimator
from balancehead.camera import yaw_distance
from balancehead.world import ProceduralSynthesizer, make_wild_source, render, sample_subject


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    subjects = [sample_subject(i) for i in range(50)]

    t = time.perf_counter()
    for i in tqdm(range(args.n), desc="render"):
        render(subjects[i % 50], float(rng.uniform(-180, 180)), float(rng.uniform(-20, 20)), size=args.size)
    dt = time.perf_counter() - t
    print(f"render {args.size}x{args.size}: {args.n / dt:.1f} images/s (1 process)")

    syn = ProceduralSynthesizer(size=args.size)
    t = time.perf_counter()
    for i in tqdm(range(args.n // 2), desc="synth"):
        syn.view(subjects[i % 50], float(rng.uniform(-180, 180)), seed=i)
    print(f"synth view {args.size}: {(args.n // 2) / (time.perf_counter() - t):.1f} images/s")

    t = time.perf_counter()
    for i in tqdm(range(args.n // 4), desc="wild"):
        make_wild_source(subjects[i % 50], seed=i, size=args.size)
    print(f"wild source {args.size}: {(args.n // 4) / (time.perf_counter() - t):.1f} images/s")

    t = time.perf_counter()
    est = OfflinePoseEstimator(progress=True)
    print(f"pose bank build: {time.perf_counter() - t:.2f} s, {len(est._yaw)} entries")
    yaws = rng.uniform(-180, 180, 500)
    imgs = [render(sample_subject(100_000 + i), float(y), float(rng.uniform(-10, 10)), size=args.size).rgb
            for i, y in enumerate(tqdm(yaws, desc="pose queries"))]
    t = time.perf_counter()
    out = est.estimate_batch(imgs)
    q = time.perf_counter() - t
    err = yaw_distance(np.array([o["yaw"] for o in out]), yaws)
    side = np.abs(yaws) > 30
    sign_ok = np.mean(np.sign([o["yaw"] for o in out])[side] == np.sign(yaws[side]))
    print(f"pose: {len(imgs) / q:.0f} queries/s; |yaw error| median {np.median(err):.1f} deg, "
          f"p90 {np.percentile(err, 90):.1f} deg, mean {err.mean():.1f} deg, >90 deg {np.mean(err > 90):.1%}, "
          f"left/right sign agreement (|yaw|>30) {sign_ok:.1%}")
    syn_imgs = [syn.view(sample_subject(200_000 + i), float(y), seed=i) for i, y in enumerate(yaws[:200])]
    out = est.estimate_batch([s.rgb for s in syn_imgs])
    err = yaw_distance(np.array([o["yaw"] for o in out]), np.array([s.truth["true_yaw"] for s in syn_imgs]))
    print(f"pose on synthesiser outputs (vs true yaw, incl. artifacts/drift): median {np.median(err):.1f} deg, "
          f"p90 {np.percentile(err, 90):.1f} deg")


if __name__ == "__main__":
    main()
