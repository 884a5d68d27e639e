"""The Hessian spectrum along a training run: at each checkpoint the top-k and bottom-k eigenvalues, the index
(number of negative eigenvalues) and the negative-curvature mass, with Lanczos warm-started from the previous
checkpoint's Ritz vectors.

Lanczos is ARPACK's implicitly restarted method (`scipy.sparse.linalg.eigsh`, Lehoucq & Sorensen 1996), one call
per end of the spectrum, as in `nnlift.landscape.lanczos`; what this module adds is the start vector and the
stopping rule.

Warm start. `eigsh` builds its Krylov space from one vector v0. After checkpoint i, each end's k unit Ritz vectors
u_j approximate the wanted eigenvectors at checkpoint i+1 to some ε (about ‖ΔH‖ over the gap to the rest of the
spectrum). The next call starts from v0 = Σ_j u_j: each wanted eigenvector has a component ~1/√k in it, the rest of
the spectrum only ~ε, where a random v0 has ~1/√P of each. Were the u_j exact eigenvectors (distinct eigenvalues),
the Krylov space of their sum would be their span after k steps (a Vandermonde argument) and ARPACK would stop at
its first convergence check; with an error ε the Ritz residuals start near ε instead of O(1), so the restarts only
have to bring ε down to the tolerance: the saving is at most about log(1/ε)/log(1/tol) of a cold start's products,
and there is little when the wanted eigenvalues sit in a cluster whose eigenvectors rotate between checkpoints (the
bottom of a network's Hessian often is such a cluster). On the digits MLP of benchmarks/bench_track.py, 17
checkpoints 125 gradient steps apart, warm starts save 11% of the products at tol=1e-8 and 19% at tol=1e-4; on
checkpoints one small step apart (tests/landscape/test_tracking.py) 31%. ARPACK takes no block of start vectors,
but none is needed for this: after k steps the Krylov space of Σ_j u_j holds every u_j to within ε (times a
factor that grows as the wanted eigenvalues crowd together), as a block start from the u_j would, and ARPACK's
implicit restarts keep the wanted Ritz vectors from one cycle to the next (as thick restart does; Sorensen 1992,
Wu & Simon 2000).

Stopping rule. ARPACK stops when each Ritz pair's residual estimate is at most tol·max(|θ|, eps^(2/3)), relative to
the Ritz value itself; near a minimum the bottom eigenvalues are ≈ 0 and that asks for residuals below the rounding
error of a product, which ARPACK may not reach within its restarts. The top end keeps ARPACK's rule (a loss
Hessian's largest eigenvalues are its largest in magnitude, so there it is relative to ‖H‖); the bottom end runs on
H − λ₁I, λ₁ the top eigenvalue found first (with k=1 when only the bottom is asked for): the Krylov spaces and Ritz
vectors are those of H (shift invariance), only the test becomes ‖Hv − θv‖ ≤ tol·(λ₁ − θ), relative to the spread of
the spectrum: the bottom eigenvalues come out accurate to about that, not to tol relative to themselves, so
eigenvalues smaller than tol·λ₁ in magnitude are not resolved. Warm and cold runs use the same rule, so their
residuals are alike (at a loose tol, a cluster can still make the two return different k-th eigenvalues: which ones
converge first depends on the start). The residuals ‖Hv − λv‖ of the returned pairs are measured afterwards by one
block product (counted in `n_matvec`, as `lanczos` counts it).

Repeated eigenvalues. In exact arithmetic a Krylov space holds one vector of each eigenspace, so single-vector
Lanczos finds one copy of a repeated eigenvalue, and more only as rounding errors bring them in. Where the
Hessian has exactly repeated eigenvalues among the wanted ones (the zero eigenvalues of a continuous symmetry, such
as a linear network's at a minimum, or of dead units), `top`/`bottom` can skip copies and hold the next distinct
eigenvalues instead; every returned pair is still an eigenpair (see `residuals`), and the Lanczos index is then
not exact even where `index_exact` says so. `index="dense"` is exact on small models.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from .._io import atomic_write, write_json
from .._progress import ProgressReport
from .block_krylov import block_extreme_pairs
from .operators import HessianOperator, ParameterSelection
from .spectrum import spectral_density
from .trajectory import stack_snapshots

__all__ = ["TrackingResult", "track", "plot_tracking"]

_WHICH = ("LA", "SA", "both")
_METHODS = ("arpack", "block")
_INDEX = ("lanczos", "dense", "slq", None)
_SLQ_ITER, _SLQ_PROBES = 80, 16


@dataclass
class TrackingResult:
    """Per checkpoint (rows): `top` (n, k) the k largest eigenvalues, descending, and `bottom` (n, k) the k smallest,
    ascending (None for an end not asked for), with `top_residuals`/`bottom_residuals` ‖Hv − λv‖ of each pair;
    `n_matvec` (n,) the Hessian-vector products of the Lanczos calls and of the residual check (one per returned
    pair), of which `end_matvec` (n, 2) were taken by the top end's and the bottom end's Lanczos calls (the top
    end's is the k=1 call that finds the shift when only the bottom is asked for; 0 for an end not run);
    `seconds` (n,) their wall time.

    `n_negative` (n,): the number of eigenvalues below −threshold (threshold = rtol·max|λ|), by `index_method`:
    "lanczos" counts the bottom Ritz values, exact when fewer than k are negative (`index_exact`; eigenvalues within
    about tol·λ₁ of −threshold can fall on either side) and a lower bound k otherwise; "dense" decomposes the dense
    Hessian (exact, P more products); "slq" is stochastic Lanczos quadrature's estimate P·E[Σ_j τ_j 1(θ_j <
    −threshold)] (80 steps, 16 probes, as `critical_point_index`). `negative_mass` (n,): Σ|λ| over those
    eigenvalues, from the same source (a lower bound when the Lanczos count is, an estimate for SLQ). `index_matvec`
    (n,): the products these took (0 for "lanczos").
    """

    steps: np.ndarray
    top: np.ndarray | None
    bottom: np.ndarray | None
    top_residuals: np.ndarray | None
    bottom_residuals: np.ndarray | None
    n_matvec: np.ndarray
    end_matvec: np.ndarray
    seconds: np.ndarray
    n_negative: np.ndarray | None
    index_exact: np.ndarray | None
    negative_mass: np.ndarray | None
    index_matvec: np.ndarray
    index_method: str | None
    n_params: int
    k: int
    which: str
    tol: float
    warm_start: bool
    method: str = "arpack"

    @property
    def index(self) -> np.ndarray | None:
        """The index as a fraction of the parameters, n_negative / P."""
        return None if self.n_negative is None else self.n_negative / self.n_params

    def to_dict(self) -> dict:
        """Every field as plain lists and numbers."""
        return {name: value.tolist() if isinstance(value, np.ndarray) else value
                for name, value in vars(self).items()}


class _CountedOperator:
    """The Hessian at one checkpoint as a float64 scipy operator that counts its products."""

    def __init__(self, op: HessianOperator):
        self.op, self.count = op, 0
        P = op.shape[0]
        self.linear = LinearOperator((P, P), matvec=self._matvec, rmatvec=self._matvec, dtype=np.float64)

    def _matvec(self, x):
        self.count += 1
        return self.op @ np.asarray(x, dtype=np.float64).reshape(-1)

    def residuals(self, values: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """‖Hv − λv‖ for each pair, from one block product (counted as one product per vector)."""
        self.count += vectors.shape[1]
        return np.linalg.norm(self.op @ vectors - vectors * values, axis=0)

    def shifted(self, shift: float) -> LinearOperator:
        P = self.op.shape[0]
        return LinearOperator((P, P), matvec=lambda x: self._matvec(x) - shift * np.asarray(x).reshape(-1),
                              dtype=np.float64)


def _extreme_pairs(linear: LinearOperator, k: int, end: str, v0: np.ndarray, shift: float, *, tol: float,
                   ncv: int | None, max_iter: int | None, position: int) -> tuple[np.ndarray, np.ndarray]:
    """k eigenpairs at `end` of the operator + shift (the operator being H − shift·I), ascending."""
    try:
        values, vectors = eigsh(linear, k, which=end, v0=v0, tol=tol, ncv=ncv, maxiter=max_iter)
    except ArpackNoConvergence as exc:
        raise RuntimeError(f"Lanczos did not converge to tol={tol} at checkpoint {position} (which={end!r}) "
                           f"within max_iter={max_iter}; raise max_iter or tol") from exc
    order = np.argsort(values)
    return values[order] + shift, vectors[:, order]


def _ends(counted: _CountedOperator, k: int, which: str, starts: dict[str, np.ndarray],
          **options) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[int]]:
    """The eigenpairs of each end, ascending, and the products of each end's call: the top first ("LA", k of them,
    or 1 for the shift when only the bottom is asked for), then the bottom ("SA") on H − λ₁I."""
    pairs = {"LA": _extreme_pairs(counted.linear, k if which != "SA" else 1, "LA", starts["LA"], 0.0, **options)}
    products = [counted.count, 0]
    if which != "LA":
        shift = pairs["LA"][0][-1]
        pairs["SA"] = _extreme_pairs(counted.shifted(shift), k, "SA", starts["SA"], shift, **options)
        products[1] = counted.count - products[0]
    return pairs, products


def _block_ends(counted: _CountedOperator, k: int, which: str, start: np.ndarray, *, tol: float, ncv: int | None,
                max_iter: int | None, position: int) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[int]]:
    """Both ends in one `block_extreme_pairs` call from the block `start`: the top k ("LA", or 1 when only the
    bottom is asked for) and the bottom k ("SA"), ascending, under the same stopping rule as `_ends`; all products
    are booked to the top end. `ncv` is its largest basis, `max_iter` caps the products at max_iter·(columns of
    `start`)."""
    def matmat(V):
        counted.count += V.shape[1]
        return counted.op @ V

    P = counted.op.shape[0]
    found = block_extreme_pairs(matmat, P, start, n_top=k if which != "SA" else 1,
                                n_bottom=k if which != "LA" else 0, tol=tol, max_basis=ncv,
                                max_products=None if max_iter is None else max_iter * start.shape[1])
    if not found["converged"]:
        raise RuntimeError(f"the block method did not converge to tol={tol} at checkpoint {position} within "
                           f"{found['products']} products; raise max_iter or tol")
    values, vectors = found["top"]
    pairs = {"LA": (values[::-1].copy(), np.ascontiguousarray(vectors[:, ::-1]))}
    if which != "LA":
        pairs["SA"] = found["bottom"]
    return pairs, [found["products"], 0]


def _index(op: HessianOperator, method: str, pairs: dict, rtol: float | None, random_state) -> dict:
    """n_negative, index_exact, negative_mass and index_matvec at one checkpoint by `method`."""
    P = op.shape[0]
    rtol = math.sqrt(torch.finfo(op.dtype).eps) if rtol is None else rtol
    if method == "lanczos":
        bottom = pairs["SA"][0]
        negative = bottom[bottom < -rtol * max(abs(pairs["LA"][0][-1]), abs(bottom[0]))]
        found = (negative.size, negative.size < bottom.size, -negative.sum(), 0)
    elif method == "dense":
        M = op.to_dense().double().cpu().numpy()
        values = np.linalg.eigvalsh((M + M.T) / 2)
        negative = values[values < -rtol * np.abs(values).max()]
        found = (negative.size, True, -negative.sum(), P)
    else:
        density = spectral_density(op, n_iter=_SLQ_ITER, n_probes=_SLQ_PROBES, random_state=random_state)
        below = density.nodes < -rtol * np.abs(density.nodes).max()
        found = (P * np.sum(density.weights * below, axis=1).mean(), False,
                 P * np.sum(density.weights * np.abs(density.nodes) * below, axis=1).mean(),
                 min(_SLQ_ITER, P) * _SLQ_PROBES)
    return dict(zip(("n_negative", "index_exact", "negative_mass", "index_matvec"), found, strict=True))


def _row(counted: _CountedOperator, pairs: dict, products: list[int], which: str, began: float) -> dict:
    """The eigenvalues of each end with their residuals (top descending, bottom ascending), products and time."""
    row = {"end_matvec": products}
    if which != "SA":
        values, vectors = pairs["LA"]
        row.update(top=values[::-1], top_residuals=counted.residuals(values, vectors)[::-1])
    if "SA" in pairs:
        values, vectors = pairs["SA"]
        row.update(bottom=values, bottom_residuals=counted.residuals(values, vectors))
    return {**row, "n_matvec": counted.count, "seconds": time.perf_counter() - began}


def _check(k, which: str, tol: float, index, n_checkpoints: int, P: int, steps) -> np.ndarray:
    if which not in _WHICH:
        raise ValueError(f"which must be one of {_WHICH}, got {which!r}")
    if index not in _INDEX:
        raise ValueError(f"index must be one of {_INDEX}, got {index!r}")
    if index == "lanczos" and which == "LA":
        raise ValueError("index='lanczos' counts the bottom eigenvalues: use which='both' or 'SA', or index='dense' "
                         "or 'slq'")
    if not isinstance(k, int | np.integer) or not 1 <= k or not 2 * k < P:
        raise ValueError(f"k must be an integer with 1 <= k and 2k < P = {P}, got {k!r} (for more eigenvalues, "
                         "decompose the dense Hessian)")
    if not tol >= 0:
        raise ValueError(f"tol must be non-negative, got {tol}")
    steps = np.arange(n_checkpoints, dtype=np.float64) if steps is None else np.asarray(steps, dtype=np.float64)
    if steps.shape != (n_checkpoints,):
        raise ValueError(f"steps must have one value per checkpoint ({n_checkpoints}), got shape {steps.shape}")
    return steps


def track(model: torch.nn.Module, loss_fn: Callable, data, checkpoints: Iterable, *, k: int = 5,
          which: str = "both", tol: float = 1e-8, warm_start: bool = True, index: str | None = "lanczos",
          parameters: ParameterSelection = None, steps: Sequence[float] | None = None, ncv: int | None = None,
          max_iter: int | None = None, rtol: float | None = None, method: str = "arpack", random_state=0,
          verbose: int = 0) -> TrackingResult:
    """The top-k and/or bottom-k Hessian eigenvalues (`which` "LA", "SA" or "both"), the index and the
    negative-curvature mass at each checkpoint of a training run (see the module's docstring for the method).

    `checkpoints`: flat parameter vectors, state_dicts or modules (as `stack_snapshots`); the model gives the
    architecture, buffers and unselected parameters. `tol`: ARPACK's tolerance under the stopping rule above;
    `ncv`, `max_iter`: its Krylov dimension and restarts (scipy's defaults). `warm_start=False` starts every
    checkpoint from the same seeded Gaussian vector that the warm run uses at the first checkpoint. `index`:
    "lanczos", "dense", "slq" or None (see `TrackingResult`); eigenvalues below −rtol·max|λ| count as negative,
    rtol defaulting to √eps of the model's dtype. `steps`: the x-axis of `plot_tracking` (training steps).
    `method="block"` finds both ends in one block Krylov run (`nnlift.landscape.block_krylov`) started from the
    previous checkpoint's top and bottom Ritz vectors together (warm) or a seeded Gaussian block (cold); there `ncv`
    is the largest basis before a thick restart (default max(16k, 160) columns of P floats: mind the memory on big
    models) and `max_iter` caps its products at max_iter per start column (default 20·P in all). On
    bench_track.py's MLP (a cluster at the bottom) it took 0.58–0.63 of ARPACK's products warm, its warm start
    0.82–0.87 of its cold; on a 75-parameter MLP with separated ends ARPACK took fewer (39 vs 62 per checkpoint).
    """
    thetas = stack_snapshots(checkpoints, model=model, parameters=parameters)
    n, P = thetas.shape
    steps = _check(k, which, tol, index, n, P, steps)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    width = 2 * k if which == "both" else k
    start = np.random.default_rng(random_state).standard_normal((P, width) if method == "block" else P)
    previous: dict[str, np.ndarray] = {}
    rows = []
    with ProgressReport("Hessian spectrum", n, verbose, unit="checkpoints") as report:
        for position, theta in enumerate(thetas):
            began = time.perf_counter()
            counted = _CountedOperator(HessianOperator(model, loss_fn, data, parameters=parameters, at=theta))
            if method == "block":
                block_start = np.hstack(list(previous.values())) if warm_start and previous else start
                pairs, products = _block_ends(counted, k, which, block_start, tol=tol, ncv=ncv, max_iter=max_iter,
                                              position=position)
            else:
                starts = {end: previous[end].sum(axis=1) if warm_start and end in previous else start
                          for end in ("LA", "SA")}
                pairs, products = _ends(counted, k, which, starts, tol=tol, ncv=ncv, max_iter=max_iter,
                                        position=position)
            previous.update({end: vectors for end, (_, vectors) in pairs.items()})
            row = _row(counted, pairs, products, which, began)
            if index is not None:
                row.update(_index(counted.op, index, pairs, rtol, random_state))
            rows.append(row)
            report.advance(f"λ {pairs['LA'][0][-1]:.4g} … {pairs['SA'][0][0] if 'SA' in pairs else math.nan:.4g}, "
                           f"{counted.count} products")
        report.finish(f"{n} checkpoints, {sum(r['n_matvec'] for r in rows)} products")

    def column(name, dtype=np.float64):
        return np.array([row[name] for row in rows], dtype=dtype) if name in rows[0] else None

    return TrackingResult(steps, column("top"), column("bottom"), column("top_residuals"),
                          column("bottom_residuals"), column("n_matvec", np.int64), column("end_matvec", np.int64),
                          column("seconds"), column("n_negative"), column("index_exact", bool), column("negative_mass"),
                          column("index_matvec", np.int64) if index is not None else np.zeros(n, dtype=np.int64),
                          index, P, int(k), which, float(tol), warm_start, method)


def plot_tracking(result: TrackingResult, path: str | Path, *,
                  baseline: TrackingResult | None = None) -> tuple[Path, Path]:
    """Write the spectrum along the run as a PNG at `path` (suffix .png) and the numbers as JSON next to it, each
    atomically: the top and bottom eigenvalues, the index and negative-curvature mass, and the products per
    checkpoint, next to those of `baseline` (e.g. the cold-start run of the same checkpoints) if given."""
    from matplotlib.figure import Figure

    png = Path(path).with_suffix(".png")
    panels = [name for name, values in (("top", result.top), ("bottom", result.bottom), ("index", result.n_negative))
              if values is not None] + ["products"]
    figure = Figure(figsize=(4.2 * len(panels), 3.6))
    x = result.steps
    for position, panel in enumerate(panels, start=1):
        ax = figure.add_subplot(1, len(panels), position)
        if panel in ("top", "bottom"):
            ax.plot(x, getattr(result, panel), ".-")
            ax.set(title=f"{'largest' if panel == 'top' else 'smallest'} {result.k} eigenvalues", ylabel="λ")
            if panel == "bottom":
                ax.axhline(0, color="grey", linewidth=0.8)
        elif panel == "index":
            ax.plot(x, result.n_negative, "C0-")
            ax.scatter(x, result.n_negative, c=np.where(result.index_exact, "C0", "none"), edgecolors="C0", zorder=3)
            ax.set_ylabel(f"negative eigenvalues ({result.index_method}; open: at least)", color="C0")
            ax.set_title("index and negative-curvature mass")
            other = ax.twinx()
            other.plot(x, result.negative_mass, "C3.-")
            other.set_ylabel("Σ|λ| over λ < 0", color="C3")
        else:
            width = 0.4 * (np.min(np.diff(x)) if len(x) > 1 else 1.0)
            label = "warm start" if result.warm_start else "cold start"
            ax.bar(x - (width / 2 if baseline else 0), result.n_matvec, width=width, label=label)
            if baseline is not None:
                ax.bar(x + width / 2, baseline.n_matvec, width=width,
                       label="warm start" if baseline.warm_start else "cold start")
            ax.set(title="products per checkpoint", ylabel="Hessian-vector products")
            ax.legend(fontsize="small")
        ax.set_xlabel("step")
    figure.tight_layout()
    atomic_write(png, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    numbers = {"result": result.to_dict(), "baseline": None if baseline is None else baseline.to_dict()}
    return png, write_json(png.with_suffix(".json"), numbers)
