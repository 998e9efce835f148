"""Network definitions: LeNet-5, an AlexNet-style CIFAR net and a tiny net for the 8x8 digits.

A network is a declarative `NetSpec`: a list of matmul layers (conv or fc), each with the max-pooling
applied after it. Everything else (tensor shapes, reduction lengths, where the flatten happens) is
derived here, once, and shared by the torch model, the export and the integer model, so they cannot
disagree on a geometry. This module holds no torch code and no weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from quasar.errors import check_choice

# Default depth of the array's operand buffers: every layer's reduction length K must fit.
K_MAX_DEFAULT = 1024


@dataclass(frozen=True)
class LayerSpec:
    """One matmul layer as written by hand: the rest of its geometry is derived by `NetSpec`."""

    name: str
    kind: str  # "conv" or "fc"
    out_channels: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    pool: int = 1  # max-pool window (= stride) applied after the ReLU; 1 means none

    def __post_init__(self) -> None:
        check_choice("layer kind", self.kind, ("conv", "fc"))
        if self.kind == "fc" and (self.kernel, self.stride, self.padding, self.pool) != (1, 1, 0, 1):
            raise ValueError(f"fc layer {self.name!r} cannot have a kernel, stride, padding or pool")


@dataclass(frozen=True)
class Geometry:
    """Derived shapes of one matmul layer. `P x K` operands times `K x N` weights."""

    name: str
    kind: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    pool: int
    pooled_hw: tuple[int, int]
    flatten: bool  # the pooled output is flattened (C, H, W order) before the next layer
    is_last: bool

    @property
    def reduction(self) -> int:
        """K: length of one dot product (in_channels * kernel^2; in_features for fc)."""
        return self.in_channels * self.kernel * self.kernel

    @property
    def pixels(self) -> int:
        """P: output pixels, i.e. rows of the lowered operand matrix (1 for fc)."""
        return self.out_hw[0] * self.out_hw[1]


@dataclass(frozen=True)
class Recipe:
    """Training hyper-parameters that worked for a net (measured, see docs/models.md)."""

    float_epochs: int
    qat_epochs: int
    lr: float
    qat_lr: float
    batch_size: int
    weight_decay: float = 0.0
    shift_augment: int = 0  # random translation of training images by up to this many pixels
    hflip: bool = False  # random horizontal flips of training images


@dataclass(frozen=True)
class NetSpec:
    name: str
    input_shape: tuple[int, int, int]  # (C, H, W)
    layers: tuple[LayerSpec, ...]
    recipe: Recipe
    default_dataset: str
    num_classes: int = 10

    def geometry(self) -> tuple[Geometry, ...]:
        """Shapes of every layer, walking the input shape through convs, pools and the flatten."""
        channels, h, w = self.input_shape
        spatial = True  # False once an fc layer has consumed the feature map
        out: list[Geometry] = []
        for i, layer in enumerate(self.layers):
            is_last = i == len(self.layers) - 1
            if layer.kind == "conv":
                if not spatial:
                    raise ValueError(f"{self.name}: conv layer {layer.name!r} after an fc layer")
                in_hw = (h, w)
                ho = (h + 2 * layer.padding - layer.kernel) // layer.stride + 1
                wo = (w + 2 * layer.padding - layer.kernel) // layer.stride + 1
            else:
                channels, in_hw, ho, wo, spatial = channels * h * w, (1, 1), 1, 1, False
            pooled = (ho // layer.pool, wo // layer.pool)
            nxt = None if is_last else self.layers[i + 1].kind
            out.append(
                Geometry(
                    name=layer.name,
                    kind=layer.kind,
                    in_channels=channels,
                    out_channels=layer.out_channels,
                    kernel=layer.kernel,
                    stride=layer.stride,
                    padding=layer.padding,
                    in_hw=in_hw,
                    out_hw=(ho, wo),
                    pool=layer.pool,
                    pooled_hw=pooled,
                    flatten=layer.kind == "conv" and nxt == "fc",
                    is_last=is_last,
                )
            )
            channels, (h, w) = layer.out_channels, pooled
        if out[-1].out_channels != self.num_classes:
            raise ValueError(f"{self.name}: last layer must have {self.num_classes} outputs")
        return tuple(out)

    @property
    def max_reduction(self) -> int:
        return max(g.reduction for g in self.geometry())


def _conv(name: str, out: int, kernel: int, padding: int = 0, pool: int = 1) -> LayerSpec:
    return LayerSpec(name, "conv", out, kernel=kernel, padding=padding, pool=pool)


def _fc(name: str, out: int) -> LayerSpec:
    return LayerSpec(name, "fc", out)


LENET = NetSpec(
    name="lenet",
    input_shape=(1, 28, 28),
    layers=(
        _conv("conv1", 6, 5, padding=2, pool=2),
        _conv("conv2", 16, 5, pool=2),
        _fc("fc1", 120),
        _fc("fc2", 84),
        _fc("fc3", 10),
    ),
    recipe=Recipe(float_epochs=15, qat_epochs=4, lr=2e-3, qat_lr=2e-4, batch_size=64),
    default_dataset="mnist",
)

# Channel counts keep every K <= 1024 (the default buffer depth) and one epoch of CIFAR-10 within a
# few minutes on 2 CPU cores; the flatten yields exactly 64 * 4 * 4 = 1024 features.
ALEXNET = NetSpec(
    name="alexnet",
    input_shape=(3, 32, 32),
    layers=(
        _conv("conv1", 32, 3, padding=1, pool=2),
        _conv("conv2", 64, 3, padding=1, pool=2),
        _conv("conv3", 96, 3, padding=1),
        _conv("conv4", 96, 3, padding=1),
        _conv("conv5", 64, 3, padding=1, pool=2),
        _fc("fc1", 256),
        _fc("fc2", 128),
        _fc("fc3", 10),
    ),
    recipe=Recipe(
        float_epochs=20,
        qat_epochs=3,
        lr=1e-3,
        qat_lr=1e-4,
        batch_size=128,
        weight_decay=5e-4,
        shift_augment=4,
        hflip=True,
    ),
    default_dataset="cifar10",
)

TINY = NetSpec(
    name="tiny",
    input_shape=(1, 8, 8),
    layers=(
        _conv("conv1", 8, 3, padding=1, pool=2),
        _fc("fc1", 32),
        _fc("fc2", 10),
    ),
    recipe=Recipe(float_epochs=30, qat_epochs=5, lr=1e-2, qat_lr=1e-3, batch_size=64),
    default_dataset="digits",
)

NETS: dict[str, NetSpec] = {net.name: net for net in (LENET, ALEXNET, TINY)}


def get_net(name: str) -> NetSpec:
    """The NetSpec called `name`, or a ConfigError listing the nets that exist."""
    return NETS[check_choice("net", name, tuple(NETS))]
