"""Streaming reader of a packed dataset for training: tar shards -> tensors, without unpacking.

How an epoch is split, so that every sample is seen exactly once per epoch whatever the number of
DataLoader workers and distributed ranks:

1. The epoch's sample list is fixed by (seed, epoch) alone: the packed manifest rows sorted by
   (shard, key), each with a repeat count (1, or a multinomial draw under yaw-bin reweighting), laid out
   shard by shard in a seeded shard order.
2. That list (with repeats expanded) is cut into `world_size` contiguous parts, one per rank, and each
   part into `num_workers` contiguous parts, one per worker. Contiguous cuts keep each worker on few
   shards (mostly sequential reads); sizes differ by at most one sample.
3. A worker streams its shards, keeps only its keys (other members are skipped without reading their
   data), and shuffles through a buffer seeded by (seed, epoch, rank, worker).

The multiset of samples in an epoch therefore depends only on (seed, epoch); only the order depends on
the split. Call `set_epoch(e)` before each epoch (or use `repeat=True`, which walks epochs itself).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from balancehead.data.conditions import ConditionTable
from balancehead.data.manifest import (CONDITIONS_FILE, IDENTITY_CONDITIONS_FILE, MANIFEST_FILE, NUM_YAW_BINS,
                                       SHARDS_DIR, VIEW_CONDITIONS_FILE, VIEW_IDENTITY_CONDITIONS_FILE, packed_rows,
                                       read_manifest, yaw_bins)
from balancehead.data.shards import RawSample, iter_shard_raw

TRAIN_ROLES = ("front", "view")


def sample_probabilities(yaws, bin_weights: Sequence[float]) -> np.ndarray:
    """Per-sample sampling probabilities giving each 45° yaw bin a share proportional to its weight.

    `bin_weights[b]` is the target share of bin b (see `manifest.yaw_bin`), spread evenly over that
    bin's samples; bins without samples drop out and the rest are renormalised. Equal weights thus
    give a yaw-balanced epoch however skewed the data is.
    """
    w = np.asarray(bin_weights, dtype=np.float64)
    if w.shape != (NUM_YAW_BINS,) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"yaw bin weights must be {NUM_YAW_BINS} finite non-negative numbers, got {bin_weights}")
    bins = yaw_bins(yaws)
    counts = np.bincount(bins, minlength=NUM_YAW_BINS)
    present = counts > 0
    total = w[present].sum()
    if total <= 0:
        raise ValueError("yaw bin weights are zero on every bin that has samples")
    share = np.where(present, w / total, 0.0)
    return share[bins] / counts[bins]


@dataclass(frozen=True)
class _Entry:
    shard: str
    key: str
    image_id: str
    subject_id: str
    yaw: float


class ShardDataset(torch.utils.data.IterableDataset):
    """Iterable dataset over the packed dataset in `root` (manifest + shards + condition tables).

    Yields dicts: image (3xRxR float in [-1, 1]), mask (1xRxR float in [0, 1]), camera (25,),
    condition (D,) — the subject's front feature —, view_condition (D,) when `view_conditions.safetensors`
    exists, identity (D') / view_identity (D') when the identity tables exist (the subject's front
    identity feature / the image's own, BalanceHead A.6.10), subject_index (row of the subject in the condition table), yaw, image_id, key.

    Args:
      resolution: resize images/masks to this square size (None = as stored).
      roles: manifest roles to stream (default front + view).
      shuffle, seed, buffer_size: deterministic shard order and buffer shuffle from (seed, epoch).
      rank, world_size: this process's place in distributed training.
      yaw_bin_weights: 8 target shares per yaw bin (None = every sample exactly once per epoch);
        with weights, an epoch is `epoch_size` (default: number of samples) draws with replacement.
      repeat: iterate epochs forever (epoch, epoch+1, ...), as GAN training loops do.
    """

    def __init__(self, root, resolution: int | None = None, roles: Sequence[str] | None = TRAIN_ROLES,
                 shuffle: bool = True, seed: int = 0, buffer_size: int = 256, rank: int = 0,
                 world_size: int = 1, yaw_bin_weights: Sequence[float] | None = None,
                 epoch_size: int | None = None, repeat: bool = False, epoch: int = 0):
        super().__init__()
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {buffer_size}")
        if resolution is not None and resolution < 1:
            raise ValueError(f"resolution must be positive, got {resolution}")
        self.root = Path(root)
        self.resolution = resolution
        self.shuffle, self.seed, self.buffer_size = shuffle, int(seed), int(buffer_size)
        self.rank, self.world_size = int(rank), int(world_size)
        self.repeat, self.epoch = repeat, int(epoch)
        rows = packed_rows(read_manifest(self.root / MANIFEST_FILE,
                                         columns=["image_id", "subject_id", "role", "shard", "key", "yaw"]),
                           roles=None if roles is None else set(roles))
        if not rows:
            raise ValueError(f"{self.root}: no packed rows with roles {roles}")
        self.entries = [_Entry(r["shard"], r["key"], r["image_id"], r["subject_id"],
                               float("nan") if r["yaw"] is None else float(r["yaw"])) for r in rows]
        self.by_key = {(e.shard, e.key): e for e in self.entries}
        self.conditions = self._load_table(CONDITIONS_FILE, [e.subject_id for e in self.entries], required=True)
        self.view_conditions = self._load_table(VIEW_CONDITIONS_FILE, [e.image_id for e in self.entries],
                                                required=False)
        self.identity_conditions = self._load_table(IDENTITY_CONDITIONS_FILE, [e.subject_id for e in self.entries],
                                                    required=False)
        self.view_identity_conditions = self._load_table(VIEW_IDENTITY_CONDITIONS_FILE,
                                                         [e.image_id for e in self.entries], required=False)
        self.probabilities = None
        if yaw_bin_weights is not None:
            yaws = np.array([e.yaw for e in self.entries])
            if not np.all(np.isfinite(yaws)):
                raise ValueError("yaw reweighting needs a yaw on every packed row")
            self.probabilities = sample_probabilities(yaws, yaw_bin_weights)
        self.epoch_size = len(self.entries) if epoch_size is None else int(epoch_size)
        if self.epoch_size < 1:
            raise ValueError(f"epoch_size must be >= 1, got {epoch_size}")
        if self.probabilities is None and epoch_size is not None and self.epoch_size != len(self.entries):
            raise ValueError("epoch_size only applies with yaw_bin_weights (otherwise an epoch is every sample once)")

    def _load_table(self, name: str, needed: list[str], required: bool) -> ConditionTable | None:
        path = self.root / name
        if not path.exists():
            if required:
                raise FileNotFoundError(f"{path} missing: every packed dataset carries its condition table")
            return None
        table = ConditionTable.load(path)
        missing = sorted({k for k in needed if k not in table})
        if missing:
            raise KeyError(f"{path}: no row for {len(missing)} id(s), e.g. {missing[:3]}")
        return table

    # --- epoch planning (pure functions of seed, epoch, rank, worker) --------------------------------
    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def epoch_counts(self, epoch: int) -> np.ndarray:
        """How many times each entry is drawn this epoch (all ones without reweighting)."""
        if self.probabilities is None:
            return np.ones(len(self.entries), dtype=np.int64)
        rng = np.random.default_rng([self.seed, epoch, 1])
        return rng.multinomial(self.epoch_size, self.probabilities).astype(np.int64)

    def epoch_plan(self, epoch: int) -> list[tuple[int, int]]:
        """The epoch's global list as (entry index, repeat count) runs, in shard order."""
        counts = self.epoch_counts(epoch)
        shards = sorted({e.shard for e in self.entries})
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch, 0])
            shards = [shards[i] for i in rng.permutation(len(shards))]
        rank_of = {s: i for i, s in enumerate(shards)}
        order = sorted(range(len(self.entries)), key=lambda i: (rank_of[self.entries[i].shard], self.entries[i].key))
        return [(i, int(counts[i])) for i in order if counts[i] > 0]

    def slot_plan(self, epoch: int, slot: int, num_slots: int) -> list[tuple[int, int]]:
        """The part of the epoch plan for one (rank, worker) slot; see the module docstring."""
        plan = self.epoch_plan(epoch)
        total = sum(c for _, c in plan)
        # Two-level cut (ranks, then workers within a rank) so a rank's share does not depend on
        # its number of workers.
        workers = num_slots // self.world_size
        rank, worker = divmod(slot, workers)
        r0, r1 = _cut(total, self.world_size, rank)
        w0, w1 = _cut(r1 - r0, workers, worker)
        return _take(plan, r0 + w0, r0 + w1)

    # --- iteration ----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        slot = self.rank * num_workers + worker
        epoch = self.epoch
        while True:
            yield from self._iter_epoch(epoch, slot, self.world_size * num_workers)
            if not self.repeat:
                return
            epoch += 1

    def _iter_epoch(self, epoch: int, slot: int, num_slots: int) -> Iterator[dict]:
        plan = self.slot_plan(epoch, slot, num_slots)
        rng = np.random.default_rng([self.seed, epoch, 2, slot])
        buffer: list[tuple[_Entry, RawSample]] = []
        for item in self._stream(plan):
            if not self.shuffle:
                yield self._decode(*item)
                continue
            buffer.append(item)
            if len(buffer) >= self.buffer_size:
                j = int(rng.integers(len(buffer)))
                buffer[j], buffer[-1] = buffer[-1], buffer[j]
                yield self._decode(*buffer.pop())
        if self.shuffle:
            for j in rng.permutation(len(buffer)):
                yield self._decode(*buffer[j])

    def _stream(self, plan: list[tuple[int, int]]) -> Iterator[tuple[_Entry, RawSample]]:
        """Read the plan's shards in plan order, emitting each wanted sample `count` times."""
        groups: list[tuple[str, dict[str, int]]] = []
        for i, count in plan:
            e = self.entries[i]
            if not groups or groups[-1][0] != e.shard:
                groups.append((e.shard, {}))
            groups[-1][1][e.key] = count
        for shard, want in groups:
            found = 0
            for raw in iter_shard_raw(self.root / SHARDS_DIR / shard, keys=set(want)):
                found += 1
                entry = self.by_key[(shard, raw.key)]
                for _ in range(want[raw.key]):
                    yield entry, raw
            if found != len(want):
                raise ValueError(f"{shard}: manifest lists {len(want)} wanted keys, shard holds {found}")

    def _decode(self, entry: _Entry, raw: RawSample) -> dict:
        where = f"{self.root / SHARDS_DIR / entry.shard}: sample {entry.key!r}"
        try:
            s = raw.decode()
        except Exception as e:  # a garbled PNG or label: name the sample, not a PIL internals frame  # noqa: BLE001
            raise ValueError(f"{where} cannot be decoded ({type(e).__name__}: {e}); rerun pack_dataset") from e
        if s.mask is None:
            raise ValueError(f"{where} has no mask member")
        camera = np.asarray(s.label.get("camera", ()), dtype=np.float64)
        if camera.shape != (25,) or not np.isfinite(camera).all():
            raise ValueError(f"{where}: label 'camera' must be 25 finite numbers, got {s.label.get('camera')!r}"
                             "; rerun the stage that labelled it (preprocess) and pack_dataset")
        image, mask = s.image, s.mask
        if self.resolution is not None and image.shape[:2] != (self.resolution, self.resolution):
            image, mask = _resize(image, self.resolution, "image"), _resize(mask, self.resolution, "mask")
        out = {
            "image": torch.from_numpy(image).permute(2, 0, 1).float().div_(127.5).sub_(1.0),
            "mask": torch.from_numpy(mask)[None].float().div_(255.0),
            "camera": torch.tensor(s.label["camera"], dtype=torch.float32),
            "condition": torch.from_numpy(self.conditions[entry.subject_id].astype(np.float32)),
            "subject_index": self.conditions.index[entry.subject_id],
            "yaw": torch.tensor(entry.yaw, dtype=torch.float32),
            "image_id": entry.image_id,
            "key": entry.key,
        }
        if self.view_conditions is not None:
            out["view_condition"] = torch.from_numpy(self.view_conditions[entry.image_id].astype(np.float32))
        if self.identity_conditions is not None:
            out["identity"] = torch.from_numpy(self.identity_conditions[entry.subject_id].astype(np.float32))
        if self.view_identity_conditions is not None:
            out["view_identity"] = torch.from_numpy(self.view_identity_conditions[entry.image_id].astype(np.float32))
        return out

    def __len__(self) -> int:
        """Samples this rank yields per epoch summed over its workers (exact, from the epoch plan)."""
        r0, r1 = _cut(self.epoch_size, self.world_size, self.rank)
        return r1 - r0


def _cut(total: int, parts: int, index: int) -> tuple[int, int]:
    """[start, end) of part `index` when `total` items are cut into `parts` near-equal contiguous parts."""
    return total * index // parts, total * (index + 1) // parts


def _take(plan: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """Positions [start, end) of the plan with repeats expanded, returned again as (index, count) runs."""
    out, pos = [], 0
    for i, c in plan:
        lo, hi = max(pos, start), min(pos + c, end)
        if hi > lo:
            out.append((i, hi - lo))
        pos += c
        if pos >= end:
            break
    return out


def _resize(array: np.ndarray, size: int, kind: str) -> np.ndarray:
    from PIL import Image

    resample = Image.Resampling.LANCZOS if kind == "image" else Image.Resampling.BILINEAR
    return np.array(Image.fromarray(array).resize((size, size), resample))  # writable copy for torch
