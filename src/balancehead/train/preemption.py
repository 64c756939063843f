"""Preemption: SIGTERM / SIGUSR1 ask the loop to write a checkpoint and exit with the requeue code.

SLURM sends SIGTERM (or, with `--signal=USR1@90`, SIGUSR1) before killing a job; torchrun forwards
SIGTERM to its workers. The handler only sets a flag; the loop checks it between steps (and in
distributed runs all ranks agree on it by an all-reduce), checkpoints, and exits with
`train.requeue_exit_code` (default 3), which the SLURM profile maps to a requeue.
"""
from __future__ import annotations

import signal


class StopFlag:
    """Set by a signal; restores the previous handlers on `close()`."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self, install: bool = True):
        self.requested = False
        self.signum: int | None = None
        self._old = {}
        if install:
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, _frame):
        self.requested = True
        self.signum = signum

    def close(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


class Preempted(SystemExit):
    """Raised after the preemption checkpoint; carries the requeue exit code."""
