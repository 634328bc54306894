"""Markdown and self-contained HTML renderings of a report dictionary (figures inlined as base64 PNG)."""

from __future__ import annotations

import base64
import html
from typing import Any

from intrinsic_robustness.report.concentration import WHAT, concentration_rows


def _caption(name: str) -> str:
    from intrinsic_robustness.report.plots import FIGURES

    return FIGURES.info(name).get("caption", "") if name in FIGURES else ""


def _f(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f}"


def classifier_rows(
    c: dict[str, Any], eps: list[float], limits: dict[str, float] | None = None,
    certified: dict[str, bool] | None = None,
) -> tuple[list[str], list[list[str]]]:
    """One row per eps: measured robust accuracies with 95% intervals, T1 per Lipschitz method, and the gap.

    T1 is a bound only under a certified L (``certified[m]``), otherwise an estimate. An eps beyond min_y L_y r
    (side condition fails) is marked ``*``; "(trivial)" where T1 is clipped at clean accuracy in every class.
    """
    from intrinsic_robustness.threat import eps_key

    limits = limits or {}
    certified = certified or {}
    methods = list(c.get("bound") or {})
    head = ["eps", "unconstrained (95% CI)", "in-distribution (95% CI)", "certified (95% CI)"]
    head += [f"T1 {'bound' if certified.get(m) else 'estimate'} ({m})" for m in methods]
    head += [f"gap ({m})" for m in methods]
    rows = []
    trivial = c.get("bound_trivial") or {}
    ci = c.get("robust_accuracy_ci") or {}
    cert_ci = c.get("certified_accuracy_ci") or {}
    for e in eps:
        k = eps_key(e)
        acc = c["robust_accuracy"]
        best = [acc[t][k] for t in acc if k in acc[t]]
        row = [
            k,
            _ci(acc.get("unconstrained", {}).get(k), ci.get("unconstrained", {}).get(k)),
            _ci(acc.get("in-distribution", {}).get(k), ci.get("in-distribution", {}).get(k)),
            _ci((c.get("certified_accuracy") or {}).get(k), cert_ci.get(k)),
        ]
        row += [_f(c["bound"][m].get(k)) + ("*" if e > limits.get(m, float("inf")) else "")
                + (" (trivial)" if trivial.get(m, {}).get(k) else "") for m in methods]
        row += [_f(c["bound"][m][k] - max(best)) if best and k in c["bound"][m] else "-" for m in methods]
        rows.append(row)
    return head, rows


def _limits(report: dict[str, Any]) -> dict[str, float]:
    return {m: lip["eps_limit"] for m, lip in report["lipschitz"].items()}


def _certified(report: dict[str, Any]) -> dict[str, bool]:
    """Per method, whether its L makes T1 a bound: certified values whose slack holds (a certificate)."""
    return {m: bool(lip.get("certificate", lip.get("certified"))) for m, lip in report["lipschitz"].items()}


def _ci(value: Any, interval: list[float] | None) -> str:
    if value is None:
        return "-"
    return _f(value) if not interval else f"{float(value):.3f} [{interval[0]:.2f}, {interval[1]:.2f}]"


