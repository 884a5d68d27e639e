"""Curvature operators on sklearn digits: the cost of a product against a gradient, and the top Hessian eigenvalue
by nnlift's Lanczos against PyHessian's power iteration.

    OMP_NUM_THREADS=1 python benchmarks/bench_landscape.py

Models: an MLP 64-128-10 (tanh) and a CNN (conv 1→16 3×3, conv 16→32 3×3, linear to 10, ReLU) on the 8×8 digits,
trained by `--train-steps` full-batch Adam steps on `--rows` rows, then measured on the same rows (one batch).
(a) median over `--repeats` of: one gradient (torch.func and plain autograd), one product of each operator on a
fresh operator ("cold": builds the linearisation) and on a cached one ("warm"), and a batch of 10 probes.
(b) the top eigenvalue at each `--tols`: `lanczos(op, 1, "LA", tol, ncv)` on a fresh operator for each of `--ncvs`
and PyHessian's `hessian(model, criterion, data=(X, y), cuda=False).eigenvalues(top_n=1, tol=tol, maxIter=...)`,
each timed from scratch (median of `--eig-repeats`), with Hessian-vector products counted and the error against
Lanczos at tol=0 on the same float32 operator (the float64 value is saved too, to show float32's own error).
ARPACK's tol bounds the Ritz residual; PyHessian's is the relative change of the estimate between iterations.
(c) a 51×51 `loss_slice_2d` of the MLP. Writes benchmarks/results/landscape_{hvp_cost,top_eigenvalue,slice}.json.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from nnlift._io import write_json
from nnlift.landscape import (
    EmpiricalFisherOperator,
    FunctionalLoss,
    GaussNewtonOperator,
    HessianOperator,
    lanczos,
    loss_slice_2d,
)

RESULTS = Path(__file__).parent / "results"
OPERATORS = {"Hessian": HessianOperator, "Gauss-Newton": GaussNewtonOperator,
             "empirical Fisher": EmpiricalFisherOperator}
PYHESSIAN = importlib.import_module("pyhessian.hessian")  # the module; `pyhessian.hessian` is its class


def _timed(fn, repeats: int):
    """fn's last result and its median wall time over `repeats` calls."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return result, statistics.median(times)


def _median_time(fn, repeats: int) -> float:
    return _timed(fn, repeats)[1]


def _models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 10))
    cnn = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 64, 10))
    return {"MLP 64-128-10": mlp, "CNN 2 conv": cnn}


def _train(model: nn.Module, X, y, steps: int) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(X), y)
        loss.backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)
    return loss.item()


def _costs(model, X, y, repeats: int) -> dict:
    data, loss_fn = (X, y), nn.functional.cross_entropy
    n_params = sum(p.numel() for p in model.parameters())
    v = torch.randn(n_params, generator=torch.Generator().manual_seed(0))
    V = torch.randn(n_params, 10, generator=torch.Generator().manual_seed(1))
    objective = FunctionalLoss(model, loss_fn, data)

    def autograd_gradient():
        model.zero_grad(set_to_none=True)
        loss_fn(model(X), y).backward()

    row = {"gradient_func_s": _median_time(objective.gradient, repeats),
           "gradient_autograd_s": _median_time(autograd_gradient, repeats)}
    model.zero_grad(set_to_none=True)
    for name, cls in OPERATORS.items():
        warm = cls(model, loss_fn, data)
        warm @ v
        row[f"{name}_cold_s"] = _median_time(lambda cls=cls: cls(model, loss_fn, data) @ v, repeats)
        row[f"{name}_warm_s"] = _median_time(lambda warm=warm: warm @ v, repeats)
        row[f"{name}_warm_per_probe_of_10_s"] = _median_time(lambda warm=warm: warm @ V, repeats) / 10
    return {"n_params": n_params, **row}


def _pyhessian_top(model, X, y, tol: float, max_iter: int) -> tuple[float, int]:
    """PyHessian's power iteration on a copy (it switches the model to eval and leaves graphs in .grad)."""
    counted = {"hvp": 0}
    original = PYHESSIAN.hessian_vector_product

    def counting(*args, **kwargs):
        counted["hvp"] += 1
        return original(*args, **kwargs)

    PYHESSIAN.hessian_vector_product = counting
    try:
        torch.manual_seed(0)
        values, _ = PYHESSIAN.hessian(copy.deepcopy(model), nn.CrossEntropyLoss(), data=(X, y),
                                      cuda=False).eigenvalues(maxIter=max_iter, tol=tol, top_n=1)
    finally:
        PYHESSIAN.hessian_vector_product = original
    return values[0], counted["hvp"]


