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


def test_cuda_backend_settings_follow_the_params_and_leave_a_cpu_run_alone():
    """EG3D's training settings by default (cuDNN benchmark on, TF32 off in convolutions and matmuls); a CPU
    device changes no flag. The flags are plain torch settings, so this runs without a GPU."""
    from balancehead.devices import configure_cuda
    from balancehead.train.params import TrainParams

    flags = (torch.backends.cudnn, "benchmark"), (torch.backends.cudnn, "allow_tf32"), (torch.backends.cuda.matmul, "allow_tf32")
    before = [getattr(obj, name) for obj, name in flags]
    try:
        configure_cuda(torch.device("cpu"), cudnn_benchmark=not before[0], tf32=not before[1])
        assert [getattr(obj, name) for obj, name in flags] == before
        d = TrainParams().distributed
        assert (d.cudnn_benchmark, d.tf32) == (True, False)
        configure_cuda(torch.device("cuda"), d.cudnn_benchmark, d.tf32)
        assert [getattr(obj, name) for obj, name in flags] == [True, False, False]
        configure_cuda(torch.device("cuda", 0), cudnn_benchmark=False, tf32=True)
        assert [getattr(obj, name) for obj, name in flags] == [False, True, True]
    finally:
        for (obj, name), value in zip(flags, before):
            setattr(obj, name, value)


def test_training_fd_is_the_evaluation_frechet_distance():
    from balancehead.evaluation.fid import fid_from_features
    from balancehead.train.features import frechet_distance

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 16)), rng.normal(size=(6, 16)) + 0.5       # fewer samples than dims
    assert frechet_distance(a, b) == fid_from_features(a, b)
    assert np.isfinite(frechet_distance(a, b)) and frechet_distance(a, a) < 1e-6 < frechet_distance(a, b)
