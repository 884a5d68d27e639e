"""Implicit bias of first-order methods on linearly separable data, measured against `max_margin`.

Every method here trains a linear classifier w (no intercept) on the sum of a loss over the margins
m_i = y_i <w, x_i>, records the iterates at log-spaced steps, and compares them with the convex reference:

- `logistic_margin_trajectory`: gradient descent, heavy-ball momentum or Nesterov momentum (torch.optim.SGD's
  updates) on the logistic loss. Soudry, Hoffer, Nacson, Gunasekar & Srebro (2018, JMLR, "The implicit bias of
  gradient descent on separable data", Thm. 3): w(t) = ŵ ln t + ρ(t) with ρ bounded, ŵ = argmin ||w||_2 s.t.
  m_i ≥ 1; `soudry_check` tests the consequences, including the exact constants.
- `steepest_margin_trajectory`: `SteepestDescent` / `CoordinateDescent` on the exponential (or logistic) loss.
  Gunasekar, Lee, Soudry & Srebro (2018, ICML, "Characterizing implicit bias in terms of optimization geometry",
  Thm. 5): steepest descent w.r.t. a norm ||·|| maximises the margin in that same norm, so l1 steepest descent
  and greedy coordinate descent reach the l1 max margin, l∞ the l∞ one, l_{3/2} the l_{3/2} one.
- `adagrad_direction`: diagonal AdaGrad (torch.optim.Adagrad's update) against GD on a two-point data set.
  Qian & Qian (2019, NeurIPS, "The implicit bias of AdaGrad on separable data"): AdaGrad's direction converges to
  argmin ||h_∞^{-1/2} ⊙ w||_2 s.t. m_i ≥ 1, h_∞ the limit of its per-coordinate factors 1/(sqrt(G_t) + ε), which
  depends on the data, the start and the step size, and in general is not the L2 max margin.
- `margin_report`: the margin of a user's trained linear classifier against the max margin of its data.

Iterations run in float64 numpy (GD, momentum, AdaGrad) or torch (steepest descent), a few µs to a few hundred µs
a step on the tiny data sets these results are about.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import torch
from rich.progress import Progress
from scipy.optimize import nnls
from scipy.special import expit

from ..optim import CoordinateDescent, SteepestDescent
from ..optim.steepest import _check_norm
from .references import InaccurateSolveError, MaxMargin, _check_labels, max_margin

__all__ = ["AdagradDirection", "MarginReport", "MarginTrajectory", "RateFit", "SoudryCheck", "adagrad_direction",
           "fit_inverse_log", "gaussian_data", "logistic_margin_trajectory", "margin_report", "soudry_check",
           "soudry_data", "steepest_margin_trajectory", "two_point_data"]

STEEPEST_NORMS = {"l1": 1.0, "coordinate": 1.0, "l2": 2.0, "linf": math.inf, "lp": None}


# ----------------------------------------------------------------------------------------------- data sets

def soudry_data(random_state: int = 0, n_random: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Soudry et al. (2018), Fig. 1: the support vectors x = (0.5, 1.5), (1.5, 0.5) (y = +1) and their negatives
    (y = −1), whose L2 max-margin vector is ŵ = (0.5, 0.5) (margin √2), plus `n_random` points, half of each class,
    drawn uniformly from [0, 4]² (negated for y = −1) and kept only off the margin (y <ŵ, x> ≥ 1.5)."""
    rng = np.random.default_rng(random_state)
    support = np.array([[0.5, 1.5], [1.5, 0.5]])
    extra = []
    while len(extra) < n_random // 2:
        x = rng.uniform(0.0, 4.0, size=2)
        if 0.5 * x.sum() >= 1.5:
            extra.append(x)
    positive = np.vstack([support, *extra]) if extra else support
    X = np.vstack([positive, -positive])
    return X, np.r_[np.ones(len(positive)), -np.ones(len(positive))]


