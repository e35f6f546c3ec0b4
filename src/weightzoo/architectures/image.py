"""Architectures of the Model Zoos and trajectory zoos, with their initialisations.

Every network here is a plain :class:`torch.nn.Module` whose ``named_parameters()`` (plus the
BatchNorm running statistics for ResNet-18) define the layer layout of a zoo row. The small
networks are :class:`torch.nn.Sequential` stacks of ``Conv2d``/``MaxPool2d``/activation/
:class:`RateDropout`/``Flatten``/``Linear`` so that the generator can run a whole population of
them as one grouped convolution and batched matrix products.

Counts (trainable parameters; checked in ``tests/architectures/test_modelzoo_architectures.py``):

- CNN-s: 2,464 on 1x28x28 input, 2,864 on 3x28x28 (paper Table 4).
- CNN-m: 10,853 on 3x32x32 (paper Table 4; needs a max-pool after the third conv, see docs).
- ResNet-18 (3x3 stem, no stem max-pool): 11,173,962 for 10 classes, 11,220,132 for 100,
  11,271,432 for 200.
- Trajectory MLP 196-10-10-10: 2,190 (2,160 without biases, the paper's weight-space size).
- Trajectory CNN 1->16->8 channels: 1,410 (1,376 without biases, the paper's size).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = ("tanh", "sigmoid", "relu", "gelu", "leaky_relu")
INITS = ("uniform", "normal", "kaiming_uniform", "kaiming_normal", "default")


class RateDropout(nn.Module):
    """Inverted dropout whose rate is a buffer, so that each model of a population has its own.

    ``torch.nn.Dropout`` takes its rate as a Python float, which cannot vary across a vmapped
    population. Here the rate is a 0-d buffer ``p``; stacked over models it becomes a ``[M]``
    tensor. With ``p == 0`` the layer is the identity (no random numbers are drawn).

    Args:
        p: drop probability in ``[0, 1)``.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("p", torch.tensor(float(p)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Drop units with probability ``p`` in training mode; identity in eval mode."""
        if not self.training:
            return x
        keep = 1.0 - self.p
        mask = (torch.rand_like(x) < keep).to(x.dtype)
        return x * mask / keep


def make_activation(name: str) -> nn.Module:
    """The activation module called ``name`` (one of :data:`ACTIVATIONS`).

    Raises:
        ValueError: for an unknown name.
    """
    table = {
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "relu": nn.ReLU,
        "gelu": nn.GELU,
        "leaky_relu": nn.LeakyReLU,
    }
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(table)}")
    return table[name]()


def init_weights(module: nn.Module, method: str) -> None:
    """Initialise the conv and linear layers of ``module`` in place.

    Weights get ``method``; biases are set to zero except for ``"default"``, which keeps
    PyTorch's own initialisation. ``uniform`` is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) and
    ``normal`` is N(0, 1/fan_in) (the readings documented in docs/modelzoo.md); the Kaiming
    variants use PyTorch's defaults for ReLU gain (``a=0``, ``fan_in``).

    Args:
        module: the network; only ``Conv2d`` and ``Linear`` submodules are touched.
        method: one of :data:`INITS`.

    Raises:
        ValueError: for an unknown method.
    """
    if method not in INITS:
        raise ValueError(f"unknown init {method!r}; known: {list(INITS)}")
    if method == "default":
        return
    for layer in module.modules():
        if not isinstance(layer, nn.Conv2d | nn.Linear):
            continue
        weight = layer.weight
        fan_in = weight[0].numel()
        if method == "uniform":
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(weight, -bound, bound)
        elif method == "normal":
            nn.init.normal_(weight, 0.0, 1.0 / math.sqrt(fan_in))
        elif method == "kaiming_uniform":
            nn.init.kaiming_uniform_(weight, nonlinearity="relu")
        else:
            nn.init.kaiming_normal_(weight, nonlinearity="relu")
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


class SeqNet(nn.Module):
    """A network that is one ``nn.Sequential`` called ``module_list``.

    Parameter names are ``module_list.<i>.weight`` / ``.bias`` as in the published zoos.

    Args:
        layers: the modules, in order.
    """

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.module_list = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the layers in order."""
        return self.module_list(x)


class CNN(SeqNet):
    """The general CNN of the Model Zoos paper (Table 4): three convs and two linear layers.

    The modules sit in one ``nn.Sequential`` whose parameter names are ``module_list.<i>.*``
    with the published zoos' indices for models with dropout (CNN-s: 0, 4, 8, 11, 14). The
    dropout modules are always present (rate 0 is the identity), so that every model of a zoo
    has the same layout.

    Args:
        channels: output channels of the three convs.
        kernels: kernel sizes of the three convs.
        in_channels: input channels (1 or 3).
        hidden: width of the first linear layer.
        num_classes: outputs.
        flat: features entering the first linear layer (depends on the input size).
        pool3: max-pool after the third conv (CNN-m).
        activation: one of :data:`ACTIVATIONS`.
        dropout: the rate of every dropout module.
    """

    def __init__(
        self,
        *,
        channels: tuple[int, int, int],
        kernels: tuple[int, int, int],
        in_channels: int,
        hidden: int,
        num_classes: int,
        flat: int,
        pool3: bool,
        activation: str,
        dropout: float = 0.0,
    ) -> None:
        c1, c2, c3 = channels
        k1, k2, k3 = kernels
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, c1, k1),
            nn.MaxPool2d(2),
            make_activation(activation),
            RateDropout(dropout),
            nn.Conv2d(c1, c2, k2),
            nn.MaxPool2d(2),
            make_activation(activation),
            RateDropout(dropout),
            nn.Conv2d(c2, c3, k3),
        ]
        if pool3:
            layers.append(nn.MaxPool2d(2))
        layers += [
            make_activation(activation),
            nn.Flatten(),
            nn.Linear(flat, hidden),
            make_activation(activation),
            RateDropout(dropout),
            nn.Linear(hidden, num_classes),
        ]
        super().__init__(*layers)


