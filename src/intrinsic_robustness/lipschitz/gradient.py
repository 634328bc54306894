"""Gradient estimator: Jacobian spectral norm by power iteration, then ascent of the quotient in the ball.

Per anchor z of class y:

1. power iteration on J^T J, J = d decode(z, y) / dz, in its Lanczos form (every iterate kept, full
   re-orthogonalisation; ``power_iters`` steps, at most latent_dim), with one forward-mode product (J v,
   ``torch.func.jvp``) and one reverse-mode product (J^T u, autograd on a retained graph) per step, and one
   last jvp at the top Ritz vector. The Jacobian is never formed; one call serves a whole batch of
   anchors because per-example Jacobians are independent (the batched map's Jacobian is block-diagonal).
   ||J v|| for a unit v is the limit of the difference quotient as ||z' - z|| -> 0 along v, hence a lower
   bound on the local constant;
2. projected gradient ascent of q(d) = ||G(z + d) - G(z)|| / ||d|| over floor * r <= ||d|| <= r, started
   from the top singular direction (at radius r) and from ``restarts`` random points on the sphere.

The anchor's estimate is the maximum of every value evaluated. Counting rule for generator evaluations,
per latent: a forward decode = 1, a jvp = 1 (it carries primal and tangent in one pass), a vjp /
backward pass = 1. So an ascent step (forward + backward) costs 2, and a power iteration step costs 2.
Where forward mode is unsupported, J v falls back to the double-backward trick, counted as 2.
"""

from __future__ import annotations

from typing import Any

import torch

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.lipschitz.base import Estimator, positive_int
from intrinsic_robustness.lipschitz.sampling import _quotient, decode_flat
from intrinsic_robustness.progress import advance, task
from intrinsic_robustness.runtime import derive_seed, make_generator
from intrinsic_robustness.threat import normalized_step

FLOOR_FRACTION = 0.05  # ascent keeps ||d|| >= 0.05 r: float32 cancellation makes tiny steps noisy


