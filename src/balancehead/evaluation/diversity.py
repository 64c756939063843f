"""Identity-space metrics: MKNND diversity (BalanceHead A.6.11, eq. 2) and multi-view identity
consistency (PanoHead §4.3: mean cosine similarity of identity embeddings of the same generated head
rendered from different cameras)."""
from __future__ import annotations

from itertools import combinations

import numpy as np
import torch


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


# Bound on |bf16 product - float32 product| for unit vectors: both inputs rounded to bfloat16 (unit
# roundoff u = 2^-8, so each term a_i b_i is off by at most (2u + u^2) |a_i b_i|, and sum |a_i b_i| <= 1
# by Cauchy-Schwarz), the float32-accumulated result rounded to bfloat16 once more (u |s| <= u), plus
# float32 accumulation over up to 4096 terms (< 3e-4). 3u + u^2 + 3e-4 < 0.0122.
BF16_EPS = 0.0125


def _block_pairs(n: int, chunk: int):
    for i in range(0, n, chunk):
        for j in range(i, n, chunk):
            yield i, j


def _symmetric_topk(z: torch.Tensor, m: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-m similarities (float32, best first) and their column indices of every row of z zᵀ, self
    excluded, from the upper block triangle only (each block pair's S and Sᵀ). Each block's row-wise
    top-m is stashed in its slot of an (N, blocks x m) buffer; one top-m over the buffer at the end."""
    n = z.shape[0]
    blocks = -(-n // chunk)
    vals = torch.full((n, blocks * m), -float("inf"))
    idx = torch.full((n, blocks * m), -1, dtype=torch.long)

    def stash(start: int, sims: torch.Tensor, col0: int) -> None:
        top = sims.topk(min(m, sims.shape[1]), dim=1)
        slot, width = (col0 // chunk) * m, top.values.shape[1]
        rows = slice(start, start + sims.shape[0])
        vals[rows, slot:slot + width] = top.values
        idx[rows, slot:slot + width] = top.indices + col0

    for i, j in _block_pairs(n, chunk):
        sim = z[i:i + chunk] @ z[j:j + chunk].T
        if j == i:
            sim.fill_diagonal_(-float("inf"))        # exclude itself
        stash(i, sim, j)
        if j != i:
            stash(j, sim.T.contiguous(), i)
    best = vals.topk(m, dim=1)
    return best.values, idx.gather(1, best.indices)


def _exact_rows(z: torch.Tensor, rows: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """The k best float32 similarities of the given rows against every other row (self excluded)."""
    out = []
    for s in range(0, len(rows), chunk):
        r = rows[s:s + chunk]
        sim = z[r] @ z.T
        sim[torch.arange(len(r)), r] = -float("inf")
        out.append(sim.topk(k, dim=1).values)
    return torch.cat(out) if out else torch.zeros((0, k))


def mknnd(embeddings, k: int = 5, chunk: int = 2048, fast: bool = True, candidates: int = 16) -> float:
    """MKNND (BalanceHead A.6.11, eq. 2): mean over samples of the mean cosine distance 1 - cos to its
    k nearest other samples. Exact (the float32 cosines of the true k nearest).

    Blocked and symmetric: the unit embeddings are split into blocks of `chunk` rows; each pair of blocks
    (I, J) with J >= I is one matrix product S = Z_I Z_Jᵀ whose row-wise top-k updates the running best of
    the rows of I and, through Sᵀ, those of J -- half the N²D products of the full matrix, and never more
    than chunk² similarities in memory (50k x 512: benchmarks/bench_mknnd.py).

    `fast` (default): that pass runs in bfloat16 (twice the float32 matrix-product rate on CPUs with
    AVX512-BF16) and keeps `candidates` neighbours per row; their cosines are then recomputed in float32.
    Each row is certified: every non-candidate's bf16 similarity is at most the m-th candidate's, so its
    true one is at most that + BF16_EPS; when the k-th exact candidate similarity is at least that, no
    non-candidate can be nearer. Rows that fail (or a product whose error exceeds the bound on a sample
    block) are recomputed against all rows in float32. A sample's own similarity is excluded; duplicates
    count as neighbours at distance 0."""
    z = _unit(torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)).contiguous()
    n = z.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"MKNND needs 1 <= k < N, got k={k}, N={n}")
    if not fast or not _bf16_within_bound(z, chunk):
        vals, _ = _symmetric_topk(z, k, chunk)
        return float((1.0 - vals.double()).mean(dim=1).mean())
    m = max(min(candidates, n - 1), k)
    approx, idx = _symmetric_topk(z.bfloat16(), m, chunk)
    exact = torch.empty((n, k))
    failed = []
    for s in range(0, n, chunk):
        ids = idx[s:s + chunk]
        sims = torch.einsum("rd,rmd->rm", z[s:s + chunk], z[ids.clamp_min(0)])
        sims[approx[s:s + chunk] == -float("inf")] = -float("inf")      # placeholders (fewer than m others)
        top = sims.topk(k, dim=1).values
        exact[s:s + chunk] = top
        ok = top[:, -1] >= approx[s:s + chunk, -1] + BF16_EPS
        failed.append(torch.nonzero(~ok).flatten() + s)
    failed = torch.cat(failed)
    if len(failed):
        exact[failed] = _exact_rows(z, failed, k, chunk)
    return float((1.0 - exact.double()).mean(dim=1).mean())


def _bf16_within_bound(z: torch.Tensor, chunk: int, sample: int = 256) -> bool:
    """Whether this machine's bfloat16 product of a sample block stays within BF16_EPS of float32
    (it does when it accumulates in float32, as oneDNN / MKL do)."""
    a, b = z[:sample], z[:chunk]
    err = ((a.bfloat16() @ b.bfloat16().T).float() - a @ b.T).abs().max()
    return bool(err <= BF16_EPS / 2)


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
