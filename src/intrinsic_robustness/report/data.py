"""Collect a finished run's files into one report dictionary: measured robustness next to the bounds.

Nothing here runs a model: it reads ``config.json``, ``meta.json``, ``lipschitz/*.json``, the dataset
manifest, the generator's saved info and ``eval/<name>/<threat>.json``, and evaluates the closed-form
bounds of :mod:`intrinsic_robustness.bound`. Every number is a float in [0, 1] (or an L2 norm / a
Lipschitz value where the key says so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.pipeline.layout import RunLayout
from intrinsic_robustness.storage import read_json
from intrinsic_robustness.threat import NORM_TOL, THREATS, eps_key

FORMAT = "irob-report/1"
RISK_POINTS = 101


def norms_array(norms: list[float | None]) -> np.ndarray:
    """Per-example minimal norms from report/evaluation JSON as floats (null = nothing found = +inf)."""
    return np.array([np.inf if v is None else v for v in norms], dtype=float)


def _by_eps(table: dict[str, Any] | None) -> dict[float, float]:
    return {float(k): float(v) for k, v in (table or {}).items() if v is not None}


def _load_lipschitz(layout: RunLayout, methods: list[str], percentile: str,
                    confidence: float | None = None) -> dict[str, Any]:
    """Per method: the L, slack and radius the bounds use, what they rest on, and the per-anchor values."""
    from intrinsic_robustness.bound import side_condition_limit
    from intrinsic_robustness.lipschitz.result import LipschitzResult, bound_basis

    out = {}
    for method in methods:
        path = layout.lipschitz_file(method)
        if not path.is_file():
            continue
        result = LipschitzResult.load(path)
        basis = bound_basis(result, percentile, confidence)
        out[method] = {
            "percentile": percentile, "lipschitz": basis.lipschitz, "slack": basis.slack, "radius": basis.radius,
            "max_eps": side_condition_limit(basis.lipschitz, basis.radius), "certified": basis.certified,
            "certificate": basis.certificate, "confidence": basis.confidence, "exceeding": basis.exceeding,
            "anchors": basis.anchors, "basis": basis.describe(), "label": _method_label(method),
            "values": [list(c.values) for c in result.per_class],
            "generator_evaluations": result.generator_evaluations, "seconds": result.seconds, "note": result.note,
        }
    return out


def _method_label(method: str) -> str:
    from intrinsic_robustness.lipschitz.registry import ESTIMATORS

    return ESTIMATORS.info(method).get("label", method) if method in ESTIMATORS else method


# The order of the bracket: each method's values should not be above the next one's on the same anchors.
BRACKET = ("paper-sampling", "sampling", "gradient", "certified-local", "certified-global")
PAPER_SCALE = {"paper-sampling": 2.0}  # the paper's code measured distances on the [-1, 1] output


def lipschitz_bracket(lipschitz: dict[str, Any]) -> dict[str, Any]:
    """Per class, each method's L on the [0, 1] scale in bracket order, and per-anchor ratios to gradient.

    The paper's sampler is also shown divided by 2 (its [-1, 1] distances on the [0, 1] scale eps uses).
    Ratios compare the same anchors: certified-local certifies the first few anchors the others also use.
    """
    methods = [m for m in BRACKET if m in lipschitz] + [m for m in lipschitz if m not in BRACKET]
    table = {m: [v / PAPER_SCALE.get(m, 1.0) for v in lipschitz[m]["lipschitz"]] for m in methods}
    ratios: dict[str, Any] = {}
    if "gradient" in lipschitz:
        grad = lipschitz["gradient"]["values"]
        for m in methods:
            if m == "gradient":
                continue
            per = [[v / PAPER_SCALE.get(m, 1.0) / g for v, g in zip(vals, gv, strict=False) if g > 0]
                   for vals, gv in zip(lipschitz[m]["values"], grad, strict=True)]
            flat = sorted(r for row in per for r in row)
            if flat:
                ratios[m] = {"median": flat[len(flat) // 2], "min": flat[0], "max": flat[-1], "anchors": len(flat)}
    return {"methods": methods, "scale": "[0, 1] pixels (paper-sampling divided by 2)", "values": table,
            "ratio_to_gradient": ratios}


def _generator_info(layout: RunLayout) -> dict[str, Any]:
    """What the generator stage saved about itself, including its fidelity if training measured it."""
    info: dict[str, Any] = {"fidelity": None, "real_test_accuracy": None}
    gdir = layout.generator_dir
    if (gdir / "generator.json").is_file():
        saved = read_json(gdir / "generator.json")
        info.update({k: saved.get(k) for k in ("architecture", "latent_dim", "num_classes", "image_shape")})
    if layout.generator_training.is_file():
        training = read_json(layout.generator_training)
        fid = training.get("fidelity") or {}
        info["fidelity"] = fid.get("generated_accuracy")
        info["real_test_accuracy"] = fid.get("real_test_accuracy")
        info["fidelity_per_class"] = fid.get("generated_class_accuracy")
        info["epochs"] = training.get("epochs_done")
        info["training_seconds"] = training.get("wall_seconds")
        info["dataset"] = (training.get("config") or {}).get("dataset")
    return info


def _eval(layout: RunLayout, name: str, threat: str) -> dict[str, Any] | None:
    path = layout.eval_file(name, threat)
    return read_json(path) if path.is_file() else None


def _bounds(
    entry: dict[str, Any],
    lipschitz: dict[str, Any],
    eps: np.ndarray,
    priors: list[float],
    conditions: list[str],
) -> dict[str, Any]:
    """T1 at this classifier's per-class errors, and T2 / overall-risk bounds at its natural error."""
    from intrinsic_robustness.bound import classifier_bound, intrinsic_robustness

    t1, t2 = {}, {}
    errors = np.asarray(entry["class_errors"], dtype=float)
    for method, lip in lipschitz.items():
        values = classifier_bound(errors, eps, lip["lipschitz"], priors=priors, slack=lip["slack"])
        t1[method] = {eps_key(e): float(v) for e, v in zip(eps, np.atleast_1d(values), strict=True)}
        t2[method] = {}
        for cond in conditions:
            v = intrinsic_robustness(
                entry["natural_error"],
                eps,
                lip["lipschitz"],
                priors=priors,
                condition=cond,
                slack=lip["slack"],
                num_classes=len(priors),
            )
            t2[method][cond] = {eps_key(e): float(x) for e, x in zip(eps, np.atleast_1d(v), strict=True)}
    return {"bound": t1, "intrinsic_at_error": t2}


