"""User code that misbehaves at run time (issue 23): NaN logits are never correct nor robust (they used to be
scored as class 0: natural error 0.65, robust accuracy 0.35 for an all-NaN classifier) and are flagged per
example; a classifier with the wrong number of classes, batch-dependent or non-deterministic output is named and
refused; a generator giving NaN, inf or out-of-[0, 1] images for some latents only is caught where it first shows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.evaluation import evaluate
from intrinsic_robustness.threat import misclassified
from test_faults_support import Misbehaving, cli, one_error, tree


@pytest.fixture
def data(affine_generator) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(12) % 3
    x = affine_generator.decode(torch.randn(12, 8, generator=g), y).detach()
    x[:4] = x[:4] * 0.2 + 0.8  # four bright images: the 'nan' classifier returns NaN logits for them
    x[4:] = x[4:] * 0.5
    return x, y


def test_misclassified_counts_non_finite_logits_wrong() -> None:
    logits = torch.tensor([[1.0, 0.0], [float("nan"), 0.0], [0.0, float("inf")], [float("nan")] * 2])
    assert misclassified(logits, torch.zeros(4, dtype=torch.long)).tolist() == [False, True, True, True]


def test_all_nan_classifier_is_never_correct_nor_robust(data, tmp_path: Path) -> None:
    result = evaluate(Misbehaving("allnan"), data, threat="unconstrained", attacks="pgd", eps=[0.1, 1.0],
                      out=tmp_path / "e.json")
    assert result.natural_error == 1.0 and result.class_errors == [1.0, 1.0, 1.0]
    assert set(result.robust_accuracy.values()) == {0.0}
    assert result.nonfinite is not None and bool(result.nonfinite.all())
    saved = result.to_dict()
    assert saved["nonfinite_logits"] == 12 and saved["natural_accuracy"] == 0.0


def test_nan_on_some_examples_counts_those_wrong_and_flags_them(data, tmp_path: Path) -> None:
    from intrinsic_robustness.evaluation.result import EvalResult

    result = evaluate(Misbehaving("nan"), data, threat="unconstrained", attacks="pgd", eps=[0.1],
                      out=tmp_path / "e.json", batch_size=5)
    assert result.nonfinite.tolist() == [True] * 4 + [False] * 8
    assert (result.min_norms[:4] == 0).all()  # broken at norm 0: natural error, never robust
    clean = evaluate(Misbehaving("plain"), data, threat="unconstrained", attacks="pgd", eps=[0.1])
    wrong_clean = (clean.min_norms == 0)
    assert result.natural_error == pytest.approx(float((wrong_clean | result.nonfinite).double().mean()))
    reread = EvalResult.load(tmp_path / "e.json")
    assert reread.nonfinite.tolist() == result.nonfinite.tolist()
    assert reread.to_dict()["nonfinite_logits"] == 4


@pytest.mark.parametrize("mode,needle", [
    ("extra", "expected logits of shape (1, 3)"),
    ("batchdep", "returned (2, 4) for two images"),
    ("noisy", "different logits for the same images twice"),
])
def test_misbehaving_classifier_is_refused_by_name(data, mode: str, needle: str) -> None:
    with pytest.raises(UserInputError, match=r"classifier Misbehaving: ") as info:
        evaluate(Misbehaving(mode), data, threat="unconstrained", attacks="pgd", eps=[0.1])
    assert needle in str(info.value)


def _generate(capsys, tmp_path: Path, spec: str, n: str = "200") -> tuple[int, str]:
    code, _, err = cli(capsys, "generate", "--generator", spec, "--n-train", n, "--n-test", "10", "--out",
                       tmp_path / "ds", "--batch-size", "50")
    return code, err


@pytest.mark.parametrize("spec,needle", [
    ("test_faults_support:nan_generator", "NaN or inf pixels"),
    ("test_faults_support:range_generator", "pixels outside [0, 1]"),
])
def test_generator_bad_for_some_latents_is_caught_at_the_batch(tmp_path: Path, capsys, spec: str,
                                                               needle: str) -> None:
    before = tree(tmp_path)
    code, err = _generate(capsys, tmp_path, spec)
    line = one_error(code, err, needle, "train examples ", "a generator must give finite images in [0, 1]")
    assert "of 50 images" in line
    assert tree(tmp_path) == before  # nothing half-written


def test_batch_dependent_generator_is_refused(tmp_path: Path, capsys) -> None:
    code, err = _generate(capsys, tmp_path, "test_faults_support:batchnorm_generator")
    one_error(code, err, "must not depend on the batch")


def test_lipschitz_of_a_nan_generator_names_the_class() -> None:
    from intrinsic_robustness.lipschitz import estimate_lipschitz
    from test_faults_support import nan_generator

    with pytest.raises(UserInputError, match=r"lipschitz class \d: \d+ of 40 anchors gave NaN"):
        estimate_lipschitz(nan_generator(), "gradient", anchors_per_class=40, seed=0)
