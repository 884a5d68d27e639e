"""Implicit bias of gradient descent on matrix factorizations: minimum nuclear norm, or not.

- `factorized_gd`: gradient descent on U for f(U) = 1/2 sum_i (<A_i, U U^T> - b_i)^2 with U n x n (no rank
  constraint) from U_0 = sqrt(alpha) I, for several alpha at once. Gunasekar, Woodworth, Bhojanapalli,
  Neyshabur & Srebro (2017), Conjecture 1: as alpha -> 0 and the step -> 0, U U^T tends to
  argmin ||X||_* s.t. A(X) = b, X PSD (compare with `references.min_nuclear_norm(..., psd=True)`).
- `gaussian_sensing`, `symmetric_completion`: the paper's two test problems, symmetric Gaussian measurements
  and observed entries of a low-rank PSD matrix.
- `deep_factorization_completion`: gradient descent on W = W_L ... W_1 (square layers, balanced start) for
  matrix completion. Razin & Cohen (2020): on the 2 x 2 problem with observed entries
  W_12 = W_21 = 1, W_22 = 0 (`RAZIN_COHEN_MASK`, `RAZIN_COHEN_TARGET`) and det W(0) > 0, the loss tends to 0
  only while |W_11| -> infinity, so every norm of W diverges although the minimum-nuclear-norm completion
  (W_11 = 0, ||W||_* = 2) is bounded; the effective rank falls towards 1 instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RAZIN_COHEN_MASK", "RAZIN_COHEN_TARGET", "DeepFactorizationPath", "FactorizationPath",
           "SensingProblem", "deep_factorization_completion", "effective_rank", "factorized_gd",
           "gaussian_sensing", "symmetric_completion"]

RAZIN_COHEN_MASK = np.array([[0.0, 1.0], [1.0, 1.0]])
RAZIN_COHEN_TARGET = np.array([[0.0, 1.0], [1.0, 0.0]])


@dataclass(frozen=True)
class SensingProblem:
    """Measurements b_i = <A_i, truth> with symmetric A_i (m, n, n) of a PSD ground truth (n, n)."""

    measurements: np.ndarray
    b: np.ndarray
    truth: np.ndarray


@dataclass(frozen=True)
class FactorizationPath:
    """`factorized_gd` per alpha: loss and ||U U^T||_* at the recorded `steps` (T, k), final X = U U^T (k, n, n)."""

    alphas: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    nuclear_norm: np.ndarray
    X: np.ndarray


@dataclass(frozen=True)
class DeepFactorizationPath:
    """`deep_factorization_completion` per start: values at the recorded `steps` (T,) and `time` (T,), the
    gradient-flow time sum of the step sizes; `loss`, `nuclear_norm`, `effective_rank`, `det` are (T, B),
    `entries` (T, B, n, n) the end-to-end matrices."""

    depth: int
    steps: np.ndarray
    time: np.ndarray
    loss: np.ndarray
    nuclear_norm: np.ndarray
    effective_rank: np.ndarray
    det: np.ndarray
    entries: np.ndarray


def _low_rank_psd(n: int, rank: int, rng: np.random.Generator) -> np.ndarray:
    V = rng.standard_normal((n, rank))
    W = V @ V.T
    return W / np.linalg.norm(W, 2)


def gaussian_sensing(n: int, rank: int, m: int, random_state=None) -> SensingProblem:
    """m measurements <A_i, W*> of a rank-`rank` PSD W* (top eigenvalue 1) with A_i = (G_i + G_i^T) / (2 sqrt(m)),
    G_i standard Gaussian, so that sum_i <A_i, X>^2 = ||X||_F^2 in expectation (Gunasekar et al. 2017, Sec. 5)."""
    rng = np.random.default_rng(random_state)
    truth = _low_rank_psd(n, rank, rng)
    G = rng.standard_normal((m, n, n))
    A = (G + G.transpose(0, 2, 1)) / (2 * np.sqrt(m))
    return SensingProblem(A, np.einsum("mij,ij->m", A, truth), truth)


def symmetric_completion(n: int, rank: int, m: int, random_state=None) -> SensingProblem:
    """m entries (i <= j, drawn without replacement) of a rank-`rank` PSD W* (top eigenvalue 1), as symmetric
    indicators A = (E_ij + E_ji) / 2, so <A, X> = X_ij for symmetric X."""
    rng = np.random.default_rng(random_state)
    truth = _low_rank_psd(n, rank, rng)
    rows, cols = np.triu_indices(n)
    if not 0 < m <= rows.size:
        raise ValueError(f"m must be in 1..{rows.size} (the entries on and above the diagonal), got {m}")
    pick = rng.choice(rows.size, m, replace=False)
    A = np.zeros((m, n, n))
    A[np.arange(m), rows[pick], cols[pick]] += 0.5
    A[np.arange(m), cols[pick], rows[pick]] += 0.5
    return SensingProblem(A, truth[rows[pick], cols[pick]], truth)


def _record_points(n_steps: int, n_records: int) -> np.ndarray:
    return np.unique(np.concatenate([[0], np.geomspace(1, n_steps, n_records).astype(int)]))


def factorized_gd(measurements, b, alphas, step: float, n_steps: int, n_records: int = 60,
                  tol: float = 0.0) -> FactorizationPath:
    """Gradient descent U <- U - step * 2 A*(A(U U^T) - b) U from U_0 = sqrt(alpha) I, one run per alpha (batched).

    Gunasekar et al. (2017), Sec. 2: f(U) = 1/2 ||A(U U^T) - b||^2, U n x n. Stops early once every run's loss
    is <= `tol`; `loss` and `nuclear_norm` are recorded at about `n_records` log-spaced steps.
    """
    A = np.asarray(measurements, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    alphas = np.asarray(alphas, dtype=np.float64).ravel()
    if A.ndim != 3 or A.shape[1] != A.shape[2] or b.shape != (A.shape[0],):
        raise ValueError(f"measurements must be (m, n, n) and b (m,), got {A.shape} and {b.shape}")
    if np.any(alphas <= 0) or step <= 0 or n_steps < 1:
        raise ValueError("alphas and step must be positive and n_steps >= 1")
    m, n = A.shape[:2]
    flat = (0.5 * (A + A.transpose(0, 2, 1))).reshape(m, n * n)
    U = np.sqrt(alphas)[:, None, None] * np.eye(n)
    record = set(_record_points(n_steps, n_records).tolist())
    steps, losses, nuclear = [], [], []
    for t in range(n_steps + 1):
        X = U @ U.transpose(0, 2, 1)
        residual = X.reshape(len(alphas), n * n) @ flat.T - b
        loss = 0.5 * np.sum(residual ** 2, axis=1)
        done = t == n_steps or np.all(loss <= tol)
        if t in record or done:
            steps.append(t)
            losses.append(loss)
            nuclear.append(np.trace(X, axis1=1, axis2=2))  # X = U U^T is PSD: nuclear norm = trace
        if done:
            break
        U = U - step * 2 * (residual @ flat).reshape(len(alphas), n, n) @ U
    return FactorizationPath(alphas, np.array(steps), np.array(losses), np.array(nuclear), X)


def effective_rank(W) -> np.ndarray:
    """exp of the entropy of the normalised singular values (Roy & Vetterli 2007), over the last two axes."""
    s = np.linalg.svd(np.asarray(W, dtype=np.float64), compute_uv=False)
    p = s / np.sum(s, axis=-1, keepdims=True)
    return np.exp(-np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1))


def _balanced_layers(products: np.ndarray, depth: int) -> list[np.ndarray]:
    """W_1 = S^(1/L) V^T, W_j = S^(1/L), W_L = U S^(1/L) for each product U S V^T: W_{j+1}^T W_{j+1} = W_j W_j^T."""
    U, S, Vt = np.linalg.svd(products)
    root = S ** (1.0 / depth)
    middle = root[:, :, None] * np.eye(products.shape[-1])
    return [root[:, :, None] * Vt] + [middle.copy() for _ in range(depth - 2)] + [U * root[:, None, :]]


def deep_factorization_completion(mask, target, depth: int, init_products, step: float, n_steps: int,
                                  n_records: int = 60) -> DeepFactorizationPath:
    """Gradient descent on l(W) = 1/2 sum_{observed} (W_ij - target_ij)^2, W = W_L ... W_1, from balanced layers.

    Razin & Cohen (2020), deep matrix factorization; one run per (n, n) start in `init_products` (B, n, n), batched.
    The step is step / max(1, max_j ||W_j||_F^2)^(L-1), below the inverse curvature of the product as the layers grow
    (so the runs follow gradient flow, whose time is recorded too); depth 1 is plain gradient descent on W.
    """
    mask = np.asarray(mask, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    products = np.asarray(init_products, dtype=np.float64)
    if products.ndim == 2:
        products = products[None]
    if mask.shape != target.shape or mask.ndim != 2 or mask.shape[0] != mask.shape[1] \
            or products.shape[1:] != mask.shape:
        raise ValueError(f"mask, target and each start must be the same square shape, got {mask.shape}, "
                         f"{target.shape} and {products.shape[1:]}")
    if depth < 1 or step <= 0 or n_steps < 1:
        raise ValueError("depth >= 1, step > 0 and n_steps >= 1 are required")
    layers = [products.copy()] if depth == 1 else _balanced_layers(products, depth)
    eye = np.broadcast_to(np.eye(mask.shape[0]), products.shape)
    record = set(_record_points(n_steps, n_records).tolist())
    elapsed = np.zeros(len(products))
    out = {key: [] for key in ("steps", "time", "loss", "nuclear_norm", "effective_rank", "det", "entries")}
    for t in range(n_steps + 1):
        prefix = [eye]  # prefix[j] = W_j ... W_1
        for W in layers:
            prefix.append(W @ prefix[-1])
        product = prefix[-1]
        residual = mask * (product - target)
        if t in record:
            out["steps"].append(t)
            out["time"].append(elapsed.copy())
            out["loss"].append(0.5 * np.sum(residual ** 2, axis=(1, 2)))
            out["nuclear_norm"].append(np.linalg.svd(product, compute_uv=False).sum(axis=-1))
            out["effective_rank"].append(effective_rank(product))
            out["det"].append(np.linalg.det(product))
            out["entries"].append(product.copy())
        if t == n_steps:
            break
        size = np.max([np.sum(W ** 2, axis=(1, 2)) for W in layers], axis=0)
        eta = (step / np.maximum(1.0, size) ** (depth - 1))[:, None, None]
        elapsed += eta[:, 0, 0]
        suffix = eye  # W_L ... W_{j+1}
        grads = [None] * depth
        for j in range(depth - 1, -1, -1):
            grads[j] = suffix.transpose(0, 2, 1) @ residual @ prefix[j].transpose(0, 2, 1)
            suffix = suffix @ layers[j]
        layers = [W - eta * g for W, g in zip(layers, grads, strict=True)]
    return DeepFactorizationPath(depth, *(np.array(out[key]) for key in
                                          ("steps", "time", "loss", "nuclear_norm", "effective_rank", "det",
                                           "entries")))
