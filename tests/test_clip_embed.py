"""CLIP image embedders: open_clip's own preprocessing, determinism, RNG hygiene, local weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from balancehead.backends.clip_embed import (ClipPreprocess, OfflineClipEmbedder, OpenClipEmbedder,
                                             preprocess_batch)


@pytest.fixture(scope="module")
def offline():
    return OfflineClipEmbedder(seed=0, threads=2, progress=False)


def images(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("shape", [(64, 64), (128, 128), (90, 150), (300, 200)])
def test_preprocessing_matches_open_clip_transform(shape):
    import open_clip
    from PIL import Image

    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (2, *shape, 3), dtype=np.uint8)
    ours = preprocess_batch(imgs, ClipPreprocess())
    transform = open_clip.image_transform((224, 224), is_train=False)
    ref = torch.stack([transform(Image.fromarray(i)) for i in imgs])
    assert ours.shape == ref.shape == (2, 3, 224, 224)
    # Within one 8-bit level (fixed-point rounding inside PIL), in normalised units.
    assert (ours - ref).abs().max().item() <= 1.05 / 255 / 0.26


def test_offline_embeddings_shape_norm_and_determinism(offline):
    imgs = images(5)
    state = torch.random.get_rng_state()
    a = offline.embed(imgs, batch_size=2)
    assert a.shape == (5, 512) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    # Batch size does not change the result; a list of arrays is accepted.
    b = offline.embed(list(imgs), batch_size=5)
    np.testing.assert_allclose(a, b, atol=1e-5)
    # Different images give different features.
    assert np.abs(a[0] - a[1]).max() > 1e-3
    assert torch.equal(state, torch.random.get_rng_state())
    assert offline.name == "offline-random-init-ViT-B-32"
    assert offline.embed(np.zeros((0, 64, 64, 3), np.uint8)).shape == (0, 512)


def test_offline_init_is_seeded_and_leaves_global_rng_alone(offline):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    other = OfflineClipEmbedder(seed=0, progress=False)
    assert torch.equal(torch.rand(3), expected_next)  # construction did not consume global RNG
    for (k, p), (_, q) in zip(offline.model.state_dict().items(), other.model.state_dict().items()):
        assert torch.equal(p, q), k
    different = OfflineClipEmbedder(seed=1, progress=False)
    w0 = offline.model.visual.conv1.weight
    assert not torch.equal(w0, different.model.visual.conv1.weight)


def test_production_backend_requires_a_local_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="label_clip.pretrained"):
        OpenClipEmbedder("ViT-B-32", pretrained=str(tmp_path / "missing.safetensors"))
    with pytest.raises(FileNotFoundError, match="label_clip.pretrained"):
        OpenClipEmbedder("ViT-B-32", pretrained="openai")  # a hub tag is refused, nothing is downloaded
    with pytest.raises(FileNotFoundError, match="label_clip.pretrained"):
        OpenClipEmbedder("ViT-B-32", pretrained=None)


def test_production_backend_loads_safetensors_weights(offline, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "vit_b_32.safetensors"
    state = {k: v.contiguous() for k, v in offline.model.state_dict().items()}
    save_file(state, str(path))
    prod = OpenClipEmbedder("ViT-B-32", pretrained=str(path), threads=2, progress=False)
    imgs = images(3, seed=5)
    np.testing.assert_allclose(prod.embed(imgs), offline.embed(imgs), atol=1e-5)
    assert prod.provenance()["weights"] == str(path)
