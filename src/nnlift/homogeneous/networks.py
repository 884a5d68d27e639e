"""Positively homogeneous networks as sums of r parallel subnetworks, Φ(X, W) = Σ_i φ(X, W_i).

Each subnetwork φ is a chain of p bias-free linear layers with a positively homogeneous activation (ReLU, or
none) between them, so φ(X, αW_i) = α^p φ(X, W_i) for α >= 0: degree p = depth, and the network's size is r
(Haeffele & Vidal 2017, CVPR, "Global optimality in neural network training", parallel subnetworks). The three
cases of the papers are constructors:

- matrix factorization, Φ = U Vᵀ = Σ_i u_i v_iᵀ (X = I, no activation, degree 2);
- one-hidden-layer ReLU networks, Φ = relu(X U) Vᵀ = Σ_i relu(X u_i) v_iᵀ (one unit per subnetwork, degree 2);
- deeper ReLU subnetworks, φ(X, W_i) = relu(... relu(X W_{1,i}ᵀ) ...) W_{p,i}ᵀ (degree p).

A bias is homogeneous only when it is a weight on a constant input: append a column of ones to X.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._backend import to_tensor

__all__ = ["ACTIVATIONS", "ParallelNetwork", "as_targets", "as_tensor"]

ACTIVATIONS = {"relu": torch.relu, "linear": lambda t: t}
_CPU = torch.device("cpu")


def as_tensor(a) -> torch.Tensor:
    """A float64 CPU copy of an array or tensor (None stays None: X = identity for matrix factorization)."""
    return None if a is None else to_tensor(a, _CPU, torch.float64)


def as_targets(Y) -> torch.Tensor:
    """Targets as an (n, m) float64 tensor (a vector becomes one column)."""
    Y = as_tensor(Y)
    return Y[:, None] if Y.ndim == 1 else Y


@dataclass
class ParallelNetwork:
    """r parallel subnetworks; `layers[l]` is the (r, out_l, in_l) stack of the r subnetworks' l-th weights."""

    layers: list[torch.Tensor]
    activation: str = "relu"

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        self.layers = [as_tensor(W) for W in self.layers]
        if not self.layers or any(W.ndim != 3 for W in self.layers):
            raise ValueError("layers must be a non-empty list of (r, out, in) stacks")
        for below, above in zip(self.layers, self.layers[1:], strict=False):
            if above.shape[0] != below.shape[0] or above.shape[2] != below.shape[1]:
                raise ValueError(f"layer shapes {tuple(below.shape)} and {tuple(above.shape)} do not chain")

    @classmethod
    def matrix_factorization(cls, U, V) -> ParallelNetwork:
        """Φ = U Vᵀ with U (n1, r) and V (n2, r): subnetwork i is the rank-one u_i v_iᵀ."""
        U, V = as_tensor(U), as_tensor(V)
        return cls([U.T[:, None, :], V.T[:, :, None]], "linear")

    @classmethod
    def one_hidden_relu(cls, U, V) -> ParallelNetwork:
        """Φ(X) = relu(X U) Vᵀ with U (d, r) the input weights and V (m, r) the output weights of r hidden units."""
        U, V = as_tensor(U), as_tensor(V)
        return cls([U.T[:, None, :], V.T[:, :, None]], "relu")

    @classmethod
    def random(cls, r: int, widths: Sequence[int], activation: str = "relu", scale: float = 1.0,
               random_state: int = 0) -> ParallelNetwork:
        """r subnetworks with layer widths [d, h_1, ..., m]; Gaussian weights with variance scale²/fan-in."""
        generator = torch.Generator().manual_seed(random_state)
        layers = [torch.randn(r, out, fan_in, generator=generator, dtype=torch.float64) * scale / fan_in ** 0.5
                  for fan_in, out in zip(widths[:-1], widths[1:], strict=True)]
        return cls(layers, activation)

    @property
    def r(self) -> int:
        return self.layers[0].shape[0]

    @property
    def degree(self) -> int:
        """The degree p of positive homogeneity of each subnetwork (its depth)."""
        return len(self.layers)

    @property
    def widths(self) -> list[int]:
        return [self.layers[0].shape[2]] + [W.shape[1] for W in self.layers]

    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        """(U, V) of a depth-2 network with one unit per subnetwork: Φ = U Vᵀ or relu(X U) Vᵀ."""
        if self.degree != 2 or self.layers[0].shape[1] != 1:
            raise ValueError("factors() needs depth 2 and one hidden unit per subnetwork")
        return self.layers[0][:, 0, :].T.numpy().copy(), self.layers[1][:, :, 0].T.numpy().copy()

    def subnetwork_outputs(self, X=None, layers: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The (r, n, m) stack of φ(X, W_i); X = None means the identity (matrix factorization)."""
        layers = self.layers if layers is None else layers
        act = ACTIVATIONS[self.activation]
        H = layers[0].transpose(1, 2) if X is None else torch.matmul(as_tensor(X), layers[0].transpose(1, 2))
        for W in layers[1:]:
            H = torch.matmul(act(H), W.transpose(1, 2))
        return H

    def __call__(self, X=None, layers: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Φ(X, W) = Σ_i φ(X, W_i), an (n, m) tensor."""
        return self.subnetwork_outputs(X, layers).sum(0)

    def layer_norms(self) -> torch.Tensor:
        """The (r, p) Frobenius norms ||W_{l,i}||."""
        return torch.stack([W.flatten(1).norm(dim=1) for W in self.layers], dim=1)

    def theta(self) -> torch.Tensor:
        """θ(W_i) = Π_l ||W_{l,i}||_F for each subnetwork: the matched-degree regulariser's terms."""
        return self.layer_norms().prod(dim=1)

    def balanced(self) -> ParallelNetwork:
        """The same Φ with each subnetwork's layer norms made equal (θ unchanged); zero subnetworks become 0."""
        norms = self.layer_norms()
        target = norms.prod(dim=1, keepdim=True) ** (1 / self.degree)
        factor = torch.where(norms > 0, target / norms.clamp_min(1e-300), torch.zeros_like(norms))
        return ParallelNetwork([W * factor[:, k, None, None] for k, W in enumerate(self.layers)], self.activation)

    def scaled(self, t: float) -> ParallelNetwork:
        """Every layer times t, so Φ becomes t^p Φ."""
        return ParallelNetwork([t * W for W in self.layers], self.activation)

    def select(self, keep) -> ParallelNetwork:
        """The subnetworks with the given indices (or boolean mask)."""
        keep = np.asarray(keep)
        keep = torch.from_numpy(keep if keep.dtype == bool else keep.astype(np.int64))
        return ParallelNetwork([W[keep] for W in self.layers], self.activation)

    def append(self, unit: Sequence) -> ParallelNetwork:
        """This network with one more subnetwork, given as one (out, in) array per layer."""
        unit = [as_tensor(W) for W in unit]
        return ParallelNetwork([torch.cat([W, U[None]]) for W, U in zip(self.layers, unit, strict=True)],
                               self.activation)
