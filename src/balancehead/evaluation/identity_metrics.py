"""MKNND diversity (BalanceHead A.6.11) and multi-view ID consistency (PanoHead §4.3) of a generator, on
identity embeddings of its renders; the embedder comes from `identity_backend.make_identity_embedder`."""
from __future__ import annotations

import numpy as np

from balancehead.camera import camera_label

from .diversity import id_consistency, mknnd
from .fid_suite import FakeRequest, render_fakes


def front_request(n: int) -> FakeRequest:
    front = np.repeat(camera_label(0.0, 0.0)[None], n, axis=0)
    return FakeRequest(front, front, True)


def generator_mknnd(g, cond, embedder, n: int, k: int, seed: int, psi: float, batch_size: int, device) -> float:
    """MKNND (k nearest, cosine) over n identities rendered front-on (conditioned on the front)."""
    fakes = render_fakes(g, cond, front_request(n), seed, psi, batch_size, device, white_background=True)
    return mknnd(embedder.embed(fakes["image"], fakes["mask"]), k)


def generator_id_consistency(g, cond, embedder, n: int, yaws, seed: int, psi: float, batch_size: int, device) -> dict:
    """Each of n identities (same z and condition for all its views) rendered at `yaws`; pairwise cosine."""
    v = len(yaws)
    cams = np.stack([camera_label(float(y), 0.0) for y in yaws])
    # repeat each identity's latent draw across its views: draw per identity, render per view
    emb = []
    for i in range(n):
        req = FakeRequest(cams, np.repeat(camera_label(0.0, 0.0)[None], v, axis=0), True)
        fakes = render_fakes(g, cond, req, seed + i, psi, max(batch_size, v), device, white_background=True,
                             same_identity=True)
        emb.append(embedder.embed(fakes["image"], fakes["mask"]))
    return id_consistency(np.stack(emb))
