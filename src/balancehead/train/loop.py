"""The training loop: data, phases, optimizer steps with NaN guard and clipping, EMA, ADA, ticks,
checkpoints, preemption and the 'it learns' distance. Used by the `train` stage and the tests.

Randomness: every draw in step s, phase f, accumulation round k (global index over all ranks) comes
from a torch.Generator on the models' device seeded by (seed, s, f, k); batch s's data depend only on
(seed, s). Hence a resumed run, a run with more data-loader workers and a run split over more
processes (with the same total batch and per-process batch) compute the same numbers up to float
summation order (bit for bit on the CPU).

No host synchronisation inside a step (issue 10): the batch arrives in pinned memory and is copied
asynchronously; random numbers are drawn on the device; statistics stay device tensors (summed by
`stats.TickStats`, read once per tick); the NaN guard is the fused Adam's `found_inf` input (a
non-finite gradient norm skips the whole update on the device, and the skip is counted there); the
ADA probability lives on the device. Counters that go into a checkpoint are read back only when a
tick ends or a checkpoint is written.
"""
from __future__ import annotations

import copy
import json
import math
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tqdm import tqdm

from balancehead import fileio
from balancehead.data.reader import ShardDataset
from balancehead.models import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from balancehead.devices import configure_cuda, pick_device as pick_device_named
from balancehead.hashing import derive_seed
from balancehead.progress import duration_text

from .augment import adjust_p
from .conditioning import SEMANTIC_KEY, WHAT, LabelSpec
from .distributed import DistInfo, StopPoll, all_reduce_grads, any_rank, barrier
from .ema import ema_beta, update_ema
from .features import RandomFeatures, frechet_distance
from .loss import GanLoss, StepSettings
from .params import TrainParams
from .preemption import Preempted, StopFlag
from .schedule import blur_sigma, neural_resolution, swap_probability
from .state import latest, load_state, save_state
from .stats import DeviceCounters, TickStats, to_host
from .stream import BatchStream, make_loader

PHASES = ("G_main", "G_reg", "D_main", "D_reg")


def pick_device(tp: TrainParams, info: DistInfo) -> torch.device:
    return pick_device_named(tp.distributed.device, info.local_rank)


def pick_precision(tp: TrainParams, device: torch.device) -> str:
    p = tp.distributed.precision
    if p == "auto" and tp.model.uses_fp16:  # EG3D's per-block float16 replaces autocast
        return "fp32"
    return ("bf16" if device.type == "cuda" else "fp32") if p == "auto" else p


def build_models(tp: TrainParams, spec: LabelSpec, seed: int) -> tuple[Generator, Discriminator]:
    m = tp.model
    preset = GeneratorConfig.tiny if m.preset == "tiny" else GeneratorConfig.paper
    overrides = dict(representation=m.representation, output_resolution=m.output_resolution,
                     neural_resolution=m.neural_resolution, c_dim=spec.g_dim, camera_adapt=m.camera_adapt,
                     background=m.background, background_kind=m.resolved("background_kind"),
                     camera_adapt_kind=m.resolved("camera_adapt_kind"), num_fp16_res=m.g_num_fp16_res, sr_num_fp16_res=m.sr_num_fp16_res,
                     seed=derive_seed(seed, "train", "G") % 2**31)
    if m.g_num_fp16_res > 0:  # EG3D train.py: conv_clamp 256 iff g_num_fp16_res > 0 (SR and D presets clamp already)
        overrides["conv_clamp"] = 256.0
    if m.n_coarse is not None:
        overrides["n_coarse"] = m.n_coarse
    if m.n_importance is not None:
        overrides["n_importance"] = m.n_importance
    g_cfg = preset(**overrides)
    d_preset = DiscriminatorConfig.tiny if m.preset == "tiny" else DiscriminatorConfig.paper
    d_cfg = d_preset(resolution=m.output_resolution, mode=m.discriminator, c_dim=spec.d_dim,
                     num_fp16_res=m.d_num_fp16_res, seed=derive_seed(seed, "train", "D") % 2**31)
    return Generator(g_cfg), Discriminator(d_cfg)


def open_dataset(tp: TrainParams, root: Path, seed: int) -> tuple[ShardDataset, LabelSpec]:
    mode = tp.conditioning.mode
    ds = ShardDataset(root, resolution=tp.data.resolution or tp.model.output_resolution, seed=seed,
                      yaw_bin_weights=tp.data.yaw_bin_weights)
    if mode in ("none", "view"):
        return ds, LabelSpec(mode, 0)
    key = SEMANTIC_KEY[mode]
    table = {"condition": ds.conditions, "view_condition": ds.view_conditions, "identity": ds.identity_conditions,
             "view_identity": ds.view_identity_conditions}[key]
    if table is None:
        raise ValueError(f"train.conditioning.mode {mode!r} needs {WHAT[key]}, but {root} has none; "
                         "rerun pack_dataset with them or pick another mode")
    return ds, LabelSpec(mode, table.dim)


