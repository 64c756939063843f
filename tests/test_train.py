"""Training: every conditioning mode and ViCiCo variant steps with finite losses; D sees the shuffled
negatives; resume reproduces the uninterrupted losses; SIGTERM checkpoints and exits with the requeue
code; the batch stream does not depend on workers; the stage assembles its outputs."""
from __future__ import annotations

import math
import os
import signal

import numpy as np
import pytest
import torch

from balancehead.models import Discriminator
from balancehead.train.conditioning import CAMERA_DIM
from balancehead.train.loop import Trainer
from balancehead.train.params import TrainParams
from balancehead.train.preemption import Preempted, StopFlag
from balancehead.train.state import latest
from balancehead.train.stream import BatchStream, make_loader
from balancehead.train.vicico import make_negatives

from train_fixtures import DIM, ID_DIM, make_dataset

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("packed"))


def small(**kw) -> TrainParams:
    base = dict(batch=4, batch_gpu=2, total_kimg=0.008, kimg_per_tick=0.004, eval={"num_images": 8},
                model={"n_coarse": 4, "n_importance": 4})
    for k, v in kw.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return TrainParams(**base)


def finite(stats: dict) -> bool:
    return all(math.isfinite(float(v)) for v in stats.values())


G_DIM = {"none": 0, "view": 25, "view_plus_semantic": 25 + DIM, "identity": ID_DIM, "view_identity": ID_DIM}
D_DIM = {"none": 0, "view": 25, "identity": 25 + ID_DIM, "view_identity": 25 + ID_DIM}


@pytest.mark.parametrize("mode,vicico", [("none", {"enabled": False}), ("view", {"variant": "vico"}),
                                         ("view_semantic", {}), ("semantic", {}), ("semantic", {"variant": "vico"}),
                                         ("semantic", {"enabled": False})])
def test_modes_step_with_finite_losses(dataset, tmp_path, mode, vicico):
    tp = small(conditioning={"mode": mode}, vicico=vicico)
    tr = Trainer(tp, dataset, tmp_path, seed=0)
    assert tr.G.cfg.c_dim == G_DIM.get(mode, DIM)
    assert tr.D.cfg.c_dim == D_DIM.get(mode, 25 + DIM)
    stats = tr.step(next(make_loader(BatchStream(tr.ds, tp.batch), 0)))
    assert finite(stats)
    assert ("loss_vicico" in stats) == (vicico.get("enabled", True) and mode != "none")


@pytest.mark.parametrize("mode,key", [("view_plus_semantic", "condition"), ("identity", "identity"),
                                      ("view_identity", "view_identity")])
def test_new_modes_feed_their_tables(dataset, tmp_path, mode, key):
    """view_plus_semantic: G sees [camera | front CLIP] (camera c-swapped); identity modes: G sees the
    front / per-view identity row; D sees [camera | that feature]."""
    tp = small(conditioning={"mode": mode})
    tr = Trainer(tp, dataset, tmp_path, seed=0)
    batch = next(make_loader(BatchStream(tr.ds, 4), 0))
    cam, c_g, c_d = tr.loss.gen_labels(batch, torch.Generator().manual_seed(0), swap_prob=0.0)
    feats = batch[key]
    # the fakes' labels are other rows' real (camera, feature) pairs: each G label is one of the batch's
    sem_g = c_g[:, 25:] if mode == "view_plus_semantic" else c_g
    assert all(any(torch.equal(row, f) for f in feats) for row in sem_g)
    assert torch.equal(c_d[:, :25], cam) and torch.equal(c_d[:, 25:], sem_g)
    if mode == "view_plus_semantic":
        assert torch.equal(c_g[:, :25], cam)                       # no swap at p = 0 ...
        _, c_swapped, _ = tr.loss.gen_labels(batch, torch.Generator().manual_seed(0), swap_prob=1.0)
        assert not torch.equal(c_swapped[:, :25], cam)             # ... every camera swapped at p = 1
        assert torch.equal(c_swapped[:, 25:], c_g[:, 25:])         # the semantic part is never swapped


