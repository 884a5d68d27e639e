"""Score functions of any differentiable density, contracted with probes by forward-mode automatic differentiation.

A subclass supplies g(x) = grad log p(x) as a torch function of a (rows, d) batch whose rows are independent
(`log_density_gradient`). The directional derivatives H v, T(I, u, w), Q(I, v, v, v) of g are nested
`torch.func.jvp` calls on a batch where each row is repeated once per probe with that probe as its tangent, so
no d x d (let alone d^3) array is formed; the scores follow from `nnlift.scores._formulas`. A separable density
(independent coordinates) may also supply `marginal_derivatives`, the elementwise derivatives of its marginal
log-densities: every contraction is then a few matrix products over the rows, as for the Gaussian.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch.func import jvp

from ._formulas import assemble_projection

__all__ = ["AutodiffScore", "nested_directional_derivatives"]

_NUMBERS_PER_BATCH = 2_000_000


def nested_directional_derivatives(gradient, X: torch.Tensor, directions: list[torch.Tensor]) -> tuple:
    """D^|S| g(x)[v_S] for every subset S of the directions, by nested jvp (2^L tensors shaped like X).

    Entry i holds the derivative along the directions whose bit is set in i: with directions (u, w) the
    entries are g, Dg[u], Dg[w], D^2 g[u, w]. Each direction is a tensor of X's shape (one tangent per row).
    """
    def build(depth):
        if depth == 0:
            return lambda x: (gradient(x),)
        inner, tangent = build(depth - 1), directions[depth - 1]

        def differentiate(x):
            primal, derivative = jvp(inner, (x,), (tangent,))
            return primal + derivative
        return differentiate
    return build(len(directions))(X)


def _replicated(X: torch.Tensor, probes: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Rows repeated once per probe column (probe-major) and each probe broadcast to its copy of the rows."""
    rows = X.shape[0]
    return X.repeat(probes[0].shape[1], 1), [P.T.repeat_interleave(rows, dim=0) for P in probes]


