"""The polar Ω°_θ(Z) = sup_{θ(w) <= 1} <Z, φ(X, w)> of the matched regulariser θ(w) = Π_l ||W_l||_F.

With Z = -∇ℓ(Φ(W)) / λ the polar decides global optimality (Haeffele & Vidal 2015, "Global optimality in tensor
factorization, deep learning, and beyond", the polar characterisation; 2017 CVPR, the meta-algorithm): W is a global
minimum iff Ω°_θ(Z) <= 1 and <Z, Φ(W)> = Θ(W). By homogeneity the sup is over unit-norm layers. `Polar` carries a
lower bound `value` (attained by its maximiser `unit`) and a verified upper bound `upper`; they agree when exact.

- linear subnetworks (matrix factorization, X = I, or deep linear nets): Ω° = σ_max(Xᵀ Z), exact (SVD).
- one-hidden-layer ReLU units: exact on 2-D inputs by the arc sweep of `relu2d`, and for small rank(X) by
  enumerating the activation patterns of the hyperplane arrangement of X's rows (`arrangement`; Pilanci & Ergen
  2020's patterns), when Cover's bound on the number of cells is at most `max_cells`.
- ReLU otherwise: a non-convex problem. Heuristic: projected (normalised-gradient) ascent on the product of
  unit spheres of the inner layers, the last layer in closed form (W_p* = Zᵀ H / ||Zᵀ H||_F for the last hidden
  activations H), from many starts: Gaussian ones, the network's own subnetworks and, for one hidden layer,
  every data row x_j / ||x_j||; the best value over all iterates is kept. For one hidden layer the best
  `n_refine` are then refined exactly on their activation cones (maxima often sit on kinks, where the ascent
  only hovers; see `_refine_one_hidden`). Its value is a LOWER bound on Ω° (a value > 1 proves non-optimality:
  its maximiser is a descent direction); its `upper` is the verified bound of `relu_upper_bound`, usually far
  above 1, so it certifies nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize

from .arrangement import pattern_count_bound, relu_polar_enumerated
from .networks import ACTIVATIONS, ParallelNetwork, as_tensor
from .relu2d import relu_polar_exact_2d

__all__ = ["Polar", "polar", "relu_upper_bound"]

_ROUNDING = 1e-12      # relative slack on exact values computed in floating point


@dataclass(frozen=True)
class Polar:
    """A lower bound `value` on Ω°_θ(Z), attained by `unit` (one unit-norm array per layer), and a verified upper
    bound `upper`; `exact` when they agree up to rounding."""

    value: float
    unit: list[np.ndarray]
    exact: bool
    method: str
    upper: float


def polar(net: ParallelNetwork, X, Z, method: str = "auto", n_restarts: int = 256, n_steps: int = 300,
          n_refine: int = 8, random_state: int = 0, max_cells: int = 20_000) -> Polar:
    """Ω°_θ(Z) for subnetworks shaped like those of `net` (its own subnetworks also serve as ascent starts).

    `method="auto"` is exact where it can be (linear; one-hidden-layer ReLU whose inputs have rank(X) <= 3 and at
    most `max_cells` activation patterns by Cover's bound, 2-D inputs included), "exact" also enumerates higher
    ranks within `max_cells` (and raises where no exact method applies), "heuristic" always runs the ascent on ReLU
    networks (a lower bound only).
    """
    if net.degree < 2:
        raise ValueError("the polar needs subnetworks of depth >= 2")
    if method not in ("auto", "exact", "heuristic"):
        raise ValueError(f"method must be 'auto', 'exact' or 'heuristic', got {method!r}")
    Z = as_tensor(Z)
    widths = net.widths
    if net.activation == "linear":
        return _linear_polar(widths, X, Z)
    one_hidden = net.degree == 2 and widths[1] == 1 and X is not None
    if method != "heuristic" and one_hidden and _enumerable(as_tensor(X).numpy(), max_cells, method == "exact"):
        return _exact_one_hidden(as_tensor(X).numpy(), Z.numpy())
    if method == "exact":
        raise ValueError("no exact polar here: it exists for linear subnetworks and for one-hidden-layer ReLU units "
                         f"whose inputs have at most {max_cells} activation patterns; use method='heuristic' for a "
                         "lower bound")
    found = _ascent_polar(net, X, Z, n_restarts, n_steps, n_refine, random_state)
    upper = max(relu_upper_bound(net, X, Z, max_cells), found.value)
    return Polar(found.value, found.unit, False, found.method, upper)


def relu_upper_bound(net: ParallelNetwork, X, Z, max_cells: int = 20_000) -> float:
    """A verified upper bound on the ReLU polar: σ_max(Z) σ_max(X) (ReLU is 1-Lipschitz), and for depth p >= 3
    with enumerable X also sqrt(Σ_o max(Ω°₁(Z_o⁺), Ω°₁(Z_o⁻))²), Ω°₁ the exact one-hidden-layer polar: for v >= 0
    and H >= 0, <v, relu(H w)> <= Σ_k w_k⁺ <v, H_k>, down to <v, relu(X u)> <= ||u|| Ω°₁(v)."""
    Z = as_tensor(Z).numpy()
    Xn = None if X is None else as_tensor(X).numpy()
    bound = np.linalg.norm(Z, 2) * (1.0 if Xn is None else np.linalg.norm(Xn, 2))
    if net.degree >= 3 and Xn is not None and _enumerable(Xn, max_cells, False):
        per_output = [max(relu_polar_enumerated(Xn, np.maximum(s * z, 0.0))[0] for s in (1.0, -1.0)) for z in Z.T]
        bound = min(bound, float(np.linalg.norm(per_output)))
    return float(bound) * (1 + _ROUNDING)


def _enumerable(X: np.ndarray, max_cells: int, any_rank: bool) -> bool:
    """Whether `arrangement` can enumerate X's activation patterns: at most max_cells (Cover's bound), rank <= 3
    unless any_rank (the work grows like the number of faces, fast with the rank)."""
    rank = int(np.linalg.matrix_rank(X))
    return (any_rank or rank <= 3) and pattern_count_bound(X.shape[0], rank) <= max_cells


def _exact_one_hidden(X: np.ndarray, Z: np.ndarray) -> Polar:
    if X.shape[1] == 2:
        value, u, v = relu_polar_exact_2d(X, Z)
        method = "exact 2-D arc sweep"
    else:
        value, u, v = relu_polar_enumerated(X, Z)
        method = f"exact: {len(X)} hyperplanes' activation patterns enumerated"
    return Polar(value, [u[None, :], v[:, None]], True, method, value * (1 + _ROUNDING))


def _linear_polar(widths: list[int], X, Z: torch.Tensor) -> Polar:
    M = Z if X is None else as_tensor(X).T @ Z
    a, s, bT = np.linalg.svd(M.numpy())
    unit = [np.zeros((out, fan_in)) for fan_in, out in zip(widths[:-1], widths[1:], strict=True)]
    unit[0][0, :] = a[:, 0]
    for W in unit[1:-1]:
        W[0, 0] = 1.0
    unit[-1][:, 0] = bT[0]
    return Polar(float(s[0]), unit, True, "exact (top singular pair)", float(s[0]) * (1 + _ROUNDING))


def _ascent_polar(net: ParallelNetwork, X, Z: torch.Tensor, n_restarts: int, n_steps: int, n_refine: int,
                  random_state: int) -> Polar:
    generator = torch.Generator().manual_seed(random_state)
    act = ACTIVATIONS[net.activation]
    X = None if X is None else as_tensor(X)
    shapes = [W.shape[1:] for W in net.layers[:-1]]
    starts = [torch.randn(n_restarts, *s, generator=generator, dtype=torch.float64) for s in shapes]
    starts = [torch.cat([S, W]) for S, W in zip(starts, net.layers[:-1], strict=True)]
    one_hidden = len(shapes) == 1 and shapes[0][0] == 1 and X is not None
    if one_hidden:   # one hidden layer: data rows as starts
        starts[0] = torch.cat([starts[0], X[:, None, :]])
    inner = [_unit(S) for S in starts]

    def value_of(layers: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        H = layers[0].transpose(1, 2) if X is None else torch.matmul(X, layers[0].transpose(1, 2))
        for W in layers[1:]:
            H = torch.matmul(act(H), W.transpose(1, 2))
        G = torch.matmul(Z.T, act(H))                          # (S, m, h): the closed-form last layer's direction
        return G.flatten(1).norm(dim=1), G

    best = torch.full((inner[0].shape[0],), -1.0, dtype=torch.float64)
    best_inner = [W.clone() for W in inner]
    for step in range(n_steps):
        eta = 2.0 * (1e-5 / 2.0) ** (step / max(n_steps - 1, 1))   # normalised steps, 2 -> 1e-5
        layers = [W.requires_grad_(True) for W in inner]
        values, _ = value_of(layers)
        grads = torch.autograd.grad(values.sum(), layers)
        with torch.no_grad():
            improved = values > best
            best = torch.where(improved, values, best)
            for B, W in zip(best_inner, layers, strict=True):
                B[improved] = W[improved]
            scale = values.clamp_min(1e-300)[:, None, None]
            inner = [_unit(W + eta * G / scale) for W, G in zip(layers, grads, strict=True)]
    with torch.no_grad():
        values, G = value_of(best_inner)
    method = f"heuristic: best of {len(values)} ascent starts x {n_steps} steps"
    if one_hidden:
        best_inner[0] = best_inner[0].clone()
        for k in torch.argsort(values, descending=True)[:n_refine].tolist():
            best_inner[0][k, 0] = torch.from_numpy(_refine_one_hidden(best_inner[0][k, 0].numpy(), X.numpy(),
                                                                      Z.numpy()))
        with torch.no_grad():
            values, G = value_of(best_inner)
        method += f", top {n_refine} refined on fixed activation patterns"
    k = int(values.argmax())
    last = G[k] / values[k] if values[k] > 0 else G[k]
    unit = [W[k].numpy().copy() for W in best_inner] + [last.numpy().copy()]
    return Polar(float(values[k]), unit, False, method, float("inf"))


def _refine_one_hidden(u: np.ndarray, X: np.ndarray, Z: np.ndarray, max_rounds: int = 5) -> np.ndarray:
    """Local max of ||Zᵀ D X u||² over ||u|| <= 1 in u's activation cone (2D - I) X u >= 0 (SLSQP), the points
    left on the cone's boundary then flipped while that helps: reaches maxima sitting on kinks exactly."""
    best = float(np.sum((Z.T @ np.maximum(X @ u, 0.0)) ** 2))
    for round_ in range(max_rounds):
        Xu = X @ u
        D = (Xu > 0).astype(np.float64)
        if round_ > 0:
            boundary = np.abs(Xu) <= 1e-9 * np.linalg.norm(X, axis=1) * np.linalg.norm(u)
            if not boundary.any():
                break
            D = np.where(boundary, 1.0 - D, D)
        M = Z.T @ (D[:, None] * X)
        A = (2 * D - 1)[:, None] * X
        result = minimize(_negative_square, u, args=(M,), jac=True, method="SLSQP",
                          constraints=[{"type": "ineq", "fun": lambda w, A: A @ w, "jac": lambda w, A: A, "args": (A,)},
                                       {"type": "ineq", "fun": lambda w: 1.0 - w @ w, "jac": lambda w: -2 * w}],
                          options={"maxiter": 200, "ftol": 1e-15})
        w = result.x / max(np.linalg.norm(result.x), 1e-300)
        value = float(np.sum((Z.T @ np.maximum(X @ w, 0.0)) ** 2))
        if value <= best * (1 + 1e-15):
            break
        best, u = value, w
    return u


def _negative_square(w: np.ndarray, M: np.ndarray) -> tuple[float, np.ndarray]:
    Mw = M @ w
    return -float(Mw @ Mw), -2 * M.T @ Mw


def _unit(W: torch.Tensor) -> torch.Tensor:
    """Each (out, in) slice of the stack scaled to unit Frobenius norm (zero slices stay zero); slices are first
    divided by their largest entry, so that tiny ones (a subnetwork shrunk to ~1e-200) do not underflow."""
    peak = W.flatten(1).abs().amax(dim=1).clamp_min(1e-300)[:, None, None]
    W = W / peak
    norms = W.flatten(1).norm(dim=1).clamp_min(1e-300)
    return (W / norms[:, None, None]).detach()
