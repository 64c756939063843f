"""Weights-by-path extractors load local files (here: random-init weights we write ourselves)."""
import numpy as np
import pytest
import torch


def test_inception_features_from_local_safetensors(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import inception

    from balancehead.evaluation.features import InceptionFeatures

    net = inception.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "inc.safetensors"))
    ext = InceptionFeatures(tmp_path / "inc.safetensors")
    imgs = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    f = ext(imgs)
    assert f.shape == (2, 2048) and torch.isfinite(f).all()
    assert ext.comparable is True


def test_inception_refuses_wrong_weights(tmp_path):
    from safetensors.torch import save_file

    from balancehead.evaluation.features import InceptionFeatures

    save_file({"foo": torch.zeros(3)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="InceptionV3"):
        InceptionFeatures(tmp_path / "bad.safetensors")


def test_dinov2_perceptual_from_local_directory(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    from balancehead.evaluation.params import PerceptualTerm
    from balancehead.evaluation.perceptual import PerceptualLoss

    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                       patch_size=8, image_size=32)
    torch.manual_seed(0)
    Dinov2Model(cfg).save_pretrained(tmp_path / "dino")
    loss = PerceptualLoss([PerceptualTerm(kind="dinov2", path=str(tmp_path / "dino"), layers=(1, 3))])
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(loss(x, x), torch.zeros(2), atol=1e-6)
    y = x.clone().requires_grad_(True)
    d = loss(y, x.flip(-1)).sum()
    d.backward()
    assert d > 0 and y.grad.abs().sum() > 0


def test_lpips_vgg_from_local_files(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import vgg16

    from balancehead.evaluation.perceptual import LPIPSVGG

    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in vgg16(weights=None).state_dict().items() if k.startswith("features.")},
              str(tmp_path / "vgg.safetensors"))
    save_file({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(LPIPSVGG.CHANNELS)},
              str(tmp_path / "lin.safetensors"))
    net = LPIPSVGG(tmp_path / "vgg.safetensors", tmp_path / "lin.safetensors")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert float(net(x, x)[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(net(x, -x)[0]) > 0
