"""Training statistics kept on the device and read back to the host once per tick.

A training step returns its statistics as 0-d device tensors (losses, scores, gradient norms, a 0/1
`skipped_<phase>` flag). `TickStats.add` sums them on the device (plus how many steps reported each
key, which the host knows without looking at a value); `TickStats.means` stacks the sums and copies
them to the host in one transfer at the end of a tick. `DeviceCounters` does the same for the
counters that must survive a checkpoint (skipped steps per phase): device tensors during the tick,
folded into host integers whenever the loop reads them.
"""
from __future__ import annotations

import torch


def to_host(values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Many device scalars -> floats with a single device-to-host copy."""
    if not values:
        return {}
    keys = list(values)
    flat = torch.stack([values[k].detach().float().reshape(()) for k in keys]).cpu().tolist()
    return dict(zip(keys, flat))


class TickStats:
    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.host: dict[str, float] = {}           # host-side figures (resolution, blur sigma, ...)
        self.counts: dict[str, int] = {}

    def add(self, stats: dict) -> None:
        for key, value in stats.items():
            if isinstance(value, torch.Tensor):
                v = value.detach().float()
                self.sums[key] = self.sums[key] + v if key in self.sums else v.clone()
            else:
                self.host[key] = self.host.get(key, 0.0) + float(value)
            self.counts[key] = self.counts.get(key, 0) + 1

    def means(self) -> dict[str, float]:
        total = {**to_host(self.sums), **self.host}
        return {k: total[k] / self.counts[k] for k in sorted(total)}

    def reset(self) -> None:
        self.sums, self.host, self.counts = {}, {}, {}


class DeviceCounters:
    """Integer counters incremented by device tensors; `fold(host)` adds them to a host dict."""

    def __init__(self):
        self.pending: dict[str, torch.Tensor] = {}

    def add(self, key: str, value: torch.Tensor) -> None:
        v = value.detach().to(torch.int64)
        self.pending[key] = self.pending[key] + v if key in self.pending else v.clone()

    def fold(self, host: dict[str, int]) -> None:
        for key, value in to_host(self.pending).items():
            host[key] = host.get(key, 0) + int(round(value))
        self.pending = {}
