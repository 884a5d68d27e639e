"""The optimisation path in the loss landscape: the plane of the top two principal directions of the parameter
snapshots of a training run, the loss surface on it with the path drawn in, and the extreme Hessian eigenvalues
along the path (Li, Xu, Taylor, Studer & Goldstein 2018, "Visualizing the Loss Landscape of Neural Nets", section
"Visualizing optimization paths").

Snapshots are flat vectors of the selected parameters (`flatten_params` order), state_dicts or modules of the same
architecture. The model is never modified: it gives the architecture, the buffers and the unselected parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import track

from .._io import atomic_write, write_json
from .operators import FunctionalLoss, HessianOperator, ParameterSelection, flatten_params, parameter_names
from .spectrum import lanczos

__all__ = ["TrajectoryPlane", "TrajectorySurface", "stack_snapshots", "trajectory_plane", "trajectory_surface",
           "plot_trajectory"]


@dataclass
class TrajectoryPlane:
    """The plane through θ_final = `origin` spanned by the orthonormal rows of `directions` (2, P).

    `explained_variance_ratio`: the share of Σ_i ‖θ_i − θ_final‖² (of the centred spread when `centered`) along
    each direction; `coordinates` (n, 2): (θ_i − θ_final)·d_j, the least-squares position of each snapshot in the
    plane; `distances` (n,): ‖θ_i − θ_final − Σ_j coordinates[i, j] d_j‖, how far each snapshot is off the plane.
    """

    directions: np.ndarray
    explained_variance_ratio: np.ndarray
    coordinates: np.ndarray
    distances: np.ndarray
    origin: np.ndarray
    centered: bool

    def to_dict(self) -> dict:
        """The plane's numbers as plain lists (the directions and the origin are left out: P numbers each)."""
        return {"explained_variance_ratio": self.explained_variance_ratio.tolist(),
                "coordinates": self.coordinates.tolist(), "distances": self.distances.tolist(),
                "centered": self.centered}


@dataclass
class TrajectorySurface:
    """`loss[i, j]` = L(θ_final + alphas[i] d₁ + betas[j] d₂) on the plane of `plane`; `path_loss[i]` = L(θ_i) at
    each snapshot itself; `lambda_min`/`lambda_max` the extreme Hessian eigenvalues at each snapshot (None unless
    asked for)."""

    plane: TrajectoryPlane
    alphas: np.ndarray
    betas: np.ndarray
    loss: np.ndarray
    path_loss: np.ndarray
    lambda_min: np.ndarray | None
    lambda_max: np.ndarray | None

    def to_dict(self) -> dict:
        def listed(values):
            return None if values is None else values.tolist()

        return {"plane": self.plane.to_dict(), "alphas": self.alphas.tolist(), "betas": self.betas.tolist(),
                "loss": self.loss.tolist(), "path_loss": self.path_loss.tolist(),
                "lambda_min": listed(self.lambda_min), "lambda_max": listed(self.lambda_max)}


def _state_vector(state: Mapping, model: torch.nn.Module, names: list[str]) -> torch.Tensor:
    named = dict(model.named_parameters())
    missing = [name for name in names if name not in state]
    if missing:
        raise ValueError(f"a state_dict snapshot lacks the parameters {missing}")
    for name in names:
        if tuple(state[name].shape) != tuple(named[name].shape):
            raise ValueError(f"a state_dict snapshot has {name} of shape {tuple(state[name].shape)}, the model "
                             f"{tuple(named[name].shape)}")
    return torch.cat([torch.as_tensor(state[name]).reshape(-1) for name in names])


