"""The networks of the phase-transition zoos, each with a width (the zoos' load-like factor).

- :func:`digits_cnn` / :func:`digits_mlp`: small :class:`~weightzoo.architectures.image.SeqNet`
  stacks for 8x8 digits, so that a population runs as one grouped convolution;
- ResNet-18 is :class:`~weightzoo.architectures.image.ResNet18` with its ``width``;
- :class:`ResNet50`: bottleneck ResNet-50 for small images (3x3 stem, no stem max-pool), stage
  widths ``width, 2 width, 4 width, 8 width`` and expansion 4 (``width=64`` is the standard
  network's 23.5 million parameters on 10 classes);
- :class:`VisionTransformer`: a pre-norm ViT whose width is its embedding dimension.

:func:`from_spec` builds the network of a phase zoo's spec (``architecture`` and ``width``),
:func:`layout` gives its layout without allocating it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from weightzoo.architectures import UnbuildableSpecError
from weightzoo.architectures.image import ResidualBlock, ResNet18, SeqNet, projection_shortcut
from weightzoo.families.phase.spec import (
    ARCHITECTURES,
    BOTTLENECK_EXPANSION,
    RESNET50_STAGES,
    VIT_DEPTH,
    VIT_HEADS,
    VIT_MLP_RATIO,
    VIT_PATCH,
    PhaseSpec,
)
from weightzoo.features import layout_of
from weightzoo.storage.layout import Layout

__all__ = [
    "ResNet50",
    "VisionTransformer",
    "digits_cnn",
    "digits_mlp",
    "from_spec",
    "layout",
]


def digits_cnn(width: int, in_channels: int = 1, num_classes: int = 10, size: int = 8) -> SeqNet:
    """Two 3x3 convs (``width`` and ``2 width`` channels, ReLU, 2x2 max-pool) and a linear head.

    On 8x8 inputs the head sees ``2 width x 2 x 2`` features.
    """
    spatial = size // 4
    return SeqNet(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * spatial * spatial, num_classes),
    )


def digits_mlp(width: int, in_features: int = 64, num_classes: int = 10) -> SeqNet:
    """Flattened image -> two ReLU layers of ``width`` units -> class logits."""
    return SeqNet(
        nn.Flatten(),
        nn.Linear(in_features, width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, num_classes),
    )


class Bottleneck(ResidualBlock):
    """ResNet bottleneck: 1x1 -> 3x3 (stride) -> 1x1 (``4 planes``), BatchNorm, projection."""

    expansion = BOTTLENECK_EXPANSION

    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.shortcut = projection_shortcut(cin, cout, stride)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """1x1, 3x3 and 1x1 convs with BatchNorm, ReLU between them."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


class ResNet50(nn.Module):
    """ResNet-50 (3, 4, 6, 3 bottlenecks) for small images, with a width.

    Args:
        in_channels: input channels.
        num_classes: outputs.
        width: stem channels and planes of the first stage (64 is the standard network).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        cin = width
        stages: list[nn.Module] = []
        for scale, blocks, stride in RESNET50_STAGES:
            layers = []
            for k in range(blocks):
                layers.append(Bottleneck(cin, width * scale, stride if k == 0 else 1))
                cin = width * scale * Bottleneck.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


class _Block(nn.Module):
    """Pre-norm transformer block: multi-head self-attention and a GELU MLP, both residual."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, tokens, dim]`` -> same shape."""
        batch, tokens, dim = x.shape
        q, k, v = (
            self.qkv(self.norm1(x))
            .reshape(batch, tokens, 3, self.heads, dim // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        # written out rather than F.scaled_dot_product_attention, so that vmap over models
        # and double backward (Hessian-vector products) work everywhere
        weights = torch.softmax(q @ k.transpose(-2, -1) / (dim // self.heads) ** 0.5, dim=-1)
        attended = (weights @ v).transpose(1, 2).reshape(batch, tokens, dim)
        x = x + self.proj(attended)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class VisionTransformer(nn.Module):
    """A small ViT: patch embedding, class token, learned positions, pre-norm blocks.

    Args:
        dim: embedding dimension (the phase zoos' width); divisible by ``heads``.
        image_size: input side.
        patch: patch side.
        depth: transformer blocks.
        heads: attention heads.
        mlp_ratio: hidden units of each block's MLP per embedding unit.
        in_channels: input channels.
        num_classes: outputs.

    Raises:
        ValueError: ``dim`` not divisible by ``heads`` or ``image_size`` by ``patch``.
    """

    def __init__(
        self,
        dim: int,
        *,
        image_size: int = 32,
        patch: int = VIT_PATCH,
        depth: int = VIT_DEPTH,
        heads: int = VIT_HEADS,
        mlp_ratio: int = VIT_MLP_RATIO,
        in_channels: int = 3,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        if dim % heads or image_size % patch:
            raise ValueError(
                f"ViT needs dim % heads == 0 and image_size % patch == 0; got dim {dim}, "
                f"heads {heads}, image_size {image_size}, patch {patch}"
            )
        tokens = (image_size // patch) ** 2
        self.embed = nn.Conv2d(in_channels, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(_Block(dim, heads, mlp_ratio * dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images."""
        h = self.embed(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1) + self.pos
        return self.head(self.norm(self.blocks(h))[:, 0])


def from_spec(spec: Mapping[str, Any]) -> nn.Module:
    """The network of a phase zoo's spec (``architecture``, ``width``, image and classes).

    Raises:
        UnbuildableSpecError: for an unknown architecture.
    """
    arch, width = str(spec["architecture"]), int(spec["width"])
    channels, classes = int(spec["in_channels"]), int(spec["num_classes"])
    size = int(spec["image_size"])
    if arch == "cnn":
        return digits_cnn(width, channels, classes, size)
    if arch == "mlp":
        return digits_mlp(width, channels * size * size, classes)
    if arch == "resnet18":
        return ResNet18(channels, classes, width=width)
    if arch == "resnet50":
        return ResNet50(channels, classes, width=width)
    if arch == "vit":
        return VisionTransformer(width, image_size=size, in_channels=channels, num_classes=classes)
    raise UnbuildableSpecError(
        f"zoo spec {spec.get('name')!r}: unknown phase architecture {arch!r}; known: "
        f"{', '.join(ARCHITECTURES)}"
    )


def layout(spec: PhaseSpec) -> Layout:
    """Layout of one row of ``spec``: the network's parameters and BatchNorm statistics."""
    return _layout(
        spec.architecture, spec.width, spec.in_channels, spec.num_classes, spec.image_size
    )


@lru_cache(maxsize=64)
def _layout(architecture: str, width: int, channels: int, classes: int, size: int) -> Layout:
    """The layout of a phase network, built on the meta device (no memory, no init work).

    The widest paper networks have hundreds of millions of parameters; sizing their zoos
    must not allocate them.
    """
    fields = dict(
        architecture=architecture,
        width=width,
        in_channels=channels,
        num_classes=classes,
        image_size=size,
    )
    with torch.device("meta"):
        return layout_of(from_spec(fields))
