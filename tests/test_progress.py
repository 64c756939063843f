"""Progress lines reach the log (not only a terminal): counts, rate, ETA; train-style durations."""
from __future__ import annotations

import logging

from balancehead.progress import Progress, duration_text, heartbeat, progress_line


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _log():
    log = logging.getLogger("test-progress")
    log.handlers.clear()
    h = _Lines()
    log.addHandler(h)
    log.setLevel(logging.INFO)
    log.propagate = False
    return log, h


def test_progress_line_has_count_rate_and_eta():
    line = progress_line("ingest items", 30, 120, 10.0)
    assert line == "ingest items: 30/120 item (25%), 3 item/s, elapsed 10s, ETA 30s"
    assert progress_line("x", 120, 120, 60.0).endswith("ETA 0s")
    assert [duration_text(s) for s in (5, 185, 7440, float("nan"))] == ["5s", "3m05s", "2h04m", "?"]


def test_progress_logs_periodically_and_at_the_end():
    log, h = _log()
    with Progress(log, "stage items", total=4, every=0.0) as bar:
        for _ in range(4):
            bar.update(1)
    assert len(h.lines) == 4           # 3 intermediate lines (every=0) + the final one
    assert h.lines[0].startswith("stage items: 1/4 item (25%)") and "ETA" in h.lines[0]
    assert h.lines[-1].startswith("stage items: 4/4 item (100%)")


def test_heartbeat_reports_while_running():
    import time

    log, h = _log()
    with heartbeat(log, "compiling", every=0.05):
        time.sleep(0.2)
    assert h.lines[0] == "compiling ..." and h.lines[-1].startswith("compiling: done in")
    assert any("still running" in line for line in h.lines[1:-1])


def test_track_yields_everything_and_logs_the_total():
    from balancehead.progress import track

    log, h = _log()
    assert list(track(range(5), log, "invert: targets", "target", every=0.0)) == [0, 1, 2, 3, 4]
    assert h.lines[-1].startswith("invert: targets: 5/5 target (100%)")
