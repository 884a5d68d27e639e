"""Score functions learned from data by denoising score matching with a small smooth energy network.

The network is an energy E_theta(z) on whitened inputs z = W (x - mean), W = Sigma^{-1/2}, and the first-order
score is g(x) = grad log p(x) = -grad_x E_theta(W (x - mean)): a gradient field, so its Jacobian is symmetric and
the base class's recursion S_{m+1} = -grad S_m + S_m ⊗ S_1 (Janzamin, Sedghi, Anandkumar 2014) gives symmetric
S_2, S_3, S_4 from nested jvp of g. E_theta is trained by denoising score matching (Vincent 2011; with an energy
parametrisation, Saremi et al. 2018, "Deep energy estimator networks"): minimise E || s(z + sigma e) + e / sigma ||^2
over e ~ N(0, I), whose minimiser is the score of the sigma-smoothed density. The noise is drawn in antithetic pairs
(e, -e), which leaves the objective unchanged and cancels its O(1/sigma) gradient noise.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
import torch
from rich.progress import Progress
from sklearn.exceptions import NotFittedError
from torch import nn
from torch.func import functional_call, grad

from .._backend import DEFAULT_CHUNK_ROWS, resolve_device, sample_rows
from .autodiff import AutodiffScore
from .diagnostics import stein_check

__all__ = ["LearnedScore"]

_ACTIVATIONS = {"silu": nn.SiLU, "softplus": nn.Softplus, "tanh": nn.Tanh, "gelu": nn.GELU}
_DEFAULT_NOISE_GRID = (0.4, 0.2, 0.1)
_MIN_ROWS = 100
QUAD = "fixed"
_MIN_HELDOUT_ROWS = 40


class _Energy(nn.Module):
    """E(z) = |z|^2 / 2 + MLP(z): the standard Gaussian plus a learned correction that starts at zero."""

    def __init__(self, d: int, hidden: tuple[int, ...], activation: str, quadratic: str = "fixed"):
        super().__init__()
        self.quadratic = quadratic
        if quadratic == "learned":
            self.log_a = nn.Parameter(torch.zeros(()))
        layers, width = [], d
        for size in hidden:
            layers += [nn.Linear(width, size), _ACTIVATIONS[activation]()]
            width = size
        last = nn.Linear(width, 1)
        if quadratic != "none":
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        self.mlp = nn.Sequential(*layers, last)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.mlp(z)[:, 0]
        if self.quadratic == "fixed":
            out = out + 0.5 * (z * z).sum(dim=1)
        elif self.quadratic == "learned":
            out = out + 0.5 * torch.exp(self.log_a) * (z * z).sum(dim=1)
        return out


def _is_positive_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 1


def _is_positive_real(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and 0 < value < math.inf


class LearnedScore(AutodiffScore):
    """Score functions of the input density learned by denoising score matching (`fit(X)`), for any order 1-4.

    hidden, activation: the energy MLP (a smooth activation: silu, softplus, tanh or gelu).
    noise_scale: sigma in whitened units (a fraction of the data's spread in every direction); a number, a
        sequence of candidates, or None for the grid (0.4, 0.2, 0.1). With several candidates one network is
        trained per sigma (largest first, each warm-started from the previous) and the one with the smallest
        held-out Stein error (`stein_check`, orders 1-3, relative error) is kept.
    max_rows: rows drawn from X (a seeded subset); validation_fraction of them are held out for early stopping,
        the choice of sigma and `diagnostics_`.
    max_epochs, batch_size, lr, weight_decay, patience: Adam with early stopping on the held-out DSM loss.
    Training runs in float32 (the Adam and Monte-Carlo noise are far above its rounding); `log_density_gradient`
    evaluates the trained network in the caller's dtype.
    """

    def __init__(self, hidden=(128, 128), activation="silu", noise_scale=None, max_rows=50_000,
                 validation_fraction=0.2, max_epochs=300, batch_size=512, lr=2e-3, weight_decay=1e-4, patience=15,
                 random_state=None, verbose=0, device="cpu"):
        hidden = tuple(hidden) if isinstance(hidden, Sequence) else hidden
        if not (isinstance(hidden, tuple) and len(hidden) >= 1 and all(_is_positive_int(h) for h in hidden)):
            raise ValueError(f"hidden must be a non-empty sequence of positive ints, got {hidden!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(_ACTIVATIONS)} (smooth, as the scores need four "
                             f"derivatives), got {activation!r}")
        grid = (noise_scale,) if isinstance(noise_scale, Real) else noise_scale
        if grid is not None and not (isinstance(grid, Sequence) and len(grid) >= 1
                                     and all(_is_positive_real(s) for s in grid)):
            raise ValueError(f"noise_scale must be None, a positive number or a sequence of them, got {noise_scale!r}")
        for name, value in (("max_rows", max_rows), ("max_epochs", max_epochs), ("batch_size", batch_size),
                            ("patience", patience)):
            if not _is_positive_int(value):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not (isinstance(validation_fraction, Real) and 0 < validation_fraction < 1):
            raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
        if not _is_positive_real(lr):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        if not (isinstance(weight_decay, Real) and 0 <= weight_decay < math.inf):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
        if random_state is not None and not _is_positive_int(random_state + 1 if isinstance(random_state, Integral)
                                                             else None):
            raise ValueError(f"random_state must be None or an int >= 0, got {random_state!r}")
        self.hidden = hidden
        self.activation = activation
        self.noise_scale = noise_scale
        self.max_rows = max_rows
        self.validation_fraction = validation_fraction
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.random_state = random_state
        self.verbose = verbose
        self.device = device

    @property
    def is_fitted(self) -> bool:
        """True once `fit` has trained the network."""
        return hasattr(self, "network_")

    # -- fitting ---------------------------------------------------------------------------------------
    def fit(self, X, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> LearnedScore:
        """Train on at most `max_rows` rows of X (any row source; never modified), then keep the best sigma."""
        start = time.perf_counter()
        data = sample_rows(X, self.max_rows, self.random_state, chunk_rows)
        n, d = data.shape
        n_heldout = int(round(self.validation_fraction * n))
        if n < _MIN_ROWS or n_heldout < _MIN_HELDOUT_ROWS or n - n_heldout < _MIN_HELDOUT_ROWS:
            raise ValueError(f"LearnedScore needs at least {_MIN_ROWS} rows with at least {_MIN_HELDOUT_ROWS} on "
                             f"each side of the validation split; got {n} rows (validation_fraction="
                             f"{self.validation_fraction})")
        rng = np.random.default_rng(self.random_state)
        order = rng.permutation(n)
        train, heldout = data[order[n_heldout:]], data[order[:n_heldout]]
        self.mean_, self.whitening_ = _whitening(train)
        self.n_features_in_ = d
        device = resolve_device(self.device)
        generator = torch.Generator(device=device).manual_seed(int(rng.integers(2**62)))
        torch_state = torch.random.get_rng_state()
        torch.manual_seed(int(rng.integers(2**62)))
        network = _Energy(d, self.hidden, self.activation, QUAD).to(device)
        torch.random.set_rng_state(torch_state)
        z_train, z_heldout = (torch.as_tensor(self._whiten(a), dtype=torch.float32, device=device)
                              for a in (train, heldout))
        grid = sorted({float(s) for s in ((self.noise_scale,) if isinstance(self.noise_scale, Real)
                                          else self.noise_scale or _DEFAULT_NOISE_GRID)}, reverse=True)
        candidates = []
        with Progress(disable=not self.verbose, transient=True) as progress:
            for sigma in grid:
                task = progress.add_task(f"DSM sigma={sigma:g}", total=self.max_epochs)
                epochs, loss = self._train(network, z_train, z_heldout, sigma, generator, progress, task)
                self.network_ = copy.deepcopy(network).requires_grad_(False)
                self._cache = {}
                check = (stein_check(self, heldout, orders=(1, 2, 3), random_state=self.random_state)
                         if len(grid) > 1 else None)
                candidates.append({"noise_scale": sigma, "heldout_dsm_loss": loss, "epochs": epochs,
                                   "network": self.network_, "stein": check})
        best = min(candidates, key=lambda c: _stein_error(c["stein"]) if c["stein"] is not None else 0.0)
        self.network_, self._cache = best["network"], {}
        if best["stein"] is None:
            best["stein"] = stein_check(self, heldout, orders=(1, 2, 3), random_state=self.random_state)
        self.noise_scale_ = best["noise_scale"]
        self.diagnostics_ = {
            "noise_scale": best["noise_scale"], "heldout_dsm_loss": best["heldout_dsm_loss"],
            "epochs": best["epochs"], "train_seconds": time.perf_counter() - start,
            "train_rows": len(train), "heldout_rows": len(heldout), "stein_check": best["stein"],
            "candidates": [{k: v for k, v in c.items() if k != "network"} for c in candidates]}
        return self

    def _train(self, network: _Energy, z_train: torch.Tensor, z_heldout: torch.Tensor, sigma: float,
               generator: torch.Generator, progress: Progress, task) -> tuple[int, float]:
        """Adam on the DSM loss at one sigma until the held-out loss stops improving; the best weights are kept."""
        optimiser = torch.optim.AdamW(network.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        heldout_noise = torch.randn(z_heldout.shape, generator=generator, device=z_heldout.device)
        best_loss, best_state, best_epoch = math.inf, copy.deepcopy(network.state_dict()), 0
        n = z_train.shape[0]
        for epoch in range(1, self.max_epochs + 1):
            network.train()
            permutation = torch.randperm(n, generator=generator, device=z_train.device)
            for rows in permutation.split(self.batch_size):
                z = z_train[rows]
                loss = _dsm_loss(network, z, torch.randn(z.shape, generator=generator, device=z.device), sigma)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
            heldout_loss = float(_dsm_loss(network, z_heldout, heldout_noise, sigma, create_graph=False))
            if heldout_loss < best_loss:
                best_loss, best_state, best_epoch = heldout_loss, copy.deepcopy(network.state_dict()), epoch
            progress.update(task, advance=1, description=f"DSM sigma={sigma:g} held-out loss {heldout_loss:.4f}")
            if epoch - best_epoch >= self.patience:
                break
        network.load_state_dict(best_state)
        return best_epoch, best_loss

    # -- the score -------------------------------------------------------------------------------------
    def _whiten(self, a: np.ndarray) -> np.ndarray:
        return (a - self.mean_) @ self.whitening_

    def _constants(self, X: torch.Tensor) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """Detached parameters, mean and whitening in X's dtype and device (cached per dtype and device)."""
        key = (X.dtype, X.device)
        if key not in self._cache:
            params = {name: p.detach().to(dtype=X.dtype, device=X.device)
                      for name, p in self.network_.named_parameters()}
            self._cache[key] = (params, torch.as_tensor(self.mean_, dtype=X.dtype, device=X.device),
                                torch.as_tensor(self.whitening_, dtype=X.dtype, device=X.device))
        return self._cache[key]

    def log_density_gradient(self, X: torch.Tensor) -> torch.Tensor:
        """g(x) = -grad_x E(W (x - mean)) = -W grad_z E(z): a pure function of X, differentiable by torch.func."""
        if not self.is_fitted:
            raise NotFittedError("this LearnedScore is not fitted; call fit(X) first")
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have shape (rows, {self.n_features_in_}), got {tuple(X.shape)}")
        params, mean, whitening = self._constants(X)

        def energy(x):
            return functional_call(self.network_, params, ((x - mean) @ whitening,)).sum()
        return -grad(energy)(X)


def _whitening(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and the symmetric (ZCA) whitening Sigma^{-1/2} of the rows; a singular covariance is refused."""
    mean = data.mean(axis=0)
    cov = np.atleast_2d(np.cov(data, rowvar=False))
    eigvals, eigvecs = np.linalg.eigh(cov)
    if eigvals[0] <= 1e-12 * max(eigvals[-1], 1e-300):
        raise ValueError("the input covariance is singular (constant or collinear columns); drop or combine those "
                         "columns before fitting")
    return mean, (eigvecs / np.sqrt(eigvals)) @ eigvecs.T


def _dsm_loss(network: _Energy, z: torch.Tensor, noise: torch.Tensor, sigma: float,
              create_graph: bool = True) -> torch.Tensor:
    """sigma^2 E|s(z + sigma e) + e / sigma|^2 with s = -grad E, over the antithetic pair (e, -e) for each row."""
    noisy = torch.cat([z + sigma * noise, z - sigma * noise]).requires_grad_(True)
    with torch.enable_grad():
        (energy_gradient,) = torch.autograd.grad(network(noisy).sum(), noisy, create_graph=create_graph)
    residual = -sigma * energy_gradient + torch.cat([noise, -noise])
    return (residual * residual).sum(dim=1).mean()


def _stein_error(check: dict) -> float:
    """Mean relative Stein error over the checked orders: the criterion for choosing sigma."""
    return float(np.mean([entry["relative_error"] for entry in check["orders"].values()]))
