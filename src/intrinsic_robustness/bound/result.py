"""The bound over a grid of (risk, eps) as one typed, frozen result: what ``api.bound`` returns.

Each row says whether the clip at clean accuracy binds (``trivial``) and whether the theorem's side condition
``eps <= L_y r`` holds; the result says which ``L`` it rests on and so whether it is an estimate or a bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from intrinsic_robustness.bound import _condition, intrinsic_robustness, side_condition_limit, side_condition_ok

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

TRIVIAL_TOL = 1e-12  # a value within this of 1 - risk is the clip itself: the theorem adds nothing there


@dataclass(frozen=True)
class BoundRow:
    """The bound at one (risk, eps): ``trivial`` where it is clipped at 1 - risk; ``side_condition_ok`` is None
    when no radius is known."""

    risk: float
    eps: float
    bound: float
    side_condition_ok: bool | None
    trivial: bool

    def to_dict(self) -> dict[str, Any]:
        """The row as ``irob bound --json`` writes it."""
        return {"risk": self.risk, "eps": self.eps, "bound": self.bound, "side_condition_ok": self.side_condition_ok,
                "trivial": self.trivial}


@dataclass(frozen=True)
class BoundResult:
    """Every (risk, eps) pair's bound (risk-major rows), the per-class L, slack and radius it used, and its basis.

    ``certificate``: True only when L is certified (then ``kind`` is ``bound``, else ``estimate``)."""

    rows: tuple[BoundRow, ...]
    risk: tuple[float, ...]
    eps: tuple[float, ...]
    condition: str
    lipschitz: tuple[float, ...]
    lipschitz_source: str
    basis: str
    certificate: bool = False
    priors: tuple[float, ...] | None = None
    slack: tuple[float, ...] | None = None
    radius: float | None = None
    confidence: float | None = None
    num_classes: int | None = None
    plot: str | None = None

    @property
    def kind(self) -> str:
        """``bound`` when L is certified, ``estimate`` otherwise (an estimate is never called a bound)."""
        return "bound" if self.certificate else "estimate"

    @property
    def values(self) -> np.ndarray:
        """The bound as an array of shape (len(risk), len(eps))."""
        return np.array([r.bound for r in self.rows], dtype=float).reshape(len(self.risk), len(self.eps))

    @property
    def trivial(self) -> np.ndarray:
        """Where the clip at clean accuracy binds, shaped like :attr:`values`."""
        return np.array([r.trivial for r in self.rows], dtype=bool).reshape(len(self.risk), len(self.eps))

    @property
    def side_condition_limit(self) -> float | None:
        """min_y L_y r: the largest eps the theorem covers (None without a radius)."""
        return None if self.radius is None else side_condition_limit(self.lipschitz, self.radius)

    @property
    def violated_eps(self) -> tuple[float, ...]:
        """The eps at which ``eps <= L_y r`` fails for some class (empty when it holds or no radius is known)."""
        return tuple(e for e in self.eps if side_condition_ok(e, self.lipschitz, self.radius) is False)

    @property
    def title(self) -> str:
        """One line: condition, kind, where L came from, its values and the slack."""
        text = f"{self.condition} {self.kind}; L from {self.lipschitz_source}: {_join(self.lipschitz)}"
        return text + (f"; slack {_join(self.slack)}" if self.slack else "")

    def curve(self, risk: Any, eps: Any | None = None) -> np.ndarray:
        """The bound with this result's L, priors, slack and condition at other points: shape (len(risk), len(eps))."""
        eps = self.eps if eps is None else eps
        return np.atleast_2d(intrinsic_robustness(np.asarray(risk, dtype=float)[:, None],
                                                  np.asarray(eps, dtype=float)[None, :], **self._kwargs()))

    def figure(self, points: int = 401) -> tuple[Figure, Axes]:
        """The bound against risk on a fine grid, one line per eps, the table's points marked; (fig, ax)."""
        import matplotlib.pyplot as plt

        grid = np.linspace(0.0, 1.0, points)
        fig, ax = plt.subplots(figsize=(6, 4.2))
        ax.plot(grid, 1 - grid, color="0.6", linestyle="--", linewidth=1, label="1 - risk (eps = 0)")
        for i, (e, line) in enumerate(zip(self.eps, self.curve(grid).T, strict=True)):
            ax.plot(grid, line, label=f"eps = {e:g}")
            ax.scatter(self.risk, self.values[:, i], color="black", s=12, zorder=3)
        ylabel = "upper bound on robustness" if self.certificate else "estimated upper limit on robustness"
        ax.set(xlabel="risk (error of the classifier)", ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.02), title=self.title)
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig, ax

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``irob bound --json`` (lists, not tuples; every key always present)."""
        return {
            "results": [r.to_dict() for r in self.rows], "condition": self.condition,
            "lipschitz": list(self.lipschitz), "lipschitz_source": self.lipschitz_source,
            "priors": _listed(self.priors), "slack": _listed(self.slack), "radius": self.radius,
            "confidence": self.confidence, "basis": self.basis, "certificate": self.certificate, "kind": self.kind,
            "num_classes": self.num_classes, "plot": self.plot,
        }

    def _kwargs(self) -> dict[str, Any]:
        return {"lipschitz": list(self.lipschitz), "priors": _listed(self.priors), "condition": self.condition,
                "slack": _listed(self.slack), "num_classes": self.num_classes}


def tabulate(risk: float | Sequence[float], eps: float | Sequence[float], lipschitz: float | Sequence[float], *,
             lipschitz_source: str, basis: str, certificate: bool = False, priors: Sequence[float] | None = None,
             condition: str = "per_class", slack: Sequence[float] | None = None, num_classes: int | None = None,
             radius: float | None = None, confidence: float | None = None) -> BoundResult:
    """The bound at every (risk, eps) pair with its trivial markers and side-condition flags."""
    risks = [float(r) for r in np.atleast_1d(np.asarray(risk, dtype=float))]
    epss = [float(e) for e in np.atleast_1d(np.asarray(eps, dtype=float))]
    lips = tuple(float(v) for v in np.atleast_1d(np.asarray(lipschitz, dtype=float)))
    values = np.atleast_2d(intrinsic_robustness(np.asarray(risks)[:, None], np.asarray(epss)[None, :], list(lips),
                                                priors=priors, condition=_condition(condition), slack=slack,
                                                num_classes=num_classes))
    side = [side_condition_ok(e, lips, radius) for e in epss]
    rows = tuple(BoundRow(r, e, float(values[i, j]), side[j], bool(values[i, j] >= 1.0 - r - TRIVIAL_TOL))
                 for i, r in enumerate(risks) for j, e in enumerate(epss))
    return BoundResult(rows, tuple(risks), tuple(epss), condition, lips, lipschitz_source, basis, bool(certificate),
                       _tupled(priors), _tupled(slack), None if radius is None else float(radius),
                       None if confidence is None else float(confidence), num_classes)


def _join(values: Sequence[float] | None) -> str:
    return ", ".join(f"{v:.4g}" for v in values or ())


def _tupled(values: Sequence[float] | None) -> tuple[float, ...] | None:
    return None if values is None else tuple(float(v) for v in values)


def _listed(values: Sequence[float] | None) -> list[float] | None:
    return None if values is None else list(values)
