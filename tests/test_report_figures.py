"""The report's figure functions return matplotlib ``(fig, ax)`` to restyle; only the writer makes PNG bytes."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from intrinsic_robustness.layout import RunLayout
from intrinsic_robustness.report import _figures, plots
from intrinsic_robustness.report.data import collect
from test_report import make_run

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from intrinsic_robustness.generators import make_affine

    matplotlib.use("Agg")  # files, never windows (the backend is resolved at the first figure)
    gen = make_affine(latent_dim=8, num_classes=3, height=6, width=6, scale=0.05, seed=0)
    root = make_run(tmp_path_factory.mktemp("figures"), gen)
    return RunLayout(root), collect(root)


def _axes(ax) -> list[Axes]:
    return list(np.ravel(ax)) if isinstance(ax, np.ndarray) else [ax]


def test_every_registered_figure_returns_a_figure_and_its_axes(run):
    layout, report = run
    settings = {"samples_per_class": 3, "adversarial_examples": 2}
    drawn = {name: plots.FIGURES.get(name)(report, layout, settings) for name in plots.FIGURES.names()}
    assert set(drawn) == {"bound_vs_risk", "robust_vs_eps", "lipschitz", "samples", "adversarial"}
    for name, value in drawn.items():
        assert value is not None, f"{name}: nothing drawn for a run that has every input"
        fig, ax = value
        assert isinstance(fig, Figure), name
        assert _axes(ax) and all(isinstance(a, Axes) and a.figure is fig for a in _axes(ax)), name
        plt.close(fig)


def test_a_returned_figure_can_be_restyled_before_it_is_saved(run):
    layout, report = run
    fig, axes = plots.bound_vs_risk(report)
    assert axes.shape == (1, 3)  # one panel per eps of the run (0.5, 1, 2)
    assert [a.get_title() for a in axes.flat] == ["eps = 0.5", "eps = 1", "eps = 2"]
    axes.flat[0].set_title("restyled")
    fig, ax = plots.lipschitz_per_class(report)
    assert isinstance(ax, Axes) and ax.get_xlabel() == "class"
    plt.close("all")


def test_the_writer_alone_makes_png_bytes_and_closes_the_figures(run):
    layout, report = run
    plt.close("all")
    images = _figures(layout, report, {"samples_per_class": 3, "adversarial_examples": 2})
    assert list(images) == list(plots.FIGURES.names())
    assert all(png.startswith(PNG) for png in images.values())
    assert plt.get_fignums() == []  # every figure closed after its conversion
