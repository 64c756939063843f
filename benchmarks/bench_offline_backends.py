"""Figures for the offline backends on the procedural world (prints; asserts nothing).

    python benchmarks/bench_offline_backends.py [--subjects 50] [--threads 2]

* segment: IoU of `offline_mask` against the renderer's exact mask;
* identity: AUC of same-subject vs different-subject cosine (views within +-45 deg, and front vs
  back), drift detection at the 5th percentile of same-subject similarity;
* judge: precision/recall of "reject" (severe artifacts OR not the same person) against the
  synthesiser's truth sidecar (artifact OR identity drift) - the judge sees pixels only;
* CLIP: offline ViT-B-32 embedding throughput (images/s at batch 32).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from balancehead.backends.clip_embed import OfflineClipEmbedder
from balancehead.backends.identity import OfflineIdentityEmbedder, cosine
from balancehead.backends.judge import HeuristicJudge
from balancehead.backends.segment import offline_mask
from balancehead.world.render import render
from balancehead.world.subject import perturb_identity, sample_subject
from balancehead.world.synth import ProceduralSynthesizer, SynthRates

VIEW_YAWS = (0.0, 45.0, -45.0, 90.0, -90.0, 135.0, -135.0, 180.0)


def auc(pos, neg) -> float:
    pos, neg = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def bench_segment(n: int) -> None:
    ious = []
    for s in range(n):
        for yaw in VIEW_YAWS:
            r = render(sample_subject(s), yaw)
            m, g = offline_mask(r.rgb) > 0, r.mask > 0
            ious.append((m & g).sum() / (m | g).sum())
    print(f"segment: {len(ious)} renders  IoU min {np.min(ious):.4f}  mean {np.mean(ious):.4f}")


def bench_identity(n: int) -> None:
    emb = OfflineIdentityEmbedder()
    E, D = {}, {}
    for s in range(n):
        sub = sample_subject(s)
        for yaw in (0.0, 20.0, -20.0, 45.0, -45.0, 180.0):
            E[s, yaw] = emb.embed_one(render(sub, yaw).rgb)
        D[s] = emb.embed_one(render(perturb_identity(sub, np.random.default_rng(s)), 20.0).rgb)
    near = [cosine(E[s, 0.0], E[s, y]) for s in range(n) for y in (20.0, -20.0, 45.0, -45.0)]
    diff = [cosine(E[s, 0.0], E[t, y]) for s in range(n) for t in range(n) if t != s for y in (20.0, 45.0)]
    back = [cosine(E[s, 0.0], E[s, 180.0]) for s in range(n)]
    diff_back = [cosine(E[s, 0.0], E[t, 180.0]) for s in range(n) for t in range(n) if t != s]
    drift = [cosine(E[s, 0.0], D[s]) for s in range(n)]
    thr = np.percentile(near, 5)
    print(f"identity: same(<=45deg) {np.mean(near):.3f} vs different {np.mean(diff):.3f}  AUC {auc(near, diff):.3f}")
    print(f"identity: front-back same {np.mean(back):.3f} vs different {np.mean(diff_back):.3f}  AUC {auc(back, diff_back):.3f}")
    print(f"identity: drift {np.mean(drift):.3f}  AUC same-vs-drift {auc(near, drift):.3f}  "
          f"detected at p5 of same ({thr:.3f}): {np.mean(np.asarray(drift) < thr):.3f}")


def bench_judge(n: int, rates: SynthRates, label: str) -> None:
    judge = HeuristicJudge()
    syn = ProceduralSynthesizer(rates)
    truth, pred = [], []
    t0 = time.perf_counter()
    for s in range(n):
        sub = sample_subject(s)
        front = render(sub, 0.0)
        fmask = offline_mask(front.rgb)
        for yaw in VIEW_YAWS:
            r = syn.view(sub, yaw, seed=7)
            m = offline_mask(r.rgb)
            # est_yaw: the requested view (what the pipeline knows before pose estimation).
            standard = judge.classify(r.rgb, m, yaw).label == "standard"
            bad = judge.artifacts(r.rgb, m).label != "normal" or \
                judge.match(front.rgb, fmask, r.rgb, m, standard, yaw).label == "NO"
            truth.append(r.truth["artifact"] or r.truth["identity_drift"])
            pred.append(bad)
    truth, pred = np.asarray(truth), np.asarray(pred)
    tp = (truth & pred).sum()
    print(f"judge ({label}): {len(truth)} views, {truth.sum()} bad  precision {tp / max(pred.sum(), 1):.3f}  "
          f"recall {tp / max(truth.sum(), 1):.3f}  false-reject rate {(pred & ~truth).sum() / max((~truth).sum(), 1):.3f}  "
          f"({1000 * (time.perf_counter() - t0) / len(truth):.0f} ms/view)")


def bench_clip(threads: int) -> None:
    emb = OfflineClipEmbedder(seed=0, threads=threads, progress=False)
    imgs = np.stack([render(sample_subject(s), 0.0).rgb for s in range(64)])
    emb.embed(imgs[:32], batch_size=32)  # warm-up
    t0 = time.perf_counter()
    emb.embed(imgs, batch_size=32)
    dt = time.perf_counter() - t0
    print(f"clip: {emb.name} {len(imgs) / dt:.1f} images/s at batch 32 on {threads} CPU threads")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    bench_segment(args.subjects)
    bench_identity(args.subjects)
    bench_judge(args.subjects, SynthRates(), "default rates")
    bench_judge(args.subjects, SynthRates(artifact_rate=0.25, identity_drift_rate=0.25), "artifact 0.25, drift 0.25")
    bench_clip(args.threads)


if __name__ == "__main__":
    main()