def gaussian_data(n: int = 8, d: int = 40, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n standard Gaussian points in R^d labelled by a random homogeneous teacher (separable through the origin;
    with n < d typically every point is a support vector)."""
    rng = np.random.default_rng(random_state)
    X = rng.standard_normal((n, d))
    y = np.sign(X @ rng.standard_normal(d))
    y[y == 0] = 1.0
    return X, y


def two_point_data() -> tuple[np.ndarray, np.ndarray]:
    """x1 = (1, 0.5) with y = +1, x2 = (−2.5, 0) with y = −1. The L2 max margin has the single support vector x1
    (ŵ ∝ (1, 0.5)); x2 has margin 2. AdaGrad's gradient at 0 is seven times larger in the first coordinate, so
    h_∞ shrinks that coordinate (h_1/h_2 ≈ 0.21 from 0 with step 0.1) and its limit ∝ H x1 = (h_1, 0.5 h_2) is
    about 40° from ŵ. Our construction in the spirit of Qian & Qian (2019, Fig. 1), not their data."""
    return np.array([[1.0, 0.5], [-2.5, 0.0]]), np.array([1.0, -1.0])


# ------------------------------------------------------------------------------------------ trajectories

@dataclass(frozen=True)
class MarginTrajectory:
    """Iterates w(t) at log-spaced steps t (from the start `w0`, step size `lr`, `momentum` 0 unless heavy ball or
    Nesterov) and their distance to `reference`, all in its norm p = reference.p.

    `norm` = ||w||_p; `margin` = min_i y_i <w, x_i> / ||w||_p; `margin_gap` = reference.margin − margin;
    `direction_error` = || w/||w||_p − reference.direction ||_p; `angle` = the Euclidean angle (degrees) between
    w and reference.w; `log_loss` = ln Σ_i ℓ(y_i <w, x_i>), which never underflows.
    """

    method: str
    lr: float
    momentum: float
    w0: np.ndarray
    t: np.ndarray
    w: np.ndarray
    log_loss: np.ndarray
    reference: MaxMargin
    norm: np.ndarray
    margin: np.ndarray
    margin_gap: np.ndarray
    direction_error: np.ndarray
    angle: np.ndarray


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean angle in degrees between the rows of a and the vector b."""
    cosine = (a @ b) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b))
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def _trajectory(method, lr, w0, t, W, Z, reference, loss, momentum=0.0) -> MarginTrajectory:
    p = reference.p
    norm = np.linalg.norm(W, ord=p, axis=1)
    margin = (W @ Z.T).min(axis=1) / norm
    error = np.linalg.norm(W / norm[:, None] - reference.direction, ord=p, axis=1)
    log_loss = np.array([_log_loss(Z @ w, loss) for w in W])
    return MarginTrajectory(method, float(lr), float(momentum), w0, t, W, log_loss, reference, norm, margin,
                            reference.margin - margin, error, _angle(W, reference.w))


def _log_terms(m: torch.Tensor, loss: str) -> torch.Tensor:
    """ln ℓ(m_i) for ℓ(m) = exp(−m) or log(1 + exp(−m)), stable for any margins."""
    if loss == "exp":
        return -m
    # log(1 + e^{-m}) = e^{-m} (1 − e^{-m}/2 + ...): for m > 30 its log is −m − e^{-m}/2 to double precision
    big = -m - 0.5 * torch.exp(-m.clamp(min=30))
    return torch.where(m > 30, big, torch.log(torch.nn.functional.softplus(-m.clamp(max=30))))


def _log_loss(m: np.ndarray, loss: str) -> float:
    """ln Σ_i ℓ(m_i), which never underflows."""
    return float(torch.logsumexp(_log_terms(torch.as_tensor(m, dtype=torch.float64), loss), 0))


def _record_steps(n_steps: int, n_records: int) -> np.ndarray:
    if n_steps < 1 or n_records < 2:
        raise ValueError(f"n_steps must be >= 1 and n_records >= 2, got {n_steps} and {n_records}")
    return np.unique(np.geomspace(1, n_steps, n_records).round().astype(int))


def _start(w0, d: int) -> np.ndarray:
    w = np.zeros(d) if w0 is None else np.array(w0, dtype=np.float64).reshape(-1)
    if w.shape != (d,) or not np.all(np.isfinite(w)):
        raise ValueError(f"w0 must be a finite vector of length {d}")
    return w


