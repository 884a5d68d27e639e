"""Low-dimensional views of the loss: slices along filter-normalised directions, interpolation between two
solutions, and the map of the extreme Hessian eigenvalues over a plane.

The grids are evaluated with `vmap` over parameter sets (`FunctionalLoss.losses`); the model is never modified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import track

from .._io import atomic_write, write_json
from .operators import FunctionalLoss, HessianOperator, ParameterSelection, flatten_params, parameter_names
from .spectrum import lanczos

__all__ = ["SliceResult", "filter_normalized_direction", "loss_slice_1d", "loss_slice_2d", "loss_interpolation",
           "curvature_map_2d", "plot_slice"]


@dataclass
class SliceResult:
    """Values on a 1-D (`betas` None) or 2-D grid: `values[name][i]` or `values[name][i, j]` at
    θ + alphas[i]·directions[0] (+ betas[j]·directions[1]), θ the model's weights. `kind`: "slice", "interpolation",
    "curvature"."""

    kind: str
    alphas: np.ndarray
    betas: np.ndarray | None
    values: dict[str, np.ndarray]
    directions: np.ndarray

    def to_dict(self) -> dict:
        """The grid and the values as plain lists (the directions are left out: P numbers each)."""
        return {"kind": self.kind, "alphas": self.alphas.tolist(),
                "betas": None if self.betas is None else self.betas.tolist(),
                "values": {name: value.tolist() for name, value in self.values.items()}}


def filter_normalized_direction(model: torch.nn.Module, *, parameters: ParameterSelection = None,
                                random_state=None, ignore_bias: bool = True) -> torch.Tensor:
    """A Gaussian direction with each filter's norm set to that of the weights (Li, Xu, Taylor, Studer &
    Goldstein 2018, sec. 4): for a weight of 2 or more dimensions, each slice along the first (output) axis
    -- a conv filter or a linear layer's neuron -- is rescaled to d_i ← d_i ‖θ_i‖ / ‖d_i‖. One-dimensional
    parameters (biases, batch-norm scales) get zero (`ignore_bias`, the paper's default) or a copy of θ."""
    rng = np.random.default_rng(random_state)
    named = dict(model.named_parameters())
    parts = []
    for name in parameter_names(model, parameters):
        weight = named[name].detach()
        if weight.ndim <= 1:
            parts.append(torch.zeros_like(weight) if ignore_bias else weight.clone())
            continue
        d = torch.as_tensor(rng.standard_normal(tuple(weight.shape)), dtype=weight.dtype, device=weight.device)
        filters, weights = d.reshape(d.shape[0], -1), weight.reshape(weight.shape[0], -1)
        parts.append(filters * (weights.norm(dim=1) / filters.norm(dim=1)).unsqueeze(1))
    return torch.cat([part.reshape(-1) for part in parts])


def _grid(values, default: np.ndarray, name: str) -> np.ndarray:
    grid = default if values is None else np.asarray(values, dtype=np.float64).reshape(-1)
    if grid.size == 0 or not np.all(np.isfinite(grid)):
        raise ValueError(f"{name} must be a non-empty array of finite numbers")
    return grid


def _directions(objective: FunctionalLoss, count: int, directions, random_state) -> torch.Tensor:
    """`count` directions (count, P): the given ones, checked, or filter-normalised random ones."""
    if directions is None:
        seeds = np.random.default_rng(random_state).integers(2**63, size=count)
        return torch.stack([filter_normalized_direction(objective.model, parameters=objective.names,
                                                        random_state=int(seed)) for seed in seeds])
    D = torch.as_tensor(directions)
    D = objective.as_directions(D[None] if count == 1 and D.ndim == 1 else D)
    if D.shape[0] != count:
        raise ValueError(f"expected {count} direction(s) of shape ({count}, {objective.n_params}), got {D.shape[0]}")
    return D


def loss_slice_1d(model: torch.nn.Module, loss_fn: Callable, data, *, direction=None, alphas=None,
                  parameters: ParameterSelection = None, random_state=None, chunk_size: int = 64,
                  verbose: int = 0) -> SliceResult:
    """L(θ + α d) for α in `alphas` (default 51 points in [−1, 1]); d defaults to `filter_normalized_direction`."""
    alphas = _grid(alphas, np.linspace(-1, 1, 51), "alphas")
    objective = FunctionalLoss(model, loss_fn, data, parameters=parameters)
    D = _directions(objective, 1, direction, random_state)
    losses = objective.losses(alphas[:, None], D, chunk_size=chunk_size, verbose=verbose)
    return SliceResult("slice", alphas, None, {"loss": losses}, D.double().cpu().numpy())


def loss_slice_2d(model: torch.nn.Module, loss_fn: Callable, data, *, directions=None, alphas=None, betas=None,
                  parameters: ParameterSelection = None, random_state=None, chunk_size: int = 64,
                  verbose: int = 0) -> SliceResult:
    """L(θ + α d₁ + β d₂) on the grid `alphas` × `betas` (default 51 × 51 in [−1, 1]²; Li et al. 2018, fig. 1);
    `directions` (2, P) default to two independent filter-normalised directions."""
    alphas = _grid(alphas, np.linspace(-1, 1, 51), "alphas")
    betas = _grid(betas, np.linspace(-1, 1, 51), "betas")
    objective = FunctionalLoss(model, loss_fn, data, parameters=parameters)
    D = _directions(objective, 2, directions, random_state)
    grid = np.stack(np.meshgrid(alphas, betas, indexing="ij"), axis=-1).reshape(-1, 2)
    losses = objective.losses(grid, D, chunk_size=chunk_size, verbose=verbose)
    return SliceResult("slice", alphas, betas, {"loss": losses.reshape(alphas.size, betas.size)},
                       D.double().cpu().numpy())


def loss_interpolation(model: torch.nn.Module, other, loss_fn: Callable, data, *, alphas=None,
                       parameters: ParameterSelection = None, chunk_size: int = 64, verbose: int = 0) -> SliceResult:
    """L((1 − α) θ_a + α θ_b) between the model's weights θ_a and `other`'s θ_b (a module of the same
    architecture, or its flat vector of the selected parameters); default α: 41 points in [−0.5, 1.5]
    (Goodfellow, Vinyals & Saxe 2015)."""
    alphas = _grid(alphas, np.linspace(-0.5, 1.5, 41), "alphas")
    objective = FunctionalLoss(model, loss_fn, data, parameters=parameters)
    if isinstance(other, torch.nn.Module):
        other = flatten_params(other, objective.names)
    direction = objective.as_vector(other, "other") - objective.point
    if direction.ndim != 1:
        raise ValueError(f"other must be a module or a flat vector of length {objective.n_params}")
    losses = objective.losses(alphas[:, None], direction[None], chunk_size=chunk_size, verbose=verbose)
    return SliceResult("interpolation", alphas, None, {"loss": losses}, direction[None].double().cpu().numpy())


def curvature_map_2d(model: torch.nn.Module, loss_fn: Callable, data, *, directions=None, alphas=None, betas=None,
                     parameters: ParameterSelection = None, operator: type = HessianOperator, tol: float = 1e-8,
                     random_state=None, verbose: int = 0) -> SliceResult:
    """λmin and λmax of the curvature `operator` at each point θ + α d₁ + β d₂ of the grid (default 11 × 11 in
    [−1, 1]²), by Lanczos at every point: P·(grid points) products, so for small networks."""
    alphas = _grid(alphas, np.linspace(-1, 1, 11), "alphas")
    betas = _grid(betas, np.linspace(-1, 1, 11), "betas")
    objective = FunctionalLoss(model, loss_fn, data, parameters=parameters)
    origin, D = objective.point, _directions(objective, 2, directions, random_state)
    lambda_min, lambda_max = np.empty((alphas.size, betas.size)), np.empty((alphas.size, betas.size))
    points = [(i, j) for i in range(alphas.size) for j in range(betas.size)]
    for i, j in track(points, description="curvature map", disable=not verbose, transient=True):
        op = operator(model, loss_fn, data, parameters=parameters, at=origin + alphas[i] * D[0] + betas[j] * D[1])
        values = lanczos(op, 1, "both", tol=tol, random_state=random_state).values
        lambda_max[i, j], lambda_min[i, j] = values[0], values[-1]
    return SliceResult("curvature", alphas, betas, {"lambda_min": lambda_min, "lambda_max": lambda_max},
                       D.double().cpu().numpy())


def plot_slice(result: SliceResult, path: str | Path) -> tuple[Path, Path]:
    """Write the slice as a PNG at `path` (suffix .png) and its numbers as JSON next to it, each atomically.

    1-D results: one curve per value. 2-D results: one filled contour panel per value, the origin marked.
    """
    from matplotlib.figure import Figure

    png = Path(path).with_suffix(".png")
    names = list(result.values)
    if result.betas is None:
        figure = Figure(figsize=(5, 3.5))
        ax = figure.add_subplot()
        for name in names:
            ax.plot(result.alphas, result.values[name], label=name)
        ax.set_xlabel("α (interpolation θ_a → θ_b)" if result.kind == "interpolation" else "α")
        ax.legend()
    else:
        figure = Figure(figsize=(4.5 * len(names), 3.8))
        for position, name in enumerate(names, start=1):
            ax = figure.add_subplot(1, len(names), position)
            filled = ax.contourf(result.betas, result.alphas, result.values[name], levels=30)
            figure.colorbar(filled, ax=ax)
            ax.plot([0], [0], "w+")
            ax.set(title=name, xlabel="β", ylabel="α")
    figure.tight_layout()
    atomic_write(png, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    return png, write_json(png.with_suffix(".json"), result.to_dict())
