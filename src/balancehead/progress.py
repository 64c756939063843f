"""Progress lines written to the log, so that SLURM and Snakemake log files (where stderr is not a
terminal and progress bars stay silent) show how far a long stage is, how fast it goes and when it ends.

    with Progress(log, "ingest items", total=400, unit="item") as bar:
        for chunk in chunks:
            ...
            bar.update(len(chunk))
    # -> "ingest items: 120/400 (30%), 4.1 item/s, elapsed 29s, ETA 1m08s"  (at most every `every` s)

    with heartbeat(log, "build_ops: compiling balancehead_ops_cuda"):   # for work without item counts
        compile()
    # -> "build_ops: compiling balancehead_ops_cuda ... still running, 2m00s elapsed"
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager


def duration_text(seconds: float) -> str:
    """12s, 3m05s, 2h04m."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def progress_line(what: str, done: float, total: float, elapsed: float, unit: str = "item", fmt: str = "{:g}") -> str:
    rate = done / elapsed if elapsed > 0 else float("nan")
    remaining = (total - done) / rate if rate and rate == rate and rate > 0 else float("nan")
    share = f" ({100 * done / total:.0f}%)" if total else ""
    return (f"{what}: {fmt.format(done)}/{fmt.format(total)} {unit}{share}, "
            f"{rate:.3g} {unit}/s, elapsed {duration_text(elapsed)}, ETA {duration_text(remaining if done < total else 0)}")


class Progress:
    """Counts work done and logs a progress line every `every` seconds and once at the end."""

    def __init__(self, log: logging.Logger, what: str, total: float, unit: str = "item", every: float = 30.0,
                 fmt: str = "{:g}"):
        self.log, self.what, self.total, self.unit, self.every, self.fmt = log, what, total, unit, every, fmt
        self.done = 0.0
        self.start = self.last = time.monotonic()

    def update(self, n: float = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every and self.done < self.total:
            self.last = now
            self.log.info(self.line(now))

    def line(self, now: float | None = None) -> str:
        return progress_line(self.what, self.done, self.total, (now or time.monotonic()) - self.start, self.unit, self.fmt)

    def __enter__(self) -> "Progress":
        return self

    def close(self) -> None:
        """The final line (what was done, at what rate)."""
        if self.total:
            self.log.info(self.line())

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        return False


def track(items, log: logging.Logger, what: str, unit: str = "item", every: float = 30.0):
    """Iterate `items` (a sized collection), logging progress lines as `Progress` does."""
    with Progress(log, what, len(items), unit, every) as bar:
        for item in items:
            yield item
            bar.update(1)


def stage_log() -> logging.Logger:
    """The logger the stage runner writes to logs/<stage>.log."""
    return logging.getLogger("balancehead")


@contextmanager
def heartbeat(log: logging.Logger, what: str, every: float = 30.0):
    """Log `what ... still running, <elapsed>` every `every` seconds while the body runs."""
    stop = threading.Event()
    start = time.monotonic()

    def beat():
        while not stop.wait(every):
            log.info("%s ... still running, %s elapsed", what, duration_text(time.monotonic() - start))

    thread = threading.Thread(target=beat, name="progress-heartbeat", daemon=True)
    log.info("%s ...", what)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        log.info("%s: done in %s", what, duration_text(time.monotonic() - start))
