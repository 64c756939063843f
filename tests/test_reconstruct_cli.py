"""`balancehead reconstruct photo.jpg`: a procedural photo goes through the preprocess backends (mask, crop,
pose) and a tiny reconstructor checkpoint into a readable 3DGS .ply and a turntable GIF."""
import json
import subprocess
import sys

import numpy as np
import yaml

from conftest import REPO


def test_reconstruct_a_procedural_photo(tmp_path):
    from PIL import Image

    from balancehead.evaluation.turntable import gif_frame_count
    from balancehead.recon.checkpoint import save_reconstructor
    from balancehead.recon.ply import read_ply
    from balancehead.world import render, sample_subject
    from test_eval_recon import tiny_reconstructor

    photo = tmp_path / "photo.jpg"
    Image.fromarray(render(sample_subject(3), 20.0, 0.0, size=96).rgb).save(photo, quality=92)
    model, cfg = tiny_reconstructor()
    save_reconstructor(model, cfg, tmp_path / "recon")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["preprocess"]["offline_pose"].update(n_subjects=8, views_per_subject=12)   # a small pose bank: fast
    params["eval_recon"].update(turntable_frames=4, turntable_size=32)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "balancehead", "--params", str(tmp_path / "params.yaml"), "reconstruct",
                           str(photo), "--model", str(tmp_path / "recon"), "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    g = read_ply(out / "head.ply")
    assert len(g) == model.num_gaussians and np.isfinite(g.means.numpy()).all()
    assert gif_frame_count((out / "turntable.gif").read_bytes()) == 4
    info = json.loads((out / "reconstruction.json").read_text())
    assert info["gaussians"] == len(g) and info["backends"]["pose"]["backend"].startswith("offline")
    mask = np.asarray(Image.open(out / "mask.png"))
    assert 0.05 < (mask > 127).mean() < 0.95                 # the segmenter found the head, not everything


def test_reconstruct_names_a_missing_model(tmp_path):
    photo = tmp_path / "photo.png"
    from PIL import Image
    Image.fromarray(np.full((64, 64, 3), 255, np.uint8)).save(photo)
    proc = subprocess.run([sys.executable, "-m", "balancehead", "--params", str(REPO / "params.yaml"), "reconstruct",
                           str(photo), "--model", str(tmp_path / "nowhere")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "nowhere" in proc.stderr
