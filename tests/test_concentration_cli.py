"""``irob concentration``: table and JSON on digits and on a generated dataset, --out, one-line errors (exit 2)."""

from __future__ import annotations

import json

import pytest

from intrinsic_robustness.cli import main
from intrinsic_robustness.concentration import load_sample, recheck


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["concentration", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_on_digits_has_the_issue_keys_and_rechecks(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    out = tmp_path / "c.json"
    code, text, err = _run(capsys, "--data", "digits", "--alpha", "0.1", "--eps", "1", "--eps", "2",
                           "--method", "all", "--device", "cpu", "--json", "--out", str(out), "--balls", "20",
                           "--max-centres", "300", "--components", "10")
    assert code == 0, err
    payload = json.loads(text)
    assert payload == json.loads(out.read_text())
    assert payload["n_train"] + payload["n_test"] == 1797 and payload["split_seed"] == 0
    assert {r["method"] for r in payload["results"]} == {"halfspace", "balls"}
    for row in payload["results"]:
        assert {"method", "alpha", "eps", "risk_train", "risk_test", "adv_risk_train", "adv_risk_test"} <= set(row)
        assert 0 <= row["risk_test"] <= row["adv_risk_test"] <= 1
    assert sum(r["best"] for r in payload["results"]) == 2
    sample, _ = load_sample("digits")
    for row, (risk, adv) in zip(payload["results"], recheck(payload, sample), strict=True):
        assert abs(risk - row["risk_test"]) <= 1.5 / payload["n_test"]
        assert abs(adv - row["adv_risk_test"]) <= 1.5 / payload["n_test"]


def test_table_says_estimate_and_n(capsys: pytest.CaptureFixture[str]) -> None:
    code, text, _ = _run(capsys, "--alpha", "0.2", "--eps", "0.5", "--method", "halfspace")
    assert code == 0
    assert "estimate, not a bound" in text and "899 held-out" in text and "halfspace" in text


def test_a_generated_dataset_is_a_sample(capsys: pytest.CaptureFixture[str], tmp_path, affine_generator) -> None:
    from intrinsic_robustness.data.synthetic import generate_dataset

    generate_dataset(affine_generator, tmp_path / "gen", n_train=120, n_test=80, seed=0)
    code, text, err = _run(capsys, "--data", str(tmp_path / "gen"), "--alpha", "0.1", "--eps", "0.05",
                           "--method", "balls", "--json")
    assert code == 0, err
    payload = json.loads(text)
    assert payload["n_train"] + payload["n_test"] == 200 and payload["data"]["kind"] == "generated"
    assert payload["results"][0]["region"]["kind"] == "balls"


@pytest.mark.parametrize(("args", "words"), [
    (["--alpha", "0", "--eps", "1"], "--alpha"),
    (["--alpha", "1.5", "--eps", "1"], "--alpha"),
    (["--alpha", "0.1", "--eps", "-1"], "--eps"),
    (["--alpha", "0.1", "--eps", "1", "--method", "cubes"], "--method"),
    (["--alpha", "0.1", "--eps", "1", "--balls", "5000"], "more balls"),
    (["--alpha", "0.1", "--eps", "1", "--data", "nonsense"], "--data"),
    (["--alpha", "0.1", "--eps", "1", "--device", "tpu"], "--device"),
])
def test_bad_input_is_one_error_line(capsys: pytest.CaptureFixture[str], tmp_path, args: list[str],
                                     words: str) -> None:
    out = tmp_path / "never.json"
    code, text, err = _run(capsys, *args, "--out", str(out))
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], err
    assert "Traceback" not in err and not out.exists()


def test_a_single_class_dataset_is_refused(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    from intrinsic_robustness.data.synthetic import generate_dataset
    from intrinsic_robustness.generators import make_affine

    gen = make_affine(latent_dim=4, num_classes=1, height=4, width=4, scale=0.05, seed=0)
    generate_dataset(gen, tmp_path / "one", n_train=20, n_test=10, seed=0)
    code, _, err = _run(capsys, "--data", str(tmp_path / "one"), "--alpha", "0.1", "--eps", "0.1")
    assert code == 2 and err.startswith("error:") and "same label" in err
