"""The self-contained HTML report: every image inlined as a base64 data URI, so the one file opens
from disk anywhere. Output is deterministic for equal inputs (sorted inputs, fixed plot metadata, no
timestamps); the only provenance is the git commit passed in."""
from __future__ import annotations

import base64
import html
import io as _io
import json
from pathlib import Path

import numpy as np

from .. import fileio

MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def img_tag(data: bytes, mime: str, alt: str, width: int | None = None) -> str:
    w = f' width="{width}"' if width else ""
    return f'<img src="{data_uri(data, mime)}" alt="{html.escape(alt)}"{w} style="image-rendering:pixelated">'


def file_img(path: Path, width: int | None = None) -> str:
    return img_tag(path.read_bytes(), MIME[path.suffix.lower()], path.name, width)


def file_img_native(path: Path, min_width: int) -> str:
    """An image shown at its own pixel width, small ones upscaled to `min_width`: a turntable rendered
    at the model's full output resolution (512 px for the paper preset) is never shrunk to a thumbnail."""
    from PIL import Image

    data = path.read_bytes()
    with Image.open(_io.BytesIO(data)) as im:
        width = im.size[0]
    return img_tag(data, MIME[path.suffix.lower()], path.name, max(width, min_width))


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def table(rows: list[tuple], header: tuple) -> str:
    """A table inside a horizontally scrolling box (wide tables never stretch the page)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def flatten(d: dict) -> list[tuple[str, object]]:
    """Table rows of a nested dict (lists shown as JSON)."""
    return [(k, json.dumps(v) if isinstance(v, list) else v) for k, v in fileio.flatten(d).items()]


def read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = [l.split("\t") for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
    return lines[0], lines[1:]


def _num(s: str):
    try:
        return float(s)
    except ValueError:
        return None


def plot_png(draw) -> bytes:
    """Render a matplotlib figure drawn by `draw(ax)` to PNG bytes without varying metadata."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    draw(ax)
    fig.tight_layout()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _column(header, rows, name) -> np.ndarray:
    if name not in header:
        return np.full(len(rows), np.nan)
    j = header.index(name)
    return np.array([_num(r[j]) if j < len(r) and r[j] != "" and _num(r[j]) is not None else np.nan for r in rows], float)


def bias_curve_png(header, rows) -> bytes:
    """FID per yaw bin, with the bootstrap standard deviation (column fid_std) as error bars."""
    labels = [f"{r[0]}°" for r in rows]
    ys, err = _column(header, rows, "fid"), _column(header, rows, "fid_std")

    def draw(ax):
        xs = np.arange(len(labels))
        if np.isfinite(err).any():
            ax.errorbar(xs, ys, yerr=np.where(np.isfinite(err), err, 0.0), marker="o", capsize=4,
                        label="FID ± bootstrap s.d.")
            ax.legend(fontsize=8)
        else:
            ax.plot(xs, ys, marker="o")
        ax.set_xticks(xs, labels)
        ax.set_xlabel("yaw bin centre (0° = front, 180° = back)")
        ax.set_ylabel("FID (lower is better)")
        ax.set_title("Directional bias: FID per 45° yaw bin")
        ax.grid(alpha=0.3)
    return plot_png(draw)


