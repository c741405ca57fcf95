"""Backbones: registered ones on every input shape, the reduced ResNet-18 architecture, timm by name, errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from lifelong.errors import ConfigError
from lifelong.models import BACKBONES, backbone_names, build_backbone, validate_backbone

SHAPES = [(1, 28, 28), (1, 8, 8), (3, 32, 32)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", BACKBONES.names())
def test_registered_backbone_maps_images_to_feature_vectors(name, shape):
    net = build_backbone(name, shape)
    out = net(torch.randn(4, *shape))
    assert isinstance(net.out_dim, int)
    assert out.shape == (4, net.out_dim)
    assert torch.isfinite(out).all()


def conv_params(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k  # bias-free


def bn_params(c: int) -> int:
    return 2 * c  # weight and bias (running stats are buffers)


def basic_block_params(c_in: int, c_out: int) -> int:
    """Two 3x3 conv-BN layers, plus a 1x1 conv-BN projection when the width changes."""
    count = conv_params(c_in, c_out, 3) + bn_params(c_out) + conv_params(c_out, c_out, 3) + bn_params(c_out)
    if c_in != c_out:
        count += conv_params(c_in, c_out, 1) + bn_params(c_out)
    return count


def test_reduced_resnet18_parameter_count_matches_the_architecture():
    # nf = 20 on RGB: stem 3x3 conv 3->20 + BN = 540 + 40 = 580;
    # stage 1 (20): 2 x (3600 + 40 + 3600 + 40) = 14,560;
    # stage 2 (40): (7200 + 80 + 14400 + 80 + 800 + 80) + (2 x 14400 + 160) = 22,640 + 28,960 = 51,600;
    # stage 3 (80): (28800 + 160 + 57600 + 160 + 3200 + 160) + (2 x 57600 + 320) = 90,080 + 115,520 = 205,600;
    # stage 4 (160): (115200 + 320 + 230400 + 320 + 12800 + 320) + (2 x 230400 + 640) = 359,360 + 461,440 = 820,800;
    # total 1,093,140 (+ 160 x C + C for a C-way linear head: 1,109,240 for CIFAR-100).
    nf, widths = 20, [20, 40, 80, 160]
    expected = conv_params(3, nf, 3) + bn_params(nf)
    c_in = nf
    for width in widths:
        expected += basic_block_params(c_in, width) + basic_block_params(width, width)
        c_in = width
    assert expected == 1_093_140
    net = build_backbone("reduced_resnet18", (3, 32, 32))
    assert sum(p.numel() for p in net.parameters()) == expected
    assert net.out_dim == 160


def test_reduced_resnet18_stage_widths_and_stride_one_stem():
    net = build_backbone("reduced_resnet18", (3, 32, 32), nf=8)
    assert net.out_dim == 64
    assert net.stem[0].stride == (1, 1)
    assert net.stem[0].kernel_size == (3, 3)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules())
    x = net.stem(torch.randn(2, 3, 32, 32))
    sizes = []
    for stage in net.stages:
        x = stage(x)
        sizes.append(tuple(x.shape[1:]))
    assert sizes == [(8, 32, 32), (16, 16, 16), (32, 8, 8), (64, 4, 4)]


def test_mlp_hidden_sizes_and_dropout_are_configurable():
    net = build_backbone("mlp", (1, 8, 8), hidden=[32, 16], dropout=0.5)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 32), (32, 16)]
    assert sum(isinstance(m, torch.nn.Dropout) for m in net.modules()) == 2
    assert net.out_dim == 16
    assert build_backbone("mlp", (1, 8, 8), hidden=[]).out_dim == 64  # no hidden layer: the flattened input


def test_timm_backbone_takes_one_channel_inputs():
    net = build_backbone("timm:resnet18", (1, 28, 28))
    assert net.conv1.in_channels == 1
    assert net.out_dim == 512
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 512)


def test_timm_out_dim_is_the_pooled_width_not_num_features():
    net = build_backbone("timm:mobilenetv3_small_050", (3, 32, 32))
    assert net.out_dim != net.num_features  # MobileNetV3 has an extra layer after pooling
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, net.out_dim)


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("mlpp", "'mlp'"),
        ("reduced_resnet", "'reduced_resnet18'"),
        ("resnet18", "'timm:resnet18'"),
        ("timm:resnet81", "'timm:resnet18'"),
    ],
)
def test_unknown_backbone_names_the_key_and_suggests(name, suggestion):
    with pytest.raises(ConfigError, match="model.backbone") as err:
        validate_backbone(name)
    assert f"did you mean {suggestion}" in str(err.value)
    with pytest.raises(ConfigError):
        build_backbone(name, (3, 32, 32))


def test_valid_names_pass_validation():
    for name in [*BACKBONES.names(), "timm:resnet18"]:
        validate_backbone(name)


def test_backbone_names_lists_registered_and_timm():
    assert backbone_names() == [*BACKBONES.names(), "timm:<any timm model>"]
    assert {"mlp", "reduced_resnet18"} <= set(backbone_names())
    assert all(BACKBONES.describe(name) for name in BACKBONES.names())


def test_pretrained_timm_weights_are_refused():
    with pytest.raises(ConfigError, match="never downloads"):
        build_backbone("timm:resnet18", (3, 32, 32), pretrained=True)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("mlp", {"hiden": [8]}, r"model\.backbone_kwargs\.hiden .*did you mean 'hidden'.*allowed: hidden, dropout"),
        ("mlp", {"hidden": 8}, r"model\.backbone_kwargs\.hidden"),
        ("mlp", {"dropout": 1.0}, r"model\.backbone_kwargs\.dropout"),
        ("reduced_resnet18", {"nf": 0}, r"model\.backbone_kwargs\.nf"),
        ("timm:resnet18", {"bogus": 1}, r"model\.backbone_kwargs\.bogus"),
        ("timm:resnet18", {"in_chans": 3}, r"model\.backbone_kwargs\.in_chans"),
        ("timm:resnet18", {"global_pool": ""}, r"not a vector"),
    ],
)
def test_bad_backbone_options_raise_config_errors(name, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build_backbone(name, (3, 32, 32), **kwargs)


def test_image_backbones_need_channels_height_width():
    with pytest.raises(ConfigError, match="needs \\(C, H, W\\)"):
        build_backbone("reduced_resnet18", (64,))
    assert build_backbone("mlp", (64,)).out_dim == 256


def test_importing_models_does_not_import_timm():
    code = "import sys, lifelong.models; raise SystemExit('timm' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
