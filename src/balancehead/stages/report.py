"""report: one self-contained HTML page, `report`/index.html (images inlined), gathering the
dataset card (with real packed images per yaw bin), fakes grids, turntables of random samples and
inversions, training curves, the metric tables and the directional-bias curve with its error bars.
Figures carry captions in words; every count says what it counts. Missing inputs become a visible
note, never an error, so the report also works on a partial run. `balancehead sweep` writes its own page
with the same building blocks (`sweep_page`: Table 1 and every arm's bias curve overlaid)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from .. import fileio

STAGE_METRICS = ("dataset", "assess_quality", "select_front", "preprocess_views", "filter_views",
                 "sample_prior", "invert")

# Words for ids (yaw convention: 0 = front, +90 = the subject's left, 180 = back).
YAW_WORDS = {"0": "front", "45": "front, subject's left", "90": "left profile", "135": "back, subject's left",
             "180": "back", "-135": "back, subject's right", "-90": "right profile", "-45": "front, subject's right"}
STAGE_WORDS = {"ingest": "source check (ingest)", "assess_quality": "image quality (assess_quality)",
               "select_front": "front selection (select_front)", "preprocess_views": "view preprocessing",
               "filter_views": "view filter (filter_views)", "preprocess_fronts": "front preprocessing"}
CARD_FIGURES = {"yaw_histogram": "Yaw distribution: grey = generated images with a pose (front candidates, "
                                 "fronts and views) before filtering; blue = images packed for training.",
                "iqa_histogram": "Image-quality scores of the source images (0 = worst, 100 = best)."}
FAKES_WORDS = {"fid_random": "Random samples: random condition, rendered from real cameras (as in FID-random).",
               "fid_front": "Front condition rendered from the front, yaw 0° (as in FID-front).",
               "fid_back": "Front condition rendered from behind, |yaw| ≥ 90° (as in FID-back).",
               "fid_view": "Condition camera = render camera = a real image's camera (as in FID-view)."}
INVERSION_WORDS = {"target": "target image", "start": "start of the optimisation",
                   "input_view": "reconstruction in the input view", "turntable": "360° turntable of the inversion"}
SIDE_WORDS = {"front": "front", "left": "subject's left", "back": "back", "right": "subject's right"}
METRIC_WORDS = {
    "fid_random": "FID, random condition, real cameras (360° quality + diversity)",
    "fid_front": "FID of front renders vs front reals", "fid_back": "FID of back renders (|yaw| ≥ 90°)",
    "fid_view": "FID with condition = render view: the camera, or (view_semantic) the image's own CLIP feature",
    "fid_panohead_all": "PanoHead FID-all: condition = render view over all real cameras",
    "fid_panohead_front": "PanoHead FID-front: condition = render view, |yaw| < 90° (cameras and reals)",
    "memorisation_nearest_cosine": "mean CLIP cosine of generated fronts to their nearest training image",
    "mknnd": "mean k-nearest-neighbour identity distance (diversity; higher = more diverse)",
    "id_consistency": "identity similarity of one head across views (higher = more consistent)",
    "id_consistency_to_ref": "identity similarity of each view to the head's first (reference) view",
    "inversion.targets": "inversion: number of targets",
}
# inversion.<phase>_<measure> and inversion.novel_<side>_<measure> (stages/invert.py summarise)
PHASE_WORDS = {"start": "start of the optimisation (average latent)", "pivot": "pivot latent, generator not yet tuned",
               "input_view": "reconstruction in the input view"}
MEASURE_WORDS = {"psnr": "PSNR (dB, higher = closer)", "ssim": "SSIM (higher = closer)",
                 "lpips": "LPIPS (lower = closer)", "l2": "mean squared error (lower = closer)",
                 "id_sim": "identity similarity (higher = same person)"}


def _inversion_words(key: str) -> str:
    measure = next((m for m in MEASURE_WORDS if key.endswith(f"_{m}")), None)
    if measure is None:
        return ""
    stem = key[: -len(measure) - 1]
    if stem in PHASE_WORDS:
        return f"inversion, {PHASE_WORDS[stem]}: {MEASURE_WORDS[measure]} against the target"
    side = stem[len("novel_"):] if stem.startswith("novel_") else None
    if side in SIDE_WORDS:
        return f"inversion, novel view from the {SIDE_WORDS[side]}: {MEASURE_WORDS[measure]} against the ground truth"
    return ""


def _metric_words(name: str) -> str:
    if name in METRIC_WORDS:
        return METRIC_WORDS[name]
    if name.startswith("inversion."):
        return _inversion_words(name[len("inversion."):])
    for prefix, what in (("fid_yaw_", "FID in yaw bin {}°"), ("kid_yaw_", "KID in yaw bin {}°")):
        if name.startswith(prefix):
            label = name[len(prefix):]
            return what.format(label) + (f" ({YAW_WORDS[label]})" if label in YAW_WORDS else "")
    if name.startswith("kid_") and f"fid_{name[4:]}" in METRIC_WORDS:
        return "KID (×1, unbiased) of: " + METRIC_WORDS[f"fid_{name[4:]}"]
    return ""


def packed_samples_by_yaw(dataset_dir: Path, per_bin: int) -> dict[str, list[tuple[str, object]]]:
    """{yaw bin label: [(image id, HxWx3 uint8)]}: up to `per_bin` packed fronts/views per bin, evenly
    spread over the bin's images sorted by id (deterministic)."""
    import numpy as np

    from ..data.manifest import MANIFEST_FILE, SHARDS_DIR, YAW_BIN_LABELS, packed_rows, read_manifest, yaw_bin
    from ..data.shards import iter_shard

    manifest = Path(dataset_dir) / MANIFEST_FILE
    if per_bin <= 0 or not manifest.exists():
        return {}
    rows = sorted((r for r in packed_rows(read_manifest(manifest), roles={"front", "view"}) if r["yaw"] is not None),
                  key=lambda r: r["image_id"])
    chosen: dict[str, list[dict]] = {}
    for label in YAW_BIN_LABELS:
        in_bin = [r for r in rows if YAW_BIN_LABELS[yaw_bin(r["yaw"])] == label]
        if in_bin:
            idx = sorted(set(np.linspace(0, len(in_bin) - 1, min(per_bin, len(in_bin))).round().astype(int)))
            chosen[label] = [in_bin[i] for i in idx]
    by_shard: dict[str, dict[str, dict]] = {}
    for label, rs in chosen.items():
        for r in rs:
            by_shard.setdefault(r["shard"], {})[r["key"]] = r
    images = {}
    for shard, want in sorted(by_shard.items()):
        for s in iter_shard(Path(dataset_dir) / SHARDS_DIR / shard, keys=set(want)):
            images[want[s.key]["image_id"]] = s.image
    return {label: [(r["image_id"], images[r["image_id"]]) for r in rs if r["image_id"] in images]
            for label, rs in chosen.items()}


