"""The HTML report: expected sections, inlined images only, deterministic, tolerant of missing inputs."""
import re

import numpy as np

from balancehead import fileio
from balancehead.pipeline import stage
from balancehead.evaluation.params import ReportParams
from balancehead.evaluation.turntable import gif_bytes


def _inputs(root):
    return {name: root / path for name, path in stage("report").inputs.items()}


def _fill(root):
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    fileio.write_png(root / "results/dataset_card/yaw_hist.png", img)
    fileio.write_json(root / "results/dataset.json", {"subjects": 3, "packed_images": 20})
    fileio.write_text(root / "results/yaw_hist.tsv", "yaw_bin\tbefore_filter\tpacked\n0\t5\t4\n180\t2\t1\n")
    fileio.write_png(root / "results/eval/fakes_fid_random.png", img)
    fileio.write_bytes(root / "results/eval/turntable_00.gif", gif_bytes(np.stack([img, img[::-1]])))
    fileio.write_json(root / "results/eval/labels.json", {"feature_extractor": "offline-random-conv",
                                                      "warning": "not comparable to published numbers"})
    fileio.write_json(root / "results/metrics.json", {"fid_random": 12.5, "fid_view": None, "mknnd": 0.4,
                                                  "inversion": {"input_view_psnr": 25.0}})
    fileio.write_text(root / "results/fid_by_yaw.tsv",
                      "yaw_bin\tfid\tfid_std\tkid\tn_real\tn_fake\n0\t10\t1.5\t0.1\t5\t8\n180\t\t\t\t1\t0\n")
    fileio.write_text(root / "results/train_stats.tsv", "kimg\tloss_G\tloss_D\timg_per_s\tsec_per_kimg\n"
                      "0\t1.0\t0.5\t200\t5\n1\t0.8\t0.6\t210\t4.8\n")
    d = root / "data/invert/t1"
    fileio.write_png(d / "target.png", img)
    fileio.write_png(d / "input_view.png", img)
    fileio.write_bytes(d / "turntable.gif", gif_bytes(np.stack([img, img[:, ::-1]])))


def _packed(root):
    """A packed dataset (shards + manifest) with images in two yaw bins, and its card."""
    from balancehead.camera import camera_label
    from balancehead.data.card import build_card, write_card
    from balancehead.data.manifest import write_manifest
    from balancehead.data.shards import ShardWriter

    rng = np.random.default_rng(1)
    rows = []
    with ShardWriter(root / "data/dataset/shards", 1000) as w:
        for i, yaw in enumerate([0.0, 5.0, 10.0, 180.0]):
            img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            shard, key = w.add(f"img{i}", img, {"camera": camera_label(yaw, 0.0)}, np.full((16, 16), 255, np.uint8))
            rows.append(dict(image_id=f"img{i}", subject_id="s0", role="view", shard=shard, key=key, yaw=yaw,
                             pitch=0.0, camera=camera_label(yaw, 0.0)))
    rows.append(dict(image_id="rej", subject_id="s0", role="view", yaw=90.0, pitch=0.0, rejected_by="filter_views",
                     reasons="the hair colour changes between the front and this view"))
    write_manifest(rows, root / "data/dataset/manifest.parquet")
    write_card(build_card(rows, {}), root / "results/dataset_card")


def test_report_content_is_readable(tmp_path):
    """Real packed images per yaw bin, rejection reasons in full, yaw counts from the card's own numbers,
    throughput and s/kimg as separate figures, error bars on the bias curve, captions in words."""
    from balancehead.stages.report import build_report

    _fill(tmp_path)
    _packed(tmp_path)
    p = ReportParams(samples_per_yaw_bin=2)
    html = build_report(_inputs(tmp_path), p, "abc123")
    assert "Real packed images per yaw bin" in html
    assert html.count('alt="packed image ') == 3                      # 2 of the 3 front images + the back one
    assert "the hair colour changes between the front and this view" in html and "view filter" in html
    assert "<td>0° (front)</td><td>3</td><td>3</td>" in html            # generated / packed, as in the figure
    assert "Throughput: training images per second" in html and "Seconds per thousand training images" in html
    assert "bootstrap" in html and '<div class="scroll">' in html
    assert "Random samples: random condition" in html and "Random sample 1, turned through 360°" in html
    assert "<figcaption>fakes_fid_random</figcaption>" not in html and "<figcaption>turntable_00</figcaption>" not in html


