"""Classifier architectures of the paper as plain nn.Modules taking [0,1] images (no normalisation needed).

- ``wk-small``: Wong & Kolter's small conv net (conv16 4x4/2, conv32 4x4/2, fc100), used by the paper for
  its standard and certified MNIST models. An ``nn.Sequential`` of Conv2d/ReLU/Flatten/Linear, so the
  ``convex_adversarial`` dual network can bound it.
- ``small-cnn``: the TRADES ``SmallCNN`` (conv32, conv32, pool, conv64, conv64, pool, fc200, dropout,
  fc200, fc), used for PGD and TRADES training on 28x28 images.
- ``big-cnn``: the larger conv net used for 32x32 RGB data (conv32, conv32/2, conv64, conv64/2, fc512,
  fc512, fc), also a plain ``nn.Sequential``.
- ``mlp-tiny`` and ``linear``: small certifiable nets for tests and toy problems.

The paper's models read raw [0,1] pixels, so none of these normalise; a user network that does should do it
inside its own ``forward``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.modes import evaluating
from intrinsic_robustness.registry import Registry
from intrinsic_robustness.runtime import module_device


def _shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise UserInputError(f"image_shape {list(image_shape)}: expected (channels, height, width)")
    return shape  # type: ignore[return-value]


def _conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def wk_small(num_classes: int = 10, image_shape: Sequence[int] = (1, 28, 28)) -> nn.Sequential:
    """Wong & Kolter's conv16-conv32-fc100 net (certifiable ``nn.Sequential``)."""
    c, h, w = _shape(image_shape)
    oh, ow = (_conv_out(_conv_out(s, 4, 2, 1), 4, 2, 1) for s in (h, w))
    if min(oh, ow) < 1:
        raise UserInputError(f"arch wk-small: images {c}x{h}x{w} are too small (need at least 4x4)")
    return nn.Sequential(
        nn.Conv2d(c, 16, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * oh * ow, 100), nn.ReLU(), nn.Linear(100, num_classes),
    )


class SmallCNN(nn.Module):
    """The TRADES/Madry 28x28 network: two conv-conv-pool blocks, then fc200-dropout-fc200-fc."""

    def __init__(self, num_classes: int = 10, image_shape: Sequence[int] = (1, 28, 28), drop: float = 0.5):
        super().__init__()
        c, h, w = _shape(image_shape)
        sizes = []
        for s in (h, w):
            s = _conv_out(_conv_out(s, 3), 3) // 2
            sizes.append(_conv_out(_conv_out(s, 3), 3) // 2)
        if min(sizes) < 1:
            raise UserInputError(f"arch small-cnn: images {c}x{h}x{w} are too small (need at least 16x16)")
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * sizes[0] * sizes[1], 200), nn.ReLU(), nn.Dropout(drop),
            nn.Linear(200, 200), nn.ReLU(), nn.Linear(200, num_classes),
        )
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)
        # A zero last layer starts every class at equal odds, as in the reference training recipe.
        nn.init.zeros_(self.classifier[-1].weight)
        nn.init.zeros_(self.classifier[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def small_cnn(num_classes: int = 10, image_shape: Sequence[int] = (1, 28, 28)) -> SmallCNN:
    """Factory for :class:`SmallCNN` (usable as ``intrinsic_robustness.models.architectures:small_cnn``)."""
    return SmallCNN(num_classes, image_shape)


def big_cnn(num_classes: int = 10, image_shape: Sequence[int] = (3, 32, 32)) -> nn.Sequential:
    """The larger conv net for 32x32 RGB (conv32, conv32/2, conv64, conv64/2, fc512, fc512, fc)."""
    c, h, w = _shape(image_shape)
    oh, ow = (_conv_out(_conv_out(s, 4, 2, 1), 4, 2, 1) for s in (h, w))
    if min(oh, ow) < 1:
        raise UserInputError(f"arch big-cnn: images {c}x{h}x{w} are too small (need at least 4x4)")
    net = nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 4, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * oh * ow, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
        nn.Linear(512, num_classes),
    )
    for m in net:
        if isinstance(m, nn.Conv2d):  # He initialisation with fan-out, as the reference code does
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            nn.init.zeros_(m.bias)
    return net


def mlp_tiny(num_classes: int = 10, image_shape: Sequence[int] = (1, 28, 28), hidden: int = 16) -> nn.Sequential:
    """A one-hidden-layer ReLU net: fast, certifiable, for tests and toy problems."""
    c, h, w = _shape(image_shape)
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def linear(num_classes: int = 10, image_shape: Sequence[int] = (1, 28, 28)) -> nn.Sequential:
    """A linear classifier (Flatten + Linear): its minimal L2 adversarial norm has a closed form."""
    c, h, w = _shape(image_shape)
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))


