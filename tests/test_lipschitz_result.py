"""LipschitzResult round trip, bound_inputs slack rules, and the `irob lipschitz` command."""

from __future__ import annotations

import json
import math

import pytest
import torch

from intrinsic_robustness.cli import main
from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.lipschitz import ClassLipschitz, LipschitzResult, bound_inputs, estimate_lipschitz

AFFINE = "intrinsic_robustness.generators.affine:make_affine"


def _result(labels=(0, 1), n=200):
    per_class = tuple(ClassLipschitz.from_values(c, torch.arange(1, n + 1, dtype=torch.float64) * (c + 1))
                      for c in labels)
    return LipschitzResult(method="sampling", radius=0.5, parameters={"seed": 0}, per_class=per_class,
                           generator_evaluations=123, seconds=0.5)


def test_summaries_match_numpy_percentiles():
    import numpy as np

    values = torch.rand(57, generator=torch.Generator().manual_seed(1))
    c = ClassLipschitz.from_values(3, values)
    v = values.double().numpy()
    assert c.p95 == pytest.approx(np.percentile(v, 95)) and c.p99 == pytest.approx(np.percentile(v, 99))
    assert c.p999 == pytest.approx(np.percentile(v, 99.9)) and c.max == pytest.approx(v.max())
    assert c.mean == pytest.approx(v.mean()) and c.p95 <= c.p99 <= c.p999 <= c.max


def test_save_load_round_trip(tmp_path, affine_generator):
    result = estimate_lipschitz(affine_generator, "sampling", anchors_per_class=3, neighbors=20)
    path = tmp_path / "l.json"
    result.save(path)
    data = json.loads(path.read_text())
    keys = {"method", "radius", "per_class", "generator_evaluations", "seconds", "parameters", "note"}
    assert keys <= set(data)
    assert set(data["per_class"][0]) == {"class", "p95", "p99", "p999", "max", "mean", "values"}
    assert "estimate from below" in data["note"]
    assert LipschitzResult.load(path) == result


def test_bound_inputs_slack_per_percentile(tmp_path):
    result = _result()
    for name, slack in {"p95": 0.05, "p99": 0.01, "p999": 0.001, "max": 0.0}.items():
        lipschitz, slacks, radius = bound_inputs(result, name)
        assert lipschitz == [getattr(c, name) for c in result.per_class]
        assert slacks == [slack, slack] and radius == 0.5
    result.save(tmp_path / "r.json")
    assert bound_inputs(str(tmp_path / "r.json"), "p99") == bound_inputs(result, "p99")
    assert bound_inputs(tmp_path / "r.json", "max")[0] == [200.0, 400.0]


def test_bound_inputs_refuses_mean_partial_classes_and_bad_files(tmp_path):
    with pytest.raises(UserInputError, match="mean"):
        bound_inputs(_result(), "mean")
    with pytest.raises(UserInputError, match="percentile"):
        bound_inputs(_result(), "p50")
    with pytest.raises(UserInputError, match="every class"):
        bound_inputs(_result(labels=(1, 2)), "p99")
    partial = _result(labels=(0, 1))
    partial = LipschitzResult(**{**partial.__dict__, "parameters": {"num_classes": 3}})
    with pytest.raises(UserInputError, match="every class"):
        bound_inputs(partial, "p99")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"method": "sampling"}))
    with pytest.raises(UserInputError, match="missing key"):
        bound_inputs(bad)
    with pytest.raises(UserInputError, match="not found"):
        bound_inputs(tmp_path / "absent.json")


def test_bound_inputs_warns_when_few_anchors_cannot_resolve_the_slack(caplog):
    with caplog.at_level("WARNING"):
        bound_inputs(_result(n=20), "p99")
    assert "not supported by this sample" in caplog.text


def test_cli_writes_the_json_keys(tmp_path, capsys):
    out = tmp_path / "lip.json"
    code = main(["lipschitz", "--generator", AFFINE, "--method", "gradient", "--anchors-per-class", "3",
                 "--radius", "0.5", "--seed", "1", "--device", "cpu", "--out", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["method"] == "gradient" and data["radius"] == 0.5
    assert [c["class"] for c in data["per_class"]] == [0, 1, 2]
    assert all(len(c["values"]) == 3 and math.isfinite(c["p99"]) for c in data["per_class"])
    assert data["generator_evaluations"] > 0 and data["parameters"]["generator"] == AFFINE
    assert "p999" in capsys.readouterr().out
    lipschitz, slack, radius = bound_inputs(out, "p99")
    assert len(lipschitz) == 3 and slack == [0.01] * 3 and radius == 0.5


def test_cli_sampling_and_bad_input_exit_two(tmp_path, capsys):
    out = tmp_path / "s.json"
    assert main(["lipschitz", "--generator", "affine", "--method", "sampling", "--anchors-per-class", "2",
                 "--neighbors", "10", "--device", "cpu", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["generator_evaluations"] == 3 * 2 * 11
    assert main(["lipschitz", "--generator", "affine", "--radius", "-1", "--device", "cpu",
                 "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "radius=-1" in err and "Traceback" not in err
    assert not (tmp_path / "x.json").exists()
