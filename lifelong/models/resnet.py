"""The reduced ResNet-18 of continual-learning papers (GEM, ER, MIR, SCR, PCR).

Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning" (NeurIPS 2017) introduced
it for CIFAR-100: a ResNet-18 with ``[2, 2, 2, 2]`` basic blocks whose widths are
``nf, 2nf, 4nf, 8nf`` with ``nf = 20`` (a third of the usual 64), a 3x3 stride-1 stem without
max-pool, and an average pool at the end. Later online-CL work (ER, MIR, SCR, PCR/HPCR) and
Avalanche's ``SlimResNet18`` reuse it unchanged.

Deliberate difference from the official code: the official model pools with ``avg_pool2d(out, 4)``,
which gives ``8 * nf`` features only for 32x32 inputs (and ``4 * 8 * nf`` for 84x84 Mini-ImageNet).
This one pools adaptively to 1x1, so the features are always ``8 * nf``-d (160 for ``nf = 20``) and
any input of at least 8x8 pixels works; on 32x32 inputs the two are identical.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """Build a bias-free 3x3 convolution with padding 1 (the bias is redundant before batch norm)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut (a 1x1 conv-BN projection when the shape changes).

    Args:
        in_planes: channels coming in.
        planes: channels going out.
        stride: stride of the first convolution (2 halves the resolution).

    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_planes, H, W)`` to ``(B, planes, H / stride, W / stride)``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ReducedResNet18(nn.Module):
    """Reduced ResNet-18 feature extractor: ``(B, C, H, W)`` images to ``(B, 8 * nf)`` features.

    Args:
        in_channels: channels of the input images (1 for MNIST-like data, 3 for CIFAR).
        nf: width of the first stage; the four stages have ``nf, 2nf, 4nf, 8nf`` channels.

    """

    def __init__(self, in_channels: int = 3, nf: int = 20) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv3x3(in_channels, nf), nn.BatchNorm2d(nf), nn.ReLU())
        widths = [nf, 2 * nf, 4 * nf, 8 * nf]
        stages, in_planes = [], nf
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(in_planes, width, stride), BasicBlock(width, width)))
            in_planes = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, C, H, W)`` images to ``(B, out_dim)`` features."""
        maps = self.stages(self.stem(x))  # (B, 8nf, H / 8, W / 8)
        return self.pool(maps).flatten(1)  # (B, 8nf)