def comparison_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Exact McNemar p-values between classifiers on the same points, one row per pair and threat."""
    table: dict[tuple[str, str, str], dict[str, float]] = {}
    for t in report.get("comparisons") or []:
        table.setdefault((t["a"], t["b"], t["threat"]), {})[t["eps"]] = t["p_value"]
    if not table:
        return [], []
    keys = list(next(iter(table.values())))
    head = ["a", "b", "threat", *(f"p at eps {k}" for k in keys)]
    return head, [[a, b, th, *(f"{v[k]:.3g}" if k in v else "-" for k in keys)] for (a, b, th), v in table.items()]


def _summary(report: dict[str, Any]) -> list[str]:
    gen = report["generator"]
    lines = [
        f"run `{report['run']['name']}`, seed {report['run']['seed']}, {report['num_classes']} classes, "
        f"{report['dataset']['n_train']} train / {report['dataset']['n_test']} test generated images "
        f"of shape {report['dataset']['image_shape']}",
        f"generator: {gen['source']}, fidelity {_f(gen.get('fidelity'))}",
    ]
    if gen.get("frechet_distance") is not None:
        ref, n = gen.get("real_reference") or {}, gen.get("distribution_samples_per_class") or []
        lines.append(f"distribution fidelity vs real test images (reference-CNN features, {min(n, default=0)}+ per "
                     f"class): Frechet distance {_f(gen['frechet_distance'])}, precision {_f(gen.get('precision'))}, "
                     f"recall {_f(gen.get('recall'))}; real train sample of the same size: "
                     f"{_f(ref.get('frechet_distance'))}, {_f(ref.get('precision'))}, {_f(ref.get('recall'))}")
    for method, lip in report["lipschitz"].items():
        values = ", ".join(f"{v:.3g}" for v in lip["lipschitz"])
        basis = lip.get("basis") or f"{method} {lip['percentile']}, radius {lip['radius']:g} (estimate from below)"
        lines.append(f"Lipschitz {method}: {values}; eps limit min L r = {lip['eps_limit']:.3g}. {basis}")
    return lines


def bracket_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per class: each method's L ([0, 1] scale) in bracket order, then per-method ratio summaries."""
    bracket = report.get("lipschitz_bracket")
    if not bracket:
        return [], []
    methods = bracket["methods"]
    head = ["class", *(f"{m} ({report['lipschitz'][m]['percentile']})" for m in methods)]
    rows = [[str(k), *(f"{bracket['values'][m][k]:.3g}" for m in methods)] for k in range(report["num_classes"])]
    ratios = bracket.get("ratio_to_gradient") or {}
    rows.append([f"x {bracket.get('reference') or 'reference'} (median, max over anchors)",
                 *(f"{ratios[m]['median']:.2f}, {ratios[m]['max']:.2f}" if m in ratios else "-" for m in methods)])
    return head, rows


def n_text(c: dict[str, Any]) -> str:
    """``n = N``, naming each threat that attacked only the first M of the N points (``evaluation.threat_n``)."""
    fewer = [f"{t}: first {m}" for t, m in (c.get("threat_n") or {}).items() if m != c["n"]]
    return f"n = {c['n']}" + (f" ({'; '.join(fewer)})" if fewer else "")


def real_line(c: dict[str, Any]) -> str:
    """One sentence: the classifier on real test images (unconstrained), beside its generated-data table."""
    real = c["real"]
    rci, cci = real.get("robust_accuracy_ci") or {}, real.get("certified_accuracy_ci") or {}
    accs = ", ".join(f"{k} {_ci(v, rci.get(k))}" for k, v in real["robust_accuracy"].items())
    cert = real.get("certified_accuracy")
    more = "" if not cert else "; certified " + ", ".join(f"{k} {_ci(v, cci.get(k))}" for k, v in cert.items())
    return (f"On n = {real['n']} real test images (unconstrained; trained on {c.get('data', 'generated')} data; "
            f"95% Clopper-Pearson intervals): natural accuracy "
            f"{_ci(real['natural_accuracy'], real.get('natural_accuracy_ci'))}; robust accuracy at eps {accs}{more}")


def cross_check_lines(c: dict[str, Any]) -> list[str]:
    """One sentence per reference attack run alone (compare_attacks): its robust accuracy against the ensemble's on
    the same examples, and how many examples it broke that the ensemble left robust."""
    lines = []
    for threat, table in (c.get("per_attack") or {}).items():
        for attack, e in table.items():
            ens, missed = e.get("ensemble") or {}, e.get("missed") or {}
            cells = [f"{k}: {v:.3f}" + (f" vs {ens[k]:.3f}" if k in ens else "")
                     + (f", {missed[k]} missed" if k in missed else "") for k, v in e["robust_accuracy"].items()]
            lines.append(f"Cross-check ({threat}): {attack} alone on the first {e['n']} examples, robust accuracy at "
                         f"eps {'; '.join(cells)} (vs: the default ensemble on the same examples; missed: examples "
                         "it left robust that the reference broke)")
    return lines


