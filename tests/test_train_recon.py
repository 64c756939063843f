"""train_recon: the reconstructor's training loop and stage on prior-format data (rendered from the world's
procedural heads, tests/recon_fixtures.py): it overfits one identity, a resumed run equals an uninterrupted
one bit for bit, preemption checkpoints and exits with the requeue code, the stage writes a loadable model,
metrics and a loss curve, and its params section is validated naming the key."""
from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
import yaml

from balancehead.params import ParamsError, validate
from balancehead.recon.checkpoint import load_reconstructor
from balancehead.recon.config import TemplateConfig
from balancehead.recon.params import TrainReconParams
from balancehead.recon.views import load_views, read_splits
from balancehead.train.preemption import Preempted
from balancehead.train.recon_loop import ReconTrainer, build_config, holdout_scores
from conftest import REPO
from recon_fixtures import write_world_prior

RAW = yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    return write_world_prior(tmp_path_factory.mktemp("world") / "prior", identities=3, holdout=1, size=24)


def _small(p: TrainReconParams):
    """The preset on a coarser template (fewer Gaussians): the same code paths, a few times faster."""
    cfg = build_config(p)
    cfg = dataclasses.replace(cfg, template=TemplateConfig(subdivisions=2))
    if cfg.points is not None:
        return dataclasses.replace(cfg, points=dataclasses.replace(cfg.points, max_points=400))
    return dataclasses.replace(cfg, patches=dataclasses.replace(cfg.patches, patches=24))


def test_views_group_by_identity_and_respect_the_split(prior):
    splits = read_splits(prior)
    data = load_views(prior, 24, subjects=splits["prior"], with_depth=True)
    assert data.subject_ids == splits["prior"] and data.num_images == 2 * 8
    assert all(len(v) == 8 for v in data.views) and data.images.dtype == torch.uint8
    assert data.yaws[data.front(1)] == 0.0 and data.depth.shape == (16, 1, 24, 24)
    b = data.batch([[0, 1], [8, 9]])
    assert b["image"].shape == (2, 2, 3, 24, 24) and b["camera"].shape == (2, 2, 25)
    assert 0.0 <= float(b["image"].min()) and float(b["image"].max()) <= 1.0


# PSNR (dB) of the renders of one identity's 7 other views from its front view after 40 steps: measured
# 20.4 dB (SSIM 0.87); the untrained model scores 14.4 dB (SSIM 0.34), a white image 8.2 dB.
OVERFIT_BAR, OVERFIT_GAIN = 17.0, 4.0


def test_overfits_one_prior_identity(prior, tmp_path):
    p = TrainReconParams(preset="perchead_tiny", steps=40, batch_size=1, views=3, lr=5e-3, lr_final=1.0,
                         resolution=24, log_steps=40, checkpoint_steps=1000)
    data = load_views(prior, 24, subjects=["prior000000"])
    trainer = ReconTrainer(p, data, tmp_path, 0, "cpu", cfg=_small(p))
    before = holdout_scores(trainer, data, data)["holdout_psnr"]     # front input -> all its other views
    result = trainer.run()
    assert result.step == 40 and len(result.curve) == 1
    scores = holdout_scores(trainer, data, data)
    assert scores["holdout_psnr"] > OVERFIT_BAR and scores["holdout_psnr"] > before + OVERFIT_GAIN, (before, scores)
    assert scores["holdout_psnr"] > scores["white_psnr"] + 5, scores


class _StopAt:
    """A preemption request that arrives once the trainer has made `step` steps."""

    def __init__(self, trainer, step):
        self.trainer, self.step = trainer, step

    @property
    def requested(self):
        return self.trainer.step >= self.step


@pytest.mark.parametrize("preset", ["panolam_tiny", "perchead_tiny"])
def test_preempted_and_resumed_run_equals_an_uninterrupted_one(prior, tmp_path, preset):
    p = TrainReconParams(preset=preset, steps=5, batch_size=2, resolution=16, checkpoint_steps=2, log_steps=2,
                         motion_warmup_steps=3 if preset == "perchead_tiny" else 0)
    data = load_views(prior, 16, subjects=read_splits(prior)["prior"])
    cfg = _small(p)
    straight = ReconTrainer(p, data, tmp_path / "a", 0, "cpu", cfg=cfg).run()

    first = ReconTrainer(p, data, tmp_path / "b", 0, "cpu", cfg=cfg)
    with pytest.raises(Preempted) as stopped:
        first.run(stop=_StopAt(first, 3))
    assert stopped.value.code == p.requeue_exit_code
    assert json.loads((tmp_path / "b/checkpoints/latest.json").read_text()) == {"name": "ckpt-000000003"}
    again = ReconTrainer(p, data, tmp_path / "b", 0, "cpu", cfg=cfg)
    assert again.step == 3
    resumed = again.run()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "img_per_s"} for r in rows]  # noqa: E731
    assert drop(straight.curve) == drop(resumed.curve) and len(resumed.curve) == 3     # steps 2, 4, 5
    assert sorted(x.name for x in (tmp_path / "b/checkpoints").iterdir()) == \
        ["ckpt-000000004", "ckpt-000000005", "latest.json"]                 # keep_checkpoints = 2, no leftovers


