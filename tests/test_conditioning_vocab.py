"""One conditioning vocabulary: the params accept exactly its modes, a checkpoint stores its label spec,
and evaluation reads the spec back (no list or width guessing of its own)."""
from __future__ import annotations

import typing

import pytest

from balancehead.train.conditioning import CAMERA_DIM, MODES, LabelSpec
from balancehead.train.params import ConditioningParams


def test_params_accept_exactly_the_vocabulary():
    assert typing.get_args(ConditioningParams.model_fields["mode"].annotation) == MODES
    for mode in ("view+semantic", "view_plus_semantics", "id"):
        with pytest.raises(ValueError):
            ConditioningParams(mode=mode)


@pytest.mark.parametrize("mode,sem", [("none", 0), ("view", 0), ("semantic", 512), ("view_semantic", 16),
                                      ("view_plus_semantic", 512), ("identity", 512), ("view_identity", 24)])
def test_the_stored_spec_reads_back(mode, sem):
    spec = LabelSpec(mode, sem)
    assert LabelSpec.from_meta({"label_spec": spec.to_meta()}, spec.g_dim) == spec
    assert LabelSpec.from_meta({"conditioning": mode}, spec.g_dim) == spec       # imported checkpoints
    with pytest.raises(ValueError, match="width"):
        LabelSpec.from_meta({"label_spec": spec.to_meta()}, spec.g_dim + 1)
    assert spec.d_dim == (0 if mode == "none" else CAMERA_DIM + sem)


def test_evaluation_uses_the_checkpoint_spec():
    import numpy as np

    from balancehead.evaluation.generator_io import condition_source
    from balancehead.models import Generator, GeneratorConfig

    g = Generator(GeneratorConfig.tiny())
    assert g.cfg.c_dim == CAMERA_DIM
    src = condition_source(g, {"label_spec": LabelSpec("view", 0).to_meta()})
    c, _ = src.draw(np.random.default_rng(0), 2)
    assert src.mode == "view" and c.shape == (2, CAMERA_DIM)
    with pytest.raises(ValueError, match="width"):
        condition_source(g, {"label_spec": LabelSpec("semantic", 7).to_meta()})


@pytest.mark.parametrize("mode", ["view_plus_semantic", "identity", "view_identity"])
def test_evaluation_draws_the_new_modes_from_their_tables(tmp_path, mode):
    """Sampling a view_plus_semantic / identity / view_identity generator draws rows of the table the
    mode trained on (the identity tables for the A.6.10 baselines), camera first for view_plus_semantic."""
    import numpy as np

    from balancehead.evaluation.generator_io import condition_source
    from balancehead.models import Generator, GeneratorConfig
    from train_fixtures import DIM, ID_DIM, make_dataset

    root = make_dataset(tmp_path / "packed", n_subjects=2)
    sem = ID_DIM if "identity" in mode else DIM
    spec = LabelSpec(mode, sem)
    g = Generator(GeneratorConfig.tiny(c_dim=spec.g_dim))
    src = condition_source(g, {"label_spec": spec.to_meta()}, root)
    cams = np.random.default_rng(1).standard_normal((3, CAMERA_DIM)).astype(np.float32)
    c, idx = src.draw(np.random.default_rng(0), 3, cams)
    table = src.image if mode == "view_identity" else src.subject
    assert c.shape == (3, spec.g_dim) and table.shape[1] == sem
    if mode == "view_plus_semantic":
        assert np.array_equal(c[:, :CAMERA_DIM], cams)
    assert np.allclose(c[:, -sem:], table[idx].astype(np.float32))
