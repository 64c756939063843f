"""`dvc plots show` / `dvc plots diff` render offline: .dvc/config points DVC at workflow/plots/offline.html,
which inlines vega, vega-lite and vega-embed (scripts/vendor_vega.py) instead of loading them from a CDN."""
from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO

TEMPLATE = REPO / "workflow" / "plots" / "offline.html"
SCRIPT_SRC = re.compile(r"<script\b[^>]*\bsrc\s*=", re.I)


def _config_template() -> Path:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / ".dvc" / "config")
    return (REPO / ".dvc" / cfg["plots"]["html_template"]).resolve()   # DVC joins it to .dvc/


def test_dvc_config_uses_the_offline_template_with_dvc_renders_library_versions():
    """If dvc-render is bumped, its CDN versions change: rerun scripts/vendor_vega.py to follow."""
    from dvc_render.vega import VegaRenderer

    assert _config_template() == TEMPLATE
    page = TEMPLATE.read_text(encoding="utf8")
    assert "{plot_divs}" in page and "{scripts}" not in page and not SCRIPT_SRC.search(page)
    cdn = dict(re.findall(r"npm/([a-z-]+)@([\d.]+)", VegaRenderer.SCRIPTS))
    assert set(cdn) == {"vega", "vega-lite", "vega-embed"}
    notice = (TEMPLATE.parent / "NOTICE").read_text()
    for name, version in cdn.items():
        assert f"<script>/* {name} {version} */" in page, (name, version)
        assert f"==== {name} {version} (BSD-3-Clause) ====" in notice


def _commit(repo: Path, env: dict, fid_first_bin: float, msg: str) -> None:
    from balancehead.data.manifest import YAW_BIN_LABELS
    from balancehead.stages.evaluate import bias_curve_tsv
    from balancehead.stages.pack_dataset import yaw_hist_tsv
    from balancehead.train.loop import stats_tsv
    from balancehead.train.recon_loop import CURVE, curve_tsv

    fids = {f"fid_yaw_{b}": {"fid": (fid_first_bin if i == 0 else 30.0 + i), "kid": 0.01, "n_real": 4,
                             "n_fake": 4} for i, b in enumerate(YAW_BIN_LABELS)}
    results = repo / "results"
    results.mkdir(exist_ok=True)
    (results / "fid_by_yaw.tsv").write_text(bias_curve_tsv(fids))
    (results / "train_stats.tsv").write_text(stats_tsv([{"tick": t, "kimg": 0.05 * t, "loss_g": 1.0 + t,
                                                          "loss_d": 2.0 - t, "skipped_steps": 0}
                                                         for t in range(3)]))
    n = len(YAW_BIN_LABELS)
    (results / "yaw_hist.tsv").write_text(yaw_hist_tsv(YAW_BIN_LABELS, [5] * n, [4] * n))
    (results / "train_recon_stats.tsv").write_text(curve_tsv([dict.fromkeys(CURVE, 1.0) | {"step": s, "loss": 0.5 - 0.1 * s, "psnr": 12.0 + s}
                                                               for s in range(3)]))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    for cmd in (git + ["add", "-A"], git + ["commit", "-qm", msg]):
        subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)


def test_real_dvc_plots_diff_of_two_commits_renders_offline(tmp_path):
    """A repo with the shipped .dvc/config, template and the generated top-level `plots:`; two commits
    of the results; the real `dvc plots diff HEAD~1 HEAD -o DIR` writes a page that loads nothing from
    anywhere and overlays both revisions with the declared x/y columns."""
    from balancehead.pipeline import dvc_yaml

    repo = tmp_path / "repo"
    (repo / "workflow" / "plots").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "GIT_"))}
    env.update(DVC_NO_ANALYTICS="1", PYTHONPATH=str(REPO / "src"))
    dvc = [str(Path(sys.executable).parent / "dvc")]
    for cmd in (["git", "init", "-q"], dvc + ["init", "-q"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True, timeout=120)
    shutil.copy(REPO / ".dvc" / "config", repo / ".dvc" / "config")
    shutil.copy(TEMPLATE, repo / "workflow" / "plots" / TEMPLATE.name)
    plots = dvc_yaml()["plots"]
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"plots": plots}, sort_keys=False))
    _commit(repo, env, 10.0, "first run")
    _commit(repo, env, 20.0, "second run")

    proc = subprocess.run(dvc + ["plots", "diff", "HEAD~1", "HEAD", "-o", "out"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "failed to load" not in proc.stdout + proc.stderr
    page = (repo / "out" / "index.html").read_text(encoding="utf8")
    assert not SCRIPT_SRC.search(page), "the page loads a script from elsewhere"
    assert "cdn.jsdelivr" not in page and "vegaEmbed=" in page and "vegaLite=" in page

    specs = {m.group(2): json.loads(m.group(1))
             for m in re.finditer(r"var spec = (.*?);\s*vegaEmbed\('#([^']+)'", page, re.S)}
    declared = {k: v for d in plots for k, v in d.items()}
    assert set(specs) == {p.replace("/", "_").replace(".", "_") for p in declared}
    fid = specs["results_fid_by_yaw_tsv"]
    assert fid["encoding"]["x"]["field"] == "yaw_bin"
    assert {layer["encoding"]["y"]["field"] for layer in fid["layer"] if "y" in layer.get("encoding", {})} == {"fid"}
    rows = fid["data"]["values"]
    assert {r["rev"] for r in rows} == {"HEAD~1", "HEAD"}
    first = rows[0]["yaw_bin"]
    assert {r["rev"]: float(r["fid"]) for r in rows if r["yaw_bin"] == first} == {"HEAD~1": 10.0, "HEAD": 20.0}
    for name, spec in specs.items():
        assert spec.get("data", {}).get("values"), f"{name}: no data drawn"