def test_stage_writes_model_metrics_and_curve(prior, tmp_path):
    import shutil

    from stage_context import stage_context
    from balancehead.stages import train_recon

    shutil.copytree(prior, tmp_path / "data/prior")
    p = TrainReconParams(steps=4, batch_size=1, resolution=16, log_steps=2, checkpoint_steps=2, holdout_identities=1)
    ctx = stage_context(tmp_path, "train_recon", {"train_recon": p})
    train_recon.main(ctx)
    model, cfg, meta = load_reconstructor(tmp_path / "data/recon")
    assert cfg == build_config(p) and meta["steps"] == 4
    metrics = json.loads((tmp_path / "results/train_recon.json").read_text())
    assert metrics["steps"] == 4 and metrics["holdout_identities"] == 1 and metrics["train_identities"] == 2
    assert metrics["gaussians"] == model.num_gaussians
    for k in ("holdout_psnr", "mean_head_psnr", "white_psnr", "loss_final", "img_per_s"):
        assert metrics[k] > 0, k
    lines = (tmp_path / "results/train_recon_stats.tsv").read_text().splitlines()
    assert lines[0].split("\t")[:3] == ["step", "images", "loss"] and [x.split("\t")[0] for x in lines[1:]] == ["2", "4"]
    # a rerun with the same recipe resumes from the finished run's checkpoint instead of training again
    train_recon.main(ctx)
    assert json.loads((tmp_path / "results/train_recon.json").read_text())["loss_final"] == metrics["loss_final"]


def _with(path: str, value):
    raw = copy.deepcopy(RAW)
    node = raw["train_recon"]
    *parents, last = path.split(".")
    for k in parents:
        node = node[k]
    node[last] = value
    return raw


@pytest.mark.parametrize("path,value,match", [
    ("preset", "lam", r"train_recon\.preset"),
    ("lr", float("nan"), r"train_recon\.lr"),
    ("steps", 0, r"train_recon\.steps"),
    ("views", 2.0, r"train_recon\.views"),
    ("input_view", "back", r"train_recon\.input_view"),
    ("loss.l1", -1.0, r"train_recon\.loss\.l1"),
    ("loss.colour", 1.0, r"train_recon\.loss\.colour"),
    ("perceptual", [{"kind": "lpips"}], r"train_recon\.perceptual"),
    ("mix_roles", ["prior"], r"train_recon"),
])
def test_params_section_is_validated_naming_the_key(path, value, match):
    assert validate(copy.deepcopy(RAW)).train_recon == TrainReconParams()
    with pytest.raises(ParamsError, match=match):
        validate(_with(path, value))


def test_depth_with_a_mixed_dataset_is_refused():
    raw = _with("mix_dataset", True)
    raw["train_recon"]["loss"]["depth"] = 1.0
    with pytest.raises(ParamsError, match="depth"):
        validate(raw)


def test_sigterm_checkpoints_and_exits_with_the_requeue_code(prior, tmp_path, monkeypatch):
    import os
    import shutil
    import signal

    from stage_context import stage_context
    from balancehead.stages import train_recon
    from balancehead.train import recon_loop

    shutil.copytree(prior, tmp_path / "data/prior")
    p = TrainReconParams(steps=50, batch_size=1, resolution=16, checkpoint_steps=100, requeue_exit_code=7)
    ctx = stage_context(tmp_path, "train_recon", {"train_recon": p})
    step = recon_loop.ReconTrainer.train_step

    def step_then_sigterm(self):                 # SIGTERM arrives during step 2, as SLURM would send it
        if self.step == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self)

    monkeypatch.setattr(recon_loop.ReconTrainer, "train_step", step_then_sigterm)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        train_recon.main(ctx)
    assert stopped.value.code == 7
    assert not (tmp_path / "data/recon").exists()
    ckpts = tmp_path / "data/.items/train_recon" / train_recon.run_key(ctx) / "checkpoints"
    assert json.loads((ckpts / "latest.json").read_text()) == {"name": "ckpt-000000002"}
    assert signal.getsignal(signal.SIGTERM) is before              # the stage's handler is gone again


def test_stage_mixes_the_packed_dataset_and_takes_perceptual_terms(prior, tmp_path):
    """PercHead-style mixing: the packed dataset's subjects join the prior identities; an (offline) perceptual
    term is added to the loss."""
    import shutil

    from stage_context import stage_context
    from balancehead.stages import train_recon

    shutil.copytree(prior, tmp_path / "data/prior")
    write_world_prior(tmp_path / "data/dataset", identities=2, holdout=0, yaws=(0, 60, -60), size=24, seed=50,
                      role="view", prefix="subj")
    mixed = load_views(tmp_path / "data/dataset", 16, roles=("front", "view"))
    assert mixed.subject_ids == ["subj000000", "subj000001"] and mixed.num_images == 6
    both = load_views(prior, 16, subjects=read_splits(prior)["prior"]).merged(mixed)
    assert len(both) == 4 and both.num_images == 22 and list(both.views[2]) == [16, 17, 18]
    p = TrainReconParams(preset="perchead_tiny", steps=2, batch_size=4, resolution=16, log_steps=1, mix_dataset=True,
                         perceptual=[{"kind": "offline", "weight": 0.5}], holdout_identities=0)
    train_recon.main(stage_context(tmp_path, "train_recon", {"train_recon": p}))
    metrics = json.loads((tmp_path / "results/train_recon.json").read_text())
    assert metrics["train_identities"] == 4 and metrics["train_views"] == 22
    assert metrics["perceptual"] == ["offline"] and "holdout_psnr" not in metrics


def test_paper_preset_without_dinov2_weights_stops_before_any_work(tmp_path):
    from stage_context import stage_context
    from balancehead.stages import train_recon

    p = TrainReconParams(preset="panolam", encoder_weights="models/nowhere")
    with pytest.raises(FileNotFoundError, match=r"train_recon\.encoder_weights.*models/nowhere"):
        train_recon.main(stage_context(tmp_path, "train_recon", {"train_recon": p}))
    assert not (tmp_path / "data").exists()
