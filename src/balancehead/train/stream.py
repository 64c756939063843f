"""Deterministic training batches from the packed shards, whatever the number of ranks and workers.

The reader (`balancehead.data.reader.ShardDataset`) fixes each epoch's sample list from (seed, epoch)
alone, in shard order (optionally yaw-bin reweighted). On top of it this module defines one global
stream of samples and cuts it into global batches:

1. Epoch e's list is cut into windows of `window` consecutive samples (a window spans one or two
   shards); each window is shuffled with a generator seeded by (seed, epoch, window). Windows keep
   reads shard-local; the shuffle mixes subjects and views within them (shard order itself is
   shuffled per epoch by the reader).
2. Epochs are concatenated; global batch j is positions [j*B, (j+1)*B) of that endless stream.
3. Rank r of W takes rows [r*B/W, (r+1)*B/W) of every global batch; data-loader worker k of K yields
   the global batches start + k, start + k + K, .... PyTorch's DataLoader takes batches from its workers round-
   robin, so batches come out in j order for any K.

So batch j's content depends only on (seed, j): the same for 1 or 8 GPUs, 0 or 4 workers, and a
resumed run starts again at batch j without replaying the earlier ones.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from balancehead.data.manifest import SHARDS_DIR
from balancehead.data.reader import ShardDataset
from balancehead.data.shards import iter_shard_raw


class BatchStream(torch.utils.data.IterableDataset):
    def __init__(self, dataset: ShardDataset, batch: int, rank: int = 0, world_size: int = 1,
                 window: int = 256, start_batch: int = 0):
        super().__init__()
        if batch % world_size:
            raise ValueError(f"batch {batch} must be divisible by world size {world_size}")
        self.ds, self.batch, self.rank, self.world_size = dataset, batch, rank, world_size
        self.window, self.start_batch = int(window), int(start_batch)
        self.local = batch // world_size
        self.epoch_len = int(dataset.epoch_counts(0).sum())
        self._plans: dict[int, list[int]] = {}

    def epoch_positions(self, epoch: int) -> list[int]:
        """Entry index at each position of epoch `epoch` (repeats expanded, windows shuffled)."""
        if epoch not in self._plans:
            flat = [i for i, count in self.ds.epoch_plan(epoch) for _ in range(count)]
            out = []
            for w, start in enumerate(range(0, len(flat), self.window)):
                chunk = flat[start:start + self.window]
                perm = np.random.default_rng([self.ds.seed, epoch, 3, w]).permutation(len(chunk))
                out.extend(chunk[k] for k in perm)
            self._plans = {epoch: out}       # keep one epoch in memory
        return self._plans[epoch]

    def batch_entries(self, j: int) -> list[int]:
        """Entry indices of this rank's rows of global batch j."""
        lo = j * self.batch + self.rank * self.local
        out = []
        for pos in range(lo, lo + self.local):
            epoch, k = divmod(pos, self.epoch_len)
            out.append(self.epoch_positions(epoch)[k])
        return out

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        j = self.start_batch + worker     # the loader asks worker 0 first, then 1, ...
        while True:
            yield self.load(j)
            j += workers

    def load(self, j: int) -> dict:
        """Read and collate this rank's rows of global batch j (shard-local reads, skip the rest)."""
        entries = self.batch_entries(j)
        wanted: dict[str, set[str]] = {}
        for i in entries:
            e = self.ds.entries[i]
            wanted.setdefault(e.shard, set()).add(e.key)
        decoded = {}
        for shard, keys in sorted(wanted.items()):
            for raw in iter_shard_raw(self.ds.root / SHARDS_DIR / shard, keys=keys):
                decoded[(shard, raw.key)] = self.ds._decode(self.ds.by_key[(shard, raw.key)], raw)
        rows = [decoded[(self.ds.entries[i].shard, self.ds.entries[i].key)] for i in entries]
        out = {"batch_index": j}
        for key, value in rows[0].items():
            if isinstance(value, torch.Tensor):
                out[key] = torch.stack([r[key] for r in rows])
            elif isinstance(value, (int, float)):
                out[key] = torch.tensor([r[key] for r in rows])
            else:
                out[key] = [r[key] for r in rows]
        return out


def make_loader(stream: BatchStream, num_workers: int, pin_memory: bool = False) -> Iterator[dict]:
    """An endless iterator of this rank's batches in global-batch order (in pinned memory when asked, so
    the step's upload to the GPU is asynchronous)."""
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
                                         persistent_workers=False, prefetch_factor=2 if num_workers else None)
    return iter(loader)
