"""Fidelity of a conditional generator against real data, through a small CNN trained on the real images.

* Label agreement (``label_fidelity``, kept as ``generated_accuracy``): the CNN's accuracy on balanced generated
  samples (label = the class asked for), beside its accuracy on the real test split, the ceiling.
* Frechet distance (Heusel et al. 2017) between Gaussians fitted to the CNN's penultimate features (128-d) of
  generated and real test images, overall and per class.
* Precision and recall of k-nearest-neighbour manifolds (Kynkaanniemi et al. 2019) in the same features:
  precision = share of generated points inside some real point's k-NN ball, recall = the converse.

Every figure comes with the same figure between two real samples of the same size (train vs test), the value
a perfect generator would get at this sample size (both metrics are biased at small n).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.models.architectures import fidelity_cnn
from intrinsic_robustness.modes import evaluating
from intrinsic_robustness.progress import advance, task
from intrinsic_robustness.runtime import derive_seed, make_generator, module_device, seeded


def train_reference_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int, seed: int = 0,
                               epochs: int = 2, batch_size: int = 128, lr: float = 1e-3,
                               device: torch.device | str = "cpu", max_batches: int | None = None) -> nn.Module:
    """Train the registered ``fidelity-cnn`` on real data with Adam (deterministic for a seed on CPU)."""
    device = torch.device(device)
    with seeded(derive_seed(seed, "fidelity", "init")):  # seeded init without touching the global RNG
        model = fidelity_cnn(num_classes, tuple(images.shape[1:])).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n_batches = len(labels) // batch_size if max_batches is None else min(max_batches, len(labels) // batch_size)
    model.train()
    with task("fidelity classifier", epochs * n_batches) as handle:
        for epoch in range(epochs):
            rng = make_generator(derive_seed(seed, "fidelity", "epoch", epoch))
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
    rng = make_generator(derive_seed(seed, "fidelity", "samples"))
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
                    max_batches: int | None = None, k: int = 3) -> dict[str, Any]:
    """Train the reference classifier; label agreement, Frechet distance and precision/recall on its features."""
    model = train_reference_classifier(*train, num_classes=int(gen.num_classes), seed=seed, epochs=epochs,
                                       device=device, max_batches=max_batches)
    images, labels = generated_samples(gen, per_class, seed)
    per_class_acc = [accuracy(model, images[labels == c], labels[labels == c]) for c in range(int(gen.num_classes))]
    report = {
        "generated_accuracy": sum(per_class_acc) / len(per_class_acc),
        "generated_class_accuracy": per_class_acc,
        "real_test_accuracy": accuracy(model, *test),
        "samples_per_class": per_class,
        "classifier_epochs": epochs,
        "classifier": f"small CNN (2 conv + 2 fc), Adam 1e-3, {epochs} epoch(s) on the real training split",
    }
    report["label_fidelity"] = report["generated_accuracy"]
    report.update(distribution_fidelity(model, (images, labels), test, train, seed=seed, k=k))
    return report


@torch.no_grad()
def generated_samples(gen: Any, per_class: int, seed: int = 0, batch_size: int = 500) -> tuple[torch.Tensor, ...]:
    """``per_class`` samples of every class on the CPU (the same latents :func:`generated_accuracy` draws)."""
    device = module_device(gen)
    rng = make_generator(derive_seed(seed, "fidelity", "samples"))
    images, labels = [], []
    with evaluating(gen):
        for c in range(int(gen.num_classes)):
            for b in range(0, per_class, batch_size):
                n = min(batch_size, per_class - b)
                z = torch.randn(n, int(gen.latent_dim), generator=rng).to(device)
                y = torch.full((n,), c, dtype=torch.long, device=device)
                images.append(gen.decode(z, y).cpu())
                labels.append(y.cpu())
    return torch.cat(images), torch.cat(labels)


@torch.no_grad()
def features(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """The reference CNN's penultimate activations (everything but its last layer), float64 on the CPU."""
    body = model[:-1] if isinstance(model, nn.Sequential) else model
    device = module_device(model)
    parts = [body(images[b:b + batch_size].to(device)).flatten(1).cpu() for b in range(0, len(images), batch_size)]
    return torch.cat(parts).double() if parts else torch.zeros(0, 0, dtype=torch.float64)