def bias_curves_png(curves: dict[str, tuple[list[str], list[list[str]]]]) -> bytes:
    """Several runs' FID per yaw bin overlaid ({label: (header, rows)} of fid_by_yaw.tsv files), each with
    its bootstrap standard deviation (fid_std) as error bars where present; bins on the union of labels."""
    bins = []
    for _, rows in curves.values():
        bins += [r[0] for r in rows if r[0] not in bins]
    xs = np.arange(len(bins))

    def draw(ax):
        n = max(len(curves), 1)
        for k, (label, (header, rows)) in enumerate(curves.items()):
            at = {r[0]: i for i, r in enumerate(rows)}
            ys, err = _column(header, rows, "fid"), _column(header, rows, "fid_std")
            y = np.array([ys[at[b]] if b in at else np.nan for b in bins])
            e = np.array([err[at[b]] if b in at else np.nan for b in bins])
            shift = (k - (n - 1) / 2) * 0.06            # side by side, so the error bars stay readable
            ax.errorbar(xs + shift, y, yerr=np.where(np.isfinite(e), e, 0.0) if np.isfinite(e).any() else None,
                        marker="o", capsize=3, label=label)
        ax.set_xticks(xs, [f"{b}°" for b in bins])
        ax.set_xlabel("yaw bin centre (0° = front, 180° = back)")
        ax.set_ylabel("FID (lower is better)")
        ax.set_title("Directional bias per arm: FID per 45° yaw bin")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return plot_png(draw)


def bar_chart_png(labels: list[str], counts: list[int], title: str, xlabel: str) -> bytes:
    """Horizontal bars with full, wrapped, readable labels (one bar per label)."""
    import textwrap

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wrapped = ["\n".join(textwrap.wrap(t, 48)) or t for t in labels]
    lines = sum(max(1, w.count("\n") + 1) for w in wrapped)
    fig, ax = plt.subplots(figsize=(9.0, max(2.0, 0.28 * lines + 1.2)), dpi=100)
    if labels:
        y = np.arange(len(labels))
        ax.barh(y, counts, color="#b5523b")
        ax.set_yticks(y, wrapped, fontsize=9)
        ax.invert_yaxis()
        for yi, c in zip(y, counts):
            ax.text(c, yi, f" {c}", va="center", fontsize=8)
    else:
        ax.text(0.5, 0.5, "nothing rejected", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = _io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def curves_png(header, rows, columns=None, x_col=None, title="Training curves") -> bytes:
    """Line plot of `columns` (default: every column but the x one) against `x_col` (default: the first)."""
    xi = header.index(x_col) if x_col in header else 0
    x = np.array([_num(r[xi]) for r in rows], dtype=float)
    wanted = [j for j, name in enumerate(header) if j != xi and (columns is None or name in columns)]

    def draw(ax):
        for j in wanted:
            y = np.array([_num(r[j]) if j < len(r) and _num(r[j]) is not None else np.nan for r in rows], float)
            if np.isfinite(y).any():
                ax.plot(x, y, label=header[j])
        ax.set_xlabel(header[xi])
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        ax.set_title(title)
    return plot_png(draw)


CSS = """body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;font-size:13px}
th{background:#f3f3f3}.note{color:#955;font-style:italic}figure{display:inline-block;margin:4px;text-align:center}
figcaption{font-size:12px;max-width:40em}section{margin-bottom:2em}
.scroll{overflow-x:auto;max-width:100%;max-height:32em;overflow-y:auto}.scroll th{position:sticky;top:0}
.caption{font-size:13px;color:#444;max-width:60em}.yawrow td{vertical-align:middle}"""


class Report:
    def __init__(self, title: str):
        self.title = title
        self.sections: list[tuple[str, str, str]] = []   # (anchor, heading, body)

    def add(self, anchor: str, heading: str, body: str) -> None:
        self.sections.append((anchor, heading, body))

    def html(self, provenance: str) -> str:
        toc = "".join(f'<li><a href="#{a}">{html.escape(h)}</a></li>' for a, h, _ in self.sections)
        body = "".join(f'<section id="{a}"><h2>{html.escape(h)}</h2>{b}</section>' for a, h, b in self.sections)
        return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(self.title)}</title>"
                f"<style>{CSS}</style></head><body><h1>{html.escape(self.title)}</h1><ul>{toc}</ul>{body}"
                f"<footer><p>{html.escape(provenance)}</p></footer></body></html>\n")


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def figure(img: str, caption: str) -> str:
    return f"<figure>{img}<figcaption>{html.escape(caption)}</figcaption></figure>"


def caption(text: str) -> str:
    return f'<p class="caption">{html.escape(text)}</p>'
