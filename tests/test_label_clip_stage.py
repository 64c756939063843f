"""label_clip on the offline backend: rendered images get the world-attribute feature (a subject's views
share its attributes, the per-view feature follows the true view); an image without world ground truth
(a photo) falls back to the random-init CLIP, and every record says which source its feature came from."""
from __future__ import annotations

import json

import numpy as np

from balancehead import fileio, integrity
from balancehead.backends.attribute_clip import AttributeClipEmbedder
from balancehead.stages import label_clip
from balancehead.world.subject import SUBJECT_SEED_KEY, sample_subject
from balancehead.world.synth import ProceduralSynthesizer, SynthRates

from stage_context import stage_context


def _write_items(d, records, files):
    (d / "files").mkdir(parents=True)
    for rec in records:
        for name, data in files[rec["id"]].items():
            (d / "files" / f"{rec['id']}.{name}").write_bytes(data)
    fileio.write_jsonl(d / "items.jsonl", records)
    integrity.write_digests(d, "test")


def test_world_features_and_the_labelled_fallback(tmp_path):
    synth = ProceduralSynthesizer(SynthRates(identity_drift_rate=0.0), size=32)
    subject = sample_subject(5, subject_id="subj-5")
    fronts, views, files = [], [], {}
    for item_id, yaw, out in (("f-5", 0.0, fronts), ("v-5a", 90.0, views), ("v-5b", 180.0, views)):
        res = synth.view(subject, yaw, seed=1)
        out.append({"id": item_id, "subject_id": "subj-5", "status": "kept",
                    "provenance": {SUBJECT_SEED_KEY: 5}, "files": {"png": "-", "truth.json": "-"}})
        files[item_id] = {"png": fileio.png_bytes(res.rgb), "truth.json": json.dumps(res.truth).encode()}
    photo = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    fronts.append({"id": "f-photo", "subject_id": "photo", "status": "kept", "provenance": {"source": "folder"},
                   "files": {"png": "-"}})
    files["f-photo"] = {"png": fileio.png_bytes(photo)}
    _write_items(tmp_path / "data/fronts", fronts, files)
    _write_items(tmp_path / "data/views", views, files)

    ctx = stage_context(tmp_path, "label_clip")
    label_clip.main(ctx)
    out = tmp_path / "data/clip"
    recs = {r["id"]: r for r in fileio.read_jsonl(out / "items.jsonl")}
    feat = {i: np.frombuffer((out / "files" / f"{i}.f32").read_bytes(), "<f4") for i in recs}
    assert {i: r["semantic_source"] for i, r in recs.items()} == {
        "f-5": "world-attributes", "v-5a": "world-attributes", "v-5b": "world-attributes",
        "f-photo": "random-init-clip"}
    assert recs["f-photo"]["backend"] == "offline-random-init-ViT-B-32"
    assert recs["f-5"]["backend"] == "offline-world-attributes-ViT-B-32"
    assert all(f.shape == (512,) for f in feat.values())
    p = ctx.params.label_clip
    emb = AttributeClipEmbedder(p.seed, 512, p.attribute_noise, p.attribute_view_weight)
    for i in ("f-5", "v-5a", "v-5b"):                    # the true view of each render, not the requested one
        truth = json.loads(files[i]["truth.json"])
        assert np.allclose(feat[i], emb.view(subject, truth["true_yaw"], truth["true_pitch"]), atol=1e-6)
    assert feat["f-5"] @ emb.semantic(subject) > feat["v-5b"] @ emb.semantic(subject)