def _lazy_adam(params, lr, betas, interval: int) -> torch.optim.Adam:
    """Adam with EG3D's lazy-regularisation correction of lr and betas. Fused: its `found_inf` input
    (the protocol torch.amp.GradScaler uses) skips a step on the device when the gradient is not finite."""
    ratio = interval / (interval + 1) if interval > 1 else 1.0
    return torch.optim.Adam(params, lr=lr * ratio, betas=(betas[0] ** ratio, betas[1] ** ratio), eps=1e-8,
                            fused=True)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class Counters:
    step: int = 0
    images_seen: int = 0
    tick: int = 0
    augment_p: float = 0.0
    ada_sum: float = 0.0
    ada_count: int = 0
    skipped: dict = field(default_factory=lambda: {p: 0 for p in PHASES})
    fd_kimg0: Optional[float] = None

    def to_json(self) -> dict:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


@dataclass
class TrainResult:
    counters: Counters
    G: Generator
    D: Discriminator
    G_ema: Generator
    stats: list[dict]         # one row per tick of this call (also in <work>/stats.jsonl)
    fd_start: Optional[float]
    fd_end: Optional[float]


class Trainer:
    def __init__(self, tp: TrainParams, dataset_dir: Path, work_dir: Path, seed: int, info: DistInfo = DistInfo(),
                 log=None, tracker=None, on_tick: Optional[Callable[[dict], None]] = None):
        self.tp, self.seed, self.info, self.log, self.tracker = tp, int(seed), info, log, tracker
        self.work = Path(work_dir)
        self.ckpt_dir = self.work / "checkpoints"
        self.device = pick_device(tp, info)
        configure_cuda(self.device, tp.distributed.cudnn_benchmark, tp.distributed.tf32)
        self.precision = pick_precision(tp, self.device)
        self.ds, self.spec = open_dataset(tp, Path(dataset_dir), self.seed)
        self.G, self.D = build_models(tp, self.spec, self.seed)
        self.G.to(self.device).requires_grad_(False)
        self.D.to(self.device).requires_grad_(False)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        if tp.distributed.compile == "rendering":   # after the copy: G_ema (fakes, evaluation) stays eager
            self.G.compile_rendering()
        o = tp.optim
        self.opt_G = _lazy_adam(self.G.parameters(), o.g_lr, o.betas, tp.loss.density_reg_every if tp.loss.density_reg > 0 else 1)
        self.loss = GanLoss(self.G, self.D, tp, self.spec, self.device, self.precision)
        # R1 phase: on for a gamma on the images, or on the mask where D takes one (PanoHead gates on the
        # image gamma alone; a mask-only R1 is kept possible here).
        self.r1_on = tp.loss.r1_gamma > 0 or (tp.loss.r1_gamma_mask > 0 and self.loss.mask_input)
        self.opt_D = _lazy_adam(self.D.parameters(), o.d_lr, o.betas, tp.loss.r1_interval if self.r1_on else 1)
        self.c = Counters(augment_p=tp.augment.p_init if tp.augment.enabled else 0.0)
        self.on_tick = on_tick
        if tp.batch % (info.world_size * tp.batch_gpu):
            raise ValueError(f"train.batch {tp.batch} must be a multiple of world_size*batch_gpu "
                             f"({info.world_size}*{tp.batch_gpu})")
        self.rounds = tp.batch // (info.world_size * tp.batch_gpu)   # accumulation rounds per process
        self._gen = torch.Generator(device=self.device)               # reseeded per (step, phase, round)
        self._skipped = DeviceCounters()
        self._resume()
        self._to_device_counters()

    # --- device-side counters -----------------------------------------------------------------------
    def _to_device_counters(self) -> None:
        """Host counters -> the device tensors the steps update (once, at start or resume)."""
        on = self.tp.augment.enabled
        self._augment_p = torch.tensor(self.c.augment_p, device=self.device) if on else None
        self._ada_sum = torch.tensor(self.c.ada_sum, device=self.device)

    def sync_counters(self) -> Counters:
        """Read the device-side counters into `self.c` (at tick ends and checkpoints, never inside a step)."""
        self._skipped.fold(self.c.skipped)
        extra = {"ada_sum": self._ada_sum} if self._augment_p is None else {"ada_sum": self._ada_sum, "augment_p": self._augment_p}
        for key, value in to_host(extra).items():
            setattr(self.c, key, value)
        return self.c

    # --- state -------------------------------------------------------------------------------------
    def _resume(self) -> None:
        path = latest(self.ckpt_dir)
        if path is None:
            return
        modules, meta = load_state(path, {"G_opt": self.opt_G, "D_opt": self.opt_D}, self.device)
        for name, mod in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema)):
            mod.load_state_dict(modules[name].state_dict())
        c = meta["counters"]
        self.c = Counters(**c)
        if self.log:
            self.log.info("train: resumed from %s (kimg %.3f, step %d)", path.name, self.c.images_seen / 1000, self.c.step)

    def checkpoint(self) -> None:
        self.sync_counters()
        if self.info.rank == 0:
            meta = {"counters": self.c.to_json(), "images_seen": self.c.images_seen, "seed": self.seed}
            save_state(self.ckpt_dir, {"G": self.G, "D": self.D, "G_ema": self.G_ema},
                       {"G_opt": self.opt_G, "D_opt": self.opt_D}, meta, keep=self.tp.keep_checkpoints)
        barrier(self.info)

    # --- one step ----------------------------------------------------------------------------------
    def settings(self) -> StepSettings:
        kimg = self.c.images_seen / 1000
        tp = self.tp
        sch = tp.schedule
        return StepSettings(neural_resolution(kimg, sch.neural_resolution_initial, tp.model.neural_resolution,
                                              sch.neural_resolution_fade_kimg, sch.neural_resolution_mode),
                            blur_sigma(kimg, tp.loss.blur_init_sigma, tp.loss.blur_fade_kimg), self._augment_p,
                            swap_probability(kimg, tp.conditioning.swap_prob, tp.conditioning.swap_fade_kimg,
                                             tp.conditioning.swap_to_one_kimg))

    def to_device(self, batch: dict) -> dict:
        """Asynchronous upload (the loader pins host memory on CUDA); non-tensor fields stay as they are."""
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def _phase(self, name: str, fn, module, opt, batch: dict, s: StepSettings) -> dict:
        opt.zero_grad(set_to_none=True)
        module.requires_grad_(True)
        stats: dict[str, torch.Tensor] = {}
        bg = self.tp.batch_gpu
        total_rounds = self.rounds * self.info.world_size
        for i in range(self.rounds):
            k = self.info.rank * self.rounds + i
            part = {key: v[i * bg:(i + 1) * bg] for key, v in batch.items() if key != "batch_index"}
            gen = self._gen.manual_seed(derive_seed(self.seed, "train", self.c.step, name, k) % 2**63)
            for key, value in fn(part, s, gen, 1.0 / total_rounds).items():
                stats[key] = stats[key] + value / self.rounds if key in stats else value / self.rounds
        params = [p for p in module.parameters()]
        all_reduce_grads(params, self.info)
        with_grad = [p for p in params if p.grad is not None]
        norm = (torch.nn.utils.get_total_norm([p.grad for p in with_grad]) if with_grad
                else torch.zeros((), device=self.device))
        bad = (~torch.isfinite(norm)).float()            # device scalar: 1 skips the update below
        if self.tp.optim.grad_clip > 0 and with_grad:
            torch.nn.utils.clip_grads_with_norm_(with_grad, self.tp.optim.grad_clip, norm)
        opt.found_inf = bad                              # fused Adam leaves params and moments as they are
        opt.step()
        self._skipped.add(name, bad)
        stats[f"skipped_{name}"] = bad
        stats[f"grad_norm_{name}"] = torch.where(bad > 0, torch.zeros_like(norm), norm)   # skipped steps count 0
        module.requires_grad_(False)
        return stats

    def step(self, batch: dict) -> dict:
        """One optimisation step over the global batch; -> statistics as device tensors (0-d) or host numbers."""
        tp, s = self.tp, self.settings()
        batch = self.to_device(batch)
        stats = {}
        stats.update(self._phase("G_main", self.loss.g_main, self.G, self.opt_G, batch, s))
        if tp.loss.density_reg > 0 and self.c.step % tp.loss.density_reg_every == 0:
            stats.update(self._phase("G_reg", self.loss.g_density, self.G, self.opt_G, batch, s))
        stats.update(self._phase("D_main", self.loss.d_main, self.D, self.opt_D, batch, s))
        if self.r1_on and self.c.step % tp.loss.r1_interval == 0:
            stats.update(self._phase("D_reg", self.loss.d_r1, self.D, self.opt_D, batch, s))
        self.c.images_seen += tp.batch
        self.c.step += 1
        update_ema(self.G_ema, self.G, ema_beta(tp.batch, self.c.images_seen, tp.optim.ema_kimg, tp.optim.ema_rampup))
        if tp.augment.enabled and not tp.augment.fixed:
            self._ada_sum = self._ada_sum + stats["real_sign"]
            self.c.ada_count += 1
            if self.c.ada_count >= tp.augment.adjust_every:
                mean = self._ada_sum / self.c.ada_count
                if self.info.distributed:
                    torch.distributed.all_reduce(mean)
                    mean = mean / self.info.world_size
                self._augment_p = adjust_p(self._augment_p, mean, tp.augment.target,
                                           tp.batch * self.c.ada_count, tp.augment.speed_kimg)
                self._ada_sum, self.c.ada_count = torch.zeros_like(self._ada_sum), 0
        stats.update(neural_resolution=s.neural_resolution, blur_sigma=s.blur_sigma, swap_prob=s.swap_prob,
                     augment_p=s.augment_p if s.augment_p is not None else 0.0)
        return stats

    # --- evaluation ---------------------------------------------------------------------------------
    @torch.no_grad()
    def frechet(self, stop: Optional[StopFlag] = None) -> Optional[float]:
        """Random-feature Fréchet distance between `eval.num_images` reals and G_ema fakes; None when a
        stop was requested meanwhile (a long evaluation must not delay the preemption checkpoint)."""
        n = self.tp.eval.num_images
        net = RandomFeatures(self.tp.eval.feature_seed).to(self.device)
        real = BatchStream(self.ds, n, window=self.tp.data.window).load(0)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "train", "eval") % 2**63)
        cam, c_g, _ = self.loss.gen_labels(real, gen)
        z = torch.randn(n, self.G.cfg.z_dim, generator=gen).to(self.device)
        fakes = []
        for i in range(0, n, 32):
            if stop is not None and stop.requested:
                return None
            fakes.append(self.G_ema(z[i:i + 32], c_g[i:i + 32], cam[i:i + 32], noise_mode="const").image)
        fr = net(real["image"].to(self.device)).cpu().double().numpy()
        ff = net(torch.cat(fakes)).cpu().double().numpy()
        return frechet_distance(fr, ff)

    def grid(self, rows: int = 4) -> np.ndarray:
        from balancehead.camera import camera_label

        from .conditioning import g_label
        from .fakes import render_grid

        real = BatchStream(self.ds, max(rows, 5), window=self.tp.data.window).load(0)
        front = torch.tensor(np.array([camera_label(0.0, 0.0)] * len(real["camera"])), dtype=torch.float32)
        batch = dict(real, camera=front)
        _, sem, _ = self.loss.real_labels(batch)
        c = g_label(self.spec, front.to(self.device), sem, 0.0, front.to(self.device), torch.Generator())
        return render_grid(self.G_ema, c[:rows], derive_seed(self.seed, "train", "grid") % 2**63, self.device,
                           self.tp.model.neural_resolution, real["camera"])

    # --- the loop ----------------------------------------------------------------------------------
    def run(self, stop: Optional[StopFlag] = None, max_steps: Optional[int] = None,
            evaluate: bool = True) -> TrainResult:
        tp, info = self.tp, self.info
        total = int(math.ceil(tp.total_kimg * 1000 / tp.batch)) * tp.batch
        fd_start = self.c.fd_kimg0
        if evaluate and info.rank == 0 and self.c.step == 0 and fd_start is None:
            fd_start = self.c.fd_kimg0 = self.frechet(stop)
            if self.log and fd_start is not None:
                self.log.info("train: random-feature FD at kimg 0 = %.3f", fd_start)
        if any_rank(evaluate and fd_start is None and stop is not None and stop.requested, info, self.device):
            # SIGTERM during that evaluation: checkpoint now rather than after it and a step
            self.checkpoint()
            raise Preempted(tp.requeue_exit_code)
        stream = BatchStream(self.ds, tp.batch, info.rank, info.world_size, tp.data.window, start_batch=self.c.step)
        loader = make_loader(stream, tp.data.num_workers, pin_memory=self.device.type == "cuda")
        tick_images = max(int(tp.kimg_per_tick * 1000), 1)
        tick_stats = TickStats()
        stop_poll = StopPoll(info, self.device)
        tick_start, tick_images_start = time.time(), self.c.images_seen
        steps_done = 0
        stats_rows: list[dict] = []
        bar = tqdm(total=round(total / 1000, 3), initial=round(self.c.images_seen / 1000, 3), unit="kimg",
                   desc="train", disable=None if info.rank == 0 else True, mininterval=1.0,
                   bar_format="{l_bar}{bar}| {n:.3f}/{total:.3f} kimg [{elapsed}<{remaining}]")
        try:
            while self.c.images_seen < total and (max_steps is None or steps_done < max_steps):
                batch = next(loader)
                if batch["batch_index"] != self.c.step:
                    raise RuntimeError(f"data order broken: got batch {batch['batch_index']} at step {self.c.step}")
                tick_stats.add(self.step(batch))
                steps_done += 1
                bar.update(round(tp.batch / 1000, 3))
                done = self.c.images_seen >= total
                if self.c.images_seen // tick_images > (self.c.images_seen - tp.batch) // tick_images or done:
                    self.c.tick += 1
                    means = tick_stats.means()                 # the tick's one device-to-host read
                    self.sync_counters()
                    dt = time.time() - tick_start
                    n = self.c.images_seen - tick_images_start
                    row = {"tick": self.c.tick, "kimg": self.c.images_seen / 1000, **means,
                           "sec_per_kimg": dt / max(n / 1000, 1e-9), "img_per_s": n / max(dt, 1e-9),
                           "peak_memory_mb": _peak_memory_mb(self.device),
                           "skipped_steps": float(sum(self.c.skipped.values()))}
                    stats_rows.append(row)
                    self._record_tick(row)
                    tick_stats.reset()
                    tick_start, tick_images_start = time.time(), self.c.images_seen
                    if self.c.tick % tp.checkpoint_ticks == 0 and not done:
                        self.checkpoint()
                    if tp.fakes_ticks and self.c.tick % tp.fakes_ticks == 0 and info.rank == 0 and self.on_tick:
                        self.on_tick({"kimg": self.c.images_seen / 1000, "grid": self.grid()})
                if stop_poll.poll(stop is not None and stop.requested):
                    self.checkpoint()
                    if self.log:
                        self.log.info("train: preempted at kimg %.3f; checkpoint written, exit %d",
                                      self.c.images_seen / 1000, tp.requeue_exit_code)
                    raise Preempted(tp.requeue_exit_code)
        finally:
            bar.close()
        self.checkpoint()
        fd_end = self.frechet(stop) if evaluate and info.rank == 0 else None
        if evaluate and info.rank == 0 and fd_end is None:   # stopped: the final checkpoint is written; evaluate after requeue
            raise Preempted(tp.requeue_exit_code)
        return TrainResult(self.c, self.G, self.D, self.G_ema, stats_rows, self.c.fd_kimg0, fd_end)

    def _record_tick(self, row: dict) -> None:
        if self.info.rank != 0:
            return
        stats_file = self.work / "stats.jsonl"
        rows = fileio.read_jsonl(stats_file) if stats_file.exists() else []
        rows = [r for r in rows if r["kimg"] < row["kimg"]] + [row]   # drop rows from after a resumed checkpoint
        fileio.write_jsonl(stats_file, rows)
        if self.log:
            eta = duration_text(row["sec_per_kimg"] * max(self.tp.total_kimg - row["kimg"], 0.0))
            self.log.info("tick %d kimg %.3f/%g " + " ".join(f"{k}=%.4g" for k in ("loss_g", "loss_d", "r1_penalty", "sec_per_kimg")) + " ETA %s",
                          row["tick"], row["kimg"], self.tp.total_kimg, *[row.get(k, float("nan")) for k in ("loss_g", "loss_d", "r1_penalty", "sec_per_kimg")], eta)
        if self.tracker is not None:
            self.tracker.log_metrics({k: float(v) for k, v in row.items() if isinstance(v, (int, float))},
                                     step=int(round(row["kimg"] * 1000)))


def read_stats(work_dir: Path) -> list[dict]:
    f = Path(work_dir) / "stats.jsonl"
    return fileio.read_jsonl(f) if f.exists() else []


def stats_tsv(rows: list[dict]) -> str:
    keys = ["tick", "kimg"] + sorted({k for r in rows for k in r} - {"tick", "kimg"})
    lines = ["\t".join(keys)]
    for r in rows:
        lines.append("\t".join("" if k not in r else f"{r[k]:.6g}" for k in keys))
    return "\n".join(lines) + "\n"


__all__ = ["Trainer", "TrainResult", "read_stats", "stats_tsv", "json"]
