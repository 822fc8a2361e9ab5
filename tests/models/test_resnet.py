import pytest
import torch

from xbyol.models import create_backbone, names


@pytest.mark.parametrize("name", names())
def test_every_backbone_exposes_features_and_pooled_output(name):
    torch.manual_seed(0)
    net = create_backbone(name).eval()
    size = 32 if "cifar" in name or name.startswith("resnet10") else 64
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        f = net.forward_features(x)
        z = net(x)
    assert f.ndim == 4 and f.shape[:2] == (2, net.num_features)
    assert z.shape == (2, net.num_features)
    torch.testing.assert_close(z, f.mean(dim=(2, 3)))
    assert net.feature_layer is net.stages[-1]


def test_cifar_stem_keeps_resolution_and_imagenet_stem_reduces_it():
    x = torch.randn(1, 3, 32, 32)
    assert create_backbone("resnet18_cifar").eval().forward_features(x).shape[-1] == 4  # 32 / 8
    assert create_backbone("resnet18").eval().forward_features(x).shape[-1] == 1  # 32 / 32


def test_resnet18_has_the_standard_parameter_count():
    # torchvision's resnet18 has 11,689,512 parameters of which 513,000 are the fc layer;
    # with the CIFAR 3x3 stem the first conv has 3*64*9 instead of 3*64*49 weights.
    n = sum(p.numel() for p in create_backbone("resnet18").parameters())
    assert n == 11_689_512 - 513_000
    n_cifar = sum(p.numel() for p in create_backbone("resnet18_cifar").parameters())
    assert n_cifar == n - 3 * 64 * 49 + 3 * 64 * 9


def test_bad_stem_is_an_error():
    with pytest.raises(ValueError, match="stem"):
        create_backbone("resnet10_16", stem="vit")