def test_report_sections_and_inline_images(tmp_path):
    from balancehead.stages.report import build_report

    _fill(tmp_path)
    html = build_report(_inputs(tmp_path), ReportParams(), "abc123")
    for anchor in ("dataset", "training", "samples", "inversions", "metrics", "bias"):
        assert f'id="{anchor}"' in html
    srcs = re.findall(r'src="([^"]+)"', html)
    assert srcs and all(s.startswith("data:image/") for s in srcs)     # nothing refers to a file
    assert html.count("data:image/gif") == 2                             # sample + inversion turntables
    assert "fid_random" in html and "not comparable" in html and "abc123" in html
    assert "Training curves" in html and "no training statistics" not in html
    assert build_report(_inputs(tmp_path), ReportParams(), "abc123") == html      # deterministic


def test_report_on_an_empty_run_has_notes(tmp_path):
    from balancehead.stages.report import build_report

    html = build_report(_inputs(tmp_path), ReportParams(), "c0ffee")
    assert "no training statistics" in html and "run evaluate" in html and "<img" not in html


def test_report_stage_writes_index(tmp_path):
    from stage_context import stage_context
    from balancehead.stages import report

    _fill(tmp_path)
    report.main(stage_context(tmp_path, "report", {"report": ReportParams()}))
    assert (tmp_path / "results/report/index.html").read_text().startswith("<!DOCTYPE html>")


def test_report_memorisation_section(tmp_path):
    """A.6.13: the strip of generated fronts beside their nearest training images, and the table."""
    from balancehead.stages.report import build_report

    _fill(tmp_path)
    html = build_report(_inputs(tmp_path), ReportParams(), "abc123")
    assert 'id="memorisation"' in html and "no memorisation check" in html
    strip = np.random.default_rng(1).integers(0, 256, (16, 40, 3), dtype=np.uint8)
    fileio.write_png(tmp_path / "results/eval/memorisation.png", strip)
    fileio.write_json(tmp_path / "results/eval/memorisation.json", {
        "embedder": "offline-random-init-ViT-B-32", "same_embedder": False,
        "training_features": {"backend": "open_clip-ViT-B-32"},
        "samples": [{"sample": 0, "neighbours": [{"image_id": "src7_v3", "subject_id": "src7", "yaw": 45.0,
                                                  "cosine": 0.91}]}]})
    html = build_report(_inputs(tmp_path), ReportParams(), "abc123")
    assert "<td>src7_v3</td><td>src7</td>" in html and "0.91" in html
    assert "nearest training images by CLIP cosine" in html and "compare different spaces" in html


def test_turntables_are_shown_at_their_rendered_size_not_as_thumbnails(tmp_path):
    """Issue 15: higher-resolution turntables where the model allows. A turntable rendered at a 200-px output
    resolution is shown 200 px wide, not shrunk to the 128-px thumbnail; a 16-px one is upscaled to 128."""
    from balancehead.stages.report import build_report

    _fill(tmp_path)
    big = np.random.default_rng(2).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    fileio.write_bytes(tmp_path / "data/invert/t1/turntable.gif", gif_bytes(np.stack([big, big[::-1]])))
    html = build_report(_inputs(tmp_path), ReportParams(thumbnail_px=128), "abc123")
    widths = re.findall(r'<img src="data:image/gif;base64,[^"]+" alt="[^"]*" width="(\d+)"', html)
    assert sorted(widths) == ["128", "200"]                  # the 16-px sample turntable, the 200-px inversion


def test_every_metric_of_a_run_is_explained_in_words():
    """Issue 15: captions and tables in words rather than ids: each metric evaluate writes (inversion
    summary included) gets a meaning in the report's metrics table."""
    from balancehead.data.manifest import YAW_BIN_LABELS
    from balancehead.stages.invert import summarise
    from balancehead.stages.report import _metric_words

    names = ["fid_random", "fid_front", "fid_back", "fid_view", "mknnd", "id_consistency", "id_consistency_to_ref"]
    names += [f"kid_{n[4:]}" for n in names if n.startswith("fid_")]
    names += [f"{m}_yaw_{b}" for m in ("fid", "kid") for b in YAW_BIN_LABELS]
    pair = {"psnr": 20.0, "ssim": 0.5, "lpips": 0.2, "l2": 0.01, "id_sim": 0.7}
    record = {"start": pair, "pivot": pair, "input_view": pair,
              "novel_views": {v: pair for v in ("front", "left", "back", "right")}}
    names += [f"inversion.{k}" for k, v in summarise([record], {}).items() if isinstance(v, (int, float))]
    unexplained = [n for n in names if not _metric_words(n)]
    assert not unexplained, unexplained
    assert "front" in _metric_words("fid_yaw_0") and "subject's left" in _metric_words("inversion.novel_left_psnr")
