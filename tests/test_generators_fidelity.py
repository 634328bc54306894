"""The fidelity figure against oracles: a generator that replays real images of the asked class scores
like real test data; one that draws the wrong class scores near zero."""

from __future__ import annotations

import torch

from intrinsic_robustness.data.real import load_real
from intrinsic_robustness.generators.fidelity import (
    accuracy,
    fidelity_report,
    generated_accuracy,
    train_reference_classifier,
)


class ReplayGenerator(torch.nn.Module):
    """decode(z, y) = a real image of class (y + shift) % 10, chosen by z (deterministic)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, shift: int = 0) -> None:
        super().__init__()
        self.by_class = [images[labels == k] for k in range(10)]
        self.shift, self.latent_dim, self.num_classes, self.image_shape = shift, 4, 10, tuple(images.shape[1:])

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = []
        for zi, yi in zip(z, y, strict=True):
            pool = self.by_class[(int(yi) + self.shift) % 10]
            out.append(pool[int(zi.abs().sum() * 1000) % len(pool)])
        return torch.stack(out)


def test_fidelity_matches_oracles():
    train, test = load_real("digits", "train", size=12), load_real("digits", "test", size=12)  # small = fast
    model = train_reference_classifier(*train, num_classes=10, seed=0, epochs=3)
    real_acc = accuracy(model, *test)
    assert real_acc > 0.7
    honest, per_class = generated_accuracy(model, ReplayGenerator(*test), per_class=60)
    assert abs(honest - real_acc) < 0.08 and len(per_class) == 10
    swapped, _ = generated_accuracy(model, ReplayGenerator(*test, shift=1), per_class=60)
    assert swapped < 0.15


def test_fidelity_report_fields():
    train, test = load_real("digits", "train", size=8), load_real("digits", "test", size=8)
    report = fidelity_report(ReplayGenerator(*test), train, test, seed=0, epochs=1, per_class=5, max_batches=2)
    assert set(report) >= {"generated_accuracy", "generated_class_accuracy", "real_test_accuracy",
                           "samples_per_class", "classifier"}
    assert all(0.0 <= a <= 1.0 for a in report["generated_class_accuracy"])