def gaussian_frechet(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), the squared 2-Wasserstein distance of two Gaussians."""
    mu1, mu2, cov1, cov2 = (t.double() for t in (mu1, mu2, cov1, cov2))
    root1 = _psd_sqrt(cov1)
    middle = _psd_sqrt(root1 @ cov2 @ root1)  # tr (S1 S2)^(1/2) = tr (S1^(1/2) S2 S1^(1/2))^(1/2)
    value = (mu1 - mu2).pow(2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * torch.trace(middle)
    return max(0.0, float(value))


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    evals, vecs = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vecs * evals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted (mean, unbiased covariance) to samples ``a`` and ``b`` [n, d]."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"frechet_distance: need at least 2 samples on each side, got {len(a)} and {len(b)}")
    a, b = a.double(), b.double()
    return gaussian_frechet(a.mean(0), torch.cov(a.T).reshape(a.shape[1], -1),
                            b.mean(0), torch.cov(b.T).reshape(b.shape[1], -1))


def knn_radii(points: torch.Tensor, k: int = 3, chunk: int = 1024) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point of the same set."""
    if len(points) <= k:
        raise ValueError(f"knn_radii: need more than k = {k} points, got {len(points)}")
    radii = [torch.cdist(points[i:i + chunk], points).kthvalue(k + 1, dim=1).values  # +1: the point itself
             for i in range(0, len(points), chunk)]
    return torch.cat(radii)


def coverage(queries: torch.Tensor, points: torch.Tensor, radii: torch.Tensor, chunk: int = 1024) -> float:
    """Share of ``queries`` inside at least one ball (``points``, ``radii``)."""
    inside = [(torch.cdist(queries[i:i + chunk], points) <= radii[None, :]).any(dim=1)
              for i in range(0, len(queries), chunk)]
    return float(torch.cat(inside).double().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of ``fake`` against ``real`` features."""
    real, fake = real.double(), fake.double()
    return coverage(fake, real, knn_radii(real, k)), coverage(real, fake, knn_radii(fake, k))


def _balanced(images: torch.Tensor, labels: torch.Tensor, per_class: dict[int, int],
              rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random subset with ``per_class[c]`` images of every class c."""
    keep = []
    for c, n in per_class.items():
        idx = (labels == c).nonzero().flatten()
        keep.append(idx[torch.randperm(len(idx), generator=rng)[:n]])
    chosen = torch.cat(keep)
    return images[chosen], labels[chosen]


def _scores(fa: torch.Tensor, la: torch.Tensor, fb: torch.Tensor, lb: torch.Tensor, classes: list[int],
            k: int) -> dict[str, Any]:
    """Overall and per-class Frechet distance and precision/recall of sample b against reference a."""
    out: dict[str, Any] = {"frechet_distance": frechet_distance(fa, fb)}
    out["precision"], out["recall"] = precision_recall(fa, fb, k)
    per = [(frechet_distance(fa[la == c], fb[lb == c]), *precision_recall(fa[la == c], fb[lb == c], k))
           for c in classes]
    for i, key in enumerate(("frechet_distance", "precision", "recall")):
        out[f"{key}_per_class"] = [p[i] for p in per]
    return out


def distribution_fidelity(model: nn.Module, generated: tuple[torch.Tensor, torch.Tensor],
                          test: tuple[torch.Tensor, torch.Tensor], train: tuple[torch.Tensor, torch.Tensor],
                          seed: int = 0, k: int = 3) -> dict[str, Any]:
    """Frechet distance and k-NN precision/recall of generated vs real test images in ``model``'s features.

    Both sides get the same number of images per class (the smaller of the two); ``real_reference`` is the
    same computation for a real training sample of that size against the test sample."""
    images, labels = generated
    classes = sorted(int(c) for c in labels.unique())
    counts = {c: min(int((labels == c).sum()), int((test[1] == c).sum()), int((train[1] == c).sum()))
              for c in classes}
    if min(counts.values()) <= k:
        raise UserInputError(f"fidelity: only {min(counts.values())} images in some class; precision/recall "
                             f"with k = {k} needs more than {k} per class (raise --fidelity-per-class)")
    rng = make_generator(derive_seed(seed, "fidelity", "subsets"))
    real_x, real_y = _balanced(*test, counts, rng)
    fake_x, fake_y = _balanced(images, labels, counts, rng)
    ref_x, ref_y = _balanced(*train, counts, rng)
    f_real = features(model, real_x)
    result = _scores(f_real, real_y, features(model, fake_x), fake_y, classes, k)
    reference = _scores(f_real, real_y, features(model, ref_x), ref_y, classes, k)
    result["real_reference"] = {key: reference[key] for key in ("frechet_distance", "precision", "recall")}
    result["distribution_samples_per_class"] = [counts[c] for c in classes]
    result["distribution_features"] = "reference CNN penultimate layer (128-d)"
    result["knn_k"] = k
    return result
