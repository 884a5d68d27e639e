"""Both ends of a symmetric spectrum at once by a block Krylov method with Rayleigh–Ritz and thick restart,
started from a block of vectors (the previous checkpoint's Ritz vectors when tracking a training run).

Each step multiplies the operator onto a block W of new directions, Rayleigh–Ritz on the whole basis B gives the
Ritz pairs (θ_i, x_i) and residuals r_i = A x_i − θ_i x_i without further products (A B is kept), and the next W is
the residuals of the wanted pairs not yet converged, orthogonalised against B: span{x_i, r_i} = span{x_i, A x_i},
so B grows as a block Krylov space (block Lanczos, Golub & Underwood 1977, with explicit Rayleigh–Ritz as in
Davidson-type methods). When B would exceed `max_basis` columns it restarts thick from the wanted Ritz vectors
(Wu & Simon 2000; Stathopoulos & Saad 1998): half the basis, the Ritz vectors nearest the two ends, whose products
are known. Why here and not ARPACK: `eigsh` takes a
single start vector, so a warm start from k Ritz vectors must be squeezed into their sum, and a cluster of wanted
eigenvalues (the bottom of a network's Hessian often is one) needs a block at least as wide as the cluster. scipy's
`lobpcg` takes a block but keeps only three blocks of history; a LOBPCG probe used more products than ARPACK on
bench_track.py's MLP.
"""

from __future__ import annotations

import numpy as np

_TINY = np.finfo(np.float64).eps ** (2 / 3)  # ARPACK's floor under |θ| in its relative test


def _orthonormal_complement(W: np.ndarray, B: np.ndarray | None, drop: float = 1e-10) -> np.ndarray:
    """Columns of W orthogonalised against B (two passes of classical Gram–Schmidt) and orthonormalised; columns
    that fall below `drop` of their norm (already in span B) are dropped."""
    norms = np.linalg.norm(W, axis=0)
    W = W[:, norms > 0] / norms[norms > 0]
    if B is not None and B.shape[1]:
        for _ in range(2):
            W = W - B @ (B.T @ W)
    Q, R = np.linalg.qr(W)
    keep = np.abs(np.diag(R)) > drop
    return Q[:, keep]


def _thick_restart(B: np.ndarray, AB: np.ndarray, Y: np.ndarray, n_top: int, n_bottom: int,
                   keep: int) -> tuple[np.ndarray, np.ndarray]:
    """The basis cut to the `keep` Ritz vectors nearest the two ends (shared in proportion to n_top and n_bottom,
    at least the wanted ones), with their known products: orthonormal, as B and the eigenvectors Y are."""
    m = Y.shape[1]
    keep = min(max(keep, n_top + n_bottom), m)
    n_high = max(n_top, round(keep * n_top / (n_top + n_bottom)))
    chosen = np.unique(np.r_[np.arange(m - n_high, m), np.arange(keep - n_high)])
    return B @ Y[:, chosen], AB @ Y[:, chosen]


def block_extreme_pairs(matmat, P: int, start: np.ndarray, *, n_top: int, n_bottom: int, tol: float,
                        max_basis: int | None = None, max_products: int | None = None) -> dict:
    """The n_top largest and n_bottom smallest eigenpairs of the symmetric P×P operator behind `matmat` (a function
    of (P, m) float64 arrays), from the block `start` (P, b).

    Stopping rule (as `nnlift.landscape.track`'s): a top pair is converged when ‖A x − θ x‖ <= tol·max(|θ|,
    eps^(2/3)) (ARPACK's), a bottom pair when ‖A x − θ x‖ <= tol·(θ_max − θ), θ_max the largest Ritz value. The
    basis restarts thick at `max_basis` columns (default max(8·(n_top + n_bottom), 160)). Returns "top" (values
    descending, vectors), "bottom" (ascending), "products" (columns multiplied) and "converged". Stops unconverged after
    `max_products` (default 20·P) columns, or unconverged when the residuals of the unconverged pairs fall inside
    the basis (rounding: tol below what float64 resolves); converged when the basis spans the whole space.
    """
    if n_top < 0 or n_bottom < 0 or n_top + n_bottom == 0:
        raise ValueError(f"n_top and n_bottom must be >= 0 and not both 0, got {n_top} and {n_bottom}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    max_basis = max(8 * (n_top + n_bottom), 160) if max_basis is None else max_basis
    start = np.asarray(start, dtype=np.float64).reshape(P, -1)
    if not np.isfinite(start).all() or not np.abs(start).max(initial=0.0) > 0:
        raise ValueError("start must be a finite block with at least one non-zero column")
    if max_basis < n_top + n_bottom + start.shape[1]:
        raise ValueError(f"max_basis must hold the wanted pairs and a block of new directions (at least "
                         f"{n_top + n_bottom + start.shape[1]}), got {max_basis}")
    max_products = 20 * P if max_products is None else max_products
    B = np.zeros((P, 0))
    AB = np.zeros((P, 0))
    W = _orthonormal_complement(start, None)
    products, converged = 0, False
    while True:
        AW = matmat(W)
        products += W.shape[1]
        B, AB = np.hstack([B, W]), np.hstack([AB, AW])
        T = B.T @ AB
        theta, Y = np.linalg.eigh((T + T.T) / 2)
        wanted = np.r_[np.arange(len(theta) - n_top, len(theta)), np.arange(min(n_bottom, len(theta)))]
        wanted = np.unique(wanted[wanted >= 0])
        X, AX = B @ Y[:, wanted], AB @ Y[:, wanted]
        R = AX - X * theta[wanted]
        residuals = np.linalg.norm(R, axis=0)
        top_side = wanted >= len(theta) - n_top
        bound = np.where(top_side, tol * np.maximum(np.abs(theta[wanted]), _TINY), tol * (theta[-1] - theta[wanted]))
        done = residuals <= bound
        full = B.shape[1] >= P
        if done.all() or full or products >= max_products:
            converged = bool(done.all() or full)
            break
        W = _orthonormal_complement(R[:, ~done], B)
        if W.shape[1] == 0:  # the residuals lie in span B: only rounding is left, tol is below it
            break
        if B.shape[1] + W.shape[1] > max_basis:
            B, AB = _thick_restart(B, AB, Y, n_top, n_bottom, max_basis // 2)
            W = _orthonormal_complement(R[:, ~done], B)
    order = np.argsort(theta)
    top_index = order[::-1][:n_top]
    bottom_index = order[:n_bottom]
    return {"top": (theta[top_index], B @ Y[:, top_index]), "bottom": (theta[bottom_index], B @ Y[:, bottom_index]),
            "products": products, "converged": converged}
