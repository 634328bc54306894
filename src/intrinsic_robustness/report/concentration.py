"""Concentration from data in the report: the held-out estimates of ``concentration/<source>.json``, drawn on
the bound figure and tabled, each labelled as what it is (an estimate from samples, not a bound)."""

from __future__ import annotations

from typing import Any

from intrinsic_robustness.layout import RunLayout

SOURCES = ("real", "generated")
MARKERS = {"real": "P", "generated": "X"}
COLORS = {"real": "tab:green", "generated": "tab:purple"}
WHAT = ("Concentration from data: for each alpha, a region (half-space or union of L2 balls) holding at least alpha "
        "of one half of the sample was fitted to have the smallest eps-expansion, then measured on the other half; "
        "1 - its held-out expanded share (y) at its held-out share (x) estimates the best robustness any classifier "
        "with that risk can have. It is an estimate from samples with a held-out evaluation, not a bound; on "
        "generated data a point clearly above the overall-risk bound means the L behind the bound is too small.")


def collect_concentration(layout: RunLayout) -> dict[str, Any] | None:
    """Per source, the split and one row per (method, alpha, eps) without the regions (they stay in the file)."""
    from intrinsic_robustness.concentration.result import FORMAT
    from intrinsic_robustness.storage import read_versioned

    out = {}
    for source in SOURCES:
        path = layout.concentration_file(source)
        if not path.is_file():
            continue
        data = read_versioned(path, FORMAT)
        keys = ("method", "alpha", "eps", "risk_test", "adv_risk_test", "robustness_test", "risk_test_ci",
                "adv_risk_test_ci", "best", "risk_short")
        out[source] = {"file": layout.rel(path), "data": data.get("data", {}), "n_train": data["n_train"],
                       "n_test": data["n_test"], "split_seed": data["split_seed"],
                       "rows": [{k: row.get(k) for k in keys} for row in data["results"]]}
    return out or None


def chosen_rows(entry: dict[str, Any], eps_key: str) -> list[dict[str, Any]]:
    """At one eps, per alpha, the best row (method 'all') or the only one, in order of held-out risk."""
    rows = [r for r in entry["rows"] if f"{r['eps']:g}" == eps_key]
    picked: dict[float, dict[str, Any]] = {}
    for row in rows:
        old = picked.get(row["alpha"])
        if old is None or row.get("best") or (not old.get("best") and row["adv_risk_test"] < old["adv_risk_test"]):
            picked[row["alpha"]] = row
    return sorted(picked.values(), key=lambda r: r["risk_test"])


def draw_concentration(ax: Any, report: dict[str, Any], eps_key: str) -> None:
    """On one eps panel of the bound figure: (held-out risk, 1 - held-out adv risk) per alpha and source, with
    the 95% interval of the held-out adv risk as a vertical bar, joined across alpha."""
    for source, entry in (report.get("concentration") or {}).items():
        rows = chosen_rows(entry, eps_key)
        if not rows:
            continue
        x = [r["risk_test"] for r in rows]
        y = [1.0 - r["adv_risk_test"] for r in rows]
        low = [yi - (1.0 - r["adv_risk_test_ci"][1]) for yi, r in zip(y, rows, strict=True)]
        high = [(1.0 - r["adv_risk_test_ci"][0]) - yi for yi, r in zip(y, rows, strict=True)]
        ax.errorbar(x, y, yerr=[low, high], color=COLORS[source], marker=MARKERS[source], ms=7, lw=1, ls=":",
                    capsize=2, zorder=3, label=f"concentration estimate, {source} data (held-out, n={entry['n_test']})")


def concentration_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The table: every row of every source, its held-out figures and intervals."""
    entries = report.get("concentration") or {}
    head = ["data", "method", "alpha", "eps", "risk (held-out)", "adv risk (held-out, 95% CI)", "1 - adv risk", "n"]
    rows = []
    for source, entry in entries.items():
        for r in entry["rows"]:
            lo, hi = r["adv_risk_test_ci"]
            mark = (" (risk short of alpha)" if r.get("risk_short") else "") + (" best" if r.get("best") else "")
            rows.append([source, r["method"] + mark, f"{r['alpha']:g}", f"{r['eps']:g}", f"{r['risk_test']:.4f}",
                         f"{r['adv_risk_test']:.4f} [{lo:.4f}, {hi:.4f}]", f"{r['robustness_test']:.4f}",
                         str(entry["n_test"])])
    return head, rows


def concentration_above_bound(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Generated data: a held-out region whose robustness estimate lies clearly above the overall-risk bound (the
    95% limits of both its shares taken in the bound's favour) contradicts the bound, so the L behind it is too
    small. Checked only where the side condition eps <= min L r holds."""
    from intrinsic_robustness.bound import intrinsic_robustness

    entry = (report.get("concentration") or {}).get("generated")
    priors = report.get("priors") or []
    if not entry or not priors:
        return []
    out = []
    for method, lip in (report.get("lipschitz") or {}).items():
        for row in entry["rows"]:
            if row.get("risk_short") or row["eps"] > float(lip.get("eps_limit", float("inf"))):
                continue
            low = 1.0 - row["adv_risk_test_ci"][1]
            bound = float(intrinsic_robustness(row["risk_test_ci"][0], row["eps"], lip["lipschitz"], priors=priors,
                                               condition="overall", slack=lip.get("slack"), num_classes=len(priors)))
            if low > bound:
                out.append({"kind": "concentration_above_bound", "lipschitz_method": method, "method": row["method"],
                            "alpha": row["alpha"], "eps": row["eps"], "estimate": row["robustness_test"],
                            "estimate_low": low, "bound": bound,
                            "message": f"on generated data a {row['method']} region (alpha {row['alpha']:g}) keeps "
                                       f"{row['robustness_test']:.3f} (95% lower limit {low:.3f}) at eps "
                                       f"{row['eps']:g}, above the overall-risk bound {bound:.3f} with {method} L: "
                                       "that L is too small for this generator"})
    return out