def _dataset_section(R, inputs, p) -> str:
    w = p.thumbnail_px
    body = ""
    samples = packed_samples_by_yaw(inputs["dataset"], p.samples_per_yaw_bin)
    if samples:
        rows = "".join(
            f'<tr class="yawrow"><th>{label}°<br><small>{YAW_WORDS.get(label, "")}</small></th><td>'
            + "".join(R.img_tag(R.png_bytes(img), "image/png", f"packed image {iid}", w) for iid, img in imgs)
            + "</td></tr>" for label, imgs in samples.items())
        body += ("<h3>Real packed images per yaw bin</h3>"
                 + R.caption(f"Up to {p.samples_per_yaw_bin} training images (fronts and kept views) per 45° yaw bin, "
                             "as stored in the packed shards. Empty bins are absent.")
                 + f'<div class="scroll"><table>{rows}</table></div>')
    else:
        body += R.note("no packed images to show (run pack_dataset)")

    card_dir = inputs["card"]
    card_json = card_dir / "card.json"
    card = json.loads(card_json.read_text()) if card_json.exists() else None
    for stem, words in CARD_FIGURES.items():
        f = card_dir / f"{stem}.png"
        if f.exists():
            body += R.figure(R.file_img(f), words)          # native size: plots stay legible
    if card is not None:
        yaw = card.get("yaw_histogram", {})
        if yaw.get("bins") is not None:
            roles = sorted(yaw.get("after_by_role", {}))
            rows = [(f"{b}° ({YAW_WORDS.get(str(b), '')})", yaw["before"][i], yaw["after"][i],
                     *[yaw["after_by_role"][r][i] for r in roles]) for i, b in enumerate(yaw["bins"])]
            body += ("<h3>Yaw counts (the numbers of the figure above)</h3>"
                     + R.caption("generated = images with a pose that the filters judged (front candidates, fronts, "
                                 "views), before filtering; packed = images in the training set, split by role.")
                     + R.table(rows, ("yaw bin", "generated", "packed", *[f"packed {r}s" for r in roles])))
        by_reason = card.get("rejections", {}).get("by_reason", {})
        items = sorted(((STAGE_WORDS.get(stage, stage), reason, count)
                        for stage, reasons in by_reason.items() for reason, count in reasons.items()),
                       key=lambda t: (-t[2], t[0], t[1]))
        body += ("<h3>Why images were rejected</h3>"
                 + R.img_tag(R.bar_chart_png([f"{st}: {reason}" for st, reason, _ in items[:30]],
                                             [c for _, _, c in items[:30]],
                                             "Rejection reasons (an image may have several)", "images"),
                             "image/png", "rejection reasons")
                 + R.table(items, ("stage", "reason", "images")))
    elif not (card_dir / "yaw_histogram.png").exists():
        body += R.note("no dataset card (run pack_dataset)")
    if (inputs["yaw_hist"]).exists():
        h, rows = R.read_tsv(inputs["yaw_hist"])
        body += ("<h3>Yaw histogram of the DVC plot (yaw_hist.tsv)</h3>"
                 + R.caption("Counts differently from the card: generated_views = views made by synth_views "
                             "(fronts not included) before filtering; packed = every packed image (fronts and views).")
                 + R.table([tuple(r) for r in rows], tuple(h)))
    rows = []
    for name in STAGE_METRICS:
        f = inputs[f"{name}_metrics"]
        if f.exists():
            rows += [(name, k, v) for k, v in R.flatten(json.loads(f.read_text()))]
    body += "<h3>Stage metrics</h3>" + (R.table(rows, ("stage", "metric", "value")) if rows else R.note("no stage metrics yet"))
    return body


