"""Fréchet distance (FID) and kernel inception distance (KID) on feature arrays.

FID = ||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1 S2)^½) between Gaussians fitted to two feature sets
(Heusel et al. 2017). KID = unbiased MMD² with the cubic polynomial kernel k(x, y) = (xᵀy / d + 1)³,
averaged over random subsets (Bińkowski et al. 2018); unlike FID it is unbiased in the sample size.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg


@dataclass(frozen=True)
class FeatureStats:
    mu: np.ndarray
    sigma: np.ndarray
    n: int

    @classmethod
    def of(cls, features: np.ndarray) -> "FeatureStats":
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or len(f) < 2:
            raise ValueError(f"need (N >= 2, D) features, got shape {f.shape}")
        return cls(f.mean(axis=0), np.cov(f, rowvar=False), len(f))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance of N(mu1, sigma1) and N(mu2, sigma2).

    Tr((S1 S2)^½) is computed as the sum of square roots of the eigenvalues of the symmetric PSD matrix
    S1^½ S2 S1^½ (two symmetric eigendecompositions). Unlike a general matrix square root (Schur
    iteration), a symmetric eigensolver has a bounded number of sweeps and cannot stall; non-finite
    inputs are refused up front, since LAPACK on NaN may never converge (issue 14). `eps` is kept for
    the call signature: tiny negative eigenvalues from round-off are clipped to zero instead."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError("mean vectors / covariances have different shapes")
    for name, a in (("mu1", mu1), ("sigma1", s1), ("mu2", mu2), ("sigma2", s2)):
        if not np.isfinite(a).all():
            raise ValueError(f"Fréchet distance: {name} has {int((~np.isfinite(a)).sum())} non-finite entries "
                             "(NaN/inf features: check the images and labels that produced them)")
    diff = mu1 - mu2
    root1 = _sqrt_psd(s1)
    inner = root1 @ s2 @ root1
    trace_covmean = float(np.sqrt(np.clip(linalg.eigvalsh((inner + inner.T) / 2.0), 0.0, None)).sum())
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_covmean
    return float(max(value, 0.0))


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a (numerically) PSD matrix; negative round-off eigenvalues -> 0."""
    w, v = linalg.eigh((s + s.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    a, b = FeatureStats.of(real), FeatureStats.of(fake)
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def kid(real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> float:
    """Mean unbiased MMD² over `subsets` random subsets of min(subset_size, |real|, |fake|) rows."""
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    d = real.shape[1]
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError("KID needs at least two samples per set")
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(subsets):
        x = fake[rng.choice(len(fake), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        total += ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
    return float(total / subsets)
