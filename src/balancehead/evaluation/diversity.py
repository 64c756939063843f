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
    """Mean over samples of the mean cosine distance 1 - cos to its k nearest other samples.

    Exact, in row chunks so 50k x 50k distances never sit in memory at once (O(N²D) time)."""
    z = _unit(torch.as_tensor(np.asarray(embeddings), dtype=torch.float32))
    n = z.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"MKNND needs 1 <= k < N, got k={k}, N={n}")
    total = 0.0
    for s in range(0, n, chunk):
        sim = z[s:s + chunk] @ z.T
        rows = torch.arange(sim.shape[0])
        sim[rows, rows + s] = -float("inf")          # exclude itself
        top = sim.topk(k, dim=1).values               # k most similar = k nearest in cosine distance
        total += (1.0 - top.double()).mean(dim=1).sum().item()
    return total / n


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
