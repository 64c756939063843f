"""Throughput and peak memory of the production backends (prints figures, asserts nothing).

Real models:  python benchmarks/bench_production.py --device cuda --qwen /models/qwen2.5-vl-7b \
                  --flux /models/flux1-kontext-dev --arcface /models/w600k_r50.onnx ...
Tiny models (CPU, no weights needed; the same builders the tests use):
              python benchmarks/bench_production.py --tiny [--n 8] [--size 64]

Per backend: items/s over `--n` items (after one warm-up call), peak resident memory of the
process (ru_maxrss, monotone over the run, so read the increase between lines) and, on CUDA,
peak allocated GPU memory for that backend.
"""
from __future__ import annotations

import argparse
import importlib.util
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _test_module(name: str):
    """Load a tests/ module by path (tests/ is not a package) to reuse its tiny-model builders."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench(label: str, fn, n: int, device: str) -> None:
    import torch

    fn(1)  # warm-up (lazy init, kernel selection)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    fn(n)
    dt = time.perf_counter() - t0
    gpu = f"  gpu peak {torch.cuda.max_memory_allocated() / 2**20:8.1f} MiB" if device.startswith("cuda") else ""
    print(f"{label:<28} {n / dt:9.2f} items/s   rss peak {_rss_mib():8.1f} MiB{gpu}", flush=True)


def images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="build tiny random models in a temp dir")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--size", type=int, default=64, help="input image side")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2, help="FLUX steps (paper: 20)")
    for k in ("qwen", "flux", "arcface", "pose", "seg", "iqa", "sr"):
        ap.add_argument(f"--{k}", default=None)
    a = ap.parse_args(argv)

    from balancehead.backends.production import params as P

    tmp = tempfile.TemporaryDirectory()
    paths = {k: getattr(a, k) for k in ("qwen", "flux", "arcface", "pose", "seg", "iqa", "sr")}
    extra = {"pose": {}, "seg": {}, "iqa": {}, "arcface": {}}
    if a.tiny:
        d = Path(tmp.name)
        q = _test_module("test_production_qwen_vl")
        (d / "qwen").mkdir()
        q.build_tiny_qwen(d / "qwen")
        paths["qwen"] = str(d / "qwen")
        f = _test_module("test_production_flux_kontext")
        (d / "flux").mkdir()
        f.build_tiny_flux(d / "flux")
        paths["flux"] = str(d / "flux" / "pipe")
        o = _test_module("test_production_onnx")
        paths["arcface"] = o.export(o.TinyArcFace(), d / "arcface.onnx", 112, ["embedding"])
        paths["pose"] = o.export(o.TinyHeadPose(), d / "pose.onnx", 64, ["boxes", "pose"])
        paths["seg"] = o.export(o.TinySeg(), d / "seg.onnx", 64, ["mask"])
        extra.update(pose={"input_size": 64}, seg={"input_size": 64})
        s = _test_module("test_production_iqa_sr")
        import torch
        torch.onnx.export(s.TinyIQA().eval(), (torch.zeros(1, 3, 32, 32),), str(d / "iqa.onnx"), dynamo=False,
                          input_names=["input"], output_names=["score"], dynamic_axes={"input": {0: "n"}, "score": {0: "n"}})
        paths["iqa"] = str(d / "iqa.onnx")
        extra["iqa"] = {"input_size": 32}
        from transformers import Swin2SRConfig, Swin2SRForImageSuperResolution
        Swin2SRForImageSuperResolution(Swin2SRConfig(image_size=16, embed_dim=8, depths=[1], num_heads=[2], window_size=4,
                                                     upscale=2, mlp_ratio=2.0)).save_pretrained(d / "sr")
        paths["sr"] = str(d / "sr")

    print(f"device {a.device}  dtype {a.dtype}  n {a.n}  size {a.size}  tiny {a.tiny}")
    imgs = images(max(a.n, 1), a.size)
    common = dict(device=a.device, dtype=a.dtype, batch_size=a.batch_size, progress=False)
    if paths["qwen"]:
        from balancehead.backends.production.qwen_vl_judge import JudgePrompts, QwenVLJudge

        prompts = JudgePrompts("Standard Image or Non-standard Image?", "severe artifacts or normal?",
                               "Same person? {attrs1} / {attrs2}", "Same person? {attrs1} / {attrs2}")
        px = max(28, a.size // 28 * 28) ** 2  # the image's own pixel budget (no upsampling to 256 tokens)
        judge = QwenVLJudge(P.QwenVLJudgeParams(model=paths["qwen"], max_new_tokens=16, attribute_max_new_tokens=16,
                                                min_pixels=px, max_pixels=px, **common), prompts)
        bench("qwen2.5-vl judge_views", lambda n: judge.judge_views(imgs[:n], imgs[:n]), a.n, a.device)
    if paths["flux"]:
        from balancehead.backends.production.flux_kontext import FluxKontextSynthesizer

        side = max(16, a.size // 16 * 16)
        synth = FluxKontextSynthesizer(P.FluxKontextParams(model=paths["flux"], steps=a.steps, width=side, height=side,
                                                           max_sequence_length=64, **common), "a person [view]", "")
        bench(f"flux kontext ({a.steps} steps)",
              lambda n: synth.edit(imgs[:n], [synth.prompt("front view")] * n, list(range(n))), a.n, a.device)
    onnx_common = dict(batch_size=a.batch_size, progress=False)
    if paths["arcface"]:
        from balancehead.backends.production.arcface import ArcFaceEmbedder

        emb = ArcFaceEmbedder(P.ArcFaceParams(model=paths["arcface"], **onnx_common, **extra["arcface"]))
        bench("arcface embed", lambda n: emb.embed(imgs[:n]), a.n, a.device)
    if paths["pose"]:
        from balancehead.backends.production.head_pose_mask import OnnxHeadPoseEstimator

        pose = OnnxHeadPoseEstimator(P.HeadPoseParams(model=paths["pose"], **onnx_common, **extra["pose"]))
        bench("head pose", lambda n: pose.estimate_batch(imgs[:n]), a.n, a.device)
    if paths["seg"]:
        from balancehead.backends.production.head_pose_mask import OnnxPersonSegmenter

        seg = OnnxPersonSegmenter(P.PersonSegParams(model=paths["seg"], **onnx_common, **extra["seg"]))
        bench("person mask", lambda n: seg.mask_batch(imgs[:n]), a.n, a.device)
    if paths["iqa"]:
        from balancehead.backends.production.iqa_sr import HyperIQAScorer

        iqa = HyperIQAScorer(P.HyperIQAParams(model=paths["iqa"], **onnx_common, **extra["iqa"]))
        bench("hyper-iqa score", lambda n: iqa.score_batch(imgs[:n]), a.n, a.device)
    if paths["sr"]:
        from balancehead.backends.production.iqa_sr import Swin2SREnhancer

        sr = Swin2SREnhancer(P.Swin2SRParams(model=paths["sr"], device=a.device, dtype=a.dtype, progress=False))
        bench("swin2sr enhance", lambda n: sr.enhance_batch(imgs[:n]), a.n, a.device)
    tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
