"""The dataset card: what went in, what came out, and why the rest was dropped.

`build_card` summarises the manifest (counts per role kept/rejected, rejections by stage and by reason,
yaw histograms in 45° bins before and after filtering, IQA histogram) plus the per-stage counts the
pipeline hands in. `write_card` writes `card.json` and three PNG plots. Plots are drawn on a bare
`Figure` with the Agg canvas (no pyplot global state) and saved without the PNG "Software" text chunk,
so identical cards give identical files.
"""
from __future__ import annotations

import io
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from balancehead.data.manifest import NUM_YAW_BINS, ROLES, YAW_BIN_LABELS, normalize_row, yaw_bins
from balancehead.fileio import write_bytes, write_json

IQA_BINS = 10
IQA_EDGES = [float(x) for x in np.linspace(0.0, 100.0, IQA_BINS + 1)]
YAW_ROLES = ("front-candidate", "front", "view")  # generated images whose pose the filters act on
TOP_REASONS = 20
OTHER = "(other)"
NO_REASON = "(none given)"


def split_reasons(text: str | None) -> list[str]:
    """Reason text is '; '-separated; each part counts once. Empty text counts as NO_REASON."""
    parts = [p.strip() for p in (text or "").split(";")]
    return [p for p in parts if p] or [NO_REASON]


def yaw_histogram(yaws: Iterable[float]) -> list[int]:
    y = [v for v in yaws if v is not None and np.isfinite(v)]
    if not y:
        return [0] * NUM_YAW_BINS
    return [int(c) for c in np.bincount(yaw_bins(y), minlength=NUM_YAW_BINS)]


def iqa_histogram(scores: Iterable[float]) -> list[int]:
    s = np.clip(np.asarray([v for v in scores if v is not None], dtype=np.float64), 0.0, 100.0)
    idx = np.minimum((s // (100.0 / IQA_BINS)).astype(np.int64), IQA_BINS - 1)  # 100 goes in the last bin
    return [int(c) for c in np.bincount(idx, minlength=IQA_BINS)]


def build_card(manifest_rows: Iterable[Mapping[str, Any]], stage_counts: Mapping[str, Any],
               yaw_roles: Iterable[str] = YAW_ROLES) -> dict:
    """Summary dict (JSON-ready) of a manifest; `stage_counts` is passed through under "stages"."""
    rows = [normalize_row(r) for r in manifest_rows]  # validates, fills absent fields with None
    yaw_roles = set(yaw_roles)
    per_role = {r: {"total": 0, "kept": 0, "rejected": 0} for r in ROLES}
    by_stage: Counter = Counter()
    by_reason: dict[str, Counter] = {}
    for r in rows:
        kept = r["shard"] is not None
        per_role[r["role"]]["total"] += 1
        per_role[r["role"]]["kept" if kept else "rejected"] += 1
        if r.get("rejected_by") is not None:
            by_stage[r["rejected_by"]] += 1
            by_reason.setdefault(r["rejected_by"], Counter()).update(split_reasons(r.get("reasons")))
    reasons = {}
    for stage, counter in sorted(by_reason.items()):
        top = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        head = dict(top[:TOP_REASONS])
        rest = sum(c for _, c in top[TOP_REASONS:])
        if rest:
            head[OTHER] = rest
        reasons[stage] = head
    pose_rows = [r for r in rows if r["role"] in yaw_roles]
    yaw = {
        "bins": list(YAW_BIN_LABELS),
        "roles": sorted(yaw_roles),
        "before": yaw_histogram(r["yaw"] for r in pose_rows),
        "after": yaw_histogram(r["yaw"] for r in pose_rows if r["shard"] is not None),
        "after_by_role": {role: yaw_histogram(r["yaw"] for r in pose_rows if r["role"] == role and r["shard"] is not None)
                          for role in sorted(yaw_roles)},
        "missing_yaw": sum(1 for r in pose_rows if r["yaw"] is None),
    }
    iqa_rows = [r for r in rows if r.get("iqa_score") is not None]
    return {
        "num_rows": len(rows),
        "num_kept": sum(1 for r in rows if r["shard"] is not None),
        "num_subjects": len({r["subject_id"] for r in rows}),
        "num_subjects_kept": len({r["subject_id"] for r in rows if r["shard"] is not None}),
        "roles": per_role,
        "stages": dict(stage_counts),
        "rejections": {"by_stage": dict(sorted(by_stage.items())), "by_reason": reasons},
        "yaw_histogram": yaw,
        "iqa_histogram": {
            "edges": IQA_EDGES,
            "all": iqa_histogram(r["iqa_score"] for r in iqa_rows),
            "by_action": {a: iqa_histogram(r["iqa_score"] for r in iqa_rows if r.get("iqa_action") == a)
                          for a in sorted({str(r.get("iqa_action")) for r in iqa_rows if r.get("iqa_action")})},
        },
    }


# --- plots --------------------------------------------------------------------------------------------
def _figure(width=6.0, height=3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def plot_yaw(card: dict) -> bytes:
    yaw = card["yaw_histogram"]
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(NUM_YAW_BINS)
    ax.bar(x - 0.2, yaw["before"], width=0.4, label="before filtering", color="#bbbbbb")
    ax.bar(x + 0.2, yaw["after"], width=0.4, label="packed", color="#3b6ea8")
    ax.set_xticks(x, [f"{b}°" for b in yaw["bins"]])
    ax.set_xlabel("yaw bin centre (0 = front, 180 = back)")
    ax.set_ylabel("images")
    ax.set_title("Yaw distribution")
    ax.legend()
    fig.tight_layout()
    return _png(fig)


def plot_iqa(card: dict) -> bytes:
    iqa = card["iqa_histogram"]
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    edges = np.asarray(iqa["edges"])
    ax.bar(edges[:-1], iqa["all"], width=np.diff(edges), align="edge", color="#5a9a5a", edgecolor="white")
    ax.set_xlim(0, 100)
    ax.set_xlabel("IQA score")
    ax.set_ylabel("images")
    ax.set_title("Image quality of sources")
    fig.tight_layout()
    return _png(fig)


def plot_rejections(card: dict) -> bytes:
    items = [(f"{stage}: {reason}"[:60], count)
             for stage, reasons in card["rejections"]["by_reason"].items() for reason, count in reasons.items()]
    items.sort(key=lambda kv: (-kv[1], kv[0]))
    items = items[:30]
    fig = _figure(7.0, max(2.0, 0.3 * len(items) + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    if items:
        y = np.arange(len(items))
        ax.barh(y, [c for _, c in items], color="#b5523b")
        ax.set_yticks(y, [n for n, _ in items], fontsize=7)
        ax.invert_yaxis()
    else:
        ax.text(0.5, 0.5, "no rejections", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("images")
    ax.set_title("Rejection reasons")
    fig.tight_layout()
    return _png(fig)


PLOTS = {"yaw_histogram.png": plot_yaw, "iqa_histogram.png": plot_iqa, "rejections.png": plot_rejections}


def write_card(card: dict, out_dir) -> list[Path]:
    """Write card.json and the plots into `out_dir` (atomically, file by file); returns the paths."""
    out_dir = Path(out_dir)
    paths = [out_dir / "card.json"]
    write_json(paths[0], card)
    for name, plot in PLOTS.items():
        write_bytes(out_dir / name, plot(card))
        paths.append(out_dir / name)
    return paths
