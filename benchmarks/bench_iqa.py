"""Calibration and throughput of the offline IQA gate (prints figures, asserts nothing).

For clean procedural renders (white background, and composited onto a cluttered background) it
applies `degrade` at fixed severities and prints, per severity: mean score, and the share of
images that the gate would keep (> 60), enhance (35..60) and drop (< 35); then the same per
primary degradation; then the effect of `enhance` on the moderate band; then images per second.

Run: python benchmarks/bench_iqa.py [--n 120] [--size 128]
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
from tqdm import tqdm

from balancehead.backends.iqa import ClassicalIQA
from balancehead.world.degrade import degrade
from balancehead.world.render import render
from balancehead.world.subject import sample_subject
from balancehead.world.wild import cluttered_background

SEVERITIES = (0.0, 0.3, 0.6, 0.9)


def clean_images(n: int, size: int, cluttered: bool) -> list[np.ndarray]:
    rng = np.random.default_rng(1234 + int(cluttered))
    out = []
    for i in tqdm(range(n), desc=f"render ({'cluttered' if cluttered else 'white'})"):
        r = render(sample_subject(i), float(rng.uniform(-30, 30)), float(rng.normal(0, 5)), size=size)
        img = r.rgb
        if cluttered:
            alpha = (r.mask.astype(np.float32) / 255.0)[..., None]
            bg = cluttered_background(size, rng).astype(np.float32)
            img = np.clip(np.rint(alpha * img + (1 - alpha) * bg), 0, 255).astype(np.uint8)
        out.append(img)
    return out


def bands(scores) -> str:
    s = np.asarray(scores)
    return (f"mean {s.mean():5.1f}  sd {s.std():4.1f}  keep {np.mean(s > 60):4.0%}  "
            f"enhance {np.mean((s >= 35) & (s <= 60)):4.0%}  drop {np.mean(s < 35):4.0%}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    iqa = ClassicalIQA()
    for cluttered in (False, True):
        images = clean_images(args.n, args.size, cluttered)
        print(f"\n== {'cluttered' if cluttered else 'white'} background, {args.size}px, n={args.n} per severity")
        by_op: dict[tuple, list] = defaultdict(list)
        moderate = []
        for sev in SEVERITIES:
            scores = []
            for i, img in enumerate(tqdm(images, desc=f"severity {sev}", leave=False)):
                out, rep = degrade(img, np.random.default_rng([i, int(sev * 100)]), sev)
                sc = iqa.score(out)
                scores.append(sc)
                if rep["ops"]:
                    primary = max(rep["ops"], key=lambda o: o["amount"])["op"]
                    by_op[(primary, sev)].append(sc)
                if sev == 0.6:
                    moderate.append((out, sc))
            print(f"severity {sev:.1f}: {bands(scores)}")
        for (op, sev), sc in sorted(by_op.items()):
            print(f"  primary {op:9s} @ {sev:.1f}: {bands(sc)}  (n={len(sc)})")
        before = np.array([s for _, s in moderate])
        after = np.array([iqa.score(iqa.enhance(img)) for img, _ in tqdm(moderate, desc="enhance", leave=False)])
        print(f"enhance on severity 0.6: mean {before.mean():.1f} -> {after.mean():.1f}, "
              f"improved {np.mean(after > before):.0%}, now kept {np.mean(after > 60):.0%}")

    imgs = [degrade(img, np.random.default_rng(i), 0.5)[0] for i, img in enumerate(images)]
    t = time.perf_counter()
    for img in imgs:
        iqa.score(img)
    dt = time.perf_counter() - t
    t = time.perf_counter()
    for img in imgs:
        iqa.enhance(img)
    de = time.perf_counter() - t
    print(f"\nthroughput at {args.size}px (1 process): score {len(imgs) / dt:.0f} img/s, "
          f"enhance {len(imgs) / de:.0f} img/s")


if __name__ == "__main__":
    main()