def _classifier(layout: RunLayout, cfg: dict[str, Any], eps: np.ndarray) -> dict[str, Any]:
    name = cfg["name"]
    evals = {t: _eval(layout, name, t) for t in THREATS}
    evals = {t: e for t, e in evals.items() if e is not None}
    entry: dict[str, Any] = {
        "name": name,
        "method": cfg["method"],
        "eps_train": cfg.get("eps"),
        "threats": list(evals),
    }
    if not evals:
        entry["missing"] = True
        return entry
    first = next(iter(evals.values()))
    entry["n"] = int(first["n"])
    entry["natural_error"] = float(first["natural_error"])
    entry["natural_accuracy"] = 1.0 - entry["natural_error"]
    entry["class_errors"] = [None if v is None else float(v) for v in first["class_errors"]]
    entry["robust_accuracy"] = {
        t: {eps_key(k): v for k, v in _by_eps(e.get("robust_accuracy")).items()} for t, e in evals.items()
    }
    entry["attacks"] = {t: e.get("attacks") for t, e in evals.items()}
    entry["per_attack"] = _per_attack(layout, name, evals)
    cert = [e.get("certified_accuracy") for e in evals.values() if e.get("certified_accuracy")]
    entry["certified_accuracy"] = {eps_key(k): v for k, v in _by_eps(cert[0]).items()} if cert else None
    entry["min_norms"] = {t: e.get("min_norms", []) for t, e in evals.items()}
    entry["seconds"] = {t: e.get("seconds") for t, e in evals.items()}
    entry["curve_eps"] = [float(e) for e in eps]
    return entry


def _per_attack(layout: RunLayout, name: str, evals: dict[str, Any]) -> dict[str, Any]:
    """Each attack run alone (``evaluation.compare_attacks``), keyed by threat: its robust accuracy on the first
    n examples and, on the same n, that of the threat's main ensemble (for the weak-attack flag)."""
    table: dict[str, Any] = {}
    for attack, path in layout.compare_files(name):
        data = read_json(path)
        threat, n = data.get("threat", "unconstrained"), int(data["n"])
        acc = {eps_key(k): v for k, v in _by_eps(data.get("robust_accuracy")).items()}
        main = evals.get(threat)
        ensemble = None
        if main is not None and len(main.get("min_norms", [])) >= n:
            norms = norms_array(main["min_norms"][:n])
            ensemble = {k: float(np.mean(norms > float(k) + NORM_TOL)) for k in acc}
        table.setdefault(threat, {})[attack] = {"n": n, "robust_accuracy": acc, "ensemble": ensemble,
                                                "ensemble_attacks": None if main is None else main.get("attacks")}
    return table