def fidelity_cnn(num_classes: int = 10, image_shape: Sequence[int] = (1, 28, 28)) -> nn.Sequential:
    """The reference classifier behind the fidelity figure: two conv/pool blocks and a 128-unit layer."""
    c, h, w = _shape(image_shape)
    return nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * (h // 4) * (w // 4), 128), nn.ReLU(), nn.Linear(128, num_classes),
    )


ARCHITECTURES: Registry[Callable[..., nn.Module]] = Registry("architecture")
ARCHITECTURES.register("wk-small", wk_small, certifiable=True)
ARCHITECTURES.register("small-cnn", small_cnn, certifiable=False)
ARCHITECTURES.register("big-cnn", big_cnn, certifiable=True)
ARCHITECTURES.register("mlp-tiny", mlp_tiny, certifiable=True)
ARCHITECTURES.register("linear", linear, certifiable=True)
ARCHITECTURES.register("fidelity-cnn", fidelity_cnn, certifiable=False)


def _call_factory(spec: str, num_classes: int, image_shape: Sequence[int]) -> nn.Module:
    """Call a user factory, passing ``num_classes``/``image_shape`` only where its signature takes them."""
    from intrinsic_robustness.plugins import call_factory, resolve_factory

    factory = resolve_factory(spec, "arch")
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    offered = {"num_classes": int(num_classes), "image_shape": tuple(int(s) for s in image_shape)}
    kwargs = {k: v for k, v in offered.items() if takes_all or k in params}
    return call_factory(spec, factory, "arch", **kwargs)


def check_classifier(model: object, num_classes: int, image_shape: Sequence[int], what: str) -> nn.Module:
    """Check ``model`` is an nn.Module mapping one image of ``image_shape`` to ``num_classes`` logits."""
    if not isinstance(model, nn.Module):
        raise UserInputError(f"{what}: expected a torch.nn.Module, got {type(model).__name__}")
    try:
        with evaluating(model), torch.no_grad():
            out = model(torch.full((1, *image_shape), 0.5, device=module_device(model)))
    except Exception as exc:  # noqa: BLE001 - a user network may raise anything on a wrong shape
        raise UserInputError(f"{what}: forward on a 1x{'x'.join(map(str, image_shape))} image failed "
                             f"({' '.join(str(exc).split())})") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, int(num_classes)):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserInputError(f"{what}: returned {shape} for one image, expected logits of shape (1, {num_classes})")
    _check_consistent(model, int(num_classes), tuple(image_shape), what)
    return model


def _check_consistent(model: nn.Module, num_classes: int, image_shape: tuple[int, ...], what: str) -> None:
    """Eval-mode logits must not depend on the call or the batch: the same images twice, and one alone, agree."""
    device = module_device(model)
    x = torch.stack([torch.full(image_shape, v, device=device) for v in (0.25, 0.75)])
    with evaluating(model), torch.no_grad():
        first, again, alone = model(x), model(x), model(x[:1])
    if not isinstance(first, torch.Tensor) or tuple(first.shape) != (2, num_classes):
        got = tuple(first.shape) if isinstance(first, torch.Tensor) else type(first).__name__
        raise UserInputError(f"{what}: returned {got} for two images, expected logits of shape (2, {num_classes}); "
                             "one row of logits per image, whatever the batch size")
    for other, how in ((again, "the same images twice"), (alone, "one image alone and in a batch of 2")):
        gap = (other - first[: len(other)]).abs().nan_to_num(0.0)
        if bool((gap > 1e-4 * (1 + first[: len(other)].abs().nan_to_num(0.0))).any()):
            raise UserInputError(f"{what}: different logits for {how} (max change {float(gap.max()):.3g}); a "
                                 "classifier must be deterministic in eval mode (no dropout or noise, no batch "
                                 "statistics)")


def build_architecture(name: str, num_classes: int, image_shape: Sequence[int]) -> nn.Module:
    """Build a named architecture (see ``ARCHITECTURES``) or a user ``package.module:factory``."""
    shape = _shape(image_shape)
    if int(num_classes) < 2:
        raise UserInputError(f"num_classes {num_classes}: a classifier needs at least 2 classes")
    if name in ARCHITECTURES:
        model = ARCHITECTURES.get(name)(num_classes=int(num_classes), image_shape=shape)
    elif ":" in name:
        model = _call_factory(name, num_classes, shape)
    else:
        raise UserInputError(f"--arch {name!r}: unknown; use one of {', '.join(ARCHITECTURES.names())} "
                             "or 'package.module:factory'")
    return check_classifier(model, num_classes, shape, f"arch {name!r}")
