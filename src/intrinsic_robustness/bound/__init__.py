"""Upper bounds on the robustness any classifier can reach on a conditionally generated distribution.

The maths (see ``docs/theory.md``): if class y's images are G(z, y) with z ~ N(0, I) and G(., y) is
L_y-locally Lipschitz, an error set of latent measure a_y grows, under eps-perturbations in image space,
to at least the (eps / L_y)-expansion of that set, whose measure is at least Phi(Phi^{-1}(a_y) + eps / L_y)
by Gaussian isoperimetry. Robustness (1 - adversarial risk) is therefore at most
sum_y p_y Phi(Phi^{-1}(1 - a_y) - eps / L_y).

Everything is numpy with ``scipy.special.ndtr``/``ndtri`` in the forms that keep tail precision:
Phi(Phi^{-1}(1 - a) - c) is evaluated as ndtr(-(ndtri(a) + c)), never as 1 - something.

>>> round(intrinsic_robustness(0.5, 1.0, 1.0), 6)   # Phi(0 - 1)
0.158655
>>> round(intrinsic_robustness(0.1, 0.0, 2.0), 12)  # eps = 0 gives back 1 - risk
0.9
>>> round(max_eps(0.158655, 0.5, 1.0), 4)           # the inverse: eps at which robustness falls to a level
1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

from intrinsic_robustness.errors import UserInputError

CONDITIONS = ("per_class", "overall")
MAX_ENUMERATED_CLASSES = 12  # exact enumeration of the overall worst case visits K * 2^(K-1) vertices
_CHUNK_ELEMENTS = 1 << 20
_FEASIBLE_TOL = 1e-12

ArrayLike = float | Sequence[float] | np.ndarray


# ---------------------------------------------------------------------------------------------- validation
def _show(arr: np.ndarray) -> str:
    flat = np.ravel(arr)
    text = ", ".join(f"{v:.6g}" for v in flat[:6])
    return text + (", ..." if flat.size > 6 else "")


def _array(value: Any, name: str) -> np.ndarray:
    """Float64 array of ``value``; strings, ragged lists and NaN are one-line errors naming ``name``."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserInputError(f"{name}: expected numbers, got {value!r}") from None
    if np.isnan(arr).any():
        raise UserInputError(f"{name} contains NaN; pass real numbers")
    return arr


def _unit_interval(value: Any, name: str) -> np.ndarray:
    arr = _array(value, name)
    bad = (arr < 0) | (arr > 1)
    if bad.any():
        raise UserInputError(f"{name} must lie in [0, 1]; got {_show(arr[bad])}")
    return arr


def _eps_array(value: Any, name: str = "eps") -> np.ndarray:
    arr = _array(value, name)
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        raise UserInputError(f"{name} must be finite and >= 0; got {_show(arr[bad])}")
    return arr


def _per_class(value: Any, name: str) -> np.ndarray | None:
    if value is None:
        return None
    arr = _array(value, name)
    if arr.ndim > 1:
        raise UserInputError(f"{name}: expected a number or one value per class, got shape {arr.shape}")
    if arr.size == 0:
        raise UserInputError(f"{name}: empty list; give one value per class")
    return arr.reshape(-1)


def _condition(condition: str) -> str:
    if condition not in CONDITIONS:
        raise UserInputError(f"condition {condition!r} is unknown; use one of {', '.join(CONDITIONS)}")
    return condition