def _training_section(R, inputs) -> str:
    if not (inputs["train_stats"]).exists():
        return R.note("no training statistics (train_stats.tsv absent)")
    h, rows = R.read_tsv(inputs["train_stats"])
    if not rows:
        return R.note("train_stats.tsv is empty")
    losses = [c for c in h if c.lower().startswith("loss_") or c == "r1_penalty"]
    body = R.figure(R.img_tag(R.curves_png(h, rows, losses, "kimg", "Losses"), "image/png", "training losses"),
                    "Generator and discriminator losses (and the R1 penalty) per tick, against thousands of images seen.")
    for col, words in (("img_per_s", "Throughput: training images per second"),
                       ("sec_per_kimg", "Seconds per thousand training images (lower is faster)")):
        if col in h:
            body += R.figure(R.img_tag(R.curves_png(h, rows, [col], "kimg", words), "image/png", words), words)
    return body + "<h3>Per-tick statistics</h3>" + R.table([tuple(r) for r in rows], tuple(h))


def _samples_section(R, inputs, p) -> str:
    w = p.thumbnail_px
    ev = inputs["eval"]
    grids = sorted(ev.glob("fakes_*.png")) if ev.exists() else []
    body = "".join(R.figure(R.file_img(f, 4 * w), FAKES_WORDS.get(f.stem[len("fakes_"):], f.stem)) for f in grids) \
        or R.note("no fakes grids (run evaluate)")
    tts = sorted(ev.glob("turntable_*.gif"))[: p.max_turntables] if ev.exists() else []
    body += "<h3>360° turntables of random samples</h3>" + (
        "".join(R.figure(R.file_img_native(f, w), f"Random sample {i + 1}, turned through 360° (rendered at "
                                                     "the model's output resolution)") for i, f in enumerate(tts))
        or R.note("no turntables"))
    return body


