"""`balancehead` command line: run a stage, validate params, generate dvc.yaml and the params schema."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

import yaml

from . import fileio
from .locking import WorkflowLocked
from .params import ParamsError, json_schema, load_params
from .pipeline import STAGES, dvc_yaml, stage

DVC_HEADER = ("# GENERATED from src/balancehead/pipeline.py by `balancehead dvc-yaml`; do not edit by hand.\n"
              "# rules/stages.smk builds the Snakemake rules from the same stage list.\n")


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard expects i/n, e.g. 0/4 (got {text!r})") from None
    if not (n >= 1 and 0 <= i < n):
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 <= i < n")
    return i, n


def cmd_run(args) -> int:
    from .locking import refuse_if_snakemake_running
    from .runner import StageContext, setup_logging

    params = load_params(args.params)          # validated before any work
    st = stage(args.stage)
    if args.shard is not None and not st.sharded:
        raise SystemExit(f"stage {st.name} is not sharded; run it without --shard")
    root = Path.cwd()
    refuse_if_snakemake_running(root)           # dvc repro / by hand while Snakemake runs here
    log_path = root / (st.shard_log(*args.shard) if args.shard else st.log)
    log = setup_logging(log_path)
    threads = params.workflow.threads
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        pass
    module = importlib.import_module(st.module_name)
    ctx = StageContext(all_params=params, stage=st, root=root, shard=args.shard, log=log,
                       params_path=Path(args.params).resolve())
    log.info("stage %s starts%s", st.name, f" (shard {args.shard[0]}/{args.shard[1]})" if args.shard else "")
    ctx.clean_leftovers()
    module.main(ctx)
    log.info("stage %s done", st.name)
    return 0


def cmd_verify(args) -> int:
    from .integrity import rerun_hint, verify_outputs

    selected = [stage(n) for n in args.stages] if args.stages else list(STAGES)
    lines, rerun = verify_outputs([(s.name, s.outs) for s in selected], Path.cwd())
    print("\n".join(lines))
    for name in rerun:
        print(f"to repair: {rerun_hint(name)}")
    return 1 if rerun else 0


def cmd_validate(args) -> int:
    load_params(args.params)
    print(f"{args.params}: valid")
    return 0


def cmd_dvc_yaml(args) -> int:
    text = DVC_HEADER + yaml.safe_dump(dvc_yaml(), sort_keys=False, width=120)
    path = Path(args.output)
    if args.check:
        current = path.read_text() if path.exists() else ""
        if current != text:
            print(f"{path} is out of date with src/balancehead/pipeline.py; run `balancehead dvc-yaml`", file=sys.stderr)
            return 1
        print(f"{path}: in sync")
        return 0
    fileio.write_text(path, text)
    print(f"wrote {path}")
    return 0


def cmd_schema(args) -> int:
    text = fileio.dumps_json(json_schema())
    path = Path(args.output)
    if args.check:
        if not path.exists() or path.read_text() != text:
            print(f"{path} is out of date; run `balancehead schema`", file=sys.stderr)
            return 1
        return 0
    fileio.write_text(path, text)
    print(f"wrote {path}")
    return 0


def cmd_stages(args) -> int:
    for s in STAGES:
        print(f"{s.name:18s} {'sharded' if s.sharded else '       '}  deps={list(s.deps)} outs={list(s.outs)} params={list(s.params)}")
    return 0


def cmd_export(args) -> int:
    from .data.export import export_eg3d

    export_eg3d(Path(args.dataset), Path(args.out))
    print(f"exported {args.dataset} -> {args.out}")
    return 0


def cmd_import_checkpoint(args) -> int:
    from .models.official_import import import_checkpoint
    from .models.official_pickle import UnsafePickleError

    out = Path(args.out) if args.out else Path("models") / Path(args.file).stem
    try:
        import_checkpoint(args.file, args.kind, out)
    except (UnsafePickleError, ValueError, NotImplementedError) as err:
        print(f"error: {args.file}: {err}", file=sys.stderr)
        return 2
    print(f"imported {args.file} ({args.kind}) -> {out}; use it with generator.checkpoint: {out}")
    return 0


def cmd_reconstruct(args) -> int:
    """One photo -> a 3D Gaussian head: person mask, head crop and pose through the `preprocess` backends
    (params.yaml's `preprocess` section), the photo composited on white, the reconstructor of `--model`, then
    head.ply + a 360-degree turntable (params.yaml's `eval_recon` turntable settings)."""
    from .devices import pick_device
    from .evaluation.reconstruction import export_head, reconstruct, whiten
    from .imageload import load_image
    from .models.checkpoint import CheckpointError
    from .recon.checkpoint import load_reconstructor
    from .stages.preprocess import analyse, backend_provenance, preprocess_backends

    params = load_params(args.params)
    photo = Path(args.photo)
    if not photo.is_file():
        print(f"error: {photo}: no such file", file=sys.stderr)
        return 2
    ing = params.ingest
    loaded = load_image(photo.read_bytes(), ing.max_side, ing.min_side, max_pixels=ing.max_pixels,
                        max_bytes=ing.max_bytes)
    if not loaded.ok:
        print(f"error: {photo}: {loaded.reason} ({loaded.detail})", file=sys.stderr)
        return 2
    p = params.eval_recon
    try:
        model, cfg, _ = load_reconstructor(args.model, pick_device(p.device))
    except CheckpointError as err:
        print(f"error: {err} (train one with `dvc repro train_recon`, or pass --model)", file=sys.stderr)
        return 2
    segmenter, pose = preprocess_backends(params.preprocess)
    crop, mask, box, est = analyse(loaded.image, segmenter, pose)
    image = whiten(crop, mask)
    head, seconds = reconstruct(model, image, mask)
    out = Path(args.out) if args.out else Path("reconstructions") / photo.stem
    fileio.write_png(out / "input.png", image)
    fileio.write_png(out / "mask.png", mask)
    written = export_head(head, out, p.turntable_frames, p.turntable_size or image.shape[0], p.frame_ms, p.mp4,
                          p.turntable_pitch_deg, p.rasterizer)
    fileio.write_json(out / "reconstruction.json", {
        "photo": str(photo), "model": str(args.model), "reconstructor": cfg.name, "encoder": cfg.encoder.kind,
        "gaussians": len(head), "seconds": seconds, "crop_box": box,
        "pose": {k: float(est[k]) for k in ("yaw", "pitch", "roll") if k in est},
        "backends": backend_provenance(segmenter, pose), "files": written})
    print(f"reconstructed {photo} -> {out}/: {', '.join(written)} ({len(head)} Gaussians, {seconds:.3f} s; "
          f"estimated yaw {float(est['yaw']):.1f}, pitch {float(est['pitch']):.1f})")
    return 0
def cmd_sweep(args) -> int:
    from . import sweep

    params = load_params(args.params)          # every arm's overrides validated before any work
    try:
        return sweep.main(Path.cwd(), params, args.id, args.collect)
    except RuntimeError as err:                # a refused start or a failed dvc command, already explained
        print(f"error: {err}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="balancehead", description=__doc__)
    p.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run one stage")
    r.add_argument("stage", choices=[s.name for s in STAGES])
    r.add_argument("--shard", type=_parse_shard, default=None, help="i/n: compute this shard's items only")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("verify", help="check stage outputs against their recorded digests; say what to rerun")
    c.add_argument("stages", nargs="*", help="stages to check (default: all)")
    c.set_defaults(func=cmd_verify)

    v = sub.add_parser("validate", help="validate params.yaml and exit")
    v.set_defaults(func=cmd_validate)

    d = sub.add_parser("dvc-yaml", help="generate dvc.yaml from the stage list")
    d.add_argument("--output", default="dvc.yaml")
    d.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml is out of date")
    d.set_defaults(func=cmd_dvc_yaml)

    s = sub.add_parser("schema", help="write the params JSON schema")
    s.add_argument("--output", default="workflow/schemas/params.schema.json")
    s.add_argument("--check", action="store_true")
    s.set_defaults(func=cmd_schema)

    l = sub.add_parser("stages", help="list the stages")
    l.set_defaults(func=cmd_stages)

    e = sub.add_parser("export-eg3d", help="export a packed dataset to EG3D/PanoHead dataset.json format")
    e.add_argument("--dataset", default="data/dataset")
    e.add_argument("--out", default="data/export_eg3d")
    e.set_defaults(func=cmd_export)

    i = sub.add_parser("import-checkpoint", help="convert an official EG3D/PanoHead/SphereHead network pickle "
                       "(read without running its code) to a safetensors + JSON checkpoint")
    i.add_argument("file", help="the official network pickle (e.g. network-snapshot.pkl)")
    i.add_argument("--kind", required=True, choices=["eg3d", "panohead", "spherehead"])
    i.add_argument("--out", default=None, help="checkpoint directory (default: models/<file stem>)")
    i.set_defaults(func=cmd_import_checkpoint)

    rc = sub.add_parser("reconstruct", help="one photo -> a 3D Gaussian head (.ply + 360° turntable) with the "
                        "trained reconstructor", description=cmd_reconstruct.__doc__)
    rc.add_argument("photo", help="a photo of one person (JPEG/PNG/...); head pose, crop and mask come from the "
                    "preprocess backends of params.yaml (offline: white-background images only)")
    rc.add_argument("--model", default="data/recon", help="reconstructor checkpoint directory (default: data/recon, "
                    "written by the train_recon stage)")
    rc.add_argument("--out", default=None, help="output directory (default: reconstructions/<photo name>); gets "
                    "head.ply (standard 3DGS, any splat viewer), turntable.gif (+ .mp4 with eval_recon.mp4), "
                    "input.png, mask.png and reconstruction.json")
    rc.set_defaults(func=cmd_reconstruct)
    w = sub.add_parser("sweep", help="BalanceHead Table 1: one DVC experiment per params.yaml sweep.arms entry on "
                       "one shared packed dataset, then results/sweep/table.md and the overlaid bias curves")
    w.add_argument("--id", default=None, help="sweep id (default: t1_<UTC time>); names the experiments <id>-<arm>")
    w.add_argument("--collect", action="store_true", help="only tabulate the finished experiments of sweep --id")
    w.set_defaults(func=cmd_sweep)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except WorkflowLocked as err:
        print(f"error: {err}", file=sys.stderr)
        return 4


if __name__ == "__main__":
    sys.exit(main())
