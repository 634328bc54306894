"""``irob bound``: table, JSON, plot, the Lipschitz file route and one-line errors with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from intrinsic_robustness.bound import intrinsic_robustness
from intrinsic_robustness.cli import main


def _run(capsys, *args):
    code = main(["bound", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_table_lists_every_risk_eps_pair(capsys):
    code, out, _ = _run(
        capsys,
        "--risk",
        "0.1",
        "--risk",
        "0.3",
        "--eps",
        "0.5",
        "--eps",
        "1",
        "--lipschitz",
        "1",
        "--lipschitz",
        "2",
    )
    assert code == 0
    for risk, eps in [(0.1, 0.5), (0.1, 1.0), (0.3, 0.5), (0.3, 1.0)]:
        assert f"{intrinsic_robustness(risk, eps, [1.0, 2.0]):.6g}" in out
    assert "per_class" in out and "--lipschitz" in out  # the condition and the source of L are labelled


def test_json_output(capsys):
    code, out, _ = _run(
        capsys,
        "--risk",
        "0.2",
        "--risk",
        "0.35",
        "--eps",
        "0.5",
        "--eps",
        "1.5",
        "--lipschitz",
        "1",
        "--condition",
        "overall",
        "--num-classes",
        "10",
        "--json",
    )
    assert code == 0
    payload = json.loads(out)
    assert payload["condition"] == "overall" and payload["lipschitz"] == [1.0]
    assert [(r["risk"], r["eps"]) for r in payload["results"]] == [
        (0.2, 0.5),
        (0.2, 1.5),
        (0.35, 0.5),
        (0.35, 1.5),
    ]
    for row in payload["results"]:
        expected = intrinsic_robustness(row["risk"], row["eps"], 1.0, condition="overall", num_classes=10)
        assert row["bound"] == pytest.approx(expected, rel=1e-12)
        assert row["side_condition_ok"] is None  # no radius known without a Lipschitz file


def test_priors_and_slack_reach_the_bound(capsys):
    code, out, _ = _run(
        capsys,
        "--risk",
        "0.1",
        "--eps",
        "1",
        "--lipschitz",
        "1",
        "--lipschitz",
        "3",
        "--priors",
        "0.25",
        "--priors",
        "0.75",
        "--slack",
        "0.01",
        "--slack",
        "0.02",
        "--json",
    )
    assert code == 0
    expected = intrinsic_robustness(0.1, 1.0, [1.0, 3.0], priors=[0.25, 0.75], slack=[0.01, 0.02])
    assert json.loads(out)["results"][0]["bound"] == pytest.approx(expected, rel=1e-12)


def test_plot_is_written(capsys, tmp_path):
    target = tmp_path / "figs" / "bound.png"
    code, _, err = _run(
        capsys, "--risk", "0.1", "--eps", "0.5", "--eps", "1", "--lipschitz", "1", "--plot", str(target)
    )
    assert code == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in target.parent.iterdir()] == ["bound.png"]  # no temp file left behind
    assert "plot written" in err


def _lipschitz_file(path, radius=0.5):
    per_class = [
        {
            "class": c,
            "p95": 0.9 * lip,
            "p99": lip,
            "p999": 1.1 * lip,
            "max": 1.2 * lip,
            "mean": 0.5 * lip,
            "values": [0.5 * lip] * 200,
        }
        for c, lip in enumerate([1.0, 4.0])
    ]
    path.write_text(
        json.dumps(
            {"method": "sampling", "radius": radius, "per_class": per_class, "generator_evaluations": 1000}
        )
    )
    return path


def test_lipschitz_file_sets_l_slack_and_checks_the_side_condition(capsys, tmp_path):
    f = _lipschitz_file(tmp_path / "lipschitz.json")
    code, out, err = _run(
        capsys,
        "--risk",
        "0.2",
        "--eps",
        "0.4",
        "--eps",
        "1.0",
        "--lipschitz-file",
        str(f),
        "--percentile",
        "p99",
        "--json",
    )
    assert code == 0
    payload = json.loads(out)
    assert (
        payload["lipschitz"] == [1.0, 4.0] and payload["slack"] == [0.01, 0.01] and payload["radius"] == 0.5
    )
    assert "sampling" in payload["lipschitz_source"] and "p99" in payload["lipschitz_source"]
    rows = payload["results"]
    assert rows[0]["bound"] == pytest.approx(intrinsic_robustness(0.2, 0.4, [1.0, 4.0], slack=[0.01, 0.01]))
    # eps = 0.4 <= L_y r = (0.5, 2.0) for both classes; eps = 1.0 exceeds class 0's 0.5
    assert [r["side_condition_ok"] for r in rows] == [True, False]
    assert "warning" in err and "1" in err
    code, out, _ = _run(
        capsys, "--risk", "0.2", "--eps", "1.0", "--lipschitz-file", str(f), "--percentile", "max"
    )
    assert code == 0 and "violated" in out and "max" in out


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--risk", "1.5", "--eps", "1", "--lipschitz", "1"], "risk"),
        (["--risk", "0.1", "--eps", "-1", "--lipschitz", "1"], "eps"),
        (["--risk", "0.1", "--eps", "1", "--lipschitz", "0"], "lipschitz"),
        (["--risk", "0.1", "--eps", "1", "--lipschitz", "1", "--priors", "0.5", "--priors", "0.6"], "priors"),
        (
            [
                "--risk",
                "0.1",
                "--eps",
                "1",
                "--lipschitz",
                "1",
                "--lipschitz",
                "2",
                "--priors",
                "0.2",
                "--priors",
                "0.3",
                "--priors",
                "0.5",
            ],
            "different lengths",
        ),
        (["--risk", "0.1", "--eps", "1", "--lipschitz", "1", "--condition", "overall"], "num_classes"),
        (["--risk", "0.1", "--eps", "1", "--lipschitz", "1", "--condition", "mean"], "condition"),
        (["--risk", "0.1", "--eps", "1"], "--lipschitz"),
        (["--risk", "0.1", "--eps", "1", "--lipschitz", "1", "--plot", "out.txt"], "--plot"),
        (["--risk", "0.1", "--eps", "1", "--lipschitz-file", "missing.json"], "not found"),
        (["--risk", "nan", "--eps", "1", "--lipschitz", "1"], "NaN"),
        (["--eps", "1", "--lipschitz", "1"], "--risk"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(capsys, args, fragment):
    code, out, err = _run(capsys, *args)
    assert code == 2
    assert fragment in err
    assert "Traceback" not in err and out == ""
    if "error:" in err:
        assert len(err.strip().splitlines()) == 1


def test_lipschitz_file_conflicts(capsys, tmp_path):
    f = _lipschitz_file(tmp_path / "l.json")
    code, _, err = _run(capsys, "--risk", "0.1", "--eps", "1", "--lipschitz-file", str(f), "--lipschitz", "1")
    assert code == 2 and "not both" in err
    code, _, err = _run(capsys, "--risk", "0.1", "--eps", "1", "--lipschitz-file", str(f), "--slack", "0.1")
    assert code == 2 and "--slack" in err
    for percentile in ("p50", "mean"):  # mean is refused: it implies no coverage, hence no slack
        code, _, err = _run(
            capsys, "--risk", "0.1", "--eps", "1", "--lipschitz-file", str(f), "--percentile", percentile
        )
        assert code == 2 and "percentile" in err and len(err.strip().splitlines()) == 1
    f.write_text("{broken")
    code, _, err = _run(capsys, "--risk", "0.1", "--eps", "1", "--lipschitz-file", str(f))
    assert code == 2 and "JSON" in err


def test_grid_values_match_the_library(capsys):
    risks, eps = [0.05, 0.5, 0.9], [0.1, 2.0]
    args = [a for r in risks for a in ("--risk", str(r))] + [a for e in eps for a in ("--eps", str(e))]
    code, out, _ = _run(capsys, *args, "--lipschitz", "0.7", "--json")
    assert code == 0
    got = np.array([r["bound"] for r in json.loads(out)["results"]]).reshape(3, 2)
    np.testing.assert_allclose(
        got, intrinsic_robustness(np.array(risks)[:, None], np.array(eps), 0.7), rtol=1e-12
    )


def test_end_to_end_with_an_estimated_lipschitz_file(capsys, tmp_path, affine_generator):
    """irob lipschitz's real output feeds irob bound; the sampled L stays below ||A||_2 (an estimate)."""
    from intrinsic_robustness.lipschitz import estimate_lipschitz

    result = estimate_lipschitz(affine_generator, "sampling", anchors_per_class=8, radius=0.5, neighbors=64, seed=0)
    result.save(tmp_path / "lipschitz.json")
    code, out, _ = _run(
        capsys,
        "--risk",
        "0.1",
        "--eps",
        "0.05",
        "--lipschitz-file",
        str(tmp_path / "lipschitz.json"),
        "--percentile",
        "max",
        "--json",
    )
    assert code == 0
    payload = json.loads(out)
    assert len(payload["lipschitz"]) == 3 and payload["slack"] == [0.0, 0.0, 0.0]
    assert all(0 < lip <= affine_generator.spectral_norm * (1 + 1e-5) for lip in payload["lipschitz"])
    expected = intrinsic_robustness(0.1, 0.05, payload["lipschitz"])
    assert payload["results"][0]["bound"] == pytest.approx(expected)
    assert payload["results"][0]["side_condition_ok"] is True