#: The sizes of the CNNs of Table 4 of "Model Zoos: A Dataset of Diverse Populations of Neural
#: Network Models" (Schürholt et al.; arXiv:2209.14764) that do not depend on the data (``flat``:
#: for the table's input size).
_TABLE_4: dict[str, dict[str, Any]] = {
    "CNN-s": dict(channels=(8, 6, 4), kernels=(5, 5, 2), hidden=20, flat=36, pool3=False),
    "CNN-m": dict(channels=(16, 32, 15), kernels=(3, 3, 3), hidden=20, flat=60, pool3=True),
}


def _table_4(name: str, in_channels: int, num_classes: int, activation: str, dropout: float) -> CNN:
    """The :class:`CNN` ``name`` of Table 4 (:data:`_TABLE_4`) with the data's sizes."""
    data = dict(in_channels=in_channels, num_classes=num_classes)
    return CNN(**_TABLE_4[name], **data, activation=activation, dropout=dropout)


def cnn_small(
    in_channels: int = 1, num_classes: int = 10, *, activation: str = "tanh", dropout: float = 0.0
) -> CNN:
    """CNN-s of Table 4 for 28x28 inputs: 2,464 parameters on 1 channel, 2,864 on 3."""
    return _table_4("CNN-s", in_channels, num_classes, activation, dropout)


def cnn_medium(
    in_channels: int = 3, num_classes: int = 10, *, activation: str = "tanh", dropout: float = 0.0
) -> CNN:
    """CNN-m of Table 4 for 32x32 inputs: 10,853 parameters on 3 channels.

    Table 4 lists no pooling after the third conv, but its first linear layer takes 60 = 15 x 2
    x 2 features, which a 32x32 input reaches only with a third 2x2 max-pool (4x4 -> 2x2).
    """
    return _table_4("CNN-m", in_channels, num_classes, activation, dropout)


def projection_shortcut(cin: int, cout: int, stride: int) -> nn.Sequential:
    """A residual block's shortcut: the identity, or a strided 1x1 conv and BatchNorm.

    The projection is used where the block changes the resolution or the channels.
    """
    if stride != 1 or cin != cout:
        return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    return nn.Sequential()  # the identity


class ResidualBlock(nn.Module):
    """A ResNet block: ``relu(residual(x) + shortcut(x))``; subclasses define the residual."""

    shortcut: nn.Module

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The block's residual branch."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual forward."""
        return F.relu(self.residual(x) + self.shortcut(x))


class BasicBlock(ResidualBlock):
    """ResNet basic block (two 3x3 convs with BatchNorm and a projection shortcut if needed)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = projection_shortcut(cin, cout, stride)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """Two 3x3 convs with BatchNorm, ReLU between them."""
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))


class ResNet18(nn.Module):
    """ResNet-18 adapted to small images: a 3x3 stride-1 stem and no stem max-pool.

    Args:
        in_channels: input channels.
        num_classes: outputs (10, 100 or 200 in the Model Zoos).
        width: channels of the stem and first stage; the stages have ``width``, ``2 width``,
            ``4 width`` and ``8 width`` channels (64 is the standard network; the phase zoos
            vary it as their load).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        blocks: list[nn.Module] = []
        cin = width
        for scale, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
            cout = width * scale
            blocks.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = blocks
        self.fc = nn.Linear(8 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def trajectory_mlp(
    in_features: int = 196,
    hidden: int = 10,
    num_classes: int = 10,
    *,
    activation: str = "sigmoid",
    bias: bool = True,
) -> SeqNet:
    """MLP of the trajectory paper: fc -> act -> fc -> act -> fc on flattened 14x14 images."""
    return SeqNet(
        nn.Flatten(),
        nn.Linear(in_features, hidden, bias=bias),
        make_activation(activation),
        nn.Linear(hidden, hidden, bias=bias),
        make_activation(activation),
        nn.Linear(hidden, num_classes, bias=bias),
    )


def trajectory_cnn(
    in_channels: int = 1,
    channels: tuple[int, int] = (16, 8),
    num_classes: int = 10,
    *,
    size: int = 14,
    activation: str = "leaky_relu",
    bias: bool = True,
) -> SeqNet:
    """CNN of the trajectory paper: 2 x [conv k3 s2 p1 -> max-pool 2 -> act] -> fc.

    On 14x14 inputs the spatial size goes 14 -> 7 -> 3 -> 2 -> 1, so the fc layer sees
    ``channels[1]`` features.
    """
    spatial = size
    for _ in range(2):
        spatial = ((spatial + 2 - 3) // 2 + 1) // 2
    return SeqNet(
        nn.Conv2d(in_channels, channels[0], 3, 2, 1, bias=bias),
        nn.MaxPool2d(2),
        make_activation(activation),
        nn.Conv2d(channels[0], channels[1], 3, 2, 1, bias=bias),
        nn.MaxPool2d(2),
        make_activation(activation),
        nn.Flatten(),
        nn.Linear(channels[1] * spatial * spatial, num_classes, bias=bias),
    )


def num_params(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