class GradientEstimator(Estimator):
    """Jacobian power iteration (Lanczos) then projected ascent of the quotient inside the ball."""

    name = "gradient"
    label = "gradient"
    bracket = 2
    reference = True  # the strongest estimate from below: the report compares the others with it per anchor

    def __init__(self, power_iters: int = 10, ascent_steps: int = 12, restarts: int = 2,
                 batch_size: int = 1024) -> None:
        self.power_iters = positive_int("power_iters", power_iters)
        self.ascent_steps = positive_int("ascent_steps", ascent_steps, allow_zero=True)
        self.restarts = positive_int("restarts", restarts, allow_zero=True)
        self.batch_size = positive_int("batch_size", batch_size)

    def values(self, gen: torch.nn.Module, anchors: torch.Tensor, label: int, radius: float,
               seed: int, first: int = 0) -> tuple[torch.Tensor, int]:
        return gradient_values(gen, anchors, label, radius, seed, self.batch_size, self.power_iters,
                               self.ascent_steps, self.restarts, first)

    def chunk_size(self) -> int:
        return max(1, self.batch_size // (1 + self.restarts))

    def parameters(self) -> dict[str, Any]:
        return {"power_iters": self.power_iters, "ascent_steps": self.ascent_steps, "restarts": self.restarts,
                "floor_fraction": FLOOR_FRACTION}


def evaluations_per_anchor(power_iters: int, ascent_steps: int, restarts: int,
                           latent_dim: int | None = None) -> int:
    """Generator evaluations one anchor costs under the counting rule above (forward-mode jvp available)."""
    steps = power_iters if latent_dim is None else min(power_iters, latent_dim)
    return 1 + 2 * steps + 1 + (1 + restarts) * (2 * ascent_steps + 1)


def gradient_values(gen: torch.nn.Module, anchors: torch.Tensor, label: int, radius: float, seed: int,
                    batch_size: int, power_iters: int, ascent_steps: int,
                    restarts: int, first: int = 0) -> tuple[torch.Tensor, int]:
    """Per-anchor estimates (max of power-iteration and ascent values) and generator evaluations used.

    ``first`` is the class index of ``anchors[0]``: anchor i's draws are named by ``first + i``."""
    n = anchors.shape[0]
    per_chunk = max(1, batch_size // (1 + restarts))
    values = torch.zeros(n, dtype=torch.float32, device=anchors.device)
    evaluations = 0
    with task(f"gradient class {label}", n) as progress:
        for start in range(0, n, per_chunk):
            idx = list(range(start, min(n, start + per_chunk)))
            chunk_values, used = _chunk(gen, anchors[idx], [first + i for i in idx], label, radius, seed,
                                        power_iters, ascent_steps, restarts)
            values[start:start + len(idx)] = chunk_values
            evaluations += used
            advance(progress, len(idx))
    return values, evaluations


def _chunk(gen: torch.nn.Module, z: torch.Tensor, idx: list[int], label: int, radius: float, seed: int,
           power_iters: int, ascent_steps: int, restarts: int) -> tuple[torch.Tensor, int]:
    """Power iteration then ascent for one chunk of anchors (``idx`` are their indices within the class)."""
    z = z.detach()
    z_graph = z.clone().requires_grad_(True)
    with torch.enable_grad():
        base = decode_flat(gen, z_graph, label)
    if not base.requires_grad:
        raise UserInputError("generator decode is not differentiable in z (its output is detached or made "
                             "under no_grad); fix decode or use --method sampling")
    v0 = torch.stack([_unit_normal(seed, "power", label, i, z.shape[1]) for i in idx]).to(z)
    sigma, top, used = _lanczos(gen, z, z_graph, base, label, v0, power_iters)
    starts = [top * radius]
    if restarts:
        rand = torch.stack([torch.stack([_unit_normal(seed, "ascent", label, i, z.shape[1], k)
                                         for k in range(restarts)]) for i in idx]).to(z)
        starts += list((rand * radius).unbind(1))
    ascent = _ascent(gen, z, base.detach(), label, torch.stack(starts, 1), radius, ascent_steps)
    evaluations = z.shape[0] + used + z.shape[0] * len(starts) * (2 * ascent_steps + 1)
    return torch.maximum(sigma, ascent), evaluations


def _unit_normal(seed: int, stage: str, label: int, index: int, dim: int, k: int = 0) -> torch.Tensor:
    """A unit vector uniform on the sphere, from a generator named by (seed, stage, class, anchor, k)."""
    g = torch.randn(dim, generator=make_generator(derive_seed(seed, stage, label, index, k)))
    return g / g.norm().clamp_min(1e-30)


def _lanczos(gen: torch.nn.Module, z: torch.Tensor, z_graph: torch.Tensor, base: torch.Tensor, label: int,
             v: torch.Tensor, iters: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Top singular value and right vector of each anchor's Jacobian by Lanczos on J^T J.

    Lanczos is power iteration that keeps every iterate: its Krylov space contains the power-iteration
    vector, so its top Ritz value is never worse, and it converges far faster when singular values are
    close. Each step is one jvp and one vjp; the Ritz vector x gets a final jvp, so the returned value
    max_j ||J v_j|| (unit v_j, including x) is an evaluated directional derivative, not an extrapolation.
    """
    m, d = v.shape
    k = min(iters, d)
    basis = torch.zeros(m, k, d, dtype=v.dtype, device=v.device)
    alphas = torch.zeros(m, k, dtype=torch.float64, device=v.device)
    betas = torch.zeros(m, k, dtype=torch.float64, device=v.device)
    best = torch.zeros(m, dtype=torch.float32, device=v.device)
    evaluations = 0
    v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)
    for j in range(k):
        basis[:, j] = v
        jv, cost = _jvp(gen, z, z_graph, base, label, v)
        w = _vjp(z_graph, base, jv)
        evaluations += m * (cost + 1)
        best = torch.maximum(best, jv.norm(dim=1).float())
        alphas[:, j] = (w * v).sum(dim=1).double()
        for _ in range(2):  # full re-orthogonalisation, twice, keeps the float32 basis orthonormal
            kept = basis[:, : j + 1]
            w = w - torch.einsum("mk,mkd->md", torch.einsum("mkd,md->mk", kept, w), kept)
        betas[:, j] = w.norm(dim=1).double()
        scale = alphas[:, : j + 1].abs().amax(dim=1).clamp_min(1e-30)
        alive = (betas[:, j] > 1e-6 * scale)[:, None]
        v = torch.where(alive, w / w.norm(dim=1, keepdim=True).clamp_min(1e-30), torch.zeros_like(w))
    tri = torch.diag_embed(alphas) + torch.diag_embed(betas[:, :-1], 1) + torch.diag_embed(betas[:, :-1], -1)
    _, vecs = torch.linalg.eigh(tri)
    top = torch.einsum("mk,mkd->md", vecs[:, :, -1].to(basis.dtype), basis)
    top = top / top.norm(dim=1, keepdim=True).clamp_min(1e-30)
    jx, cost = _jvp(gen, z, z_graph, base, label, top)
    evaluations += m * cost
    best = torch.maximum(best, jx.norm(dim=1).float())
    return best, top.detach(), evaluations


def _jvp(gen: torch.nn.Module, z: torch.Tensor, z_graph: torch.Tensor, base: torch.Tensor, label: int,
         v: torch.Tensor) -> tuple[torch.Tensor, int]:
    """J v per example by forward mode; falls back to the double-backward trick (cost 2) if unsupported."""
    try:
        _, jv = torch.func.jvp(lambda t: decode_flat(gen, t, label), (z,), (v,))
        return jv.detach(), 1
    except torch.OutOfMemoryError:
        raise
    except (RuntimeError, NotImplementedError):
        pass
    with torch.enable_grad():
        u = torch.zeros_like(base, requires_grad=True)
        jtu = _vjp(z_graph, base, u, create_graph=True)
        try:
            (jv,) = torch.autograd.grad(jtu, u, grad_outputs=v, allow_unused=True)
        except RuntimeError as exc:
            raise _not_differentiable(exc) from None
    return (torch.zeros_like(base) if jv is None else jv.detach()), 2


def _vjp(z_graph: torch.Tensor, base: torch.Tensor, u: torch.Tensor,
         create_graph: bool = False) -> torch.Tensor:
    """J^T u per example through the retained graph of ``base = decode(z_graph)``."""
    try:
        (g,) = torch.autograd.grad(base, z_graph, grad_outputs=u, retain_graph=True,
                                   create_graph=create_graph, allow_unused=True)
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as exc:
        raise _not_differentiable(exc) from None
    if g is None:
        raise UserInputError("generator decode is not differentiable in z (no gradient reaches z); "
                             "fix decode or use --method sampling")
    if not torch.isfinite(g).all():
        raise UserInputError("generator decode gives non-finite gradients in z; use --method sampling")
    return g if create_graph else g.detach()


def _not_differentiable(exc: BaseException) -> UserInputError:
    first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
    return UserInputError(f"generator decode cannot be differentiated in z ({first}); "
                          "fix decode or use --method sampling")


def _ascent(gen: torch.nn.Module, z: torch.Tensor, base: torch.Tensor, label: int, starts: torch.Tensor,
            radius: float, steps: int) -> torch.Tensor:
    """Projected normalised-gradient ascent of the quotient from each start; best value per anchor."""
    m, s, d = starts.shape
    z_rep = z.repeat_interleave(s, 0)
    x_rep = base.repeat_interleave(s, 0)
    delta = starts.reshape(m * s, d)
    best = torch.zeros(m * s, dtype=torch.float32, device=z.device)
    for t in range(steps):
        delta = delta.detach().requires_grad_(True)
        with torch.enable_grad():
            z_prime = z_rep + delta
            q = _quotient(decode_flat(gen, z_prime, label), x_rep, z_prime - z_rep)
            (grad,) = torch.autograd.grad(q.sum(), delta, allow_unused=True)
        best = torch.maximum(best, q.detach().float())
        if grad is None:
            raise UserInputError("generator decode is not differentiable in z; use --method sampling")
        step_size = radius * (0.2 * (1 - t / steps) + 0.02)
        delta = _project_shell(delta.detach() + step_size * normalized_step(grad), radius)
    with torch.no_grad():
        z_prime = z_rep + delta.detach()
        q = _quotient(decode_flat(gen, z_prime, label), x_rep, z_prime - z_rep)
    best = torch.maximum(best, q.float())
    return best.reshape(m, s).max(dim=1).values


def _project_shell(delta: torch.Tensor, radius: float) -> torch.Tensor:
    """Scale each row into FLOOR_FRACTION * r <= ||d|| <= r (zero rows stay zero)."""
    norms = delta.norm(dim=1, keepdim=True)
    target = norms.clamp(FLOOR_FRACTION * radius, radius)
    return torch.where(norms > 0, delta * (target / norms.clamp_min(1e-30)), delta)
