"""The report's figures (matplotlib, imported lazily); each returns ``(fig, ax)`` (ax: one Axes or an array of
them) for a researcher to restyle. The report writer (``report._figures``) alone turns them into PNG bytes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from intrinsic_robustness.layout import RunLayout
from intrinsic_robustness.registry import Registry
from intrinsic_robustness.report.data import norms_array
from intrinsic_robustness.threat import THREATS, survives

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MARKERS = {"unconstrained": "o", "in-distribution": "s", "certified": "^"}
LINESTYLES = {"per_class": "-", "overall": "--"}


def _plt() -> Any:
    import matplotlib.pyplot as plt  # the backend is the caller's; the report writer picks Agg

    return plt


def _colors(n: int) -> list[Any]:
    cmap = _plt().get_cmap("tab10")
    return [cmap(i % 10) for i in range(n)]


def bound_vs_risk(report: dict[str, Any]) -> tuple[Figure, np.ndarray]:
    """Figure 1: the bound against risk at each eps, every classifier at its natural error."""
    plt = _plt()
    eps = report["eps"]
    classifiers = [c for c in report["classifiers"] if not c.get("missing")]
    max_err = max([c["natural_error"] for c in classifiers] + [0.05])
    x_max = min(1.0, max(0.2, 2.5 * max_err))
    cols = min(len(eps), 3)
    rows = math.ceil(len(eps) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.6 * rows), squeeze=False)
    risk = np.array(report["intrinsic"]["risk"])
    keep = risk <= x_max + 1e-12
    colors = _colors(len(classifiers))
    faint = _near_chance(report)
    for ax, e in zip(axes.flat, eps, strict=False):
        key = f"{e:g}"
        for method, conds in report["intrinsic"]["curves"].items():
            style = _method_style(report, method)
            for cond, table in conds.items():
                kind = "bound" if style["certificate"] else "estimate"
                ax.plot(risk[keep], np.array(table[key])[keep], ls=LINESTYLES.get(cond, ":"),
                        label=f"{kind}, {cond} ({method} L)",
                        color=style["color"], alpha=style["alpha"], lw=style["lw"])
        for color, c in zip(colors, classifiers, strict=True):
            _classifier_points(ax, c, key, color, c["name"] in faint)
        from intrinsic_robustness.report.concentration import draw_concentration

        draw_concentration(ax, report, key)  # nothing without a [concentration] section
        ax.set(
            title=f"eps = {e:g}",
            xlabel="risk (natural error)",
            ylabel="robust accuracy",
            xlim=(0, x_max),
            ylim=(-0.02, 1.02),
        )
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(eps) :]:
        ax.axis("off")
    handles, labels = _legend_entries(axes.flat[0], classifiers, colors, faint)
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=min(4, len(labels)),
        fontsize=8,
        bbox_to_anchor=(0.5, -0.02 - 0.035 * math.ceil(len(labels) / 4)),
    )
    fig.tight_layout()
    return fig, axes


ESTIMATE_GREYS = ("black", "0.35", "0.6", "0.75")


def _method_style(report: dict[str, Any], method: str) -> dict[str, Any]:
    """Certified bounds in green (their own curves), estimates in shades of grey, in the report's order."""
    lip = report["lipschitz"].get(method, {})
    if lip.get("certified"):
        certified = [m for m, v in report["lipschitz"].items() if v.get("certified")]
        shade = ("tab:green", "darkgreen", "limegreen")[certified.index(method) % 3]
        return {"color": shade, "alpha": 1.0, "lw": 2.0, "certificate": bool(lip.get("certificate"))}
    estimates = [m for m, v in report["lipschitz"].items() if not v.get("certified")]
    i = estimates.index(method) if method in estimates else 0
    return {"color": ESTIMATE_GREYS[i % len(ESTIMATE_GREYS)], "alpha": 1.0, "lw": 1.3, "certificate": False}


