"""Metrics on constructed cases with known answers."""
import numpy as np
import pytest
import torch

from balancehead.evaluation.diversity import id_consistency, mknnd
from balancehead.evaluation.fid import FeatureStats, fid_from_features, frechet_distance, kid
from balancehead.evaluation.image_metrics import ms_ssim, psnr, ssim
from balancehead.evaluation.params import EvaluateParams, InvertParams, PerceptualTerm, SamplePriorParams


def test_fid_identical_sets_is_zero():
    x = np.random.default_rng(0).standard_normal((500, 8))
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-6)


def test_frechet_closed_form_shifted_and_scaled_gaussians():
    mu = np.array([1.0, -2.0, 0.5])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    # diagonal covariances: ||mu||^2 + sum (sqrt a - sqrt b)^2
    expected = mu @ mu + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(np.zeros(3), np.diag(a), mu, np.diag(b)) == pytest.approx(expected, rel=1e-9)


def test_fid_from_samples_of_shifted_gaussians_matches_closed_form():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20000, 4))
    y = rng.standard_normal((20000, 4)) + np.array([3.0, 0.0, 0.0, 4.0])
    assert fid_from_features(x, y) == pytest.approx(25.0, rel=0.02)


def test_feature_stats_need_two_samples():
    with pytest.raises(ValueError):
        FeatureStats.of(np.zeros((1, 3)))


def test_kid_near_zero_for_same_distribution_and_grows_with_shift():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((400, 16)), rng.standard_normal((400, 16))
    same = kid(x, y, subsets=20, subset_size=200)
    shifted = kid(x, y + 1.0, subsets=20, subset_size=200)
    assert abs(same) < 0.02
    assert shifted > 10 * max(abs(same), 1e-3)


def test_mknnd_hand_computed():
    angles = np.radians([0, 90, 180, 270])
    z = np.stack([np.cos(angles), np.sin(angles)], 1) * np.array([[1.0], [2.0], [3.0], [0.5]])  # norms do not matter
    assert mknnd(z, k=1) == pytest.approx(1.0)
    assert mknnd(z, k=2) == pytest.approx(1.0)
    assert mknnd(z, k=3) == pytest.approx(4.0 / 3.0)
    # chunking gives the same answer
    rng = np.random.default_rng(3)
    e = rng.standard_normal((50, 5))
    assert mknnd(e, 5, chunk=7) == pytest.approx(mknnd(e, 5, chunk=4096), rel=1e-6)
    with pytest.raises(ValueError):
        mknnd(z, k=4)


def test_mknnd_duplicates_have_zero_distance():
    z = np.repeat(np.eye(3), 3, axis=0)          # three identities, three copies each
    assert mknnd(z, k=2) == pytest.approx(0.0, abs=1e-7)


def test_id_consistency_known():
    e = np.zeros((2, 3, 2))
    e[:, :, 0] = 1.0                              # all views identical -> 1
    assert id_consistency(e)["id_consistency"] == pytest.approx(1.0)
    e[:, 1] = [0.0, 1.0]                          # view 1 orthogonal: pairs (0,1)=0, (0,2)=1, (1,2)=0
    r = id_consistency(e)
    assert r["id_consistency"] == pytest.approx(1.0 / 3.0)
    assert r["id_consistency_to_ref"] == pytest.approx(0.5)


def test_psnr_known_pair():
    x = torch.full((1, 3, 16, 16), 0.5)
    assert float(psnr(x, x + 0.1)[0]) == pytest.approx(20.0, abs=1e-4)     # mse 0.01 -> 20 dB
    assert float(psnr(x, x + 0.01)[0]) == pytest.approx(40.0, abs=1e-3)


def test_ssim_identity_and_skimage_agreement():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(4)
    a = rng.uniform(size=(32, 32))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    ta, tb = (torch.from_numpy(v)[None, None].float() for v in (a, b))
    assert float(ssim(ta, ta)[0]) == pytest.approx(1.0, abs=1e-6)
    ref = structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert float(ssim(ta, tb)[0]) == pytest.approx(ref, abs=2e-3)
    assert float(ms_ssim(ta, ta)[0]) == pytest.approx(1.0, abs=1e-5)
    assert float(ms_ssim(ta, tb)[0]) < 0.99


def test_offline_features_and_perceptual_are_deterministic_and_discriminate():
    from balancehead.evaluation.features import OfflineFeatures
    from balancehead.evaluation.perceptual import OfflinePerceptual

    imgs = np.random.default_rng(5).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    f1, f2 = OfflineFeatures()(imgs), OfflineFeatures()(imgs)
    assert torch.equal(f1, f2) and f1.shape == (4, 480)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    net = OfflinePerceptual()
    assert torch.allclose(net(x, x), torch.zeros(2), atol=1e-5)
    assert (net(x, x.flip(-1)) > 0.05).all()


def test_params_validation_messages():
    with pytest.raises(ValueError, match="holdout_identities"):
        SamplePriorParams(num_identities=2, holdout_identities=2)
    with pytest.raises(ValueError, match="lin_path"):
        PerceptualTerm(kind="lpips", path="vgg.safetensors")
    with pytest.raises(ValueError, match="inception_path"):
        EvaluateParams(feature_extractor="inception")
    with pytest.raises(ValueError, match="invert.folder"):
        InvertParams(targets="folder")
    with pytest.raises(ValueError, match="mknnd_k"):
        EvaluateParams(mknnd_k=10, mknnd_samples=10)


@pytest.mark.parametrize("n_real,n_fake,dim", [(64, 32, 480), (300, 200, 24)])
def test_fast_exact_fid_equals_the_sqrtm_fid(n_real, n_fake, dim):
    """The bootstrap's FID (nuclear norm / eigh, no d x d sqrtm) is the same number as fid_from_features,
    in both of its branches (fewer samples than dimensions, and more)."""
    from balancehead.evaluation.fid import fid_from_features
    from balancehead.evaluation.fid_suite import bootstrap_fid_std, fid_exact_fast

    rng = np.random.default_rng(7)
    a = rng.standard_normal((n_real, dim))
    b = rng.standard_normal((n_fake, dim)) * 1.1 + 0.2
    assert fid_exact_fast(a, b) == pytest.approx(fid_from_features(a, b), rel=1e-6)
    assert bootstrap_fid_std(a, b, 1, 0) is None and bootstrap_fid_std(a, b, 5, 0) > 0
