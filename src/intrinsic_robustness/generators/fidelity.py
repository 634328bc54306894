"""Fidelity of a conditional generator: does G(z, y) look like class y to a classifier trained on real data?

A small CNN is trained on the real training images for a few epochs; its accuracy on balanced generated
samples (label = the class the generator was asked for) is the fidelity figure. Its accuracy on the
real test split is reported beside it as the ceiling to compare with.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from intrinsic_robustness.models.architectures import fidelity_cnn
from intrinsic_robustness.modes import evaluating
from intrinsic_robustness.progress import advance, task
from intrinsic_robustness.runtime import derive_seed, module_device


def train_reference_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int, seed: int = 0,
                               epochs: int = 2, batch_size: int = 128, lr: float = 1e-3,
                               device: torch.device | str = "cpu", max_batches: int | None = None) -> nn.Module:
    """Train the registered ``fidelity-cnn`` on real data with Adam (deterministic for a seed on CPU)."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
        torch.manual_seed(derive_seed(seed, "fidelity", "init"))
        model = fidelity_cnn(num_classes, tuple(images.shape[1:])).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n_batches = len(labels) // batch_size if max_batches is None else min(max_batches, len(labels) // batch_size)
    model.train()
    with task("fidelity classifier", epochs * n_batches) as handle:
        for epoch in range(epochs):
            rng = torch.Generator().manual_seed(derive_seed(seed, "fidelity", "epoch", epoch))
            perm = torch.randperm(len(labels), generator=rng)
            for b in range(n_batches):
                idx = perm[b * batch_size:(b + 1) * batch_size]
                loss = F.cross_entropy(model(images[idx].to(device)), labels[idx].to(device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                advance(handle)
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    device = module_device(model)
    correct = 0
    for b in range(0, len(labels), batch_size):
        pred = model(images[b:b + batch_size].to(device)).argmax(1).cpu()
        correct += int((pred == labels[b:b + batch_size]).sum())
    return correct / max(1, len(labels))


@torch.no_grad()
def generated_accuracy(model: nn.Module, gen: Any, per_class: int, seed: int = 0,
                       batch_size: int = 500) -> tuple[float, list[float]]:
    """Accuracy of ``model`` on ``per_class`` samples of every class (overall, per class)."""
    device = module_device(model)
    rng = torch.Generator().manual_seed(derive_seed(seed, "fidelity", "samples"))
    per_class_acc = []
    with evaluating(gen):
        for k in range(int(gen.num_classes)):
            per_class_acc.append(_class_accuracy(model, gen, k, per_class, rng, device, batch_size))
    return sum(per_class_acc) / len(per_class_acc), per_class_acc


def _class_accuracy(model: nn.Module, gen: Any, k: int, per_class: int, rng: torch.Generator,
                    device: torch.device, batch_size: int) -> float:
    """Accuracy of ``model`` on ``per_class`` samples of class ``k`` (latents drawn on CPU from ``rng``)."""
    correct = 0
    for b in range(0, per_class, batch_size):
        n = min(batch_size, per_class - b)
        z = torch.randn(n, int(gen.latent_dim), generator=rng).to(device)
        y = torch.full((n,), k, dtype=torch.long, device=device)
        correct += int((model(gen.decode(z, y)).argmax(1) == y).sum())
    return correct / per_class


def fidelity_report(gen: Any, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                    seed: int = 0, epochs: int = 2, per_class: int = 100, device: torch.device | str = "cpu",
                    max_batches: int | None = None) -> dict[str, Any]:
    """Train the reference classifier and measure it on real test data and on generated samples."""
    k = int(gen.num_classes)
    model = train_reference_classifier(*train, num_classes=k, seed=seed, epochs=epochs, device=device,
                                       max_batches=max_batches)
    gen_acc, per_class_acc = generated_accuracy(model, gen, per_class, seed)
    return {
        "generated_accuracy": gen_acc,
        "generated_class_accuracy": per_class_acc,
        "real_test_accuracy": accuracy(model, *test),
        "samples_per_class": per_class,
        "classifier_epochs": epochs,
        "classifier": f"small CNN (2 conv + 2 fc), Adam 1e-3, {epochs} epoch(s) on the real training split",
    }
