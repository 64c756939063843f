"""Identity-space metrics: MKNND diversity (BalanceHead A.6.11, eq. 2) and multi-view identity
consistency (PanoHead §4.3: mean cosine similarity of identity embeddings of the same generated head
rendered from different cameras)."""
from __future__ import annotations

from itertools import combinations

import numpy as np
import torch


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def mknnd(embeddings, k: int = 5, chunk: int = 4096) -> float:
    """MKNND (BalanceHead A.6.11, eq. 2): mean over samples of the mean cosine distance 1 - cos to its
    k nearest other samples. Exact.

    Blocked and symmetric: the unit embeddings are split into blocks of `chunk` rows; each pair of
    blocks (I, J) with J >= I is one float32 matrix product S = Z_I Z_Jᵀ whose row-wise top-k updates
    the running k best similarities of the rows of I and, through Sᵀ, those of J -- half the N²D
    products of the full matrix, and never more than chunk² similarities in memory (50k x 512:
    benchmarks/bench_mknnd.py). A sample's own similarity is excluded; duplicates count as neighbours
    at distance 0."""
    z = _unit(torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)).contiguous()
    n = z.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"MKNND needs 1 <= k < N, got k={k}, N={n}")
    best = torch.full((n, k), -float("inf"))

    def merge(start: int, sims: torch.Tensor) -> None:
        top = sims.topk(min(k, sims.shape[1]), dim=1).values
        rows = slice(start, start + sims.shape[0])
        best[rows] = torch.cat([best[rows], top], dim=1).topk(k, dim=1).values

    for i in range(0, n, chunk):
        zi = z[i:i + chunk]
        for j in range(i, n, chunk):
            sim = zi @ z[j:j + chunk].T
            if j == i:
                sim.fill_diagonal_(-float("inf"))        # exclude itself
            merge(i, sim)
            if j != i:
                merge(j, sim.T)
    return float((1.0 - best.double()).mean(dim=1).mean())


def mknnd_brute_force(embeddings, k: int = 5) -> float:
    """Eq. 2 written out sample by sample (float64, full sort): the reference the tests check `mknnd` against."""
    e = np.asarray(embeddings, np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    per_sample = []
    for i in range(len(e)):
        d = 1.0 - np.delete(e, i, axis=0) @ e[i]
        per_sample.append(np.sort(d)[:k].mean())
    return float(np.mean(per_sample))


def id_consistency(embeddings: np.ndarray) -> dict[str, float]:
    """embeddings: (identities, views, D). -> mean pairwise cosine over all view pairs of each identity,
    and the mean cosine of every view to view 0 (the reference view)."""
    e = np.asarray(embeddings, dtype=np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
    n_views = e.shape[1]
    if n_views < 2:
        raise ValueError("ID consistency needs at least two views per identity")
    pairs = [float((e[:, a] * e[:, b]).sum(-1).mean()) for a, b in combinations(range(n_views), 2)]
    to_ref = [float((e[:, 0] * e[:, v]).sum(-1).mean()) for v in range(1, n_views)]
    return {"id_consistency": float(np.mean(pairs)), "id_consistency_to_ref": float(np.mean(to_ref))}