def _near_chance(report: dict[str, Any]) -> set[str]:
    """Names of classifiers flagged near chance: drawn hollow and faint, apart from the trained ones."""
    from intrinsic_robustness.report.flags import near_chance

    return {f["classifier"] for f in near_chance(report)}


def _point(ax: Any, x: float, y: float, ci: list[float] | None, marker: str, color: Any, faint: bool) -> None:
    """One measured accuracy with its 95% interval as a vertical bar."""
    if ci:
        ax.errorbar([x], [y], yerr=[[y - ci[0]], [ci[1] - y]], fmt="none", ecolor=color, elinewidth=1,
                    capsize=2, alpha=0.4 if faint else 0.8, zorder=2)
    ax.scatter([x], [y], marker=marker, facecolors="none" if faint else color, edgecolors=color if faint else "black",
               alpha=0.5 if faint else 1.0, zorder=3, s=36)


def _classifier_points(ax: Any, c: dict[str, Any], key: str, color: Any, faint: bool = False) -> None:
    x = c["natural_error"]
    cis = c.get("robust_accuracy_ci") or {}
    for threat, acc in c["robust_accuracy"].items():
        if key in acc:
            _point(ax, x, acc[key], (cis.get(threat) or {}).get(key), MARKERS[threat], color, faint)
    if c.get("certified_accuracy") and key in c["certified_accuracy"]:
        ci = (c.get("certified_accuracy_ci") or {}).get(key)
        _point(ax, x, c["certified_accuracy"][key], ci, "^", color, faint)
    for table in (c.get("bound") or {}).values():
        if key in table:
            ax.scatter([x], [table[key]], marker="*", color=color, edgecolor="black", s=110, zorder=4)
            break


def _legend_entries(ax: Any, classifiers: list[dict[str, Any]], colors: list[Any],
                    faint: set[str] = frozenset()) -> tuple[list[Any], list[str]]:
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    for color, c in zip(colors, classifiers, strict=True):
        hollow = c["name"] in faint
        handles.append(Line2D([], [], marker="o", ls="", color=color, markerfacecolor="none" if hollow else color))
        labels.append(f"{c['name']} ({c['method']}){', near chance' if hollow else ''}")
    for name, marker in (
        ("unconstrained", "o"),
        ("in-distribution", "s"),
        ("certified", "^"),
        ("own T1 (bound or estimate, as its L)", "*"),
    ):
        handles.append(Line2D([], [], marker=marker, ls="", color="white", markeredgecolor="black"))
        labels.append(name)
    return handles, labels