def stack_snapshots(snapshots: Iterable, *, model: torch.nn.Module | None = None,
                    parameters: ParameterSelection = None) -> np.ndarray:
    """The snapshots as the rows of a float64 array (n, P), each the flat vector of the selected parameters.

    Each snapshot is a flat vector (P,) (a row of a 2-D array counts as one), a module of the model's architecture
    or a state_dict, which needs `model` to say which of its entries are the (selected) parameters.
    """
    if isinstance(snapshots, Mapping | torch.nn.Module) or not isinstance(snapshots, Iterable):
        raise TypeError(f"snapshots must be a list of flat vectors, state_dicts or modules, got "
                        f"{type(snapshots).__name__}")
    names = None if model is None else parameter_names(model, parameters)
    rows = []
    for position, snapshot in enumerate(snapshots):
        if isinstance(snapshot, torch.nn.Module):
            vector = flatten_params(snapshot, parameters if names is None else names)
        elif isinstance(snapshot, Mapping):
            if names is None:
                raise ValueError("state_dict snapshots need `model=` to tell the parameters from the buffers")
            vector = _state_vector(snapshot, model, names)
        elif isinstance(snapshot, torch.Tensor | np.ndarray) and snapshot.ndim == 1:
            vector = snapshot
        else:
            raise TypeError(f"snapshot {position} is a {type(snapshot).__name__}; expected a flat vector, a "
                            "state_dict or a module")
        rows.append(torch.as_tensor(vector).detach().double().cpu().numpy())
    if not rows:
        raise ValueError("no snapshots given")
    lengths = sorted({row.size for row in rows})
    expected = None if names is None else sum(p.numel() for name, p in model.named_parameters() if name in names)
    if len(lengths) > 1 or (expected is not None and lengths[0] != expected):
        raise ValueError(f"snapshots must all have the length of the selected parameters ({expected or lengths[0]}); "
                         f"got lengths {lengths}")
    stacked = np.stack(rows)
    if not np.all(np.isfinite(stacked)):
        raise ValueError("a snapshot contains NaN or inf")
    return stacked


def trajectory_plane(snapshots: Iterable, *, model: torch.nn.Module | None = None,
                     parameters: ParameterSelection = None, center: bool = False) -> TrajectoryPlane:
    """The top two principal directions of M = [θ_0 − θ_final; …; θ_{n−1} − θ_final], θ_final = θ_{n−1} the last
    snapshot (Li et al. 2018), from the SVD of M.

    `center=False` (default): M itself, so the directions span the best plane *through θ_final* (Eckart-Young):
    the path lies in it exactly when the ratios sum to 1, and the coordinates are then exact. `center=True`: M minus
    its row mean (over all n rows), as the paper's code does with scikit-learn's PCA (the best plane through the
    path's mean, drawn through θ_final). Each direction's sign makes the first snapshot's coordinate non-negative.
    """
    thetas = stack_snapshots(snapshots, model=model, parameters=parameters)
    n, P = thetas.shape
    if n < 2 or P < 2:
        raise ValueError(f"need at least 2 snapshots of at least 2 parameters, got {n} of {P}")
    origin = thetas[-1]
    M = thetas - origin
    _, singular, Vt = np.linalg.svd(M - M.mean(axis=0) if center else M, full_matrices=False)
    energy = singular**2
    if not energy.sum() > 0:
        raise ValueError("the snapshots do not move: every θ_i − θ_final is zero")
    directions = Vt[:2]
    coordinates = M @ directions.T
    signs = np.where(coordinates[0] < 0, -1.0, 1.0)
    directions, coordinates = directions * signs[:, None], coordinates * signs
    distances = np.linalg.norm(M - coordinates @ directions, axis=1)
    return TrajectoryPlane(directions, energy[:2] / energy.sum(), coordinates, distances, origin, center)


def _axis(values, coordinates: np.ndarray, points: int, margin: float, span: float, name: str) -> np.ndarray:
    """The given grid axis, checked, or `points` values over the path's coordinates widened by `margin` of their
    range on each side; an axis the path does not move along gets the range ±span/2."""
    if values is not None:
        axis = np.asarray(values, dtype=np.float64).reshape(-1)
        if axis.size == 0 or not np.all(np.isfinite(axis)):
            raise ValueError(f"{name} must be a non-empty array of finite numbers")
        return axis
    low, high = float(coordinates.min()), float(coordinates.max())
    if high - low <= 1e-12 * span:
        return np.linspace(-span / 2, span / 2, points)
    pad = margin * (high - low)
    return np.linspace(low - pad, high + pad, points)


