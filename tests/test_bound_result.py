"""``api.bound`` returns a frozen ``BoundResult``: its table, markers, basis and JSON are those of ``irob bound``."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from intrinsic_robustness import api
from intrinsic_robustness.bound import intrinsic_robustness
from intrinsic_robustness.bound.result import BoundResult, BoundRow, tabulate
from intrinsic_robustness.cli import main
from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.lipschitz.result import ClassLipschitz, LipschitzResult


def _file(path, method: str, certified: bool, lipschitz=(1.0, 4.0), radius: float = 0.5):
    """A Lipschitz file with 100 anchors per class, every one at the class's L (so max = L, none above it)."""
    per_class = tuple(ClassLipschitz.from_values(k, torch.full((100,), v)) for k, v in enumerate(lipschitz))
    LipschitzResult(method=method, radius=radius, parameters={"num_classes": len(lipschitz)}, per_class=per_class,
                    generator_evaluations=0, seconds=0.0, certified=certified).save(path)
    return path


def test_the_result_is_a_frozen_grid_of_the_library_bound():
    result = api.bound([0.05, 0.3], [0.5, 1.0, 2.0], lipschitz=[1.0, 2.0], priors=[0.4, 0.6])
    assert isinstance(result, BoundResult) and all(isinstance(r, BoundRow) for r in result.rows)
    expected = intrinsic_robustness(np.array([0.05, 0.3])[:, None], np.array([0.5, 1.0, 2.0]), [1.0, 2.0],
                                    priors=[0.4, 0.6])
    np.testing.assert_allclose(result.values, expected, rtol=1e-12)
    assert [(r.risk, r.eps) for r in result.rows] == [(a, e) for a in (0.05, 0.3) for e in (0.5, 1.0, 2.0)]
    np.testing.assert_allclose(result.curve([0.05, 0.3]), result.values, rtol=1e-12)  # same L, priors, condition
    assert result.kind == "estimate" and not result.certificate and result.radius is None
    assert result.violated_eps == () and result.side_condition_limit is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.condition = "overall"  # type: ignore[misc]


def test_scalars_are_one_row():
    result = api.bound(0.05, 2.0, 1.5)
    assert result.values.shape == (1, 1) and result.rows[0].bound == pytest.approx(0.622297, abs=1e-6)
    assert result.lipschitz == (1.5,) and result.title == "per_class estimate; L from --lipschitz (given): 1.5"


def test_to_dict_is_exactly_what_the_cli_prints(capsys):
    args = ["--risk", "0.1", "--eps", "0.01", "--eps", "5", "--lipschitz", "1", "--slack", "0.05"]
    assert main(["bound", *args, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    result = api.bound([0.1], [0.01, 5.0], lipschitz=[1.0], slack=[0.05])
    assert result.to_dict() == printed
    assert list(printed) == ["results", "condition", "lipschitz", "lipschitz_source", "priors", "slack", "radius",
                             "confidence", "basis", "certificate", "kind", "num_classes", "plot"]
    assert json.dumps(result.to_dict(), allow_nan=False)  # plain JSON: lists, floats, None


def test_trivial_marks_exactly_the_rows_clipped_at_clean_accuracy():
    result = api.bound([0.1], [0.01, 5.0], lipschitz=1.0, slack=[0.05])
    np.testing.assert_array_equal(result.trivial, [[True, False]])
    assert result.rows[0].bound == pytest.approx(0.9) and result.rows[1].bound < 0.9


@settings(max_examples=40, deadline=None)
@given(risk=st.floats(0.0, 1.0), eps=st.floats(0.0, 5.0), lip=st.floats(0.1, 10.0), slack=st.floats(0.0, 0.5))
def test_trivial_iff_the_value_is_the_clip(risk, eps, lip, slack):
    row = tabulate(risk, eps, lip, slack=[slack], lipschitz_source="given", basis="test").rows[0]
    assert row.bound <= 1.0 - risk + 1e-12
    assert row.trivial == (row.bound >= 1.0 - risk - 1e-12)
    assert row.bound == pytest.approx(float(intrinsic_robustness(risk, eps, lip, slack=[slack])), abs=1e-15)


def test_a_file_brings_radius_side_condition_and_basis(tmp_path):
    result = api.bound(0.2, [0.4, 1.0], lipschitz_file=_file(tmp_path / "l.json", "sampling", False),
                       percentile="max")
    assert result.lipschitz == (1.0, 4.0) and result.radius == 0.5 and result.slack == (0.0, 0.0)
    assert result.side_condition_limit == pytest.approx(0.5)  # min_y L_y r = 1.0 * 0.5
    assert [r.side_condition_ok for r in result.rows] == [True, False] and result.violated_eps == (1.0,)
    assert result.kind == "estimate" and "sampling" in result.lipschitz_source and "max" in result.title


def test_only_a_certified_l_with_confidence_makes_a_bound(tmp_path):
    path = _file(tmp_path / "c.json", "certified-local", True)
    certified = api.bound(0.1, 0.2, lipschitz_file=path, percentile="max", confidence=0.95)
    assert certified.certificate and certified.kind == "bound" and certified.confidence == 0.95
    assert "certificate" in certified.basis and certified.to_dict()["kind"] == "bound"
    assert all(0 < s < 0.05 for s in certified.slack)  # Clopper-Pearson limit from 0 of 100 anchors above L
    assert api.bound(0.1, 0.2, lipschitz_file=path, percentile="max").kind == "estimate"  # nominal slack


def test_figure_returns_fig_and_ax_and_plot_writes_atomically(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    result = api.bound([0.1, 0.2], [0.5, 1.0], lipschitz=1.0)
    fig, ax = result.figure(points=51)
    assert isinstance(fig, Figure) and isinstance(ax, Axes)
    assert len(ax.get_lines()) == 3 and ax.get_title() == result.title  # 1 - risk, then one line per eps
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), result.curve(np.linspace(0, 1, 51))[:, 0])
    plt.close(fig)
    target = tmp_path / "out" / "bound.svg"
    written = api.bound([0.1], [0.5], lipschitz=1.0, plot=target)
    assert written.plot == str(target) and target.read_text().lstrip().startswith("<?xml")
    assert [p.name for p in target.parent.iterdir()] == ["bound.svg"]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"lipschitz": 1.0, "condition": "mean"}, "--condition"),
    ({}, "--lipschitz is required"),
    ({"lipschitz": 1.0, "plot": "bound.txt"}, "--plot"),
    ({"lipschitz": 1.0, "confidence": 0.9}, "--confidence needs --lipschitz-file"),
    ({"lipschitz": 0.0}, "lipschitz"),
])
def test_bad_arguments_are_user_errors(kwargs, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserInputError, match=fragment):
        api.bound(0.1, 1.0, **kwargs)
    assert list(tmp_path.iterdir()) == []  # nothing written