def _band(fraction: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise 95% Clopper-Pearson band of a robust-accuracy curve measured on n points."""
    from intrinsic_robustness.stats import clopper_pearson

    bounds = [clopper_pearson(int(round(f * n)), n) for f in fraction]
    return np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])


def robust_vs_eps(report: dict[str, Any]) -> tuple[Figure, np.ndarray]:
    """Figure 2: robust accuracy against eps per classifier, with its T1 bound as a function of eps."""
    plt = _plt()
    classifiers = [c for c in report["classifiers"] if not c.get("missing")]
    eps = np.array(report["eps"])
    grid = np.linspace(0.0, float(eps.max()) * 1.05, 200)
    fig, axes = plt.subplots(1, len(classifiers), figsize=(4.2 * len(classifiers), 3.5), squeeze=False)
    faint = _near_chance(report)
    for ax, c in zip(axes.flat, classifiers, strict=True):
        for threat, norms in c["min_norms"].items():
            arr = norms_array(norms)
            robust = survives(arr[None, :], grid[:, None]).mean(1)
            line = ax.plot(grid, robust, label=f"{threat} (min norms, n = {arr.size}, 95% band)")[0]
            low, high = _band(robust, arr.size)
            ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.15, lw=0)
            pts = c["robust_accuracy"].get(threat, {})
            ax.scatter(
                [float(k) for k in pts],
                list(pts.values()),
                marker=MARKERS[threat],
                color=line.get_color(),
                edgecolor="black",
                zorder=3,
            )
        if c.get("certified_accuracy"):
            cert, cis = c["certified_accuracy"], c.get("certified_accuracy_ci") or {}
            ys = list(cert.values())
            err = [[y - (cis.get(k) or [y, y])[0] for k, y in cert.items()],
                   [(cis.get(k) or [y, y])[1] - y for k, y in cert.items()]]
            ax.errorbar([float(k) for k in cert], ys, yerr=err, marker="^", capsize=2, label="certified (95% CI)")
        for method, table in (c.get("bound") or {}).items():
            style = _method_style(report, method)
            kind = "bound" if style["certificate"] else "estimate"
            ax.plot([float(k) for k in table], list(table.values()), ls="--", color=style["color"],
                    lw=style["lw"] * 0.8, label=f"T1 {kind} ({method} L)")
        ax.set(
            title=f"{c['name']} ({c['method']}){', near chance' if c['name'] in faint else ''}",
            xlabel="eps (L2, [0,1] pixels)",
            ylabel="robust accuracy",
            ylim=(-0.02, 1.02),
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig, axes


def lipschitz_per_class(report: dict[str, Any]) -> tuple[Figure, Axes]:
    """Figure 3: distribution of per-anchor local Lipschitz estimates per class, one box per method."""
    plt = _plt()
    methods = list(report["lipschitz"])
    k = report["num_classes"]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * k * max(1, len(methods))), 3.6))
    width = 0.8 / max(1, len(methods))
    colors = _colors(len(methods))
    for i, method in enumerate(methods):
        lip = report["lipschitz"][method]
        pos = np.arange(k) + (i - (len(methods) - 1) / 2) * width
        box = ax.boxplot(
            [np.array(v, dtype=float) for v in lip["values"]],
            positions=pos,
            widths=width * 0.9,
            patch_artist=True,
            showfliers=True,
            flierprops={"markersize": 2},
        )
        for patch in box["boxes"]:
            patch.set_facecolor(colors[i])
            patch.set_alpha(0.6)
        ax.scatter(pos, lip["lipschitz"], marker="_", s=200, color="black", zorder=3)
        ax.plot([], [], color=colors[i], lw=8, alpha=0.6, label=f"{method} ({lip['percentile']} marked)")
    ax.set(
        xticks=np.arange(k),
        xticklabels=[str(i) for i in range(k)],
        xlabel="class",
        ylabel="local Lipschitz estimate (from below)",
    )
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, ax


def _show(ax: Any, img: np.ndarray) -> None:
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.clip(np.transpose(img, (1, 2, 0)), 0, 1))
    ax.set_xticks([])
    ax.set_yticks([])


def samples(layout: RunLayout, per_class: int, num_classes: int) -> tuple[Figure, np.ndarray] | None:
    """Figure 4a: generated test images, one row per class."""
    from intrinsic_robustness.data.synthetic import load_dataset

    if not layout.manifest_file.is_file():
        return None
    data = load_dataset(layout.dataset_dir, split="test")
    plt = _plt()
    fig, axes = plt.subplots(num_classes, per_class, figsize=(0.75 * per_class, 0.75 * num_classes), squeeze=False)
    for y in range(num_classes):
        idx = (data.labels == y).nonzero().flatten()[:per_class]
        axes[y, 0].set_ylabel(str(y), rotation=0, labelpad=10)
        for j in range(per_class):
            _show(axes[y, j], data.images[idx[j]].numpy()) if j < len(idx) else axes[y, j].axis("off")
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig, axes


def _examples(path: Path, k: int) -> dict[str, Any] | None:
    """Up to ``k`` successful adversarial examples among those evaluation kept (it keeps the first few)."""
    from intrinsic_robustness.storage import load_tensors

    if not path.is_file():
        return None
    t = load_tensors(path)
    if "x" not in t or "x_adv" not in t:
        return None
    m = min(len(t["x"]), len(t["x_adv"]))
    norms = t["min_norms"][:m]
    ok = t["success"][:m].bool() & (norms > 0) & norms.isfinite()
    idx = ok.nonzero().flatten()[:k]
    if len(idx) == 0:
        return None
    return {"x": t["x"][idx], "x_adv": t["x_adv"][idx], "norms": norms[idx]}


def adversarial(layout: RunLayout, report: dict[str, Any], k: int) -> tuple[Figure, np.ndarray] | None:
    """Figure 4b: stored adversarial examples (both threats) under their originals, with their norms."""
    from intrinsic_robustness.evaluation.store import outputs_for

    rows = []
    for c in report["classifiers"]:
        for threat in THREATS:
            found = _examples(outputs_for(layout.eval_file(c["name"], threat))[1], k)
            if found is not None:
                rows.append((c["name"], threat, found))
    if not rows or k == 0:
        return None
    plt = _plt()
    cols = max(len(r[2]["norms"]) for r in rows)
    fig, axes = plt.subplots(2 * len(rows), cols, figsize=(1.0 * cols + 1.5, 2.1 * len(rows)), squeeze=False)
    for r, (name, threat, t) in enumerate(rows):
        axes[2 * r, 0].set_ylabel("original", fontsize=7)
        axes[2 * r + 1, 0].set_ylabel(f"{name}\n{threat}", fontsize=7)
        for j in range(cols):
            if j >= len(t["norms"]):
                axes[2 * r, j].axis("off")
                axes[2 * r + 1, j].axis("off")
                continue
            _show(axes[2 * r, j], t["x"][j].numpy())
            _show(axes[2 * r + 1, j], t["x_adv"][j].numpy())
            axes[2 * r + 1, j].set_title(f"{float(t['norms'][j]):.2f}", fontsize=7)
    fig.tight_layout()
    return fig, axes


# The report's figures, in the order they appear: name -> function(report, layout, settings) -> (fig, ax) or None.
FIGURES: Registry[Any] = Registry("report figure")


def _evaluated(report: dict[str, Any]) -> bool:
    return any(not c.get("missing") for c in report["classifiers"])


FIGURES.register(
    "bound_vs_risk",
    lambda r, lay, s: bound_vs_risk(r) if _evaluated(r) and r["lipschitz"] else None,
    caption="Intrinsic-robustness bound against risk at each eps (solid: every class's error >= risk, T2; "
    "dashed: only the overall risk >= risk, exact worst case). Markers: each classifier at its natural error "
    "with its measured robust accuracy (circle unconstrained, square in-distribution, triangle certified) and "
    "its own T1 bound (star). With a [concentration] section: the concentration estimate from real (plus) and "
    "generated (cross) samples, 1 - held-out adversarial risk at the held-out risk of the fitted region, with its "
    "95% interval: an estimate from samples, not a bound.",
)
FIGURES.register(
    "robust_vs_eps",
    lambda r, lay, s: robust_vs_eps(r) if _evaluated(r) else None,
    caption="Robust accuracy against eps per classifier (lines from per-example minimal norms, markers at the "
    "evaluated eps), with the classifier's T1 bound as a function of eps (dashed).",
)
FIGURES.register(
    "lipschitz",
    lambda r, lay, s: lipschitz_per_class(r) if r["lipschitz"] else None,
    caption="Per-anchor local Lipschitz values per class and method (estimates from below unless the method "
    "is certified); the bar marks the percentile the bounds use.",
)
FIGURES.register(
    "samples",
    lambda r, lay, s: samples(lay, s.get("samples_per_class", 8), r["num_classes"]) if r["num_classes"] else None,
    caption="Generated test images, one row per class.",
)
FIGURES.register(
    "adversarial",
    lambda r, lay, s: adversarial(lay, r, s.get("adversarial_examples", 6)),
    caption="Adversarial examples (lower row, L2 norm above each) under their originals, for each classifier "
    "and threat model.",
)