def _top_eigenvalue(model, X, y, tols, ncvs, max_iter: int, repeats: int) -> list[dict]:
    """Each method timed from scratch (a fresh operator, a fresh PyHessian object) at each tolerance."""
    exact = lanczos(HessianOperator(model, nn.functional.cross_entropy, (X, y)), 1, "LA", tol=0,
                    random_state=0).values[0]
    exact64 = lanczos(HessianOperator(copy.deepcopy(model).double(), nn.functional.cross_entropy, (X.double(), y)),
                      1, "LA", tol=0, random_state=0).values[0]
    rows = []
    for tol in tols:
        for ncv in ncvs:
            result, seconds = _timed(lambda tol=tol, ncv=ncv: lanczos(
                HessianOperator(model, nn.functional.cross_entropy, (X, y)), 1, "LA", tol=tol, ncv=ncv,
                random_state=0), repeats)
            rows.append({"tol": tol, "method": f"nnlift lanczos, ncv={ncv}", "value": float(result.values[0]),
                         "seconds": seconds, "hvp": result.n_matvec})
        (value, hvp), seconds = _timed(lambda tol=tol: _pyhessian_top(model, X, y, tol, max_iter), repeats)
        rows.append({"tol": tol, "method": "PyHessian power iteration", "value": float(value), "seconds": seconds,
                     "hvp": hvp})
    for row in rows:
        row.update(exact_float32=float(exact), exact_float64=float(exact64),
                   rel_error=abs(row["value"] - exact) / abs(exact))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--tols", type=float, nargs="+", default=[1e-3, 1e-6])
    parser.add_argument("--ncvs", type=int, nargs="+", default=[20, 8], help="Krylov dimensions for Lanczos")
    parser.add_argument("--pyhessian-max-iter", type=int, default=1000)
    parser.add_argument("--eig-repeats", type=int, default=3)
    parser.add_argument("--grid", type=int, default=51)
    args = parser.parse_args()
    torch.set_num_threads(1)
    digits = load_digits()
    X = torch.tensor(digits.data[:args.rows] / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target[:args.rows])
    meta = {"args": vars(args), "torch": torch.__version__, "threads": torch.get_num_threads(), "dtype": "float32"}
    costs, tops, slices = {}, {}, {}
    for name, model in _models().items():
        train_loss = _train(model, X, y, args.train_steps)
        costs[name] = {"train_loss": train_loss, **_costs(model, X, y, args.repeats)}
        tops[name] = _top_eigenvalue(model, X, y, args.tols, args.ncvs, args.pyhessian_max_iter, args.eig_repeats)
        if name.startswith("MLP"):
            grid = np.linspace(-1, 1, args.grid)
            started = time.perf_counter()
            loss_slice_2d(model, nn.functional.cross_entropy, (X, y), alphas=grid, betas=grid, random_state=0)
            seconds = time.perf_counter() - started
            slices[name] = {"grid": f"{args.grid}x{args.grid}", "rows": args.rows, "seconds": seconds}

    print(f"digits, {args.rows} rows, float32, 1 thread, median of {args.repeats}\n")
    print("Ratios are to one autograd gradient (loss.backward()).\n")
    print("| model | P | gradient: autograd / torch.func (ms) | operator | cold product | warm product "
          "| warm, per probe of 10 |\n|---|---|---|---|---|---|---|")
    for name, row in costs.items():
        gradient = row["gradient_autograd_s"]
        gradients = f"{1e3 * gradient:.2f} / {1e3 * row['gradient_func_s']:.2f}"
        for op in OPERATORS:
            ratios = " | ".join(f"{row[f'{op}_{column}_s'] / gradient:.2f}"
                                for column in ("cold", "warm", "warm_per_probe_of_10"))
            print(f"| {name} | {row['n_params']} | {gradients} | {op} | {ratios} |")
    print("\nrel. error: against Lanczos at tol=0 on the same float32 operator.\n")
    print("| model | tol | method | λmax | rel. error | HVPs | seconds |\n|---|---|---|---|---|---|---|")
    for name, rows in tops.items():
        for r in rows:
            print(f"| {name} | {r['tol']:g} | {r['method']} | {r['value']:.6g} | {r['rel_error']:.1e} | {r['hvp']} "
                  f"| {r['seconds']:.3f} |")
    for name, row in slices.items():
        print(f"\n{row['grid']} loss_slice_2d of the {name} on {row['rows']} rows: {row['seconds']:.2f} s")
    write_json(RESULTS / "landscape_hvp_cost.json", {**meta, "models": costs})
    write_json(RESULTS / "landscape_top_eigenvalue.json", {**meta, "models": tops})
    write_json(RESULTS / "landscape_slice.json", {**meta, "models": slices})


if __name__ == "__main__":
    main()