def markdown(report: dict[str, Any], figures: dict[str, str]) -> str:
    """report.md: summary, flags, one table per classifier, figure links."""
    out = [f"# Intrinsic-robustness report: {report['run']['name']}", ""]
    out += [f"- {line}" for line in _summary(report)] + ["", "## Flags", ""]
    out += [f"- **{f['kind']}**: {f['message']}" for f in report["flags"]] or ["- none"]
    head, rows = bracket_rows(report)
    if rows:
        out += ["", "## Lipschitz bracket", "", f"L per class on the {report['lipschitz_bracket']['scale']} scale; "
                "sampled values are estimates from below, certified ones upper bounds.", ""]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    for c in report["classifiers"]:
        out += ["", f"## {c['name']} ({c['method']})", ""]
        if c.get("missing"):
            out.append("no evaluation results")
            continue
        out.append(
            f"natural accuracy {_ci(c['natural_accuracy'], c.get('natural_accuracy_ci'))} on {n_text(c)} test "
            "examples (95% Clopper-Pearson); robust accuracies are fractions of the examples attacked; T1 is a "
            "bound only where its L is a certificate, an estimate otherwise, clipped at clean accuracy ((trivial) "
            "where the clip binds); gap = T1 - best measured robust accuracy; * marks an eps beyond min L r, where the "
            "bound's side condition fails"
        )
        out.append("")
        head, rows = classifier_rows(c, report["eps"], _limits(report), _certified(report))
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        if c.get("real"):
            out += ["", real_line(c)]
        for line in cross_check_lines(c):
            out += ["", line]
    head, rows = comparison_rows(report)
    if rows:
        out += ["", "## Comparisons", "", "Exact McNemar p-values for robust-or-not on the same test points (small: "
                "the two classifiers really differ; large: the difference is within sampling noise).", ""]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    head, rows = concentration_rows(report)
    if rows:
        out += ["", "## Concentration from data", "", WHAT, ""]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    reasons = report.get("stage_reasons") or {}
    if reasons:
        out += ["", "## Stages redone in the last run", ""] + [f"- `{n}`: {r}" for n, r in reasons.items()]
    out += ["", "## Figures", ""]
    for name, file in figures.items():
        out += [f"![{name}]({file})", "", _caption(name), ""]
    return "\n".join(out) + "\n"


STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 8px;"
    "text-align:right}th{background:#eee}img{max-width:100%}.flag{color:#a40000}figcaption{font-size:90%;"
    "color:#444;margin-bottom:1.5em}"
)


def _table(head: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(x)}</th>" for x in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def html_page(report: dict[str, Any], images: dict[str, bytes]) -> str:
    """report.html: everything in one file, figures as data URIs (no external resources)."""
    esc = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>irob report: {esc(report['run']['name'])}"
        f"</title><style>{STYLE}</style></head><body>",
        f"<h1>Intrinsic-robustness report: {esc(report['run']['name'])}</h1><ul>",
    ]
    parts += [f"<li>{esc(line)}</li>" for line in _summary(report)]
    parts.append("</ul><h2>Flags</h2><ul>")
    parts += [f"<li class='flag'><b>{esc(f['kind'])}</b>: {esc(f['message'])}</li>" for f in report["flags"]]
    parts.append("" if report["flags"] else "<li>none</li>")
    parts.append("</ul>")
    head, rows = bracket_rows(report)
    if rows:
        parts.append("<h2>Lipschitz bracket</h2>" + _table(head, rows))
    for c in report["classifiers"]:
        parts.append(f"<h2>{esc(c['name'])} ({esc(c['method'])})</h2>")
        if c.get("missing"):
            parts.append("<p>no evaluation results</p>")
            continue
        parts.append(
            f"<p>natural accuracy {_ci(c['natural_accuracy'], c.get('natural_accuracy_ci'))} on {esc(n_text(c))} "
            "test examples (95% Clopper-Pearson); T1 is a bound only where its L is a certificate, an estimate "
            "otherwise, clipped at clean accuracy; gap = T1 - best measured robust accuracy; * marks an eps "
            "beyond min L r, where the bound's side condition fails.</p>"
        )
        parts.append(_table(*classifier_rows(c, report["eps"], _limits(report), _certified(report))))
        if c.get("real"):
            parts.append(f"<p>{esc(real_line(c))}</p>")
        parts += [f"<p>{esc(line)}</p>" for line in cross_check_lines(c)]
    head, rows = comparison_rows(report)
    if rows:
        parts.append("<h2>Comparisons (exact McNemar p-values, same test points)</h2>" + _table(head, rows))
    head, rows = concentration_rows(report)
    if rows:
        parts.append(f"<h2>Concentration from data</h2><p>{esc(WHAT)}</p>" + _table(head, rows))
    reasons = report.get("stage_reasons") or {}
    if reasons:
        parts.append("<h2>Stages redone in the last run</h2><ul>"
                     + "".join(f"<li>{esc(n)}: {esc(r)}</li>" for n, r in reasons.items()) + "</ul>")
    parts.append("<h2>Figures</h2>")
    for name, png in images.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f"<figure><img alt='{esc(name)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{esc(_caption(name))}</figcaption></figure>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)
