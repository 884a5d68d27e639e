"""Grow the network until the certificate holds: Haeffele & Vidal's meta-algorithm (2017 CVPR).

Repeat: local descent on the current r subnetworks; compute the polar Ω°_θ(Z) of Z = (Y - Φ) / λ; if it is
<= 1 + tol we stop (a global minimum where the polar is exact, see `certify`; where only the ascent's lower bound
exists, no direction > 1 + tol was found); otherwise append a subnetwork along the polar's maximiser, scaled by
the exact line search of `certificate.unit_step` (the objective strictly decreases), drop the subnetworks that
descent drove to zero, and descend again.
For matrix factorization (X = None, linear) the polar is σ_max(Y - U Vᵀ) / λ and the grown factorization solves
min_W ½||Y - W||²_F + λ ||W||_* (the convex problem behind the variational form of the nuclear norm).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .certificate import Certificate, certify, unit_step
from .descent import local_descent
from .networks import ParallelNetwork, as_targets, as_tensor

__all__ = ["GrowResult", "grow", "grow_matrix_factorization"]


@dataclass(frozen=True)
class GrowResult:
    """The final network, its objective and certificate, and one history row per descent."""

    network: ParallelNetwork
    objective: float
    certificate: Certificate
    history: list[dict]

    @property
    def n_active(self) -> int:
        """Subnetworks that are not zero (θ_i > zero_tol Θ)."""
        return self.network.r - len(self.certificate.zero_subnetworks)


def grow(X, Y, lam: float, *, start: ParallelNetwork | None = None, hidden: Sequence[int] = (1,),
         activation: str = "relu", r0: int = 1,
         tol: float | None = None, max_units: int = 50, init_scale: float = 0.1, max_iter: int = 5000,
         gtol: float = 1e-10, polar_method: str = "auto", n_restarts: int = 256, n_steps: int = 300,
         random_state: int = 0) -> GrowResult:
    """Grow r parallel subnetworks of hidden widths `hidden` (default: one ReLU unit each) from r0 random ones
    (or from the network `start`, whose architecture then overrides `hidden` and `activation`).

    `tol` on the polar and on first-order equality defaults to 1e-6 for linear subnetworks (exact polar, smooth
    descent) and 1e-4 for ReLU (heuristic polar, descent on a piecewise-smooth objective).
    """
    Y = as_targets(Y)
    d = Y.shape[0] if X is None else as_tensor(X).shape[1]
    net = start if start is not None else ParallelNetwork.random(r0, [d, *hidden, Y.shape[1]], activation,
                                                                 init_scale, random_state)
    tol = (1e-6 if net.activation == "linear" else 1e-4) if tol is None else tol
    history = []
    for step in range(max_units + 1):
        descent = local_descent(net, X, Y, lam, "matched", max_iter=max_iter, gtol=gtol)
        net = descent.network
        cert = certify(net, X, Y, lam, tol=tol, polar_method=polar_method, n_restarts=n_restarts, n_steps=n_steps,
                       random_state=random_state + step)
        history.append({"units": net.r, "objective": descent.objective, "polar": cert.polar,
                        "zero_subnetworks": len(cert.zero_subnetworks), "decrease": cert.decrease,
                        "lbfgs_iterations": descent.n_iter})
        if cert.polar <= 1 + tol or net.r >= max_units:
            break
        _, _, unit = unit_step(net, X, Y, lam, cert.direction)
        keep = [i for i in range(net.r) if i not in cert.zero_subnetworks]
        net = net.select(keep).append(unit)
    return GrowResult(net, descent.objective, cert, history)


def grow_matrix_factorization(Y, lam: float, **kwargs) -> GrowResult:
    """Grow Y ≈ U Vᵀ under ½||Y - U Vᵀ||²_F + λ Σ_i ||u_i|| ||v_i||; `network.factors()` gives (U, V)."""
    return grow(None, Y, lam, activation="linear", **kwargs)