def trajectory_surface(model: torch.nn.Module, loss_fn: Callable, data, snapshots: Iterable, *, grid: int = 31,
                       alphas=None, betas=None, margin: float = 0.25, parameters: ParameterSelection = None,
                       center: bool = False, curvature: bool = False, tol: float = 1e-8, chunk_size: int = 64,
                       random_state=0, verbose: int = 0) -> TrajectorySurface:
    """The loss on the trajectory plane around θ_final with the path in it (Li et al. 2018).

    The grid is `alphas` × `betas` in the plane's coordinates, by default `grid` points on each axis over the
    path's range widened by `margin` of it on each side. `path_loss` is the loss at each snapshot itself (off the
    plane by `plane.distances`). `curvature=True` adds λmin and λmax of the Hessian at each snapshot, by `lanczos`
    (one "both"-ends call to `tol` per snapshot). The model gives the architecture, buffers and unselected
    parameters; its selected parameters are not used.
    """
    if not isinstance(grid, int | np.integer) or grid < 2:
        raise ValueError(f"grid must be an integer >= 2, got {grid!r}")
    if not margin >= 0:
        raise ValueError(f"margin must be non-negative, got {margin}")
    thetas = stack_snapshots(snapshots, model=model, parameters=parameters)
    plane = trajectory_plane(thetas, center=center)
    objective = FunctionalLoss(model, loss_fn, data, parameters=parameters, at=plane.origin)
    span = float(np.ptp(plane.coordinates, axis=0).max())
    alphas = _axis(alphas, plane.coordinates[:, 0], grid, margin, span, "alphas")
    betas = _axis(betas, plane.coordinates[:, 1], grid, margin, span, "betas")
    points = np.stack(np.meshgrid(alphas, betas, indexing="ij"), axis=-1).reshape(-1, 2)
    loss = objective.losses(points, plane.directions, chunk_size=chunk_size, verbose=verbose)
    path_loss = objective.losses(np.eye(len(thetas)), thetas - plane.origin, chunk_size=chunk_size)
    lambda_min = lambda_max = None
    if curvature:
        extremes = np.array([lanczos(HessianOperator(model, loss_fn, data, parameters=parameters, at=theta), 1,
                                     "both", tol=tol, random_state=random_state).values[[0, -1]]
                             for theta in track(thetas, description="Hessian along the path", disable=not verbose,
                                                transient=True)])
        lambda_max, lambda_min = extremes[:, 0], extremes[:, 1]
    return TrajectorySurface(plane, alphas, betas, loss.reshape(alphas.size, betas.size), path_loss, lambda_min,
                             lambda_max)


def plot_trajectory(result: TrajectorySurface, path: str | Path) -> tuple[Path, Path]:
    """Write the surface with the path as a PNG at `path` (suffix .png) and the numbers as JSON next to it, each
    atomically. With curvature, a second panel shows λmax and λmin at each snapshot."""
    from matplotlib.figure import Figure

    png = Path(path).with_suffix(".png")
    curvature = result.lambda_min is not None
    figure = Figure(figsize=(10 if curvature else 5, 4))
    ax = figure.add_subplot(1, 2 if curvature else 1, 1)
    filled = ax.contourf(result.alphas, result.betas, result.loss.T, levels=30)
    figure.colorbar(filled, ax=ax, label="loss")
    x, y = result.plane.coordinates.T
    ax.plot(x, y, "w.-", linewidth=1)
    ax.plot(x[0], y[0], "wo", label="start")
    ax.plot(x[-1], y[-1], "w*", markersize=10, label="final")
    ratios = 100 * result.plane.explained_variance_ratio
    ax.set(xlabel=f"PC1 ({ratios[0]:.1f}%)", ylabel=f"PC2 ({ratios[1]:.1f}%)", title="loss on the trajectory plane")
    ax.legend(fontsize="small")
    if curvature:
        ax = figure.add_subplot(1, 2, 2)
        steps = np.arange(len(result.lambda_max))
        ax.plot(steps, result.lambda_max, "C0.-")
        ax.set(xlabel="snapshot", title="Hessian along the path")
        ax.set_ylabel("λmax", color="C0")
        other = ax.twinx()
        other.plot(steps, result.lambda_min, "C3.-")
        other.set_ylabel("λmin", color="C3")
    figure.tight_layout()
    atomic_write(png, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    return png, write_json(png.with_suffix(".json"), result.to_dict())
