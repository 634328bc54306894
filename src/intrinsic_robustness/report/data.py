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
from intrinsic_robustness.layout import RUN_FORMAT, RunLayout
from intrinsic_robustness.storage import read_json, read_versioned
from intrinsic_robustness.threat import THREATS, eps_key, survives

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
            "eps_limit": side_condition_limit(basis.lipschitz, basis.radius), "certified": basis.certified,
            "certificate": basis.certificate, "confidence": basis.confidence, "exceeding": basis.exceeding,
            "anchors": basis.anchors, "basis": basis.describe(), "label": _method_label(method),
            "values": [list(c.values) for c in result.per_class],
            "generator_evaluations": result.generator_evaluations, "seconds": result.seconds, "note": result.note,
        }
    return out


def _method_label(method: str) -> str:
    from intrinsic_robustness.lipschitz.registry import estimator_facts

    return estimator_facts(method)["label"]


def lipschitz_bracket(lipschitz: dict[str, Any]) -> dict[str, Any]:
    """Per class, each method's L on the [0, 1] scale in bracket order, and per-anchor ratios to the reference.

    Order, output scale and reference are the estimators' registered facts (``bracket``, ``scale``,
    ``reference``: the paper's sampler is shown divided by its scale 2, the gradient estimate is the
    reference). Ratios compare the same anchors: certified-local certifies the first few anchors the others use.
    """
    from intrinsic_robustness.lipschitz.registry import estimator_facts

    facts = {m: estimator_facts(m) for m in lipschitz}
    placed = sorted((f["bracket"], m) for m, f in facts.items() if f["bracket"] is not None)
    methods = [m for _, m in placed] + [m for m in lipschitz if facts[m]["bracket"] is None]
    scale = {m: facts[m]["scale"] for m in methods}
    table = {m: [v / scale[m] for v in lipschitz[m]["lipschitz"]] for m in methods}
    ratios: dict[str, Any] = {}
    reference = next((m for m in methods if facts[m]["reference"]), None)
    if reference is not None:
        ref = lipschitz[reference]["values"]
        for m in methods:
            if m == reference:
                continue
            per = [[v / scale[m] / g for v, g in zip(vals, gv, strict=False) if g > 0]
                   for vals, gv in zip(lipschitz[m]["values"], ref, strict=True)]
            flat = sorted(r for row in per for r in row)
            if flat:
                ratios[m] = {"median": flat[len(flat) // 2], "min": flat[0], "max": flat[-1], "anchors": len(flat)}
    scaled = ", ".join(f"{m} divided by {scale[m]:g}" for m in methods if scale[m] != 1.0)
    return {"methods": methods, "scale": "[0, 1] pixels" + (f" ({scaled})" if scaled else ""), "values": table,
            "reference": reference, "ratio_to_gradient": ratios}


def _generator_info(layout: RunLayout) -> dict[str, Any]:
    """What the generator stage saved about itself, including its fidelity if training measured it."""
    info: dict[str, Any] = {"fidelity": None, "real_test_accuracy": None}
    gdir = layout.generator_dir
    if (gdir / "generator.json").is_file():
        from intrinsic_robustness.generators.load import FORMAT as GENERATOR_FORMAT

        saved = read_versioned(gdir / "generator.json", GENERATOR_FORMAT, required=False)
        info.update({k: saved.get(k) for k in ("architecture", "latent_dim", "num_classes", "image_shape")})
    if layout.generator_training.is_file():
        from intrinsic_robustness.generators.flow_train import TRAINING_FORMAT as FLOW
        from intrinsic_robustness.generators.train import TRAINING_FORMAT as ACGAN

        training = read_versioned(layout.generator_training, (ACGAN, FLOW), required=False)
        fid = training.get("fidelity") or {}
        info["fidelity"] = fid.get("generated_accuracy")
        info["real_test_accuracy"] = fid.get("real_test_accuracy")
        info["fidelity_per_class"] = fid.get("generated_class_accuracy")
        for key in ("frechet_distance", "precision", "recall", "real_reference", "distribution_samples_per_class"):
            if key in fid:  # distribution fidelity (trainings before it existed have label agreement only)
                info[key] = fid[key]
        info["epochs"] = training.get("epochs_done")
        info["training_seconds"] = training.get("wall_seconds")
        info["dataset"] = (training.get("config") or {}).get("dataset")
    return info


def _eval(layout: RunLayout, name: str, threat: str) -> dict[str, Any] | None:
    path = layout.eval_file(name, threat)
    return _read_eval(path) if path.is_file() else None


def _read_eval(path: Path) -> dict[str, Any]:
    """An evaluation JSON, refused in one line if its format is not one this version reads."""
    from intrinsic_robustness.evaluation.result import FORMAT as EVAL_FORMAT

    return read_versioned(path, EVAL_FORMAT, required=False)


def _bounds(
    entry: dict[str, Any],
    lipschitz: dict[str, Any],
    eps: np.ndarray,
    priors: list[float],
    conditions: list[str],
) -> dict[str, Any]:
    """T1 at this classifier's per-class errors, and T2 / overall-risk bounds at its natural error."""
    from intrinsic_robustness.bound import classifier_bound, classifier_bound_trivial, intrinsic_robustness

    t1, t2, trivial = {}, {}, {}
    errors = np.asarray(entry["class_errors"], dtype=float)
    for method, lip in lipschitz.items():
        values = classifier_bound(errors, eps, lip["lipschitz"], priors=priors, slack=lip["slack"])
        t1[method] = {eps_key(e): float(v) for e, v in zip(eps, np.atleast_1d(values), strict=True)}
        clipped = classifier_bound_trivial(errors, eps, lip["lipschitz"], priors=priors, slack=lip["slack"])
        trivial[method] = {eps_key(e): bool(v) for e, v in zip(eps, np.atleast_1d(clipped), strict=True)}
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
    return {"bound": t1, "bound_trivial": trivial, "intrinsic_at_error": t2}


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
    entry["threat_n"] = {t: int(e["n"]) for t, e in evals.items()}  # a threat may attack fewer points
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
    entry["data"] = cfg.get("data", "generated")
    entry["real"] = _real(layout, name)
    entry.update(intervals(entry))
    return entry


def intervals(entry: dict[str, Any]) -> dict[str, Any]:
    """95% Clopper-Pearson intervals of every accuracy in an entry, with the same nesting as the values."""
    from intrinsic_robustness.stats import proportion_ci

    n = int(entry["n"])
    out: dict[str, Any] = {"natural_accuracy_ci": proportion_ci(entry["natural_accuracy"], n)}
    acc = entry.get("robust_accuracy") or {}
    nested = any(isinstance(v, dict) for v in acc.values())
    per = entry.get("threat_n") or {}
    if nested:
        out["robust_accuracy_ci"] = {t: {k: proportion_ci(v, int(per.get(t, n))) for k, v in a.items()}
                                     for t, a in acc.items()}
    else:
        out["robust_accuracy_ci"] = {k: proportion_ci(v, n) for k, v in acc.items()}
    cert = entry.get("certified_accuracy")
    out["certified_accuracy_ci"] = None if not cert else {k: proportion_ci(v, n) for k, v in cert.items()}
    return out


def comparisons(classifiers: list[dict[str, Any]], eps: np.ndarray) -> list[dict[str, Any]]:
    """Exact McNemar tests between every pair of classifiers attacked on the same points, per threat and eps.

    An example counts as robust at eps by :func:`intrinsic_robustness.threat.survives`, as in robust accuracy.
    """
    from intrinsic_robustness.stats import paired_mcnemar

    out = []
    done = [c for c in classifiers if not c.get("missing")]
    for i, a in enumerate(done):
        for b in done[i + 1:]:
            for threat in sorted(set(a["min_norms"]) & set(b["min_norms"])):
                na, nb = norms_array(a["min_norms"][threat]), norms_array(b["min_norms"][threat])
                if len(na) != len(nb) or not len(na):
                    continue
                for e in eps:
                    test = paired_mcnemar(survives(na, e).tolist(), survives(nb, e).tolist())
                    out.append({"a": a["name"], "b": b["name"], "threat": threat, "eps": eps_key(e), **test})
    return out


def _real(layout: RunLayout, name: str) -> dict[str, Any] | None:
    """The classifier attacked on real test images (``evaluation.real_n``), beside its generated-data numbers."""
    path = layout.real_eval_file(name)
    if not path.is_file():
        return None
    data = _read_eval(path)
    real = {"n": int(data["n"]), "natural_accuracy": 1.0 - float(data["natural_error"]),
            "attacks": data.get("attacks"),
            "robust_accuracy": {eps_key(k): v for k, v in _by_eps(data.get("robust_accuracy")).items()},
            "certified_accuracy": None if not data.get("certified_accuracy") else
            {eps_key(k): v for k, v in _by_eps(data["certified_accuracy"]).items()}}
    return {**real, **intervals(real)}


def _per_attack(layout: RunLayout, name: str, evals: dict[str, Any]) -> dict[str, Any]:
    """Each attack run alone (``evaluation.compare_attacks``), keyed by threat: its robust accuracy on the first
    n examples, on the same n that of the threat's main ensemble, and ``missed``: per eps, how many examples the
    ensemble left robust that the reference broke (the weak-attack flag's count)."""
    table: dict[str, Any] = {}
    for attack, path in layout.compare_files(name):
        data = _read_eval(path)
        threat, n = data.get("threat", "unconstrained"), int(data["n"])
        acc = {eps_key(k): v for k, v in _by_eps(data.get("robust_accuracy")).items()}
        main = evals.get(threat)
        ensemble = missed = None
        if main is not None and len(main.get("min_norms", [])) >= n:
            norms = norms_array(main["min_norms"][:n])
            ensemble = {k: float(np.mean(survives(norms, float(k)))) for k in acc}
            if len(data.get("min_norms") or []) == n:
                ref = norms_array(data["min_norms"])
                missed = {k: int(np.sum(survives(norms, float(k)) & ~survives(ref, float(k)))) for k in acc}
        table.setdefault(threat, {})[attack] = {"n": n, "robust_accuracy": acc, "ensemble": ensemble,
                                                "missed": missed,
                                                "ensemble_attacks": None if main is None else main.get("attacks")}
    return table


def collect(run_dir: str | Path) -> dict[str, Any]:
    """The report as one JSON-able dict (without flags; see :mod:`.flags`)."""
    from intrinsic_robustness.report.concentration import collect_concentration

    layout = RunLayout(Path(run_dir))
    if not layout.config_file.is_file():
        raise UserInputError(f"{layout.root}: no config.json; pass a run directory written by 'irob run'")
    config = read_json(layout.config_file)
    from intrinsic_robustness.data.synthetic import FORMAT as SYNTHETIC_FORMAT

    meta = read_versioned(layout.meta_file, RUN_FORMAT) if layout.meta_file.is_file() else {}
    manifest = read_versioned(layout.manifest_file, SYNTHETIC_FORMAT) if layout.manifest_file.is_file() else {}
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
        "comparisons": comparisons(classifiers, eps),
        "concentration": collect_concentration(layout),
        "confidence": 0.95,
        "stages": {n: r.get("seconds") for n, r in meta.get("stages", {}).items()},
        "stage_reasons": {n: r.get("reason") for n, r in meta.get("stages", {}).items() if r.get("reason")},
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
