"""One home per helper: one device picker (CUDA asked for and absent is an error in training too), one
Fréchet distance (training's random-feature FD shares the evaluation code and its fallback)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from balancehead.devices import pick_device


def test_cuda_requested_without_cuda_is_an_error_everywhere(monkeypatch):
    from balancehead.train.distributed import from_env
    from balancehead.train.loop import pick_device as train_pick_device
    from balancehead.train.params import TrainParams

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        pick_device("cuda")
    tp = TrainParams().model_copy(update={"distributed": TrainParams().distributed.model_copy(update={"device": "cuda"})})
    with pytest.raises(RuntimeError, match="no CUDA device"):
        train_pick_device(tp, from_env())
    assert pick_device("auto") == torch.device("cpu")


def test_training_fd_is_the_evaluation_frechet_distance():
    from balancehead.evaluation.fid import fid_from_features
    from balancehead.train.features import frechet_distance

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 16)), rng.normal(size=(6, 16)) + 0.5       # fewer samples than dims
    assert frechet_distance(a, b) == fid_from_features(a, b)
    assert np.isfinite(frechet_distance(a, b)) and frechet_distance(a, a) < 1e-6 < frechet_distance(a, b)