def _row_batches(rows: int, probes: int, dim: int):
    step = max(1, _NUMBERS_PER_BATCH // max(1, probes * dim))
    return (slice(i, i + step) for i in range(0, rows, step))


class AutodiffScore:
    """Base for scores given by g(x) = grad log p(x); subclasses implement `log_density_gradient`.

    Provides the score protocol used by `nnlift.moments.CrossMoment` (`contract_chunk`, `contract_rows`,
    `contract_pairs_chunk`, `project_chunk`, `dense`). The general path costs about 2^(m-1) evaluations of g
    per row and probe for order m; the separable path costs a few matrix products.
    """

    def log_density_gradient(self, X: torch.Tensor) -> torch.Tensor:
        """grad log p at each row of X (rows, d), differentiable with torch.func."""
        raise NotImplementedError

    def marginal_derivatives(self, X: torch.Tensor) -> tuple | None:
        """(g, l'', l''', l'''') elementwise for a separable density, else None."""
        return None

    # -- the score protocol ----------------------------------------------------------------------------
    def contract_chunk(self, X: torch.Tensor, w: torch.Tensor, V: torch.Tensor, order: int) -> torch.Tensor:
        """sum_r w_r S_order(x_r)(I, v, ..., v) for each column v of V: a (d, m) tensor."""
        _check_order(order, (1, 2, 3, 4))
        marginal = self.marginal_derivatives(X)
        if marginal is not None:
            return _separable_contract(marginal, w, V, order)
        if order == 1:
            return -(self.log_density_gradient(X).T @ w)[:, None].expand(-1, V.shape[1]).clone()
        total = torch.zeros_like(V)
        for rows in _row_batches(X.shape[0], V.shape[1], X.shape[1]):
            total += torch.einsum("r,mrd->dm", w[rows], self._general_rows(X[rows], V, order))
        return total

    def contract_rows(self, X: torch.Tensor, w: torch.Tensor, V: torch.Tensor, order: int) -> torch.Tensor:
        """The per-row terms w_r S_order(x_r)(I, v, ..., v), shape (rows, d, m)."""
        _check_order(order, (2, 3, 4))
        marginal = self.marginal_derivatives(X)
        rows = (_separable_rows(marginal, V, order) if marginal is not None
                else self._general_rows(X, V, order).permute(1, 2, 0))
        return w[:, None, None] * rows

    def contract_pairs_chunk(self, X: torch.Tensor, w: torch.Tensor, U: torch.Tensor,
                             W: torch.Tensor) -> torch.Tensor:
        """sum_r w_r S3(x_r)(I, u_i, w_i) for column pairs (u_i, w_i): a (d, m) tensor."""
        marginal = self.marginal_derivatives(X)
        if marginal is not None:
            return _separable_pairs(marginal, w, U, W)
        total = torch.zeros_like(U)
        for rows in _row_batches(X.shape[0], U.shape[1], X.shape[1]):
            total += torch.einsum("r,mrd->dm", w[rows], self._general_pair_rows(X[rows], U, W))
        return total

    def project_chunk(self, X: torch.Tensor, w: torch.Tensor, Q: torch.Tensor, order: int) -> torch.Tensor:
        """sum_r w_r S_order(x_r)(Q, ..., Q): a dense (k,)*order tensor, k = Q.shape[1]."""
        _check_order(order, (2, 3, 4))
        marginal = self.marginal_derivatives(X)
        if marginal is not None:
            return assemble_projection(order, _separable_projection_sums(marginal, w, Q, order))
        tuples = list(itertools.combinations_with_replacement(range(Q.shape[1]), order - 1))
        sums = None
        for rows in _row_batches(X.shape[0], len(tuples), X.shape[1]):
            part = self._general_projection_sums(X[rows], w[rows], Q, order, tuples)
            sums = part if sums is None else {key: sums[key] + part[key] for key in sums}
        return assemble_projection(order, sums)

    def dense(self, x, order: int) -> np.ndarray:
        """The full tensor S_order(x) at one point (tests, tiny d): the projection onto the identity."""
        x_t = torch.as_tensor(np.asarray(x, dtype=np.float64)).reshape(1, -1)
        if order == 1:
            return -self.log_density_gradient(x_t)[0].detach().numpy()
        one = torch.ones(1, dtype=torch.float64)
        return self.project_chunk(x_t, one, torch.eye(x_t.shape[1], dtype=torch.float64), order).numpy()

    # -- general path: nested jvp on replicated rows --------------------------------------------------
    def _general_rows(self, X: torch.Tensor, V: torch.Tensor, order: int) -> torch.Tensor:
        """S_order(x_r)(I, v, ..., v) for every probe and row, shape (m, rows, d)."""
        m, (rows, d) = V.shape[1], X.shape
        if order == 1:
            return -self.log_density_gradient(X).expand(m, rows, d)
        X_rep, (tangent,) = _replicated(X, [V])
        out = [t.reshape(m, rows, d) for t in
               nested_directional_derivatives(self.log_density_gradient, X_rep, [tangent] * (order - 1))]
        v = V.T[:, None, :]
        g, h = out[0], out[1]
        a, c = (g * v).sum(-1, keepdim=True), (h * v).sum(-1, keepdim=True)
        if order == 2:
            return g * a + h
        t = out[3]
        if order == 3:
            return -(g * (a**2 + c) + 2.0 * a * h + t)
        tau = (t * v).sum(-1, keepdim=True)
        return g * (a**3 + 3.0 * a * c + tau) + h * (3.0 * a**2 + 3.0 * c) + 3.0 * a * t + out[7]

    def _general_pair_rows(self, X: torch.Tensor, U: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """S3(x_r)(I, u_i, w_i) for every pair and row, shape (m, rows, d)."""
        m, (rows, d) = U.shape[1], X.shape
        X_rep, tangents = _replicated(X, [U, W])
        g, hu, hw, t = (t.reshape(m, rows, d)
                        for t in nested_directional_derivatives(self.log_density_gradient, X_rep, tangents))
        u, v = U.T[:, None, :], W.T[:, None, :]
        au, aw = (g * u).sum(-1, keepdim=True), (g * v).sum(-1, keepdim=True)
        c = (hu * v).sum(-1, keepdim=True)
        return -(g * (au * aw + c) + hu * aw + hw * au + t)

    def _general_projection_sums(self, X: torch.Tensor, w: torch.Tensor, Q: torch.Tensor, order: int,
                                 tuples: list[tuple[int, ...]]) -> dict[str, torch.Tensor]:
        """Row sums of products of gq = Q^T g, hq = Q^T H Q, tq, qq from nested jvp along sorted index tuples."""
        rows, k = X.shape[0], Q.shape[1]
        index = torch.tensor(tuples, device=Q.device).T
        X_rep, tangents = _replicated(X, [Q[:, i] for i in index])
        out = [(t.reshape(len(tuples), rows, -1) @ Q) for t in
               nested_directional_derivatives(self.log_density_gradient, X_rep, tangents)]
        gq = out[0][0]
        first = {a: i for i, a in reversed(list(enumerate(t[0] for t in tuples)))}
        hq = torch.stack([out[1][first[a]] for a in range(k)], dim=1)
        if order == 2:
            return {"gg": torch.einsum("r,ra,rb->ab", w, gq, gq), "h": torch.einsum("r,rab->ab", w, hq)}
        derivative = out[3] if order == 3 else out[7]
        highest = torch.zeros((rows,) + (k,) * order, dtype=X.dtype, device=X.device)
        for i, t in enumerate(tuples):
            for perm in set(itertools.permutations(t)):
                highest[(slice(None), slice(None)) + perm] = derivative[i]
        highest = highest.movedim(1, -1)
        if order == 3:
            return {"ggg": torch.einsum("r,ra,rb,rc->abc", w, gq, gq, gq),
                    "gh": torch.einsum("r,ra,rbc->abc", w, gq, hq), "t": torch.einsum("r,rabc->abc", w, highest)}
        pair_first = {t[:2]: i for i, t in reversed(list(enumerate(tuples)))}
        tq = torch.zeros((rows, k, k, k), dtype=X.dtype, device=X.device)
        for (a, b), i in pair_first.items():
            tq[:, a, b, :] = tq[:, b, a, :] = out[3][i]
        return {"gggg": torch.einsum("r,ra,rb,rc,rd->abcd", w, gq, gq, gq, gq),
                "ggh": torch.einsum("r,ra,rb,rcd->abcd", w, gq, gq, hq),
                "hh": torch.einsum("r,rab,rcd->abcd", w, hq, hq),
                "gt": torch.einsum("r,ra,rbcd->abcd", w, gq, tq),
                "q": torch.einsum("r,rabcd->abcd", w, highest)}


def _check_order(order: int, allowed: tuple[int, ...]) -> None:
    if order not in allowed:
        raise ValueError(f"order must be one of {allowed}, got {order}")


# -- separable path: l(x) = sum_j l_j(x_j), so H, T, Q are diagonal --------------------------------------
def _separable_contract(marginal, w, V, order):
    g, d2, d3, d4 = marginal
    if order == 1:
        return -(g.T @ w)[:, None].expand(-1, V.shape[1]).clone()
    a = g @ V
    c = d2 @ V**2
    if order == 2:
        return g.T @ (w[:, None] * a) + (d2.T @ w)[:, None] * V
    if order == 3:
        return -(g.T @ (w[:, None] * (a**2 + c)) + 2.0 * (d2.T @ (w[:, None] * a)) * V + (d3.T @ w)[:, None] * V**2)
    tau = d3 @ V**3
    return (g.T @ (w[:, None] * (a**3 + 3.0 * a * c + tau)) + (d2.T @ (w[:, None] * (3.0 * a**2 + 3.0 * c))) * V
            + 3.0 * (d3.T @ (w[:, None] * a)) * V**2 + (d4.T @ w)[:, None] * V**3)


def _separable_rows(marginal, V, order):
    g, d2, d3, d4 = (t[:, :, None] for t in marginal)
    a = (marginal[0] @ V)[:, None, :]
    c = (marginal[1] @ V**2)[:, None, :]
    if order == 2:
        return g * a + d2 * V
    if order == 3:
        return -(g * (a**2 + c) + 2.0 * a * d2 * V + d3 * V**2)
    tau = (marginal[2] @ V**3)[:, None, :]
    return g * (a**3 + 3.0 * a * c + tau) + d2 * V * (3.0 * a**2 + 3.0 * c) + 3.0 * a * d3 * V**2 + d4 * V**3


def _separable_pairs(marginal, w, U, W):
    g, d2, d3, _ = marginal
    au, aw = g @ U, g @ W
    c = d2 @ (U * W)
    return -(g.T @ (w[:, None] * (au * aw + c)) + (d2.T @ (w[:, None] * aw)) * U + (d2.T @ (w[:, None] * au)) * W
             + (d3.T @ w)[:, None] * U * W)


def _separable_projection_sums(marginal, w, Q, order):
    """Row sums for `assemble_projection` when hq = Q^T diag(l'') Q etc.: products over rows, then over d."""
    g, d2, d3, d4 = marginal
    gq = g @ Q
    wg = w[:, None] * gq
    if order == 2:
        return {"gg": wg.T @ gq, "h": torch.einsum("j,ja,jb->ab", d2.T @ w, Q, Q)}
    if order == 3:
        return {"ggg": torch.einsum("ra,rb,rc->abc", wg, gq, gq),
                "gh": torch.einsum("aj,jb,jc->abc", wg.T @ d2, Q, Q),
                "t": torch.einsum("j,ja,jb,jc->abc", d3.T @ w, Q, Q, Q)}
    k = Q.shape[1]
    pairs = (Q[:, :, None] * Q[:, None, :]).reshape(-1, k * k)
    return {"gggg": torch.einsum("ra,rb,rc,rd->abcd", wg, gq, gq, gq),
            "ggh": torch.einsum("abj,jc,jd->abcd", torch.einsum("ra,rb,rj->abj", wg, gq, d2), Q, Q),
            "hh": (pairs.T @ (d2.T @ (w[:, None] * d2)) @ pairs).reshape(k, k, k, k),
            "gt": torch.einsum("aj,jb,jc,jd->abcd", wg.T @ d3, Q, Q, Q),
            "q": torch.einsum("j,ja,jb,jc,jd->abcd", d4.T @ w, Q, Q, Q, Q)}