def _inversions_section(R, inputs, p) -> str:
    w = p.thumbnail_px
    inv = inputs["invert"]
    body = ""
    targets = sorted(d for d in inv.iterdir() if d.is_dir()) if inv.exists() else []
    for i, d in enumerate(targets[: p.max_turntables]):
        figs = [R.figure(R.file_img(d / f"{n}.png", w), INVERSION_WORDS[n])
                for n in ("target", "start", "input_view") if (d / f"{n}.png").exists()]
        if (d / "turntable.gif").exists():
            figs.append(R.figure(R.file_img_native(d / "turntable.gif", w), INVERSION_WORDS["turntable"]))
        novel = [R.figure(R.file_img(d / f"{k}_{v}.png", w // 2),
                          f"{'ground truth' if k == 'gt' else 'novel view'}, {SIDE_WORDS[v]}")
                 for v in ("front", "left", "back", "right") for k in ("gt", "novel") if (d / f"{k}_{v}.png").exists()]
        body += f"<h3>Inversion {i + 1} <small>(target {d.name})</small></h3>" + "".join(figs) + (
            "<br>" + "".join(novel) if novel else "")
    return body or R.note("no inversions (run invert)")


TABLE2 = (("psnr", "PSNR ↑"), ("lpips", "LPIPS ↓"), ("ssim", "SSIM ↑"), ("apd", "APD ↓"), ("csim", "CSIM ↑"),
          ("seconds_per_reconstruction", "Recon. (s) ↓"))


def _reconstruction_section(R, inputs, p) -> str:
    """PanoLAM Table 2 / 3 for the feed-forward reconstructor beside PTI, and per target the input photo with
    both 360° turntables (eval_recon's outputs; PTI's turntable from invert)."""
    metrics_file, out = inputs["eval_recon_metrics"], inputs["eval_recon"]
    if not metrics_file.exists():
        return R.note("no reconstruction metrics (run train_recon and eval_recon)")
    m = json.loads(metrics_file.read_text())
    lab_file = out / "labels.json"
    lab = json.loads(lab_file.read_text()) if lab_file.exists() else {}
    rows = [(f"{lab.get('reconstructor', 'reconstructor')} (feed-forward)", *[m["reconstructor"].get(k) for k, _ in TABLE2]),
            ("PTI on the generator", *[m["pti"].get(k) for k, _ in TABLE2]),
            ("mean head (ignores the input; baseline)", *[m.get("mean_head", {}).get(k) for k, _ in TABLE2])]
    offline = [what for what, flag in (("the encoder is a random-initialised stand-in for DINOv2", lab.get("encoder_offline")),
                                       ("LPIPS is the offline stand-in distance", lab.get("lpips_is_offline"))) if flag]
    body = ("<h3>PanoLAM Table 2 protocol</h3>"
            + R.caption(f"{m.get('targets', 0)} held-out prior identities (never seen in training), each reconstructed "
                        f"from one view (yaw {lab.get('input_yaw_deg', 0)}°) and compared with the generator's ground "
                        f"truth at {', '.join(lab.get('views', []))} (yaw 0 / 180 / 90 / -90, pitch 0); CSIM on the front "
                        "view only. PanoLAM's numbers are on 100 identities at 512 px with DINOv2 and LPIPS; these are "
                        "the embedded run's scale. "
                        f"LPIPS column: {lab.get('lpips_metric', '?')}. CSIM: identity backend "
                        f"{lab.get('identity_backend', '?')}. APD: {lab.get('apd') or 'not computed'} "
                        f"(pose backend {lab.get('pose_backend')}). Recon. (s): median seconds per reconstruction on "
                        f"{lab.get('device', '?')} (PTI: the optimisation itself, as invert timed it).")
            + R.table(rows, ("method", *[h for _, h in TABLE2])))
    if offline:
        body += R.note("Offline run: " + "; ".join(offline) + ". Not comparable to published numbers.")
    w = p.thumbnail_px
    targets = sorted(d for d in out.iterdir() if d.is_dir()) if out.exists() else []
    for i, d in enumerate(targets[: p.max_turntables]):
        figs = [R.figure(R.file_img(d / "input.png", w), "input photo (the one view given)")] if (d / "input.png").exists() else []
        if (d / "turntable.gif").exists():
            figs.append(R.figure(R.file_img(d / "turntable.gif", w), "3D Gaussian head, 360° (feed-forward)"))
        pti = inputs["invert"] / d.name / "turntable.gif"
        if pti.exists():
            figs.append(R.figure(R.file_img(pti, w), "PTI on the generator, 360°"))
        views = [R.figure(R.file_img(d / f"recon_{v}.png", w // 2), f"Gaussian head, {SIDE_WORDS[v]}")
                 for v in ("front", "left", "back", "right") if (d / f"recon_{v}.png").exists()]
        body += (f"<h3>Reconstruction {i + 1} <small>(target {d.name}; files head.ply and turntable.gif in "
                 f"{d.name}/)</small></h3>" + "".join(figs) + ("<br>" + "".join(views) if views else ""))
    return body


def _metrics_section(R, inputs) -> str:
    body = ""
    if (inputs["metrics"]).exists():
        m = json.loads((inputs["metrics"]).read_text())
        body += R.table([(k, _metric_words(k), v) for k, v in R.flatten(m)], ("metric", "meaning", "value"))
    else:
        body += R.note("no metrics.json (run evaluate)")
    labels = inputs["eval"] / "labels.json"
    if labels.exists():
        lab = json.loads(labels.read_text())
        if lab.get("warning"):
            body += R.note(lab["warning"])
        body += "<h3>How these were measured</h3>" + R.table(R.flatten(lab), ("field", "value"))
    return body


def _bias_section(R, inputs) -> str:
    if not (inputs["fid_by_yaw"]).exists():
        return R.note("no bias curve (run evaluate)")
    h, rows = R.read_tsv(inputs["fid_by_yaw"])
    words = ("FID of random samples rendered from real cameras of each 45° yaw bin against the real images "
             "of that bin. A flat curve means no directional bias. ")
    if "fid_std" in h:
        words += ("Error bars: standard deviation of the FID over bootstrap resamples of the bin's real and fake "
                  "images; differences smaller than that are noise.")
    return (R.figure(R.img_tag(R.bias_curve_png(h, rows), "image/png", "FID per yaw bin"), words)
            + R.table([tuple(r) for r in rows], tuple(h)))


def _memorisation_section(R, inputs, p) -> str:
    """BalanceHead A.6.13 / Fig. 17: each generated front beside its nearest training images (CLIP)."""
    ev = inputs["eval"]
    if not (ev / "memorisation.json").exists():
        return R.note("no memorisation check (evaluate.memorisation_samples: 0, or evaluate not run)")
    memo = json.loads((ev / "memorisation.json").read_text())
    body = ""
    if not memo.get("same_embedder", True):
        body += R.note(f"the training features were made by {memo['training_features'].get('backend')}, the "
                       f"generated ones by {memo['embedder']}: the cosines compare different spaces")
    if (ev / "memorisation.png").exists():
        body += R.figure(R.file_img(ev / "memorisation.png", 4 * p.thumbnail_px),
                         "Each row: a generated sample conditioned on and rendered from the front (left), then its "
                         f"nearest training images by CLIP cosine ({memo['embedder']}), nearest first. A "
                         "neighbour that looks the same would mean the generator reproduces a training image.")
    rows = [(s["sample"], r + 1, nb["image_id"], nb["subject_id"], nb["yaw"], nb["cosine"])
            for s in memo["samples"] for r, nb in enumerate(s["neighbours"])]
    return body + R.table(rows, ("sample", "rank", "training image", "subject", "yaw", "CLIP cosine"))


def _sweep_section(R, table_json: Path) -> str:
    """Table 1 from `balancehead sweep` (its table.json): one row per arm, the bias curves overlaid."""
    t = json.loads(table_json.read_text())
    cols = t.get("columns", [])
    extractors = sorted({str(r["feature_extractor"]) for r in t["rows"] if r.get("feature_extractor")})
    rows = [(r["arm"], ", ".join(f"{k}={v}" for k, v in r["overrides"].items()), r["status"],
             *[(r.get("metrics") or {}).get(c) for c in cols]) for r in t["rows"]]
    body = (R.caption(f"Sweep {t['sweep_id']}: one DVC experiment per arm, all trained on the same packed dataset "
                      f"and evaluated with the same metric suite (feature extractor: {', '.join(extractors) or '?'}"
                      + ("; offline features: NOT comparable to published FIDs" if "offline" in extractors else "")
                      + "). BalanceHead Table 1 expects FID-random far above FID-view for the view-conditioned arms "
                      "and the lowest FID-random for semantic + ViCiCo.")
            + R.table(rows, ("arm", "overrides", "status", *[f"{c} ({_metric_words(c)})" if _metric_words(c) else c
                                                             for c in cols])))
    curves = {name: (c["header"], c["rows"]) for name, c in t.get("bias_curves", {}).items()}
    if curves:
        body += R.figure(R.img_tag(R.bias_curves_png(curves), "image/png", "FID per yaw bin, every arm"),
                         "FID per 45° yaw bin for every arm of the sweep (error bars: bootstrap standard deviation "
                         "where present). A flat, low curve means no directional bias.")
    return body


def sweep_page(table_json: Path, commit: str) -> str:
    """The sweep's own page (index.html next to its table.json), written by `balancehead sweep` itself."""
    from ..evaluation import report_html as R

    rep = R.Report("BalanceHead Table 1 sweep")
    rep.add("sweep", "Conditioning sweep (BalanceHead Table 1)", _sweep_section(R, Path(table_json)))
    return rep.html(f"Generated by balancehead sweep from git commit {commit}.")


def build_report(inputs: Mapping[str, Path], p, commit: str) -> str:
    """The page from the stage's inputs by name (see pipeline.py); a missing one becomes a note."""
    from ..evaluation import report_html as R

    inputs = {k: Path(v) for k, v in inputs.items()}
    rep = R.Report(p.title)
    rep.add("dataset", "Dataset card", _dataset_section(R, inputs, p))
    rep.add("training", "Training curves", _training_section(R, inputs))
    rep.add("samples", "Random samples", _samples_section(R, inputs, p))
    rep.add("inversions", "PTI inversions", _inversions_section(R, inputs, p))
    rep.add("reconstruction", "Feed-forward 3D Gaussian reconstruction vs PTI", _reconstruction_section(R, inputs, p))
    rep.add("metrics", "Metrics", _metrics_section(R, inputs))
    rep.add("bias", "Directional bias curve", _bias_section(R, inputs))
    rep.add("memorisation", "Memorisation check: nearest training images", _memorisation_section(R, inputs, p))
    return rep.html(f"Generated by balancehead from git commit {commit}.")


def main(ctx) -> None:
    from ..tracking import git_commit

    out = ctx.output("report") / "index.html"
    inputs = {name: ctx.input(name) for name in ctx.stage.inputs}
    # the sweep's table is written by `balancehead sweep` outside the DAG: shown when present, not a dependency
    text = build_report(inputs, ctx.params.report, git_commit(ctx.root))
    fileio.write_text(out, text)
    ctx.log.info("report: %s (%.1f kB)", out, len(text) / 1024)
