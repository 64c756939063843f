import hashlib
import io
import zipfile

import numpy as np
from PIL import Image

from balancehead.data.export import export_eg3d, read_eg3d_labels
from balancehead.data.shards import iter_shard
from test_data_fixtures import make_packed


def _packed_samples(root):
    return {f"{p.stem}/{s.key}.png": s for p in sorted((root / "shards").iterdir()) for s in iter_shard(p)}


def test_zip_round_trip_and_determinism(tmp_path):
    rows = make_packed(tmp_path / "p", n_subjects=3, views=3, shard_size=4)
    n = export_eg3d(tmp_path / "p", tmp_path / "a.zip", include_masks=True)
    assert n == sum(1 for r in rows if r.get("shard"))
    samples = _packed_samples(tmp_path / "p")
    labels = read_eg3d_labels(tmp_path / "a.zip")
    assert set(labels) == set(samples)
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        for name, s in samples.items():
            np.testing.assert_allclose(labels[name], s.label["camera"])
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(zf.read(name)))), s.image)
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(zf.read("masks/" + name)))), s.mask)
    export_eg3d(tmp_path / "p", tmp_path / "b.zip", include_masks=True)
    assert hashlib.sha256((tmp_path / "a.zip").read_bytes()).digest() == \
        hashlib.sha256((tmp_path / "b.zip").read_bytes()).digest()


def test_directory_export_and_roles(tmp_path):
    make_packed(tmp_path / "p", n_subjects=2, views=3)
    n = export_eg3d(tmp_path / "p", tmp_path / "out", roles=["front"])
    assert n == 2
    labels = read_eg3d_labels(tmp_path / "out")
    samples = _packed_samples(tmp_path / "p")
    for name, cam in labels.items():
        assert samples[name].key.endswith("front00")
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / name)), samples[name].image)
        np.testing.assert_allclose(cam, samples[name].label["camera"])
