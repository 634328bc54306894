"""In-distribution attack: search z' for a misclassified decode(z', y) close to x = decode(z, y) in image space.

Every step is measured in image units, so the answer does not depend on how a generator scales its latent.
At the stored latent z0 we compute each example's Jacobian J of decode(., y) (one double-backward pass of
latent_dim rows) and keep the damped metric M = V diag(s~^2) V^T, where J^T J = V diag(s^2) V^T and
s~ = max(s, damping * s_max), together with its inverse P. A latent step dz then moves the image by about
sqrt(dz^T M dz), and P turns a latent gradient into the image-space steepest direction (Gauss-Newton). Rescaling
the latent (or the generator's gain) rescales J, M and P and leaves every image-space step unchanged.

``search_steps`` searches of ``num_steps`` steps each, every one started from z0, keep the smallest verified
adversarial distance:

* boundary searches (the first untargeted, the others targeted at the second, third, ... most likely other
  class; the untargeted search nearly always ends at the most likely one): a damped Gauss-Newton SQP step on
  min ||decode(z) - x||^2 s.t. margin(z) <= t. The distance part moves a fraction ``step_fraction`` of the
  Gauss-Newton step, the margin part lands on the linearised boundary shifted by an overshoot ``t`` (a fraction
  ``overshoot`` of the distance, cosine-decayed to almost 0), and a trust region caps the step at ``trust``
  times the current distance scale;
* the last search (when ``search_steps`` >= 2): the paper's penalty ||decode(z) - x||^2 + c max(margin, 0)
  minimised by Adam in whitened coordinates (dz = V diag(1/s~) dw), with c set from the linearised boundary
  at z0 and a learning rate ``lr`` relative to the first-order distance estimate (cosine-decayed to
  ``final_lr``). Its small momentum steps find other local optima than the boundary searches on
  piecewise-linear networks. It takes 3 * num_steps steps (each costs one gradient instead of two).

* with ``paper_search`` (the default), the paper's own procedure last: C&W on z from z0 (Adam, lr 0.01,
  4 binary-search steps of 100 iterations on the constant, starting at 1, the best iterate kept), so the
  result is never larger than the paper's from the same latents on any example; it roughly doubles the cost
  (``paper_search=False`` drops it).

A bisection on the latent segment from z0 to the best point ends the attack. Everything is per example (the
Jacobian is computed one example at a time, small batches are padded to MIN_ROWS rows, matrix-vector products
are row-wise reductions, the optimiser state is element-wise, no randomness is drawn), so an example gives the
same answer alone or in any batch, to float rounding of the template's own final check.

:func:`invert_latents` recovers latents for external images with Adam whose latent step is an image-unit rate
divided by the Jacobian's RMS singular value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from intrinsic_robustness.attacks.base import Attack, AttackContext, cosine_schedule, frozen, margin, per_example_randn
from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.runtime import derive_seed, make_generator
from intrinsic_robustness.threat import l2_norm

_TINY = 1e-30
# The penalty search's steps per ``num_steps``: one gradient each, against two per boundary-search step.
PENALTY_STEPS_PER_SEARCH_STEP = 3
# Networks never see fewer rows than this (small batches are padded): on CPU, matrix products round rows of
# batches below 4 differently from larger ones, and the nonsmooth searches amplify such differences into
# per-example answers that depend on the batch. Measured bitwise-equal rows for batch sizes 4 to 128.
MIN_ROWS = 8


@dataclass(frozen=True)
class LatentMetric:
    """Per-example damped Gauss-Newton metric of the generator: image length of dz is sqrt(dz^T M dz)."""

    metric: torch.Tensor      # M, [n, d, d]
    inverse: torch.Tensor     # P = M^-1, [n, d, d]
    whiten: torch.Tensor      # T with T T^T = P: a unit step in w = image-unit step in z = T w, [n, d, d]

    def length(self, dz: torch.Tensor) -> torch.Tensor:
        return (dz * _bmv(self.metric, dz)).sum(1).clamp_min(0).sqrt()


def _bmv(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Per-example matrix-vector product (a row-wise reduction: batched matmul rounds by batch size)."""
    return (a * v.unsqueeze(1)).sum(dim=2)