def collect(run_dir: str | Path) -> dict[str, Any]:
    """The report as one JSON-able dict (without flags; see :mod:`.flags`)."""
    layout = RunLayout(Path(run_dir))
    if not layout.config_file.is_file():
        raise UserInputError(f"{layout.root}: no config.json; pass a run directory written by 'irob run'")
    config = read_json(layout.config_file)
    meta = read_json(layout.meta_file) if layout.meta_file.is_file() else {}
    manifest = read_json(layout.manifest_file) if layout.manifest_file.is_file() else {}
    rep = config["report"]
    eps = np.array(sorted(config["evaluation"]["eps"]), dtype=float)
    lipschitz = _load_lipschitz(layout, config["lipschitz"]["methods"], config["lipschitz"]["percentile"],
                                config["lipschitz"].get("confidence"))
    k = int(manifest.get("num_classes", 0)) or (len(next(iter(lipschitz.values()))["lipschitz"]) if lipschitz else 0)
    priors = manifest.get("priors") or ([1.0 / k] * k if k else [])
    classifiers = [_classifier(layout, c, eps) for c in config["classifiers"]]
    for entry in classifiers:
        if not entry.get("missing") and None in entry["class_errors"]:
            entry["bound_note"] = "a class has no test examples: T1 needs every class's error; raise evaluation.n"
        elif not entry.get("missing") and lipschitz:
            entry.update(_bounds(entry, lipschitz, eps, priors, rep["conditions"]))
            entry["gap"] = _gaps(entry)
    risk = np.linspace(0.0, 1.0, RISK_POINTS)
    curves = _intrinsic_curves(risk, eps, lipschitz, priors, rep["conditions"])
    return {
        "format": FORMAT,
        "run": {
            "name": config["run"]["name"],
            "seed": config["run"]["seed"],
            "device": _device(meta, config),
            "machine": meta.get("machine", {}),
            "created": meta.get("created"),
            "versions": meta.get("versions", {}),
        },
        "eps": [float(e) for e in eps],
        "num_classes": k,
        "priors": priors,
        "dataset": {
            "n_train": config["dataset"]["n_train"],
            "n_test": config["dataset"]["n_test"],
            "image_shape": manifest.get("image_shape"),
        },
        "generator": {
            **_generator_info(layout),
            "source": config["generator"]["source"],
            "min_fidelity": config["generator"]["min_fidelity"],
        },
        "lipschitz": lipschitz,
        "lipschitz_bracket": lipschitz_bracket(lipschitz) if lipschitz else None,
        "intrinsic": {"risk": [float(r) for r in risk], "curves": curves},
        "classifiers": classifiers,
        "stages": {n: r.get("seconds") for n, r in meta.get("stages", {}).items()},
    }


def _device(meta: dict[str, Any], config: dict[str, Any]) -> str:
    """The device that ran (meta.json's resolved device; the config's request for runs before it was kept)."""
    recorded = meta.get("device")
    return recorded.get("resolved", config["run"]["device"]) if isinstance(recorded, dict) else config["run"]["device"]


def _gaps(entry: dict[str, Any]) -> dict[str, Any]:
    """Bound minus measured robust accuracy, per Lipschitz method, threat and eps (negative = violation)."""
    gaps: dict[str, Any] = {}
    measured = dict(entry["robust_accuracy"])
    if entry.get("certified_accuracy"):
        measured["certified"] = entry["certified_accuracy"]
    for method, bound in entry["bound"].items():
        gaps[method] = {t: {e: bound[e] - v for e, v in acc.items() if e in bound} for t, acc in measured.items()}
    return gaps


def _intrinsic_curves(
    risk: np.ndarray, eps: np.ndarray, lipschitz: dict[str, Any], priors: list[float], conditions: list[str]
) -> dict[str, Any]:
    """Bound against risk for each Lipschitz method, condition and eps."""
    from intrinsic_robustness.bound import intrinsic_robustness

    curves: dict[str, Any] = {}
    for method, lip in lipschitz.items():
        curves[method] = {}
        for cond in conditions:
            curves[method][cond] = {
                eps_key(e): [
                    float(v)
                    for v in np.atleast_1d(
                        intrinsic_robustness(
                            risk,
                            float(e),
                            lip["lipschitz"],
                            priors=priors,
                            condition=cond,
                            slack=lip["slack"],
                            num_classes=len(priors),
                        )
                    )
                ]
                for e in eps
            }
    return curves
