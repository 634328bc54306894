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


def test_fidelity_report_has_distribution_figures():
    train, test = load_real("digits", "train", size=8), load_real("digits", "test", size=8)
    report = fidelity_report(ReplayGenerator(*test), train, test, seed=0, epochs=1, per_class=12, max_batches=3)
    assert report["label_fidelity"] == report["generated_accuracy"]
    for key in ("frechet_distance", "precision", "recall"):
        assert len(report[f"{key}_per_class"]) == 10 and key in report["real_reference"]
    assert 0 <= report["precision"] <= 1 and 0 <= report["recall"] <= 1 and report["frechet_distance"] >= 0
    assert report["distribution_samples_per_class"] == [12] * 10


# Frechet distance and k-NN precision/recall against known answers.

def _random_cov(d: int, seed: int) -> torch.Tensor:
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_gaussian_frechet_closed_forms():
    from intrinsic_robustness.generators.fidelity import gaussian_frechet

    d = 5
    mu1, mu2 = torch.zeros(d, dtype=torch.float64), torch.arange(d, dtype=torch.float64)
    s1, s2 = torch.linspace(0.5, 2, d, dtype=torch.float64), torch.linspace(3, 1, d, dtype=torch.float64)
    # diagonal covariances: ||mu1 - mu2||^2 + sum (sqrt(s1) - sqrt(s2))^2
    exact = float((mu1 - mu2).pow(2).sum() + (s1.sqrt() - s2.sqrt()).pow(2).sum())
    assert abs(gaussian_frechet(mu1, torch.diag(s1), mu2, torch.diag(s2)) - exact) < 1e-9
    # general covariances: against scipy's matrix square root
    from scipy.linalg import sqrtm

    c1, c2 = _random_cov(d, 1), _random_cov(d, 2)
    root = sqrtm(c1.numpy() @ c2.numpy()).real
    exact = float((mu1 - mu2).pow(2).sum() + torch.trace(c1) + torch.trace(c2)) - 2 * float(root.trace())
    assert abs(gaussian_frechet(mu1, c1, mu2, c2) - exact) < 1e-8
    assert gaussian_frechet(mu2, c1, mu2, c1) < 1e-9


def test_sample_frechet_distance_converges():
    from intrinsic_robustness.generators.fidelity import frechet_distance, gaussian_frechet

    g = torch.Generator().manual_seed(0)
    d, n = 3, 40000
    c1, c2 = _random_cov(d, 3), _random_cov(d, 4)
    l1, l2 = torch.linalg.cholesky(c1), torch.linalg.cholesky(c2)
    mu = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    a = torch.randn(n, d, generator=g, dtype=torch.float64) @ l1.T
    same = torch.randn(n, d, generator=g, dtype=torch.float64) @ l1.T
    b = torch.randn(n, d, generator=g, dtype=torch.float64) @ l2.T + mu
    assert frechet_distance(a, same) < 0.01  # identical Gaussians: ~0
    exact = gaussian_frechet(torch.zeros(d, dtype=torch.float64), c1, mu, c2)
    assert abs(frechet_distance(a, b) - exact) < 0.03 * exact


def test_precision_recall_known_answers():
    from intrinsic_robustness.generators.fidelity import precision_recall

    g = torch.Generator().manual_seed(0)
    real = torch.randn(500, 4, generator=g)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)  # identical sets
    far = torch.randn(500, 4, generator=g) + 100.0
    assert precision_recall(real, far) == (0.0, 0.0)  # disjoint supports
    # fake covers only the half x0 < 0 of the real support: precise, but recalls about half of it
    half = torch.randn(4000, 4, generator=g)
    half = half[half[:, 0] < 0][:500]
    precision, recall = precision_recall(real, half)
    assert precision > 0.9 and 0.35 < recall < 0.7


def test_knn_radii_brute_force():
    from intrinsic_robustness.generators.fidelity import knn_radii

    pts = torch.randn(30, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for k in (1, 3):
        brute = torch.stack([(pts - p).norm(dim=1).sort().values[k] for p in pts])
        assert torch.allclose(knn_radii(pts, k), brute)


def test_report_collects_and_shows_distribution_fidelity(tmp_path):
    from intrinsic_robustness.layout import RunLayout
    from intrinsic_robustness.report.data import _generator_info
    from intrinsic_robustness.report.render import _summary
    from intrinsic_robustness.storage import write_json

    layout = RunLayout(tmp_path)
    fid = {"generated_accuracy": 0.9, "real_test_accuracy": 0.95, "frechet_distance": 12.5, "precision": 0.7,
           "recall": 0.4, "real_reference": {"frechet_distance": 1.5, "precision": 0.8, "recall": 0.8},
           "distribution_samples_per_class": [100] * 10}
    write_json(layout.generator_training, {"epochs_done": 1, "wall_seconds": 1.0, "fidelity": fid})
    info = _generator_info(layout)
    assert info["frechet_distance"] == 12.5 and info["real_reference"]["recall"] == 0.8
    report = {"run": {"name": "r", "seed": 0}, "num_classes": 10, "dataset": {"n_train": 1, "n_test": 1,
              "image_shape": [1, 8, 8]}, "generator": {**info, "source": "train"}, "lipschitz": {}}
    text = "\n".join(_summary(report))
    assert "Frechet distance 12.500, precision 0.700, recall 0.400" in text and "1.500" in text