@pytest.mark.parametrize("mode", ["view_plus_semantic", "identity", "view_identity"])
def test_new_modes_train_a_few_steps_and_draw_fakes(dataset, tmp_path, mode):
    """Two full loop steps (ticks, checkpoints) per new mode, then the fakes grid with its front-camera labels."""
    tp = small(conditioning={"mode": mode, "swap_to_one_kimg": 0.004})
    tr = Trainer(tp, dataset, tmp_path, seed=0)
    assert tr.G.cfg.c_dim == G_DIM[mode] and tr.D.cfg.c_dim == D_DIM.get(mode, 25 + DIM)
    res = tr.run(evaluate=False)
    assert res.counters.step == 2 and all(finite({k: v for k, v in row.items() if isinstance(v, float)})
                                         for row in res.stats)
    assert all("loss_vicico" in row for row in res.stats)
    grid = tr.grid()
    assert grid.ndim == 3 and np.isfinite(grid).all()


def test_identity_modes_need_the_identity_tables(tmp_path):
    root = make_dataset(tmp_path / "packed", n_subjects=2, identity=False)
    with pytest.raises(ValueError, match="identity_tables"):
        Trainer(small(conditioning={"mode": "identity"}), root, tmp_path / "run", seed=0)


def test_swap_to_one_switches_view_conditioning_off_mid_training(dataset, tmp_path):
    """Fig. 2(b)'s schedule: the loop's swap probability is swap_prob until swap_to_one_kimg, then 1, and at 1
    every fake's G camera label is another row's."""
    tp = small(conditioning={"mode": "view", "swap_fade_kimg": 0, "swap_to_one_kimg": 0.004})
    tr = Trainer(tp, dataset, tmp_path, seed=0)
    assert tr.settings().swap_prob == pytest.approx(0.7)
    batch = next(make_loader(BatchStream(tr.ds, tp.batch), 0))
    tr.step(batch)                                   # 4 images: 0.004 kimg seen
    s = tr.settings()
    assert s.swap_prob == 1.0
    cam, c_g, _ = tr.loss.gen_labels(batch, torch.Generator().manual_seed(0), s.swap_prob)
    assert torch.equal(c_g, torch.roll(cam, 1, 0))   # swap_with roll: every row takes the previous row's camera


def test_unknown_modes_are_refused_by_params_validation():
    with pytest.raises(ValueError, match="conditioning.mode"):
        small(conditioning={"mode": "view+semantic"})


def test_params_reject_bad_batch():
    with pytest.raises(ValueError, match="multiple of batch_gpu"):
        TrainParams(batch=6, batch_gpu=4)


def test_negatives_shuffle_the_requested_parts():
    g = torch.Generator().manual_seed(0)
    label = torch.arange(6 * (CAMERA_DIM + 3), dtype=torch.float32).view(6, -1)
    neg, kinds = make_negatives(label, "vicico", (1, 1, 1), g)
    for row, kind in enumerate(kinds.tolist()):
        cam_same = torch.equal(neg[row, :CAMERA_DIM], label[row, :CAMERA_DIM])
        sem_same = torch.equal(neg[row, CAMERA_DIM:], label[row, CAMERA_DIM:])
        assert (cam_same, sem_same) == {0: (False, True), 1: (True, False), 2: (False, False)}[kind]
    neg, kinds = make_negatives(label, "vico", (1, 1, 1), g)
    assert (kinds == 0).all() and torch.equal(neg[:, CAMERA_DIM:], label[:, CAMERA_DIM:])
    assert not torch.equal(neg[:, :CAMERA_DIM], label[:, :CAMERA_DIM])


def test_discriminator_receives_shuffled_negatives(dataset, tmp_path, monkeypatch):
    tp = small(conditioning={"mode": "semantic"}, vicico={"p_camera": 0, "p_semantic": 1, "p_both": 0})
    tr = Trainer(tp, dataset, tmp_path, seed=0)
    seen = []
    original = Discriminator.forward

    def spy(self, images, c):
        seen.append((images["image"].detach().clone(), c.detach().clone()))
        return original(self, images, c)

    monkeypatch.setattr(Discriminator, "forward", spy)
    batch = next(make_loader(BatchStream(tr.ds, 2), 0))
    s = tr.settings()
    tr.D.requires_grad_(True)
    tr.loss.d_main(batch, s, torch.Generator().manual_seed(1), 1.0)
    assert len(seen) == 3                         # fake, real, ViCiCo negatives
    (_, c_fake), (img_real, c_real), (img_neg, c_neg) = seen
    truth = torch.cat([batch["camera"], batch["condition"]], dim=1)
    assert torch.allclose(c_real, truth)
    assert torch.allclose(img_neg, img_real)      # negatives are the real images ...
    assert torch.allclose(c_neg[:, :CAMERA_DIM], truth[:, :CAMERA_DIM])    # ... with the camera kept
    assert torch.allclose(c_neg[:, CAMERA_DIM:], truth.flip(0)[:, CAMERA_DIM:])  # and the other row's condition


