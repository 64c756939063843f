"""pack_dataset's identity condition tables (BalanceHead A.6.10): built with select_front's identity
backend, one row per subject (its selected front's feature) and one per packed image (its own),
stored with the other tables' format and digests, read back by the training reader."""
from __future__ import annotations

import numpy as np
import pytest

from balancehead import integrity
from balancehead.backends.identity import OfflineIdentityEmbedder, cosine
from balancehead.data.conditions import ConditionTable
from balancehead.data.manifest import IDENTITY_CONDITIONS_FILE, VIEW_IDENTITY_CONDITIONS_FILE
from balancehead.stages.pack_dataset import IdentityTables
from balancehead.world.render import render
from balancehead.world.subject import sample_subject

from stage_context import stage_context

YAWS = (0.0, 30.0, 150.0)


def test_identity_tables_at_pack_time(tmp_path):
    tables = IdentityTables(stage_context(tmp_path, "pack_dataset"))
    assert isinstance(tables.embedder, OfflineIdentityEmbedder)          # select_front.backend: offline
    subjects, images, renders = [], [], {}
    for s in (3, 11):
        subject = sample_subject(s)
        subjects.append(subject.subject_id)
        for v, yaw in enumerate(YAWS):
            r = render(subject, yaw, 0.0, size=64)
            image_id = f"{subject.subject_id}_v{v}"
            images.append(image_id)
            renders[image_id] = r
            tables.add(image_id, subject.subject_id if v == 0 else None, r.rgb, r.mask)
    out = tmp_path / "packed"
    out.mkdir()
    meta = tables.save(out, subjects, images)
    integrity.write_digests(out, "pack_dataset")
    assert meta["backend"] == OfflineIdentityEmbedder.name and meta["offline"] is True

    subj = ConditionTable.load(out / IDENTITY_CONDITIONS_FILE)
    view = ConditionTable.load(out / VIEW_IDENTITY_CONDITIONS_FILE)
    assert subj.ids == subjects and view.ids == images
    assert subj.dim == view.dim == OfflineIdentityEmbedder().dim
    assert subj.meta["kind"] == "subject" and view.meta["kind"] == "image"
    for sid in subjects:                                   # 'identity' = the front's own row of 'view_identity'
        assert np.array_equal(subj[sid], view[f"{sid}_v0"])
        expected = OfflineIdentityEmbedder().embed([renders[f"{sid}_v0"].rgb], [renders[f"{sid}_v0"].mask])[0]
        assert np.allclose(subj[sid].astype(np.float32), expected, atol=2e-3)      # float16 storage
    a, b = subjects
    # view-dependent, as the paper says of ID features: the back view drifts from the front more than 30° does
    assert cosine(view[f"{a}_v0"], view[f"{a}_v1"]) > cosine(view[f"{a}_v0"], view[f"{a}_v2"])
    # and a subject's near-front view is closer to its own front than to another subject's
    assert cosine(view[f"{a}_v1"], subj[a]) > cosine(view[f"{a}_v1"], subj[b])

    (out / IDENTITY_CONDITIONS_FILE).write_bytes((out / IDENTITY_CONDITIONS_FILE).read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(Exception, match="digest|sha256|changed|integrity"):
        ConditionTable.load(out / IDENTITY_CONDITIONS_FILE)                # recorded digests are checked


def test_identity_tables_can_be_switched_off():
    from balancehead.params import PackDatasetParams

    assert PackDatasetParams().identity_tables is True
    assert PackDatasetParams(identity_tables=False).identity_tables is False
