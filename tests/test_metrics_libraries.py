"""Our metric code against maintained libraries on the same inputs: FID and KID against clean-fid
(Parmar et al. 2022), PSNR and LPIPS (VGG) against torchmetrics; SSIM is checked against scikit-image in
test_eval_metrics.py (torchmetrics pads the borders, ours and scikit-image's filter 'valid', so those
two differ by ~1e-3 by design). These are the proof that the numbers agree; ours stay in use because
they are differentiable torch code (PSNR/SSIM in PTI) or feature-level (FID/KID on any extractor)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from balancehead.evaluation.fid import fid_from_features, kid
from balancehead.evaluation.image_metrics import psnr


def _features(seed: int, n: int, d: int = 16, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)) * scale + shift


def test_fid_matches_clean_fid():
    from cleanfid.fid import fid_from_feats

    for a, b in ((_features(0, 200), _features(1, 150, scale=1.2, shift=0.3)),
                 (_features(2, 64, 32), _features(3, 64, 32, shift=2.0))):
        assert fid_from_features(a, b) == pytest.approx(fid_from_feats(a, b), rel=1e-9, abs=1e-9)


def test_kid_matches_clean_fid_on_whole_sets():
    from cleanfid.fid import kernel_distance

    a, b = _features(4, 120), _features(5, 120, scale=1.3)
    # with one subset of every row both estimators see the same pairs: exactly the unbiased MMD²
    assert kid(a, b, subsets=1, subset_size=120) == pytest.approx(kernel_distance(a, b, num_subsets=1, max_subset_size=120),
                                                                  rel=1e-9, abs=1e-12)


def test_psnr_matches_torchmetrics():
    from torchmetrics.functional.image import peak_signal_noise_ratio

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=g)
    y = (x + 0.1 * torch.randn(3, 3, 32, 32, generator=g)).clamp(0, 1)
    ref = peak_signal_noise_ratio(x, y, data_range=1.0, reduction="none", dim=(1, 2, 3))
    assert torch.allclose(psnr(x, y), ref, atol=1e-4)


def test_lpips_vgg_matches_torchmetrics(tmp_path):
    """LPIPS (Zhang et al. 2018, VGG variant): our LPIPSVGG against torchmetrics' LPIPS with the same
    weights. torchmetrics ships the official LPIPS linear heads (lpips_models/vgg.pth); the VGG16 trunk is
    a seeded random init (`pnet_rand`, no ImageNet download), exported with the heads to safetensors and
    loaded by our class through its usual local-file path."""
    from safetensors.torch import save_file
    from torchmetrics.functional.image.lpips import _LPIPS

    from balancehead.evaluation.perceptual import LPIPSVGG

    torch.manual_seed(0)
    ref = _LPIPS(pretrained=True, net="vgg", pnet_rand=True).eval()
    state = ref.state_dict()
    trunk = {f"features.{k.split('.')[2]}.{k.split('.')[3]}": v.contiguous()
             for k, v in state.items() if k.startswith("net.slice")}
    heads = {k: v.contiguous() for k, v in state.items() if k[:3] == "lin" and k[3].isdigit()}
    assert len(heads) == 5 and float(heads["lin0.model.1.weight"].abs().sum()) > 0   # the shipped heads, not zeros
    save_file(trunk, str(tmp_path / "vgg.safetensors"))
    save_file(heads, str(tmp_path / "lin.safetensors"))
    ours = LPIPSVGG(tmp_path / "vgg.safetensors", tmp_path / "lin.safetensors")

    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 64, 64, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(3, 3, 64, 64, generator=g)).clamp(-1, 1)
    with torch.no_grad():
        expected = ref(x, y).flatten()
        got = ours(x, y)
    assert float(expected.min()) > 0
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-7), (got, expected)