def test_stream_independent_of_workers_and_ranks(dataset):
    from balancehead.data.reader import ShardDataset

    ds = ShardDataset(dataset, resolution=32, seed=3)
    one = make_loader(BatchStream(ds, 4, window=7), 0)
    two = make_loader(BatchStream(ds, 4, window=7), 2)
    ranks = [make_loader(BatchStream(ds, 4, r, 2, window=7), 0) for r in range(2)]
    for _ in range(8):                            # 32 samples: crosses an epoch (24 images)
        a, b = next(one), next(two)
        assert a["image_id"] == b["image_id"] and torch.equal(a["image"], b["image"])
        assert next(ranks[0])["image_id"] + next(ranks[1])["image_id"] == a["image_id"]
    resumed = make_loader(BatchStream(ds, 4, window=7, start_batch=5), 0)
    again = make_loader(BatchStream(ds, 4, window=7), 0)
    for _ in range(5):
        next(again)
    assert next(resumed)["image_id"] == next(again)["image_id"]


def test_resume_reproduces_uninterrupted_losses(dataset, tmp_path):
    tp = small(total_kimg=0.016, augment={"enabled": True, "p_init": 0.2, "adjust_every": 1})
    full = Trainer(tp, dataset, tmp_path / "a", seed=0).run(evaluate=False)
    Trainer(tp, dataset, tmp_path / "b", seed=0).run(max_steps=2, evaluate=False)
    part = Trainer(tp, dataset, tmp_path / "b", seed=0)
    assert part.c.step == 2
    rest = part.run(evaluate=False)
    assert len(rest.stats) == 2                   # one step per tick: tick rows are the steps' statistics
    for a, b in zip(full.stats[2:], rest.stats):
        for key in ("loss_g", "loss_d", "loss_vicico", "augment_p"):
            assert a[key] == b[key], key          # bit for bit on the CPU
    for pa, pb in zip(full.G_ema.parameters(), rest.G_ema.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5)


def test_sigterm_checkpoints_and_exits_with_requeue_code(dataset, tmp_path):
    tp = small(total_kimg=0.04)
    tr = Trainer(tp, dataset, tmp_path, seed=0)
    stop = StopFlag()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(Preempted) as exc:
            tr.run(stop=stop, evaluate=False)
    finally:
        stop.close()
    assert exc.value.code == 3
    ckpt = latest(tmp_path / "checkpoints")
    assert ckpt is not None and ckpt.name == "ckpt-000000004"
    assert Trainer(tp, dataset, tmp_path, seed=0).c.step == 1


def test_nan_step_is_skipped_and_recorded(dataset, tmp_path):
    tr = Trainer(small(), dataset, tmp_path, seed=0)
    batch = next(make_loader(BatchStream(tr.ds, 4), 0))
    before = [p.clone() for p in tr.D.parameters()]
    batch["image"][0, 0, 0, 0] = float("nan")
    stats = tr.step(batch)
    assert float(stats["skipped_D_main"]) == 1.0 and float(stats["skipped_G_main"]) == 0.0
    assert tr.sync_counters().skipped["D_main"] == 1
    assert all(torch.equal(a, b) for a, b in zip(before, tr.D.parameters()))
    assert all(float(st["step"]) == 0 for st in tr.opt_D.state.values())   # Adam's moments and step untouched


def test_stage_assembles_outputs(dataset, tmp_path):
    import shutil

    from balancehead.models import load_checkpoint
    from balancehead.stages import train as stage

    root = tmp_path / "repo"
    shutil.copytree(dataset, root / "data/dataset")
    from stage_context import stage_context

    stage.main(stage_context(root, "train", {"train": small()}))
    modules, meta = load_checkpoint(root / "data/train/G_ema")
    assert set(modules) == {"G_ema"} and meta["conditioning"] == "semantic"
    assert meta["label_spec"]["mode"] == "semantic" and meta["label_spec"]["semantic_dim"] > 0
    assert list((root / "data/train/fakes").glob("*.png"))
    metrics = __import__("json").loads((root / "results/train.json").read_text())
    assert metrics["kimg"] == pytest.approx(0.008) and math.isfinite(metrics["fd_random_features_final"])
    assert (root / "results/train_stats.tsv").read_text().count("\n") == 3   # header + 2 ticks