def _classes(
    lipschitz: Any, priors: Any, slack: Any, num_classes: int | None, need_count: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class (lipschitz, priors, slack) of one length K; scalars broadcast, priors default uniform."""
    lips = _per_class(lipschitz, "lipschitz")
    if lips is None:
        raise UserInputError("lipschitz is required: one value, or one per class")
    if (~np.isfinite(lips) | (lips <= 0)).any():
        raise UserInputError(f"lipschitz must be finite and > 0; got {_show(lips)}")
    prior = _per_class(priors, "priors")
    delta = _per_class(slack, "slack")
    if delta is not None:
        delta = _unit_interval(delta, "slack")
    sizes = {n: a.size for n, a in (("lipschitz", lips), ("slack", delta)) if a is not None and a.size > 1}
    if prior is not None:
        sizes["priors"] = prior.size
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 1:
            raise UserInputError(f"num_classes must be a positive integer; got {num_classes!r}")
        sizes["num_classes"] = int(num_classes)
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{n}={k}" for n, k in sizes.items())
        raise UserInputError(f"per-class lists have different lengths ({listed}); give one value per class")
    if not sizes and need_count:
        raise UserInputError(
            "condition='overall' needs the number of classes: pass num_classes "
            "(--num-classes) or per-class lipschitz/priors"
        )
    k = next(iter(sizes.values())) if sizes else 1
    if prior is None:
        prior = np.full(k, 1.0 / k)
    elif (prior < 0).any() or abs(prior.sum() - 1.0) > 1e-6:
        raise UserInputError(
            f"priors must be >= 0 and sum to 1 (within 1e-6); got {_show(prior)} summing to {prior.sum():.8g}"
        )
    prior = prior / prior.sum()
    delta = np.zeros(k) if delta is None else np.broadcast_to(delta, (k,)).copy()
    return np.broadcast_to(lips, (k,)).copy(), prior, delta


def _broadcast(a: np.ndarray, b: np.ndarray, names: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        return tuple(np.broadcast_arrays(a, b))  # type: ignore[return-value]
    except ValueError:
        raise UserInputError(f"{names}: shapes {a.shape} and {b.shape} do not broadcast") from None


def _result(value: np.ndarray, clip: bool = True) -> float | np.ndarray:
    """Python float for 0-d results, else the array; a NaN here is a bug and is never returned."""
    if np.isnan(value).any():
        raise FloatingPointError("intrinsic_robustness.bound produced NaN; please report the inputs")
    if clip:
        value = np.clip(value, 0.0, 1.0)
    return float(value) if value.ndim == 0 else value


# ------------------------------------------------------------------------------------------ per-class terms
def robust_term(error: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Phi(Phi^{-1}(1 - error) - shift) as ndtr(-(ndtri(error) + shift)); exact at error 0 or 1, shift inf."""
    with np.errstate(invalid="ignore"):
        value = ndtr(-(ndtri(error) + shift))
    return np.where(error <= 0, 1.0, np.where(error >= 1, 0.0, value))


def adversarial_term(error: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Phi(Phi^{-1}(error) + shift): least measure of the shift-expansion of a set of measure ``error``."""
    with np.errstate(invalid="ignore"):
        value = ndtr(ndtri(error) + shift)
    return np.where(error <= 0, 0.0, np.where(error >= 1, 1.0, value))


def _per_class_core(
    risk: np.ndarray,
    eps: np.ndarray,
    lips: np.ndarray,
    prior: np.ndarray,
    delta: np.ndarray,
    adversarial: bool = False,
) -> np.ndarray:
    shift = eps[..., None] / lips
    error = risk[..., None]
    if adversarial:  # never below the error itself: the expansion of the error set contains it
        terms = np.maximum(error, adversarial_term(error, shift) - delta)
    else:  # never above 1 - error: robust accuracy cannot exceed clean accuracy (the trivial bound)
        terms = np.minimum(1.0 - error, robust_term(error, shift) + delta)
    return (terms * prior).sum(axis=-1)


# -------------------------------------------------------------------------------- overall-risk worst case
def _subset_masks(k: int) -> np.ndarray:
    """All 2^k subsets of the classes as a boolean (2^k, k) array."""
    index = np.arange(1 << k)
    return ((index[:, None] >> np.arange(k)) & 1).astype(bool)


def _overall_enumerate(
    risk: np.ndarray, eps: np.ndarray, lips: np.ndarray, prior: np.ndarray, adversarial: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact worst case over the vertices (S wrong, j partly wrong, the rest right) of {p.a = risk}.

    Returns the best value per point (largest robustness, or least adversarial risk) and the free class
    and subset index attaining it. Flat 1-D inputs.
    """
    k = prior.size
    masks = _subset_masks(k)
    p_wrong = masks @ prior
    best = np.full(risk.shape, -np.inf)
    arg_j, arg_s = np.zeros(risk.shape, dtype=int), np.zeros(risk.shape, dtype=int)
    for j in np.flatnonzero(prior > 0):
        subsets = np.flatnonzero(~masks[:, j])
        p_s = p_wrong[subsets]
        others = ~masks[subsets] & (np.arange(k) != j)
        p_side = p_s if adversarial else others @ prior
        step = max(1, _CHUNK_ELEMENTS // subsets.size)
        for lo in range(0, risk.size, step):
            r, e = risk[lo : lo + step, None], eps[lo : lo + step, None]
            gap = r - p_s
            feasible = (gap >= -_FEASIBLE_TOL) & (gap <= prior[j] + _FEASIBLE_TOL)
            t = np.clip(gap / prior[j], 0.0, 1.0)
            term = (adversarial_term if adversarial else robust_term)(t, e / lips[j])
            value = p_side + prior[j] * term
            value = np.where(feasible, -value if adversarial else value, -np.inf)
            pick = value.argmax(axis=1)
            top = value[np.arange(value.shape[0]), pick]
            better = top > best[lo : lo + step]
            best[lo : lo + step] = np.where(better, top, best[lo : lo + step])
            arg_j[lo : lo + step] = np.where(better, j, arg_j[lo : lo + step])
            arg_s[lo : lo + step] = np.where(better, subsets[pick], arg_s[lo : lo + step])
    return (-best if adversarial else best), arg_j, arg_s


def _equal_priors(prior: np.ndarray) -> bool:
    return bool(np.ptp(prior) <= 1e-12)


def _overall_equal_priors(
    risk: np.ndarray, eps: np.ndarray, lips: np.ndarray, adversarial: bool = False
) -> np.ndarray:
    """Equal priors in closed form: ceil(K risk) - 1 classes always wrong, the remainder on argmax L."""
    k = lips.size
    scaled = risk * k
    wrong = np.maximum(np.ceil(scaled) - 1, 0)
    t = np.clip(scaled - wrong, 0.0, 1.0)
    shift = eps / lips.max()
    if adversarial:
        return (wrong + adversarial_term(t, shift)) / k
    return ((k - wrong - 1) + robust_term(t, shift)) / k


def _overall_core(
    risk: np.ndarray,
    eps: np.ndarray,
    lips: np.ndarray,
    prior: np.ndarray,
    delta: np.ndarray,
    adversarial: bool = False,
) -> np.ndarray:
    """Worst case over allocations with sum p_y a_y = risk; slack enters once as sum p_y delta_y."""
    if _equal_priors(prior):
        value = _overall_equal_priors(risk, eps, lips, adversarial)
    elif prior.size <= MAX_ENUMERATED_CLASSES:
        flat, _, _ = _overall_enumerate(risk.ravel(), eps.ravel(), lips, prior, adversarial)
        value = flat.reshape(risk.shape)
    else:
        raise UserInputError(
            f"condition='overall' with {prior.size} classes and unequal priors needs an exact "
            f"search over 2^{prior.size} allocations; supported up to {MAX_ENUMERATED_CLASSES} "
            "classes (use equal priors or condition='per_class')"
        )
    total_slack = float(delta @ prior)  # clipped at the trivial bound (risk / 1 - risk), as per class
    return np.maximum(risk, value - total_slack) if adversarial else np.minimum(1.0 - risk, value + total_slack)


def _core(
    risk: np.ndarray,
    eps: np.ndarray,
    lips: np.ndarray,
    prior: np.ndarray,
    delta: np.ndarray,
    condition: str,
    adversarial: bool = False,
) -> np.ndarray:
    fn = _per_class_core if condition == "per_class" else _overall_core
    return fn(risk, eps, lips, prior, delta, adversarial)


# ------------------------------------------------------------------------------------------------ public API
def intrinsic_robustness(
    risk: ArrayLike,
    eps: ArrayLike,
    lipschitz: ArrayLike,
    priors: ArrayLike | None = None,
    condition: str = "per_class",
    slack: ArrayLike | None = None,
    num_classes: int | None = None,
) -> float | np.ndarray:
    """Upper bound on the robustness (1 - adversarial risk) of any classifier with error at least ``risk``.

    ``condition="per_class"`` (T2): every class's error is >= risk. ``"overall"``: only the overall risk
    is >= risk; the exact worst case over allocations of that error across classes (never below T2).
    ``risk`` and ``eps`` broadcast; ``lipschitz``, ``priors`` and ``slack`` are scalars or per class.

    >>> round(intrinsic_robustness(0.2, 0.5, [1.0, 2.0]), 6)
    0.678315
    >>> per_class = intrinsic_robustness(0.3, 1.0, 1.0, num_classes=10)
    >>> overall = intrinsic_robustness(0.3, 1.0, 1.0, condition="overall", num_classes=10)
    >>> round(overall, 6), bool(overall >= per_class)   # 3 classes always wrong, 7 always right
    (0.7, True)
    """
    cond = _condition(condition)
    r, e = _broadcast(_unit_interval(risk, "risk"), _eps_array(eps), "risk and eps")
    lips, prior, delta = _classes(lipschitz, priors, slack, num_classes, need_count=cond == "overall")
    return _result(_core(r, e, lips, prior, delta, cond))


def adversarial_risk_lower_bound(
    risk: ArrayLike,
    eps: ArrayLike,
    lipschitz: ArrayLike,
    priors: ArrayLike | None = None,
    condition: str = "per_class",
    slack: ArrayLike | None = None,
    num_classes: int | None = None,
) -> float | np.ndarray:
    """Least in-distribution adversarial risk (complement of :func:`intrinsic_robustness`), computed directly.

    Small values keep their relative precision: with risk = 1e-30 the answer is not 1 - (1 - tiny).

    >>> round(adversarial_risk_lower_bound(0.5, 1.0, 1.0), 6)
    0.841345
    """
    cond = _condition(condition)
    r, e = _broadcast(_unit_interval(risk, "risk"), _eps_array(eps), "risk and eps")
    lips, prior, delta = _classes(lipschitz, priors, slack, num_classes, need_count=cond == "overall")
    return _result(_core(r, e, lips, prior, delta, cond, adversarial=True))


def classifier_bound(
    class_errors: ArrayLike,
    eps: ArrayLike,
    lipschitz: ArrayLike,
    priors: ArrayLike | None = None,
    slack: ArrayLike | None = None,
) -> float | np.ndarray:
    """T1: robustness bound of one classifier with measured per-class errors; the result has eps's shape.

    >>> round(classifier_bound([0.5, 0.0], 1.0, 1.0), 6)   # (Phi(-1) + 1) / 2
    0.579328
    """
    errors = _per_class(_unit_interval(class_errors, "class_errors"), "class_errors")
    e = _eps_array(eps)
    lips, prior, delta = _classes(lipschitz, priors, slack, errors.size)
    return _result((_classifier_terms(errors, e, lips, delta) * prior).sum(axis=-1))


def _classifier_terms(errors: np.ndarray, eps: np.ndarray, lips: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Per-class T1 terms, each clipped at clean accuracy 1 - alpha_y (robust accuracy never exceeds it)."""
    return np.minimum(1.0 - errors, robust_term(errors, eps[..., None] / lips) + delta)


def classifier_bound_trivial(
    class_errors: ArrayLike,
    eps: ArrayLike,
    lipschitz: ArrayLike,
    priors: ArrayLike | None = None,
    slack: ArrayLike | None = None,
) -> np.ndarray:
    """Per eps, whether T1 says nothing beyond clean accuracy: every class term with mass is clipped at 1 - alpha_y.

    >>> bool(classifier_bound_trivial([0.1, 0.1], 0.01, 1.0, slack=0.05))
    True
    >>> bool(classifier_bound_trivial([0.1], 3.0, 1.0))
    False
    """
    errors = _per_class(_unit_interval(class_errors, "class_errors"), "class_errors")
    e = _eps_array(eps)
    lips, prior, delta = _classes(lipschitz, priors, slack, errors.size)
    raw = robust_term(errors, e[..., None] / lips) + delta
    binds = (raw >= 1.0 - errors) | (prior <= 0)
    return np.asarray(binds.all(axis=-1))


def worst_case_allocation(
    risk: float,
    eps: float,
    lipschitz: ArrayLike,
    priors: ArrayLike | None = None,
    num_classes: int | None = None,
) -> np.ndarray:
    """Per-class errors (sum p_y a_y = risk) that make the overall-condition bound as large as it gets.

    >>> worst_case_allocation(0.25, 1.0, 1.0, num_classes=4).tolist()
    [1.0, 0.0, 0.0, 0.0]
    """
    r, e = _unit_interval(risk, "risk"), _eps_array(eps)
    if r.ndim or e.ndim:
        raise UserInputError("worst_case_allocation takes a scalar risk and a scalar eps")
    lips, prior, _ = _classes(lipschitz, priors, None, num_classes, need_count=True)
    k = prior.size
    if _equal_priors(prior):
        free = int(np.argmax(lips))
        wrong = int(max(np.ceil(float(r) * k) - 1, 0))
        errors = np.zeros(k)
        errors[[c for c in range(k) if c != free][:wrong]] = 1.0
        errors[free] = np.clip(float(r) * k - wrong, 0.0, 1.0)
        return errors
    _overall_core(r, e, lips, prior, np.zeros(k))  # raises the clear error beyond the enumeration limit
    _, arg_j, arg_s = _overall_enumerate(r.reshape(1), e.reshape(1), lips, prior)
    j, s = int(arg_j[0]), int(arg_s[0])
    errors = _subset_masks(k)[s].astype(float)
    errors[j] = np.clip((float(r) - errors @ prior) / prior[j], 0.0, 1.0)
    return errors


def max_eps(
    level: ArrayLike,
    risk: ArrayLike,
    lipschitz: ArrayLike,
    priors: ArrayLike | None = None,
    condition: str = "per_class",
    slack: ArrayLike | None = None,
    num_classes: int | None = None,
) -> float | np.ndarray:
    """Largest eps at which the bound is still >= ``level`` (+inf when it never drops below ``level``).

    One Lipschitz constant and no slack: closed form L (Phi^{-1}(1 - level) - Phi^{-1}(risk)); otherwise
    a vectorised bisection on the (continuous, non-increasing) bound.

    >>> round(max_eps(0.5, 0.1, 2.0), 6)   # 2 * (0 - Phi^{-1}(0.1))
    2.563103
    """
    cond = _condition(condition)
    lv, r = _broadcast(_unit_interval(level, "level"), _unit_interval(risk, "risk"), "level and risk")
    lips, prior, delta = _classes(lipschitz, priors, slack, num_classes, need_count=cond == "overall")
    at_zero = _core(r, np.zeros_like(r), lips, prior, delta, cond)
    short = at_zero < lv - 1e-12
    if short.any():
        raise UserInputError(
            f"level {_show(lv[short])} is above the bound at eps = 0 ({_show(at_zero[short])}); "
            "no eps >= 0 reaches it: lower the level or the risk"
        )
    if cond == "per_class" and np.ptp(lips) == 0 and not delta.any():
        with np.errstate(invalid="ignore"):
            closed = lips[0] * (-ndtri(lv) - ndtri(r))
        closed = np.where((lv <= 0) | (r <= 0), np.inf, np.maximum(closed, 0.0))
        return _result(closed, clip=False)
    at_inf = _core(r, np.full_like(r, np.inf), lips, prior, delta, cond)
    result = np.full(r.shape, np.inf)
    finite = at_inf < lv
    result[finite] = _bisect(lv[finite], r[finite], lips, prior, delta, cond)
    return _result(result, clip=False)


def _bisect(
    level: np.ndarray,
    risk: np.ndarray,
    lips: np.ndarray,
    prior: np.ndarray,
    delta: np.ndarray,
    condition: str,
    iterations: int = 200,
) -> np.ndarray:
    """Boundary of {eps : bound(eps) >= level} for points whose bound drops below ``level`` (1-D arrays)."""

    def above(eps: np.ndarray) -> np.ndarray:
        return _core(risk, eps, lips, prior, delta, condition) >= level

    lo, hi = np.zeros_like(risk), np.full_like(risk, lips.max())
    for _ in range(80):
        grow = above(hi)
        if not grow.any():
            break
        lo, hi = np.where(grow, hi, lo), np.where(grow, hi * 2, hi)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if not ((mid > lo) & (mid < hi)).any():
            break
        ok = above(mid)
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return np.where(above(hi), np.nan, lo)


def side_condition_limit(lipschitz: Any, radius: float) -> float:
    """The largest eps the theorems cover: min_y L_y * r (they need eps <= L_y r for every class y)."""
    return float(np.min(np.asarray(lipschitz, dtype=float))) * float(radius)


def side_condition_ok(eps: float, lipschitz: Any, radius: float | None) -> bool | None:
    """Whether eps <= L_y r holds for every class (None when no radius is known)."""
    if radius is None:
        return None
    return float(eps) <= side_condition_limit(lipschitz, radius)