def _numpy_path(Z, w0, lr, n_steps, n_records, method, momentum=0.0, eps=1e-10, verbose=0):
    """GD / heavy ball / Nesterov (torch.optim.SGD: b ← μ b + g, first b = g; step b or g + μ b) / AdaGrad
    (torch.optim.Adagrad: G ← G + g², step g / (sqrt(G) + ε)) on Σ_i log(1 + exp(−<w, z_i>)).
    Returns the recorded steps, iterates and AdaGrad's final factors 1/(sqrt(G) + ε) (None for the others)."""
    records = _record_steps(n_steps, n_records)
    w, buffer, accumulated = w0.copy(), None, np.zeros_like(w0)
    out, k = [], 0
    chunk = max(n_steps // 100, 1)
    with Progress(disable=not verbose, transient=True) as progress:
        task = progress.add_task(method, total=n_steps)
        for t in range(1, n_steps + 1):
            g = -(expit(-(Z @ w)) @ Z)
            if method == "gd":
                w -= lr * g
            elif method == "adagrad":
                accumulated += g * g
                w -= lr * g / (np.sqrt(accumulated) + eps)
            else:
                buffer = g.copy() if buffer is None else momentum * buffer + g
                w -= lr * (g + momentum * buffer if method == "nesterov" else buffer)
            if t == records[k]:
                out.append(w.copy())
                k += 1
            if t % chunk == 0:
                progress.update(task, completed=t)
    factors = 1.0 / (np.sqrt(accumulated) + eps) if method == "adagrad" else None
    return records, np.array(out), factors


def logistic_margin_trajectory(X, y, optimizer: str = "gd", lr: float | None = None, n_steps: int = 100_000,
                               momentum: float = 0.9, w0=None, n_records: int = 60,
                               verbose: int = 0) -> MarginTrajectory:
    """GD ("gd"), heavy ball ("momentum") or Nesterov ("nesterov") on L(w) = Σ_i log(1 + exp(−y_i <w, x_i>)) from
    w0 (default 0), compared with the L2 max margin.

    `lr` defaults to 1/σ_max(X)², inside Soudry et al.'s Thm. 3 condition η < 2/(β σ_max(X)²), β = 1/4 the
    smoothness of the logistic loss. Raises InaccurateSolveError when the data are not separable.
    """
    X, y = _check_labels(X, y)
    if optimizer not in ("gd", "momentum", "nesterov"):
        raise ValueError(f"optimizer must be 'gd', 'momentum' or 'nesterov', got {optimizer!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    lr = 1.0 / np.linalg.norm(X, 2) ** 2 if lr is None else float(lr)
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    reference = max_margin(X, y, 2)
    Z = y[:, None] * X
    start = _start(w0, X.shape[1])
    momentum = 0.0 if optimizer == "gd" else float(momentum)
    t, W, _ = _numpy_path(Z, start, lr, n_steps, n_records, optimizer, momentum=momentum, verbose=verbose)
    return _trajectory(optimizer, lr, start, t, W, Z, reference, "logistic", momentum)


# ------------------------------------------------------------------------------------------ Soudry's limits

@dataclass(frozen=True)
class RateFit:
    """values ≈ offset + c / ln t by least squares on the steps t >= t_min (offset fixed at 0 unless fitted);
    r2 is the coefficient of determination of that fit."""

    c: float
    offset: float
    r2: float
    t_min: int


def fit_inverse_log(t, values, tail: float = 0.5, with_offset: bool = False) -> RateFit:
    """Fit values ≈ [offset +] c / ln t on the last `tail` fraction of the ln t range (t >= T^(1 − tail))."""
    t = np.asarray(t, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if not 0 < tail <= 1:
        raise ValueError(f"tail must be in (0, 1], got {tail}")
    keep = (t > 1) & (np.log(t) >= (1 - tail) * np.log(t.max()))
    if keep.sum() < 3:
        raise ValueError("fewer than 3 recorded steps in the tail; record more steps or run longer")
    x, v = 1.0 / np.log(t[keep]), values[keep]
    design = np.column_stack([x, np.ones_like(x)]) if with_offset else x[:, None]
    coef = np.linalg.lstsq(design, v, rcond=None)[0]
    residual = v - design @ coef
    total = np.sum((v - v.mean()) ** 2)
    r2 = 1.0 - np.sum(residual ** 2) / total if total > 0 else 1.0
    return RateFit(float(coef[0]), float(coef[1]) if with_offset else 0.0, float(r2), int(t[keep].min()))


@dataclass(frozen=True)
class SoudryCheck:
    """Soudry et al. (2018), Thm. 3 and its constants, at the last recorded step T (see `soudry_check`).

    `w_hat_norm` = ||ŵ|| = 1/γ (γ the L2 max margin). Measured vs predicted:
    `norm_ratio` = ||w(T)||/ln T → ||ŵ||; `norm_slope` = d||w||/d ln t on the tail → ||ŵ||;
    `norm_offset` = ||w(T)|| − ||ŵ|| ln T → `predicted_offset` = <ŵ/||ŵ||, w̃>;
    `loss_constant` = η_eff T L(w(T)) → `predicted_loss_constant` = ||ŵ||²;
    `rate` the fit direction_error ≈ c/ln t, c → `predicted_c` = ||P⊥ w̃|| / ||ŵ||;
    `direction_error` at T → `predicted_direction_error` = || (ŵ ln T + w̃)/||ŵ ln T + w̃|| − ŵ/||ŵ|| ||.
    Predictions that need all of w̃ are NaN when the theorem leaves part of it to the path (non-support
    vectors outside the span of the support vectors), and every prediction is NaN for degenerate data (a point
    on the margin with a zero KKT multiplier, where log log t terms appear).
    """

    w_hat_norm: float
    eta_eff: float
    norm_ratio: float
    norm_slope: float
    norm_offset: float
    predicted_offset: float
    loss_constant: float
    predicted_loss_constant: float
    rate: RateFit
    predicted_c: float
    direction_error: float
    predicted_direction_error: float
    margin_gap: float


def _soudry_w_tilde(Z, w_hat, eta, w0) -> tuple[np.ndarray | None, float]:
    """w̃ = lim (w(t) − ŵ ln t): on the support vectors S (KKT: ŵ = Σ_S α_n z_n) η exp(−<w̃, z_n>) = α_n (Soudry
    et al., Thm. 3); off span(S) the iterates keep P⊥ w0 when every z_i lies in span(S). Returns (w̃ or None when
    it is not determined, <ŵ/||ŵ||, w̃>, which only needs the span(S) part; NaN when degenerate)."""
    support = Z @ w_hat <= 1 + 1e-5
    unique, _, counts = np.unique(np.round(Z[support], 12), axis=0, return_inverse=True, return_counts=True)
    alpha, residual = nnls((counts[:, None] * unique).T, w_hat)
    if residual > 1e-6 * np.linalg.norm(w_hat) or np.any(alpha <= 1e-8 * alpha.max()):
        return None, math.nan
    target = np.log(eta / alpha)
    w_support = np.linalg.lstsq(unique, target, rcond=None)[0]
    if np.linalg.norm(unique @ w_support - target) > 1e-6 * (1 + np.linalg.norm(target)):
        return None, math.nan  # more support vectors than the span allows: not the generic case of the theorem
    offset = float(w_hat @ w_support / np.linalg.norm(w_hat))
    basis = np.linalg.svd(unique, full_matrices=False)[2][: np.linalg.matrix_rank(unique)]
    if np.linalg.matrix_rank(Z) > basis.shape[0]:
        return None, offset
    return w_support + w0 - basis.T @ (basis @ w0), offset


def soudry_check(trajectory: MarginTrajectory, X, y, tail: float = 0.5) -> SoudryCheck:
    """Compare a `logistic_margin_trajectory` on (X, y) with Soudry et al.'s Thm. 3 (fits on the `tail`).

    Derivation (their eq. for w̃): with z_n = y_n x_n and −ℓ'(m) ≈ e^{−m}, w(t) = ŵ ln t + w̃ + o(1) solves the GD
    recursion when η Σ_n e^{−<w̃, z_n>} z_n / t = ŵ/t, i.e. η exp(−<w̃, z_n>) = α_n on the support vectors; late
    iterates move slowly, so momentum μ (heavy ball or Nesterov) acts as the step η_eff = η/(1 − μ). Hence
    ||w(t)|| = ||ŵ|| ln t + <û, w̃> + o(1) with û = ŵ/||ŵ||: ||w(t)||/ln t → ||ŵ|| = 1/γ whatever η is, with an
    O(1/ln t) error that <û, w̃> predicts; the direction error is ||P⊥ w̃||/(||ŵ|| ln t) + O(1/ln² t); and
    t L(w(t)) → Σ_S α_n/η_eff = ||ŵ||²/η_eff.
    """
    if trajectory.method not in ("gd", "momentum", "nesterov") or trajectory.reference.p != 2:
        raise ValueError(f"soudry_check needs a logistic_margin_trajectory, got method {trajectory.method!r}")
    X, y = _check_labels(X, y)
    Z = y[:, None] * X
    w_hat = trajectory.reference.w
    w_hat_norm = float(np.linalg.norm(w_hat))
    eta = trajectory.lr / (1.0 - trajectory.momentum)
    w_tilde, offset = _soudry_w_tilde(Z, w_hat, eta, trajectory.w0)
    T = float(trajectory.t[-1])
    log_t = np.log(trajectory.t.astype(np.float64))
    keep = (trajectory.t > 1) & (log_t >= (1 - tail) * log_t[-1])
    slope = float(np.polyfit(log_t[keep], trajectory.norm[keep], 1)[0])
    u = w_hat / w_hat_norm
    if w_tilde is None:
        predicted_c = predicted_error = math.nan
    else:
        predicted_c = float(np.linalg.norm(w_tilde - u * (u @ w_tilde)) / w_hat_norm)
        limit = w_hat * math.log(T) + w_tilde
        predicted_error = float(np.linalg.norm(limit / np.linalg.norm(limit) - u))
    return SoudryCheck(
        w_hat_norm=w_hat_norm, eta_eff=eta, norm_ratio=float(trajectory.norm[-1] / math.log(T)), norm_slope=slope,
        norm_offset=float(trajectory.norm[-1] - w_hat_norm * math.log(T)), predicted_offset=offset,
        loss_constant=float(eta * T * math.exp(trajectory.log_loss[-1])), predicted_loss_constant=w_hat_norm ** 2,
        rate=fit_inverse_log(trajectory.t, trajectory.direction_error, tail), predicted_c=predicted_c,
        direction_error=float(trajectory.direction_error[-1]), predicted_direction_error=predicted_error,
        margin_gap=float(trajectory.margin_gap[-1]))


# ------------------------------------------------------------------------------------------ steepest descent

def _dual_exponent(p: float) -> float:
    return math.inf if p == 1 else 1.0 if p == math.inf else p / (p - 1)


def steepest_margin_trajectory(X, y, norm: str = "l2", p: float | None = None, loss: str = "exp",
                               lr: float | None = None, n_steps: int = 10_000, normalized: bool = True, w0=None,
                               max_step: float | None = None, n_records: int = 60,
                               verbose: int = 0) -> MarginTrajectory:
    """`SteepestDescent` w.r.t. `norm` ("l1", "l2", "linf", "lp" with p) or greedy `CoordinateDescent`
    ("coordinate", the l1 geometry) on L(w) = Σ_i ℓ(y_i <w, x_i>), ℓ = exp(−m) ("exp") or log(1 + e^{−m})
    ("logistic"), compared with `max_margin(X, y, p)` of the same norm (Gunasekar et al. 2018, Thm. 5).

    Thm. 5 (exponential loss) allows steps η_t <= 1/(B² L(w_t)) with B = max_i ||x_i||_* (and below any fixed
    cap). `normalized=True` (default) takes η_t = lr / L(w_t), i.e. steps of size lr on ln L(w), whose gradient
    ∇L/L = −Σ_i softmax(−m)_i z_i never underflows; lr defaults to 1/B², the largest the theorem allows. With
    `normalized=False` the step is the constant lr (default 1/(B² L(w0))), and margins grow only like ln t.
    `max_step` is the theorem's finite cap η₊: the step becomes η_t = min(η₊, lr / L(w_t)) (normalized) or
    min(η₊, lr); the default None leaves the normalized steps uncapped, outside the theorem once L(w_t) < lr/η₊
    for every η₊.
    Gradients are set in closed form in the closure (autograd costs more than the step on these tiny problems).
    """
    X, y = _check_labels(X, y)
    if norm not in STEEPEST_NORMS:
        raise ValueError(f"norm must be one of {tuple(STEEPEST_NORMS)}, got {norm!r}")
    if loss not in ("exp", "logistic"):
        raise ValueError(f"loss must be 'exp' or 'logistic', got {loss!r}")
    if norm == "lp":
        _, p = _check_norm("lp", p)
    elif p is not None:
        raise ValueError(f"p is only used with norm='lp', got p={p} with norm={norm!r}")
    ref_p = p if norm == "lp" else STEEPEST_NORMS[norm]
    Z = y[:, None] * X
    w_start = _start(w0, X.shape[1])
    dual_size = np.max(np.linalg.norm(X, ord=_dual_exponent(ref_p), axis=1))
    if lr is None:
        lr = 1.0 / dual_size ** 2 if normalized else 1.0 / (dual_size ** 2 * math.exp(_log_loss(Z @ w_start, loss)))
    if max_step is not None and not max_step > 0:
        raise ValueError(f"max_step must be positive or None, got {max_step}")
    w = torch.tensor(w_start, dtype=torch.float64)
    optimizer = CoordinateDescent([w], lr) if norm == "coordinate" else SteepestDescent([w], lr, norm, p)
    reference = max_margin(X, y, ref_p)
    Zt = torch.as_tensor(Z)

    def closure():  # w.grad = ∇L or ∇ ln L = −Σ_i (−ℓ'(m_i)) [/ L] z_i, in the log domain
        m = Zt @ w
        log_slope = -m if loss == "exp" else -torch.nn.functional.softplus(m)
        if normalized:
            log_total = torch.logsumexp(_log_terms(m, loss), 0)
            log_slope = log_slope - log_total
            if max_step is not None:  # a step on ln L of min(lr, η₊ L) is a step on L of min(lr / L, η₊)
                optimizer.param_groups[0]["lr"] = min(lr, max_step * math.exp(float(log_total)))
        elif max_step is not None:
            optimizer.param_groups[0]["lr"] = min(lr, max_step)
        w.grad = -(torch.exp(log_slope) @ Zt)

    records = _record_steps(n_steps, n_records)
    out, k = [], 0
    chunk = max(n_steps // 100, 1)
    with Progress(disable=not verbose, transient=True) as progress:
        task = progress.add_task(f"steepest {norm}", total=n_steps)
        for t in range(1, n_steps + 1):
            optimizer.step(closure)
            if t == records[k]:
                out.append(w.numpy().copy())
                k += 1
            if t % chunk == 0:
                progress.update(task, completed=t)
    name = "coordinate" if norm == "coordinate" else f"steepest-l{p:g}" if norm == "lp" else f"steepest-{norm}"
    return _trajectory(name, lr, w_start, records, np.array(out), Z, reference, loss)


# ------------------------------------------------------------------------------------------ AdaGrad

@dataclass(frozen=True)
class AdagradDirection:
    """GD and AdaGrad on the same data and start (both trajectories measured against the L2 max margin ŵ).

    `h` = AdaGrad's final per-coordinate factors 1/(sqrt(G_T) + ε); `predicted_w` = argmin ||h^{-1/2} ⊙ w||_2
    s.t. y_i <w, x_i> >= 1, Qian & Qian's limit direction with h_∞ ≈ h; `predicted_angle` its angle to ŵ (deg);
    `adagrad_to_predicted` AdaGrad's angle to it along the path; `gd_fit` and `adagrad_fit` the fits
    angle(t) ≈ offset + c/ln t to each method's angle to ŵ, whose offset extrapolates the limit angle.
    """

    gd: MarginTrajectory
    adagrad: MarginTrajectory
    h: np.ndarray
    predicted_w: np.ndarray
    predicted_angle: float
    adagrad_to_predicted: np.ndarray
    gd_fit: RateFit
    adagrad_fit: RateFit


def adagrad_direction(X=None, y=None, lr: float = 0.1, n_steps: int = 100_000, eps: float = 1e-10, w0=None,
                      gd_lr: float | None = None, n_records: int = 60, verbose: int = 0) -> AdagradDirection:
    """Diagonal AdaGrad (step lr, torch.optim.Adagrad's update) and GD (step gd_lr, default 1/σ_max(X)²) on the
    logistic loss of (X, y) (default `two_point_data()`), and Qian & Qian (2019)'s prediction for AdaGrad's limit.

    Once G_t has converged (gradients decay like 1/t, so Σ g_t² converges), AdaGrad is GD with the
    fixed preconditioner H = diag(h_∞), i.e. GD on u = H^{-1/2} w with data H^{1/2} x, which tends to the L2 max
    margin in u (Soudry et al.): w → argmin ||H^{-1/2} w|| s.t. y_i <w, x_i> >= 1.
    """
    if X is None:
        X, y = two_point_data()
    X, y = _check_labels(X, y)
    Z = y[:, None] * X
    start = _start(w0, X.shape[1])
    gd_lr = 1.0 / np.linalg.norm(X, 2) ** 2 if gd_lr is None else float(gd_lr)
    if not (lr > 0 and gd_lr > 0 and eps > 0):
        raise ValueError("lr, gd_lr and eps must be positive")
    reference = max_margin(X, y, 2)
    t, W_gd, _ = _numpy_path(Z, start, gd_lr, n_steps, n_records, "gd", verbose=verbose)
    _, W_ada, h = _numpy_path(Z, start, lr, n_steps, n_records, "adagrad", eps=eps, verbose=verbose)
    gd = _trajectory("gd", gd_lr, start, t, W_gd, Z, reference, "logistic")
    adagrad = _trajectory("adagrad", lr, start, t, W_ada, Z, reference, "logistic")
    scale = np.sqrt(h / h.max())  # the direction does not depend on the scale of h
    predicted_w = scale * max_margin(X * scale, y, 2).w
    return AdagradDirection(gd, adagrad, h, predicted_w, float(_angle(predicted_w[None], reference.w)[0]),
                            _angle(W_ada, predicted_w), fit_inverse_log(t, gd.angle, with_offset=True),
                            fit_inverse_log(t, adagrad.angle, with_offset=True))


# ------------------------------------------------------------------------------------------ user models

@dataclass(frozen=True)
class MarginReport:
    """A trained linear classifier w against the max margin of its training data (no intercept, norm p).

    `margin` = min_i y_i <w, x_i> / ||w||_p (negative when a point is misclassified); `max_margin`,
    `margin_ratio` = margin / max_margin and `angle` (Euclidean, degrees, between w and the l_p max-margin vector)
    are None when the data are not separable through the origin.
    """

    separable: bool
    n_misclassified: int
    margin: float
    max_margin: float | None
    margin_ratio: float | None
    angle: float | None
    p: float
    message: str


def _weights_and_labels(model, y) -> tuple[np.ndarray, np.ndarray]:
    """w from an array, a torch tensor, a bias-free torch.nn.Linear(d, 1) or a fitted scikit-learn linear model
    without intercept; y mapped to ±1 (scikit-learn: classes_[1] is +1; otherwise {−1, 1} or {0, 1})."""
    y = np.asarray(y)
    if isinstance(model, torch.nn.Linear):
        if model.out_features != 1:
            raise ValueError(f"need a binary classifier: nn.Linear with out_features=1, got {model.out_features}")
        if model.bias is not None and torch.any(model.bias != 0):
            raise ValueError("the layer has a non-zero bias; the max-margin theory here is for classifiers through "
                             "the origin: train with bias=False, or append a column of ones to X and pass the "
                             "weights with the bias appended")
        model = model.weight.detach().cpu().numpy()
    elif isinstance(model, torch.Tensor):
        model = model.detach().cpu().numpy()
    if hasattr(model, "coef_"):
        intercept = np.asarray(getattr(model, "intercept_", 0.0), dtype=np.float64)
        if np.any(intercept != 0):
            raise ValueError("the model has a non-zero intercept_; fit it with fit_intercept=False (the max margin "
                             "here has no intercept), or append a column of ones to X yourself")
        classes = getattr(model, "classes_", None)
        if classes is not None:
            if len(classes) != 2:
                raise ValueError(f"need a binary classifier, got classes {classes}")
            if not np.all(np.isin(y, classes)):
                raise ValueError(f"y has labels outside the model's classes {classes}")
            y = np.where(y == classes[1], 1.0, -1.0)
        model = model.coef_
    if not isinstance(model, np.ndarray | list | tuple):
        raise TypeError(f"expected a weight vector, a torch.nn.Linear or a scikit-learn linear model with coef_, "
                        f"got {type(model).__name__}")
    w = np.asarray(model, dtype=np.float64)
    if w.ndim == 2 and w.shape[0] == 1:
        w = w[0]
    if w.ndim != 1:
        raise ValueError(f"need one weight vector (binary classifier), got shape {w.shape}")
    if set(np.unique(y).tolist()) <= {0, 1}:
        y = 2.0 * y - 1.0
    return w, y.astype(np.float64)


def _is_separable(Z: np.ndarray) -> bool:
    """Is there w with <w, z_i> >= 1 for all i (separable through the origin)? An LP feasibility problem."""
    w = cp.Variable(Z.shape[1])
    problem = cp.Problem(cp.Minimize(0), [Z @ w >= 1])
    problem.solve()
    if problem.status == cp.OPTIMAL:
        return True
    if problem.status == cp.INFEASIBLE:
        return False
    raise InaccurateSolveError(f"separability LP: cvxpy status {problem.status!r}; rescale the data")


def margin_report(model_or_w, X, y, p: float = 2) -> MarginReport:
    """How far a trained linear classifier is from the l_p max-margin classifier of its training data.

    `model_or_w`: a weight vector (numpy, list, torch), a torch.nn.Linear(d, 1) without bias (a non-zero bias
    is refused) or a fitted scikit-learn linear model with coef_ and no intercept (LogisticRegression(
    fit_intercept=False), LinearSVC(fit_intercept=False), SGDClassifier(fit_intercept=False), ...).
    """
    w, y = _weights_and_labels(model_or_w, y)
    X, y = _check_labels(X, y)
    if w.shape != (X.shape[1],):
        raise ValueError(f"the model has {w.shape[0]} weights but X has {X.shape[1]} columns")
    size = np.linalg.norm(w, ord=p)
    if not size > 0:
        raise ValueError("the weight vector is zero: it has no direction and no margin")
    margins = y * (X @ w)
    n_wrong = int(np.sum(margins <= 0))
    margin = float(margins.min() / size)
    n = len(y)
    name = f"l{p:g}"
    if not _is_separable(y[:, None] * X):
        message = (f"The data are not linearly separable through the origin, so there is no max-margin classifier "
                   f"and the implicit-bias results for separable data (Soudry et al. 2018) do not apply; your "
                   f"classifier misclassifies {n_wrong} of {n} training points.")
        return MarginReport(False, n_wrong, margin, None, None, None, float(p), message)
    reference = max_margin(X, y, p)
    ratio = margin / reference.margin
    angle = float(_angle(w[None], reference.w)[0])
    if n_wrong:
        message = (f"The data are linearly separable through the origin (max {name} margin {reference.margin:.4g}), "
                   f"but your classifier misclassifies {n_wrong} of {n} training points; it is {angle:.1f}° from "
                   f"the max-margin direction.")
    else:
        message = (f"The data are linearly separable through the origin. Your classifier's normalised {name} margin "
                   f"is {margin:.4g}, {ratio:.1%} of the maximum {reference.margin:.4g}, and it is {angle:.1f}° from "
                   f"the max-margin direction.")
        if p == 2 and ratio < 0.99:
            message += (" Gradient descent on the logistic loss would tend to that direction, but only at a 1/log t "
                        "rate (Soudry et al. 2018): a hard-margin SVM solves for it directly.")
    return MarginReport(True, n_wrong, margin, float(reference.margin), float(ratio), angle, float(p), message)
