"""train: the semantic-conditional full-head 3D GAN on the packed dataset (BalanceHead §4, A.6).

The command is always `balancehead run train`:
* under torchrun (RANK/WORLD_SIZE set) or srun with several tasks, it joins the process group;
* otherwise, when `train.distributed.nproc_per_node` > 1, it relaunches itself under torchrun
  (multi-node from SLURM_NNODES / SLURM_NODEID), forwards SIGTERM/SIGUSR1 and exits with the
  workers' exit code;
* otherwise it trains in this process (CPU or one GPU).

Resumable state lives in the stage's scratch directory, `<scratch>/<run key>/` (outside the declared outputs, which DVC deletes
before rerunning a stage): checkpoints every `checkpoint_ticks` ticks, stats.jsonl, fakes. The run key
hashes everything that changes the numbers (train params except loader/launch/bookkeeping settings,
the global seed, the packed manifest and condition tables), so a rerun with the same key resumes from
the latest checkpoint and a changed recipe starts afresh.

SIGTERM / SIGUSR1 -> checkpoint, then exit with `train.requeue_exit_code` (default 3).

Outputs, assembled at the end: `checkpoint` (G_ema/ checkpoint dir, fakes/*.png, stats.tsv),
`metrics` (DVC metrics incl. random-feature FD at kimg 0 and at the end), `stats` (DVC plots: one row
per tick).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from .. import fileio, integrity
from ..hashing import sha256_file
from ..runner import StageContext

# Keys that never change the numbers (launch, loader, bookkeeping): excluded from the run key.
NEUTRAL = {"distributed": {"nproc_per_node", "backend"}, "data": {"num_workers"},
           "": {"checkpoint_ticks", "keep_checkpoints", "fakes_ticks", "requeue_exit_code", "kimg_per_tick"}}


def run_key(ctx: StageContext) -> str:
    tp = ctx.params.train.model_dump(mode="json")
    for section, keys in NEUTRAL.items():
        target = tp if not section else tp[section]
        for k in keys:
            target.pop(k, None)
    h = hashlib.sha256(json.dumps({"train": tp, "seed": ctx.params.seed}, sort_keys=True).encode())
    for name in ("manifest.parquet", "conditions.safetensors", "view_conditions.safetensors",
                 "identity_conditions.safetensors", "view_identity_conditions.safetensors"):
        f = ctx.input("dataset") / name
        h.update(name.encode() + (sha256_file(f).encode() if f.exists() else b"-"))
    return h.hexdigest()[:16]


def _relaunch(ctx: StageContext, nproc: int) -> None:
    from ..train.distributed import relaunch_command

    cmd = relaunch_command(nproc, ["--params", str(ctx.params_path), "run", "train"])
    ctx.log.info("train: relaunching under torchrun: %s", " ".join(cmd))
    proc = subprocess.Popen(cmd, cwd=ctx.root)

    def forward(signum, _frame):
        proc.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        code = proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if code:
        raise SystemExit(code)


def main(ctx: StageContext) -> None:
    import torch

    from ..devices import reproducible_threads
    from ..ops import use_built
    from ..train.distributed import from_env, init_process_group
    from ..train.loop import Trainer, pick_device, read_stats
    from ..train.preemption import Preempted, StopFlag
    from ..tracking import log_dataset, mlflow_run

    use_built(ctx.input("ops"))      # compiled ops where they pay (a GPU); else the references
    tp = ctx.params.train
    info = from_env()
    if not info.distributed and tp.distributed.nproc_per_node > 1:
        _relaunch(ctx, tp.distributed.nproc_per_node)
        return
    device = pick_device(tp, info)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    init_process_group(info, tp.distributed.backend, device)
    work = ctx.scratch / run_key(ctx)
    work.mkdir(parents=True, exist_ok=True)
    fakes_dir = work / "fakes"

    def on_tick(event):
        fileio.write_png(fakes_dir / f"fakes-kimg{event['kimg'] * 1000:09.0f}.png", event["grid"])

    stop = StopFlag()
    params_dict = {"train": tp.model_dump(mode="json"), "seed": ctx.params.seed}
    try:
        with (mlflow_run(ctx, "train", params_dict) if info.rank == 0 else _nothing()) as mlflow:
            if mlflow is not None:
                log_dataset(mlflow, ctx.input("dataset"), ctx.root, context="training")
            trainer = Trainer(tp, ctx.input("dataset"), work, ctx.params.seed, info, ctx.log, tracker=mlflow,
                              on_tick=on_tick)
            try:
                with reproducible_threads(device):     # workflow.threads never changes the trained bytes
                    result = trainer.run(stop=stop)
            except Preempted as exc:
                raise SystemExit(exc.code) from None
            if info.rank != 0:
                return
            on_tick({"kimg": result.counters.images_seen / 1000, "grid": trainer.grid()})
            rows = read_stats(work)
            metrics = _metrics(tp, result, rows)
            _assemble(ctx, trainer, work, rows, metrics)
            if mlflow is not None:
                mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
                mlflow.log_artifacts(str(ctx.output("checkpoint") / "fakes"), artifact_path="fakes")
                mlflow.log_artifact(str(ctx.output("stats")))
                # loads back with Generator.from_pretrained(<downloaded G_ema dir>)
                mlflow.log_artifacts(str(ctx.output("checkpoint") / "G_ema"), artifact_path="G_ema")
    finally:
        stop.close()
        if info.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _metrics(tp, result, rows) -> dict:
    last = rows[-1] if rows else {}
    return {"kimg": result.counters.images_seen / 1000, "steps": result.counters.step,
            "fd_random_features_kimg0": result.fd_start, "fd_random_features_final": result.fd_end,
            "fd_ratio": (result.fd_end / result.fd_start) if result.fd_start else None,
            "skipped_steps": result.counters.skipped, "conditioning": tp.conditioning.mode,
            "vicico": tp.vicico.variant if tp.vicico.enabled else "off",
            "sec_per_kimg": last.get("sec_per_kimg"), "img_per_s": last.get("img_per_s"),
            "peak_memory_mb": last.get("peak_memory_mb"),
            "loss_g": last.get("loss_g"), "loss_d": last.get("loss_d")}


def _assemble(ctx: StageContext, trainer, work: Path, rows: list[dict], metrics: dict) -> None:
    from ..models import save_checkpoint

    out = ctx.output("checkpoint")
    integrity.clean_leftovers(out.parent)         # what a train killed while assembling left behind
    tmp = out.parent / f".{out.name}.tmp-{integrity.temp_tag()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(tmp / "G_ema", {"G_ema": trainer.G_ema.cpu()},
                    {"conditioning": trainer.spec.mode, "label_spec": trainer.spec.to_meta(),
                     "kimg": metrics["kimg"], "seed": ctx.params.seed})
    (tmp / "fakes").mkdir(parents=True)
    for png in sorted((work / "fakes").glob("*.png")):
        shutil.copyfile(png, tmp / "fakes" / png.name)
    tsv = stats_tsv_text(rows)
    fileio.write_text(tmp / "stats.tsv", tsv)
    integrity.write_digests(tmp, ctx.stage.name)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    fileio.write_text(ctx.output("stats"), tsv)
    fileio.write_json(ctx.output("metrics"), metrics)
    ctx.log.info("train: kimg %.3f, random-feature FD %.3f -> %.3f", metrics["kimg"],
                 metrics["fd_random_features_kimg0"] or float("nan"), metrics["fd_random_features_final"] or float("nan"))


def stats_tsv_text(rows: list[dict]) -> str:
    from ..train.loop import stats_tsv

    return stats_tsv(rows)


__all__ = ["main", "run_key"]