def _by_rows(fn, *tensors: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """``fn`` on the rows, padded with copies of row 0 to at least MIN_ROWS; outputs cut back to the rows."""
    n = len(next(t for t in tensors if t is not None))
    if n >= MIN_ROWS:
        return tuple(fn(*tensors))
    pad = MIN_ROWS - n
    padded = [None if t is None else torch.cat([t, t[:1].expand(pad, *t.shape[1:])]) for t in tensors]
    return tuple(out[:n] for out in fn(*padded))


# Latent directions differentiated per pass: one pass up to ONE_PASS (the ACGAN's 100), else chunks of
# JACOBIAN_CHUNK, so a 784-dimensional latent through an ODE sampler stays within memory.
ONE_PASS = 128
JACOBIAN_CHUNK = 32


def _jacobian_rows(generator: nn.Module, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """J^T of decode(., y) at one latent z [d] as a [d, pixels] matrix (row k = J e_k), in chunks of directions.

    Double backward where the generator supports it, else central differences (a preconditioner needs no more).
    """
    d = z.shape[0]
    step = d if d <= ONE_PASS else int(getattr(generator, "jacobian_chunk", JACOBIAN_CHUNK))
    eye = torch.eye(d, device=z.device, dtype=z.dtype)
    if d > ONE_PASS:  # forward mode: one pass per chunk instead of three (1.6x faster through the flow sampler)
        try:
            return torch.cat([_tangents_for(generator, z, y, eye[k:k + step]) for k in range(0, d, step)])
        except (RuntimeError, NotImplementedError):  # an operation without a forward-mode formula
            pass
    return torch.cat([_rows_for(generator, z, y, eye[k:k + step]) for k in range(0, d, step)])


def _tangents_for(generator: nn.Module, z: torch.Tensor, y: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """J e for each row e of ``directions`` [c, d] by forward-mode differentiation (no graph is kept)."""
    import torch.autograd.forward_ad as fwd

    c = directions.shape[0]
    with torch.no_grad(), fwd.dual_level():
        out = generator.decode(fwd.make_dual(z.expand(c, -1).contiguous(), directions), y.expand(c))
        tangent = fwd.unpack_dual(out).tangent
    if tangent is None:  # the output does not depend on z (or the generator dropped the tangent)
        raise RuntimeError("no forward-mode tangent")
    return tangent.flatten(1)


def _rows_for(generator: nn.Module, z: torch.Tensor, y: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """J e for each row e of ``directions`` [c, d]."""
    c = directions.shape[0]
    zz = z.expand(c, -1).clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            out = generator.decode(zz, y.expand(c))
            cot = torch.zeros_like(out, requires_grad=True)
            (vjp,) = torch.autograd.grad(out, zz, cot, create_graph=True)
            (rows,) = torch.autograd.grad(vjp, cot, directions)
        return rows.flatten(1)
    except RuntimeError:
        rms = float(z.pow(2).mean().sqrt())
        h = 1e-3 * (rms if rms > 0 else 1.0)
        with torch.no_grad():
            plus = generator.decode(z + h * directions, y.expand(c)).flatten(1)
            minus = generator.decode(z - h * directions, y.expand(c)).flatten(1)
        return (plus - minus) / (2 * h)


def latent_metric(generator: nn.Module, z: torch.Tensor, y: torch.Tensor, damping: float = 0.2) -> LatentMetric:
    """The damped metric at each latent (singular values floored at ``damping`` times the largest)."""
    parts = [_metric_one(_jacobian_rows(generator, z[i], y[i:i + 1]), damping) for i in range(len(z))]
    return LatentMetric(*(torch.stack(p).to(z.dtype) for p in zip(*parts, strict=True)))


def _metric_one(rows: torch.Tensor, damping: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """M, M^-1 and T (T T^T = M^-1) from one example's Jacobian rows, in float64 (one example at a time)."""
    evals, vecs = torch.linalg.eigh((rows @ rows.T).double())
    evals = evals.clamp_min(0)
    evals = torch.maximum(evals, (damping ** 2) * evals.max()).clamp_min(_TINY)
    return (vecs * evals) @ vecs.T, (vecs / evals) @ vecs.T, vecs / evals.sqrt()


class _Best:
    """Per-example smallest adversarial distance seen so far and its latent."""

    def __init__(self, z0: torch.Tensor) -> None:
        self.z = z0.clone()
        self.dist = torch.full((len(z0),), float("inf"), device=z0.device)

    def update(self, z: torch.Tensor, dist: torch.Tensor, wrong: torch.Tensor) -> None:
        better = wrong & torch.isfinite(dist) & (dist < self.dist)
        self.dist = torch.where(better, dist, self.dist)
        self.z = torch.where(better[:, None], z.detach(), self.z)


class LatentAttack(Attack):
    """Minimal in-distribution L2 norms: Gauss-Newton boundary searches plus a whitened penalty search."""

    name = "latent"
    threat = "in-distribution"

    def __init__(self, generator: nn.Module, search_steps: int = 3, num_steps: int = 50, lr: float = 0.2,
                 final_lr: float = 0.01, damping: float = 0.2, step_fraction: float = 0.3,
                 final_step_fraction: float = 0.05, overshoot: float = 0.05, final_overshoot: float = 1e-5,
                 trust: float = 0.3, penalty_slack: float = 0.05, line_search_steps: int = 10,
                 paper_search: bool = True) -> None:
        positive = (search_steps >= 1, num_steps >= 1, lr > 0, final_lr > 0, trust > 0, line_search_steps >= 0)
        fractions = (0 < damping <= 1, 0 < step_fraction <= 1, 0 < final_step_fraction <= 1,
                     0 <= final_overshoot <= overshoot < 1, penalty_slack >= 0)
        if not all(positive) or not all(fractions):
            raise UserInputError(f"latent: bad options (search_steps={search_steps}, num_steps={num_steps}, lr={lr}, "
                                 f"damping={damping}, step_fraction={step_fraction}, overshoot={overshoot}, "
                                 f"trust={trust}); need positive counts and steps, fractions in (0, 1]")
        self.generator = generator
        self.search_steps, self.num_steps = int(search_steps), int(num_steps)
        self.line_search_steps = int(line_search_steps)
        self.lr, self.final_lr, self.damping, self.trust = float(lr), float(final_lr), float(damping), float(trust)
        self.step_fraction, self.final_step_fraction = float(step_fraction), float(final_step_fraction)
        self.overshoot, self.final_overshoot = float(overshoot), float(final_overshoot)
        self.penalty_slack = float(penalty_slack)
        self.paper_search = bool(paper_search)

    def modules(self) -> list[nn.Module]:
        return [self.generator] if isinstance(self.generator, nn.Module) else []

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.generator.decode(z, y)

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                ctx: AttackContext) -> tuple[torch.Tensor, torch.Tensor]:
        assert ctx.z is not None
        z0 = ctx.z.detach()
        metric = latent_metric(self.generator, z0, y, self.damping)
        best = _Best(z0)
        with torch.no_grad():
            (logits,) = _by_rows(lambda xs: (model(xs),), x)
        # The untargeted search almost always ends at the most likely other class: target the next ones.
        others = logits.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)[:, 1:-1]
        boundary = self.search_steps - 1 if self.search_steps >= 2 else 1
        for s in range(min(boundary, others.shape[1] + 1)):
            self._boundary_search(model, x, y, z0, metric, None if s == 0 else others[:, s - 1], best)
        if self.search_steps >= 2:
            self._penalty_search(model, x, y, z0, metric, best)
        if self.paper_search:
            self._paper_cw(model, x, y, z0, best)
        found = torch.isfinite(best.dist)
        z_adv = best.z
        if self.line_search_steps and found.any():
            z_adv = self._line_search(model, x, y, z0, z_adv, found)
        with torch.no_grad():
            return self.decode(z_adv, y), z_adv

    def _gradients(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor,
                   target: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """Margin, image offset u = decode(z) - x, wrong flags and the latent gradients of margin and |u|^2/2."""
        return _by_rows(lambda *rows: self._gradients_rows(model, *rows), x, y, z, target)

    def _gradients_rows(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor,
                        target: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        zz = z.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            xz = self.decode(zz, y)
            logits = model(xz)
            m = margin(logits, y, target)
            (grad_m,) = torch.autograd.grad(m.sum(), zz, retain_graph=True)
            u = (xz - x).detach()
            (grad_d,) = torch.autograd.grad(xz, zz, u)
        return m.detach(), u, logits.argmax(dim=1) != y, grad_m, grad_d

    def _boundary_search(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, z0: torch.Tensor,
                         metric: LatentMetric, target: torch.Tensor | None, best: _Best) -> None:
        """Damped Gauss-Newton SQP from z0 towards the (target's) decision boundary, tracking the best point."""
        z = z0.clone()
        for k in range(self.num_steps):
            m, u, wrong, grad_m, grad_d = self._gradients(model, x, y, z, target)
            with torch.no_grad():
                dist = l2_norm(u)
                best.update(z, dist, wrong)
                z = z + self._sqp_step(metric, m, dist, grad_m, grad_d, best.dist, k)
        best.update(z, *self._evaluate(model, x, y, z))

    @torch.no_grad()
    def _evaluate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image distance of decode(z) to x and whether it is misclassified."""
        def rows(xs: torch.Tensor, ys: torch.Tensor, zs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            xz = self.decode(zs, ys)
            return l2_norm(xz - xs), model(xz).argmax(dim=1) != ys
        return _by_rows(rows, x, y, z)

    def _sqp_step(self, metric: LatentMetric, m: torch.Tensor, dist: torch.Tensor, grad_m: torch.Tensor,
                  grad_d: torch.Tensor, best_dist: torch.Tensor, k: int) -> torch.Tensor:
        """Latent step: a fraction of the distance descent plus a landing on the shifted linearised boundary."""
        frac = cosine_schedule(self.step_fraction, self.final_step_fraction, k, self.num_steps)
        over = cosine_schedule(self.overshoot, self.final_overshoot, k, self.num_steps)
        pm, pd = _bmv(metric.inverse, grad_m), _bmv(metric.inverse, grad_d)
        a = (grad_m * pm).sum(1)
        ok = torch.isfinite(a) & (a > _TINY)
        a = torch.where(ok, a, torch.ones_like(a))
        reach = torch.maximum(dist, m.clamp_min(0) / a.sqrt())  # distance scale: current or first-order estimate
        t = -over * reach * a.sqrt()
        lam = ((m - t - frac * (grad_m * pd).sum(1)) / a).clamp_min(0)
        step = -(frac * pd + lam[:, None] * pm)
        cap = self.trust * torch.maximum(reach, torch.where(torch.isfinite(best_dist), best_dist, 0.0))
        length = metric.length(step)
        step = step * torch.where(length > cap, cap / length.clamp_min(_TINY), 1.0)[:, None]
        return torch.where((ok & torch.isfinite(step).all(dim=1))[:, None], step, 0.0)

    def _penalty_search(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, z0: torch.Tensor,
                        metric: LatentMetric, best: _Best) -> None:
        """Adam on |decode(z) - x|^2 + c max(margin, 0) in whitened coordinates, c and scale from z0."""
        m0, _, _, grad_m, _ = self._gradients(model, x, y, z0, None)
        a = (grad_m * _bmv(metric.inverse, grad_m)).sum(1)
        ok = torch.isfinite(a) & (a > _TINY) & (m0 > 0)
        a = torch.where(ok, a, torch.ones_like(a))
        const = torch.where(ok, 2 * (1 + self.penalty_slack) * m0 / a, 0.0)  # linearised KKT multiplier of |u|^2
        scale = torch.where(ok, m0 / a.sqrt(), 0.0) / z0.shape[1] ** 0.5   # first-order distance per coordinate
        w = torch.zeros_like(z0)
        adam = _Adam(w)
        steps = PENALTY_STEPS_PER_SEARCH_STEP * self.num_steps
        for k in range(steps):
            grad, z, dist, wrong = _by_rows(lambda *rows: self._penalty_rows(model, *rows), x, y, z0,
                                            metric.whiten, const, w)
            with torch.no_grad():
                best.update(z, dist, wrong)
                lr = cosine_schedule(self.lr, self.final_lr, k, steps)
                w = adam.step(w, grad, lr * scale)

    def _penalty_rows(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, z0: torch.Tensor,
                      whiten: torch.Tensor, const: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Gradient of the penalty in whitened coordinates w, the latent z0 + T w, its distance and flags."""
        ww = w.clone().requires_grad_(True)
        with torch.enable_grad():
            z = z0 + _bmv(whiten, ww)
            xz = self.decode(z, y)
            logits = model(xz)
            dist2 = (xz - x).flatten(1).pow(2).sum(dim=1)
            loss = dist2 + const * margin(logits, y).clamp_min(0)
            (grad,) = torch.autograd.grad(loss.sum(), ww)
        return grad, z.detach(), dist2.detach().sqrt(), logits.argmax(dim=1) != y

    def _paper_cw(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, z0: torch.Tensor, best: _Best,
                  search_steps: int = 4, num_steps: int = 100, lr: float = 0.01) -> None:
        """The paper's latent C&W: Adam on |decode(z) - x|^2 + c max(margin, 0) from z0, c by binary search."""
        n = len(y)
        lower, upper = torch.zeros(n, device=y.device), torch.full((n,), 1e10, device=y.device)
        const = torch.ones(n, device=y.device)
        for _ in range(search_steps):
            z, m, v = z0.clone(), torch.zeros_like(z0), torch.zeros_like(z0)
            success = torch.zeros(n, dtype=torch.bool, device=y.device)
            for t in range(1, num_steps + 1):
                grad, dist, wrong = _by_rows(lambda *rows: self._cw_rows(model, *rows), x, y, z, const)
                with torch.no_grad():
                    best.update(z, dist, wrong)
                    success |= wrong
                    m, v = 0.9 * m + 0.1 * grad, 0.999 * v + 0.001 * grad * grad
                    z = z - lr * (m / (1 - 0.9 ** t)) / ((v / (1 - 0.999 ** t)).sqrt() + 1e-8)
            upper = torch.where(success, torch.minimum(upper, const), upper)
            lower = torch.where(success, lower, torch.maximum(lower, const))
            const = torch.where(upper < 1e9, (lower + upper) / 2, const * 10)

    def _cw_rows(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor,
                 const: torch.Tensor) -> tuple[torch.Tensor, ...]:
        zz = z.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            xz = self.decode(zz, y)
            logits = model(xz)
            dist2 = (xz - x).flatten(1).pow(2).sum(dim=1)
            (grad,) = torch.autograd.grad((dist2 + const * margin(logits, y).clamp_min(0)).sum(), zz)
        return grad, dist2.detach().sqrt(), logits.argmax(dim=1) != y

    @torch.no_grad()
    def _line_search(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, z0: torch.Tensor,
                     z_adv: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
        """Bisection on t for the first misclassified latent on the segment z0 + t (z_adv - z0)."""
        lo, hi = torch.zeros(len(y), device=y.device), torch.ones(len(y), device=y.device)
        for _ in range(self.line_search_steps):
            mid = (lo + hi) / 2
            wrong = self._evaluate(model, x, y, z0 + mid[:, None] * (z_adv - z0))[1] & found
            hi, lo = torch.where(wrong, mid, hi), torch.where(wrong, lo, mid)
        return torch.where(found[:, None], z0 + hi[:, None] * (z_adv - z0), z_adv)


class _Adam:
    """Element-wise Adam with a per-example learning rate (no state is shared between examples)."""

    def __init__(self, like: torch.Tensor, betas: tuple[float, float] = (0.9, 0.999)) -> None:
        self.b1, self.b2, self.t = betas[0], betas[1], 0
        self.m, self.v = torch.zeros_like(like), torch.zeros_like(like)

    def step(self, w: torch.Tensor, grad: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * grad
        self.v = self.b2 * self.v + (1 - self.b2) * grad * grad
        m_hat, v_hat = self.m / (1 - self.b1 ** self.t), self.v / (1 - self.b2 ** self.t)
        step = lr[:, None] * m_hat / (v_hat.sqrt() + 1e-20)
        return w - torch.where(torch.isfinite(step), step, 0.0)


def latent_gain(generator: nn.Module, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Root-mean-square singular value of each example's Jacobian: image length per unit latent step."""
    grams = [r.pow(2).sum() for r in (_jacobian_rows(generator, z[i], y[i:i + 1]) for i in range(len(z)))]
    return (torch.stack(grams) / z.shape[1]).sqrt() if grams else z.new_zeros(0)


def invert_latents(generator: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 500,
                   restarts: int = 3, lr: float = 0.04, seed: int = 0,
                   index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents z with decode(z, y) close to x (Adam from ``restarts`` random starts); returns (z, L2 error).

    ``lr`` is in image units: each start's latent step is lr / gain (gain: the Jacobian's RMS singular value
    there), cosine-decayed to lr / 100, so the search does not depend on the generator's latent scale.
    """
    if steps < 1 or restarts < 1 or not lr > 0:
        raise UserInputError(f"inversion: steps={steps}, restarts={restarts}, lr={lr}; need positive values")
    idx = range(len(x)) if index is None else [int(i) for i in index.tolist()]
    rngs = [make_generator(derive_seed(seed, "invert", i), x.device) for i in idx]
    latent_dim = int(generator.latent_dim)
    best_z = torch.zeros(len(x), latent_dim, device=x.device)
    best_err = torch.full((len(x),), float("inf"), device=x.device)
    with frozen(generator):
        for _ in range(restarts):
            z = _invert_once(generator, x, y, per_example_randn(rngs, (latent_dim,), x.device), steps, lr)
            with torch.no_grad():
                err = l2_norm(generator.decode(z, y) - x)
            better = err < best_err
            best_z[better], best_err[better] = z[better], err[better]
    return best_z, best_err


def _invert_once(generator: nn.Module, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, steps: int,
                 lr: float) -> torch.Tensor:
    """Adam on |decode(z, y) - x|^2 from z with per-example latent steps lr / gain(z)."""
    gain = latent_gain(generator, z, y)
    rate = lr / torch.where(torch.isfinite(gain) & (gain > 0), gain, torch.ones_like(gain))
    adam = _Adam(z)

    def rows(xs: torch.Tensor, ys: torch.Tensor, zs: torch.Tensor) -> tuple[torch.Tensor]:
        zz = zs.clone().requires_grad_(True)
        with torch.enable_grad():
            err = (generator.decode(zz, ys) - xs).flatten(1).pow(2).sum(dim=1)
            return torch.autograd.grad(err.sum(), zz)

    for _ in range(steps):
        (grad,) = _by_rows(rows, x, y, z)
        with torch.no_grad():
            z = adam.step(z, grad, rate)
    return z
