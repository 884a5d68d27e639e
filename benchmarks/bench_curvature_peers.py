"""Curvature lab against its peers: nnlift vs curvlinops vs hessian-eigenthings on the same models and data.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_curvature_peers.py            # full run, ~2-3 minutes
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_curvature_peers.py --quick    # smoke run, ~30 s

Models, cross-entropy on scikit-learn's `load_digits` (pixels / 16), trained by full-batch Adam in float64 so that
the point is not the initialisation: (a) an MLP 64-32-10 (tanh) on all 1797 rows, P = 2410; (b) a CNN on the 8×8
images, Conv2d(1, 8, 3) → tanh → Conv2d(8, 8, 3) → tanh → flatten → Linear(128, 10), P = 1954, on the first
`--cnn-rows` rows (600: a float64 CNN Hessian-vector product costs ~40-55 ms there, and power iteration needs
hundreds).
Peers: curvlinops (`HessianLinearOperator`, `GGNLinearOperator`, `KFACLinearOperator` with type-2 Fisher and joint
weight/bias, which is what nnlift's `KFACOperator` wraps) and hessian-eigenthings 1.0 (`HessianOperator`, autograd
double backward; `GGNOperator`; `lanczos`, `deflated_power_iteration`, `hutch_plus_plus`). Its 0.x function
`compute_hessian_eigenthings` is gone in 1.0; its two eigensolvers are the ones that function used to offer.

1. Top-5 Hessian eigenvalues (float64) at equal tolerance `--tol` (1e-6): nnlift `lanczos(op, 5, "LA")` (ARPACK,
   ncv 20, v0 from random_state 0); curvlinops' operator `.to_scipy()` → `scipy.sparse.linalg.eigsh` with the same
   k, ncv, tol and v0; hessian-eigenthings `lanczos(which="LA")`, which runs a fixed number of steps without
   restarts, so `max_iter` is doubled from 20 until all 5 Ritz pairs pass its own test |β s_i| < tol |λ_i| (the same
   relative residual test as ARPACK's; its default turns reorthogonalisation off above 50 steps, shown with one run
   at max_iter 80); its `deflated_power_iteration` (relative change and residual < tol, `--power-max-iter` steps per
   eigenvalue). Reference: eigvalsh of the dense Hessian for the MLP (nnlift's operator on the identity in blocks
   of 16), nnlift's Lanczos at tol = 0 for the CNN (its residuals bound its error). Error = max_i |λ_i − λ_i^ref| /
   |λ_i^ref| over the top 5; the target is 1e-6. Lanczos wall times are medians of `--eig-repeats` interleaved runs
   (power iteration: one run).
2. One product (a random vector (P,)) relative to one autograd gradient (zero_grad, loss, backward) on the same
   batch, float32 and float64: Hessian, GGN and K-FAC per library (hessian-eigenthings has no K-FAC). "cold" = make
   the operator + its first product (nnlift builds its linearisation there, curvlinops' K-FAC its factors, nnlift's
   K-FAC at construction); "warm" = one more product on a made operator. All variants of one model and dtype run
   interleaved in a shuffled order per round, `--repeats` rounds; ratio = median time / median gradient time.
   The process-wide torch.func warm-up (lazy imports and dispatch set-up on a process's first transform) is left
   out of "cold" and measured separately: in a fresh process per library, the first Hessian product (after one
   autograd gradient) minus the median cold product after it; the library's import time after torch's is timed in
   another fresh process. A torch.profiler run of the gradient and of nnlift's cold Hessian product says where the
   time goes (self CPU time per op; on the CNN, the per-sample loops of torch's CPU transposed convolution).
3. Trace of the MLP's Hessian (float64) at `--trace-matvecs` (99) products: nnlift `hutchpp_trace`, curvlinops
   `hutchpp_trace` (torch's global generator, seeded), hessian-eigenthings `hutch_plus_plus`, and nnlift's
   Hutchinson for scale; estimates and |error| / |exact trace| over `--trace-seeds` seeds, wall time median over
   them (interleaved). Exact trace from the dense Hessian.
4. Spectral density of the MLP's Hessian (float64) by stochastic Lanczos quadrature at `--slq-iter` (80) Lanczos
   steps and `--slq-probes` (10) probes: nnlift `spectral_density` against curvlinops `lanczos_approximate_spectrum`
   (Papyan 2020, Alg. 2, which first estimates the spectrum's ends with ARPACK). Accuracy: the density's mean
   against the exact tr(H) / P; wall time: median of `--slq-repeats` interleaved runs.

Prints markdown tables and writes benchmarks/results/curvature_peers[_quick].json (every number, the environment,
the load average before and after) and curvature_peers[_quick].png (product costs).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from sklearn.datasets import load_digits
from torch import nn

from nnlift._io import write_json
from nnlift.landscape import (
    GaussNewtonOperator,
    HessianOperator,
    KFACOperator,
    hutchinson_trace,
    hutchpp_trace,
    lanczos,
    spectral_density,
)

RESULTS = Path(__file__).parent / "results"
CE = nn.functional.cross_entropy
LIBRARIES = ("nnlift", "curvlinops", "hessian-eigenthings")
PRODUCTS = ("Hessian", "GGN", "K-FAC")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
K = 5


def _peer(name: str):
    """curvlinops or hessian_eigenthings, imported on first use (their imports are slow and warn); None if absent."""
    module = {"curvlinops": "curvlinops", "hessian-eigenthings": "hessian_eigenthings"}[name]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(module)
    except ImportError:
        return None


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


# ----------------------------------------------------------------------------------------------------- models, data
def _config(quick: bool) -> dict:
    if quick:
        return {"hidden": 8, "channels": 2, "mlp_rows": 300, "cnn_rows": 100, "mlp_steps": 30, "cnn_steps": 10}
    return {"hidden": 32, "channels": 8, "mlp_rows": 1797, "cnn_rows": None, "mlp_steps": 200, "cnn_steps": 100}


def _models(config: dict) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    h, c = config["hidden"], config["channels"]
    mlp = nn.Sequential(nn.Linear(64, h), nn.Tanh(), nn.Linear(h, 10))
    cnn = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, c, 3), nn.Tanh(), nn.Conv2d(c, c, 3), nn.Tanh(),
                        nn.Flatten(), nn.Linear(c * 16, 10))
    return {f"MLP 64-{h}-10": mlp.double(), f"CNN conv{c}-conv{c}-linear": cnn.double()}


def _digits(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    digits = load_digits()
    return (torch.tensor(digits.data[:rows] / 16.0, dtype=torch.float64), torch.tensor(digits.target[:rows]))


def _train(model: nn.Module, X, y, steps: int) -> dict:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        CE(model(X), y).backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        output = model(X)
    return {"train_steps": steps, "train_loss": float(CE(output, y)),
            "train_accuracy": float((output.argmax(1) == y).double().mean())}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------------------- operators
def _factories(model: nn.Module, X, y) -> dict[tuple[str, str], Callable]:
    """(product, library) -> a function making the operator (anything with `op @ v` for a torch vector (P,))."""
    params, data, batches = list(model.parameters()), (X, y), [(X, y)]
    factories = {("Hessian", "nnlift"): lambda: HessianOperator(model, CE, data),
                 ("GGN", "nnlift"): lambda: GaussNewtonOperator(model, CE, data),
                 ("K-FAC", "nnlift"): lambda: KFACOperator(model, CE, data)}
    cl = _peer("curvlinops")
    if cl is not None:
        factories.update({
            ("Hessian", "curvlinops"): lambda: cl.HessianLinearOperator(model, nn.CrossEntropyLoss(), params, batches,
                                                                        check_deterministic=False),
            ("GGN", "curvlinops"): lambda: cl.GGNLinearOperator(model, nn.CrossEntropyLoss(), params, batches,
                                                                check_deterministic=False),
            ("K-FAC", "curvlinops"): lambda: cl.KFACLinearOperator(
                model, nn.CrossEntropyLoss(), params, batches, check_deterministic=False, fisher_type="type-2",
                separate_weight_and_bias=False)})
    he = _peer("hessian-eigenthings")
    if he is not None:
        factories.update({
            ("Hessian", "hessian-eigenthings"): lambda: he.HessianOperator(model, batches, he.supervised_loss(CE)),
            ("GGN", "hessian-eigenthings"): lambda: he.GGNOperator(model, batches, he.supervised_forward,
                                                                   he.supervised_loss_of_output(CE))})
    return factories


def _gradient(model: nn.Module, X, y) -> Callable[[], None]:
    def autograd_gradient():
        model.zero_grad(set_to_none=True)
        CE(model(X), y).backward()
    return autograd_gradient


def _interleaved(tasks: dict[str, Callable], repeats: int, rng: np.random.Generator) -> dict[str, list[float]]:
    """Each task once per round in a shuffled order, `repeats` rounds; wall times in seconds."""
    names, times = list(tasks), {name: [] for name in tasks}
    for _ in range(repeats):
        for i in rng.permutation(len(names)):
            started = time.perf_counter()
            tasks[names[i]]()
            times[names[i]].append(time.perf_counter() - started)
    return times


def _agreement(factories: dict, n_params: int, dtype: torch.dtype) -> dict[str, float]:
    """max |A v − A_nnlift v| / max |A_nnlift v| for one random v, per product and peer."""
    v = torch.randn(n_params, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)
    out = {}
    for product in PRODUCTS:
        ours = factories[(product, "nnlift")]() @ v
        for library in LIBRARIES[1:]:
            if (product, library) in factories:
                theirs = torch.as_tensor(factories[(product, library)]() @ v).detach()
                out[f"{product} {library}"] = float((theirs - ours).abs().max() / ours.abs().max())
    return out


def product_costs(model: nn.Module, X, y, dtype: torch.dtype, repeats: int, seed: int) -> dict:
    """Part 2 for one model and dtype."""
    model = copy.deepcopy(model).to(dtype)
    X = X.to(dtype)
    factories = _factories(model, X, y)
    P = _n_params(model)
    v = torch.randn(P, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(dtype)
    gradient = _gradient(model, X, y)
    gradient()
    warm_ops, first = {}, {}
    for key, make in factories.items():  # made once and used once: the warm operators, also this process's warm-up
        started = time.perf_counter()
        warm_ops[key] = make()
        warm_ops[key] @ v
        first[" ".join(key)] = time.perf_counter() - started
    tasks = {"gradient": gradient}
    for key, make in factories.items():
        tasks[f"{' '.join(key)} cold"] = lambda make=make: make() @ v
        tasks[f"{' '.join(key)} warm"] = lambda op=warm_ops[key]: op @ v
    times = _interleaved(tasks, repeats, np.random.default_rng(seed))
    model.zero_grad(set_to_none=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    rows = []
    for product, library in factories:
        name = f"{product} {library}"
        rows.append({"product": product, "library": library,
                     "cold_s": medians[f"{name} cold"], "warm_s": medians[f"{name} warm"],
                     "cold_ratio": medians[f"{name} cold"] / medians["gradient"],
                     "warm_ratio": medians[f"{name} warm"] / medians["gradient"]})
    return {"n_params": P, "rows_of_data": int(X.shape[0]), "repeats": repeats, "gradient_s": medians["gradient"],
            "products": rows, "first_in_this_process_s": first, "times_s": times,
            "agreement_rel": _agreement(factories, P, dtype),
            "profile": {"gradient": operator_profile(gradient, repeats=5),
                        "nnlift Hessian cold": operator_profile(factories["Hessian", "nnlift"], repeats=5, v=v)}}


def operator_profile(task: Callable, repeats: int, v: torch.Tensor | None = None, top: int = 6) -> dict:
    """Where a product's time goes (torch.profiler, `repeats` runs after one unprofiled run): self CPU time per op
    (ms per run) for the `top` ops and their call counts, the total, and the count of per-sample `aten::select` calls
    (the per-sample loops of torch's CPU slow-conv kernels). `task` is the gradient, or an operator factory whose
    fresh operator is applied to `v` (a cold product)."""
    run = task if v is None else (lambda: task() @ v)
    run()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            run()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) / repeats / 1e3
    return {"total_ms": total,
            "selects_per_run": sum(e.count for e in events if e.key == "aten::select") / repeats,
            "ops": [{"op": e.key, "self_ms": e.self_cpu_time_total / repeats / 1e3, "calls": e.count / repeats,
                     "share": e.self_cpu_time_total / repeats / 1e3 / total} for e in events[:top]]}


# ------------------------------------------------------------------------------------------------------- warm-up
def warmup_probe(library: str, quick: bool) -> dict:
    """In a fresh process: the first Hessian product (make + product, after one autograd gradient) on the float32
    MLP, and the median cold product after it (5 runs)."""
    if library != "nnlift":
        _peer(library)
    torch.set_num_threads(1)
    config = _config(quick)
    X, y = _digits(config["mlp_rows"])
    model = next(iter(_models(config).values())).float()
    X = X.float()
    make = _factories(model, X, y)[("Hessian", library)]
    v = torch.randn(_n_params(model), generator=torch.Generator().manual_seed(0))
    _gradient(model, X, y)()
    started = time.perf_counter()
    make() @ v
    first = time.perf_counter() - started
    cold = []
    for _ in range(5):
        started = time.perf_counter()
        make() @ v
        cold.append(time.perf_counter() - started)
    return {"first_product_s": first, "cold_median_s": statistics.median(cold),
            "warmup_s": first - statistics.median(cold)}


def warmups(quick: bool) -> dict[str, dict]:
    out = {}
    for library in LIBRARIES[:1] if quick else LIBRARIES:
        if library != "nnlift" and _peer(library) is None:
            continue
        command = [sys.executable, __file__, "--warmup-probe", library] + (["--quick"] if quick else [])
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        out[library] = json.loads(done.stdout.strip().splitlines()[-1])
        module = {"nnlift": "nnlift.landscape", "curvlinops": "curvlinops",
                  "hessian-eigenthings": "hessian_eigenthings"}[library]
        timer = f"import time, torch; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
        done = subprocess.run([sys.executable, "-W", "ignore", "-c", timer], capture_output=True, text=True,
                              check=True)
        out[library]["import_s"] = float(done.stdout.strip().splitlines()[-1])
    return out


# ---------------------------------------------------------------------------------------------------- eigenvalues
class _Counted:
    """A SciPy operator that counts its products."""

    def __init__(self, linear: LinearOperator):
        self.linear, self.count = linear, 0

    def scipy(self) -> LinearOperator:
        def matvec(x):
            self.count += 1
            return self.linear.matvec(x)
        return LinearOperator(self.linear.shape, matvec=matvec, rmatvec=matvec, dtype=np.float64)


class _CountedTorch:
    """A hessian-eigenthings operator that counts its products."""

    def __init__(self, op):
        self.op, self.count = op, 0
        self.size, self.device, self.dtype = op.size, op.device, op.dtype

    def matvec(self, v):
        self.count += 1
        return self.op.matvec(v)

    __matmul__ = __call__ = rmatvec = matvec


def _rel_error(values, reference) -> float:
    values = np.sort(np.asarray(values, dtype=float))[::-1][:K]
    return float(np.max(np.abs(values - reference) / np.abs(reference)))


def _eig_methods(model, X, y, tol: float, ncv: int, max_ladder: int, power_max_iter: int) -> dict[str, Callable]:
    """name -> function returning {values, matvecs, converged, ...} (each makes its operator)."""
    P = _n_params(model)
    v0 = np.random.default_rng(0).standard_normal(P)
    methods = {}

    def ours():
        result = lanczos(HessianOperator(model, CE, (X, y)), K, "LA", tol=tol, ncv=ncv, random_state=0)
        return {"values": result.values, "matvecs": result.n_matvec, "converged": bool(result.converged.all()),
                "residuals": result.residuals}

    methods["nnlift lanczos (ARPACK)"] = ours
    cl = _peer("curvlinops")
    if cl is not None:
        def theirs():
            op = cl.HessianLinearOperator(model, nn.CrossEntropyLoss(), list(model.parameters()), [(X, y)],
                                          check_deterministic=False)
            counted = _Counted(op.to_scipy(dtype=np.float64))
            values = eigsh(counted.scipy(), K, which="LA", tol=tol, ncv=ncv, v0=v0, return_eigenvectors=False)
            return {"values": np.sort(values)[::-1], "matvecs": counted.count, "converged": True}

        methods["curvlinops → scipy eigsh"] = theirs
    he = _peer("hessian-eigenthings")
    if he is not None:
        def operator():
            return _CountedTorch(he.HessianOperator(model, [(X, y)], he.supervised_loss(CE)))

        def ladder():
            """max_iter 20, 40, ... until all K pairs pass the library's own test."""
            max_iter, total = 20, 0
            while True:
                max_iter = min(max_iter, P - 1)
                op = operator()
                result = he.lanczos(op, k=K, max_iter=max_iter, tol=tol, which="LA", seed=0)
                total += op.count
                if bool(result.converged.all()) or max_iter >= min(max_ladder, P - 1):
                    return {"values": result.eigenvalues.numpy(), "matvecs": op.count, "ladder_matvecs": total,
                            "max_iter": max_iter, "converged": bool(result.converged.all()),
                            "reorthogonalize": max_iter <= 50}
                max_iter *= 2

        def default_80():
            op = operator()
            result = he.lanczos(op, k=K, max_iter=min(80, P - 1), tol=tol, which="LA", seed=0)
            return {"values": result.eigenvalues.numpy(), "matvecs": op.count, "max_iter": min(80, P - 1),
                    "converged": bool(result.converged.all()), "reorthogonalize": False}

        def power():
            op = operator()
            result = he.deflated_power_iteration(op, k=K, tol=tol, max_iter=power_max_iter, seed=0)
            return {"values": np.sort(result.eigenvalues.numpy())[::-1], "matvecs": op.count,
                    "converged": bool(result.converged.all()), "max_iter": power_max_iter}

        methods["hessian-eigenthings lanczos, max_iter doubled to converge"] = ladder
        methods["hessian-eigenthings lanczos, max_iter 80 (default: no reorth.)"] = default_80
        methods["hessian-eigenthings deflated power iteration"] = power
    return methods


def top_eigenvalues(model, X, y, *, dense: bool, tol: float, ncv: int, repeats: int, max_ladder: int,
                    power_max_iter: int, seed: int) -> dict:
    """Part 1 for one (float64) model."""
    started = time.perf_counter()
    if dense:
        H = HessianOperator(model, CE, (X, y)).to_dense(block=16)
        H = (H + H.T) / 2
        spectrum = torch.linalg.eigvalsh(H).numpy()
        reference = {"method": "dense eigvalsh", "values": spectrum[::-1][:K].copy(), "trace": float(spectrum.sum()),
                     "lambda_min": float(spectrum[0]), "asymmetry": 0.0}
    else:
        result = lanczos(HessianOperator(model, CE, (X, y)), K, "LA", tol=0, ncv=ncv, random_state=0)
        reference = {"method": "nnlift lanczos tol=0", "values": result.values, "matvecs": result.n_matvec,
                     "max_rel_residual": float(np.max(result.residuals / np.abs(result.values)))}
    reference["seconds"] = time.perf_counter() - started
    methods = _eig_methods(model, X, y, tol, ncv, max_ladder, power_max_iter)
    timed = {name: fn for name, fn in methods.items() if "power" not in name and "80" not in name}
    results = {}

    def keep(name, fn):
        return lambda: results.__setitem__(name, fn())

    times = _interleaved({name: keep(name, fn) for name, fn in timed.items()}, repeats, np.random.default_rng(seed))
    for name, fn in methods.items():
        if name not in timed:
            times[name] = _interleaved({name: keep(name, fn)}, 1, np.random.default_rng(seed))[name]
    rows = []
    for name in methods:
        row = {"method": name, **results[name], "seconds": statistics.median(times[name]), "times_s": times[name],
               "rel_error": _rel_error(results[name]["values"], reference["values"])}
        row["values"] = [float(value) for value in row["values"]]
        row.pop("residuals", None)
        rows.append(row)
    reference["values"] = [float(value) for value in reference["values"]]
    return {"tol": tol, "ncv": ncv, "repeats": repeats, "reference": reference, "methods": rows}


# ---------------------------------------------------------------------------------------------------------- trace
def traces(model, X, y, exact: float, matvecs: int, seeds: int) -> dict:
    """Part 3: Hutch++ of the three libraries (and nnlift's Hutchinson) at `matvecs` products."""
    methods = {"nnlift hutchpp_trace": lambda s: hutchpp_trace(HessianOperator(model, CE, (X, y)), matvecs,
                                                               random_state=s).estimate,
               "nnlift hutchinson_trace": lambda s: hutchinson_trace(HessianOperator(model, CE, (X, y)), matvecs,
                                                                     random_state=s).estimate}
    cl = _peer("curvlinops")
    if cl is not None:
        def theirs(s):
            op = cl.HessianLinearOperator(model, nn.CrossEntropyLoss(), list(model.parameters()), [(X, y)],
                                          check_deterministic=False)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)
                return float(cl.hutchpp_trace(op, matvecs))

        methods["curvlinops hutchpp_trace"] = theirs
    he = _peer("hessian-eigenthings")
    if he is not None:
        methods["hessian-eigenthings hutch_plus_plus"] = lambda s: he.hutch_plus_plus(
            he.HessianOperator(model, [(X, y)], he.supervised_loss(CE)), num_matvecs=matvecs, seed=s).estimate
    estimates = {name: [] for name in methods}
    times = {name: [] for name in methods}
    rng = np.random.default_rng(0)
    names = list(methods)
    for s in range(seeds):
        for i in rng.permutation(len(names)):
            started = time.perf_counter()
            estimates[names[i]].append(float(methods[names[i]](s)))
            times[names[i]].append(time.perf_counter() - started)
    rows = []
    for name in methods:
        errors = [abs(e - exact) / abs(exact) for e in estimates[name]]
        rows.append({"method": name, "matvecs": matvecs, "estimates": estimates[name], "rel_errors": errors,
                     "median_rel_error": statistics.median(errors), "max_rel_error": max(errors),
                     "seconds": statistics.median(times[name]), "times_s": times[name]})
    return {"exact": exact, "matvecs": matvecs, "seeds": seeds, "methods": rows}


# ------------------------------------------------------------------------------------------------------- density
def _density_mean(grid, density) -> float:
    grid, density = np.asarray(grid, dtype=np.float64), np.asarray(density, dtype=np.float64)
    return float(np.trapezoid(grid * density, grid) / np.trapezoid(density, grid))


def densities(model, X, y, exact_trace: float, n_iter: int, probes: int, repeats: int) -> dict:
    """Part 4: the SLQ spectral density of nnlift and curvlinops at equal Lanczos steps and probes."""
    exact_mean = exact_trace / _n_params(model)
    methods = {"nnlift spectral_density": lambda: _density_mean(*(lambda d: (d.grid, d.density))(spectral_density(
        HessianOperator(model, CE, (X, y)), n_iter=n_iter, n_probes=probes, random_state=0)))}
    cl = _peer("curvlinops")
    if cl is not None:
        def theirs():
            op = cl.HessianLinearOperator(model, nn.CrossEntropyLoss(), list(model.parameters()), [(X, y)],
                                          check_deterministic=False)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return _density_mean(*cl.lanczos_approximate_spectrum(op, ncv=n_iter, num_repeats=probes))

        methods["curvlinops lanczos_approximate_spectrum"] = theirs
    times = _interleaved(methods, repeats, np.random.default_rng(1))
    rows = []
    for name, method in methods.items():
        mean = method()
        rows.append({"method": name, "density_mean": mean, "rel_error": abs(mean - exact_mean) / abs(exact_mean),
                     "seconds": statistics.median(times[name]), "times_s": times[name]})
    return {"exact_mean": exact_mean, "n_iter": n_iter, "probes": probes, "repeats": repeats, "methods": rows}


# -------------------------------------------------------------------------------------------------------- output
def _table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def report(out: dict) -> None:
    env = out["environment"]
    print(f"\ntorch {env['torch']}, curvlinops {env['curvlinops']}, hessian-eigenthings {env['hessian_eigenthings']}, "
          f"{env['threads']} thread(s), load average {env['loadavg_start']} at start, {env['loadavg_end']} at end; "
          f"wall time {out['wall_s']:.0f} s\n")
    print(f"1. Top-{K} Hessian eigenvalues (float64), tol = {out['args']['tol']:g}; error = max_i |λ_i − ref_i| / "
          "|ref_i|; seconds: median of interleaved runs (power iteration and the max_iter-80 run: one run)\n")
    rows = []
    for model, part in out["eigenvalues"].items():
        ref = part["reference"]
        extra = (f"max residual/λ {ref['max_rel_residual']:.0e}" if "max_rel_residual" in ref
                 else f"λmin {ref['lambda_min']:.4g}")
        rows.append([model, f"reference: {ref['method']}", f"{ref['values'][0]:.10g}", f"{ref['values'][-1]:.10g}",
                     "0", ref.get("matvecs", "dense"), extra, f"{ref['seconds']:.2f}", ""])
        base = next(r["seconds"] for r in part["methods"] if r["method"].startswith("nnlift"))
        for r in part["methods"]:
            note = f"max_iter {r['max_iter']}" if "max_iter" in r else ""
            if "ladder_matvecs" in r:
                note += f", ladder total {r['ladder_matvecs']} HVPs"
            rows.append([model, r["method"], f"{r['values'][0]:.10g}", f"{r['values'][-1]:.10g}",
                         f"{r['rel_error']:.1e}", r["matvecs"], f"converged {r['converged']}" + (f", {note}" if note
                                                                                                 else ""),
                         f"{r['seconds']:.2f}", f"{r['seconds'] / base:.2f}"])
    print(_table(["model", "method", "λ1", f"λ{K}", "error", "HVPs", "notes", "s", "s / nnlift"], rows))
    print("\n2. One product / one autograd gradient (zero_grad, loss, backward), same batch; median of "
          f"{out['args']['repeats']} interleaved rounds\n")
    rows = []
    for key, part in out["products"].items():
        for r in part["products"]:
            rows.append([key, part["n_params"], part["rows_of_data"], f"{1e3 * part['gradient_s']:.2f}", r["product"],
                         r["library"], f"{r['cold_ratio']:.2f}", f"{r['warm_ratio']:.2f}", f"{1e3 * r['cold_s']:.2f}",
                         f"{1e3 * r['warm_s']:.2f}"])
    print(_table(["model, dtype", "P", "rows", "gradient ms", "product", "library", "cold ×", "warm ×", "cold ms",
                  "warm ms"], rows))
    print("\nWhere the time goes (torch.profiler, self CPU ms per run, top ops; selects = per-sample aten::select "
          "calls per run):")
    for key, part in out["products"].items():
        for name, prof in part["profile"].items():
            ops = ", ".join(f"{o['op']} {o['self_ms']:.2f} ({100 * o['share']:.0f}%)" for o in prof["ops"][:4])
            print(f"- {key}, {name}: {prof['total_ms']:.2f} ms; selects {prof['selects_per_run']:.0f}; {ops}")
    print("\nProducts agree (max |Av − A_nnlift v| / max |A_nnlift v|, one random v):")
    for key, part in out["products"].items():
        print(f"- {key}: " + ", ".join(f"{name} {value:.1e}" for name, value in part["agreement_rel"].items()))
    print("\nProcess-wide warm-up, float32 MLP, each library in a fresh process (after one autograd gradient); "
          "import: the library's import after torch's, in another fresh process:\n")
    rows = [[lib, f"{w['import_s']:.2f}", f"{w['first_product_s']:.3f}", f"{1e3 * w['cold_median_s']:.2f}",
             f"{w['warmup_s']:.3f}"] for lib, w in out["warmups"].items()]
    print(_table(["library", "import s", "first Hessian product s", "cold product after it ms", "warm-up s"], rows))
    if out.get("traces"):
        tr = out["traces"]
        print(f"\n3. Trace of the MLP Hessian (float64), exact {tr['exact']:.10g}, {tr['matvecs']} products, "
              f"{tr['seeds']} seeds (seconds: median, interleaved)\n")
        base = next(r["seconds"] for r in tr["methods"] if r["method"] == "nnlift hutchpp_trace")
        rows = [[r["method"], r["matvecs"], f"{statistics.median(r['estimates']):.6g}",
                 f"{r['median_rel_error']:.1e}", f"{r['max_rel_error']:.1e}", f"{r['seconds']:.3f}",
                 f"{r['seconds'] / base:.2f}"] for r in tr["methods"]]
        print(_table(["method", "products", "median estimate", "median |error|", "max |error|", "s", "s / nnlift"],
                     rows))
    if out.get("densities"):
        de = out["densities"]
        print(f"\n4. Spectral density of the MLP Hessian (float64) by SLQ, {de['n_iter']} Lanczos steps, "
              f"{de['probes']} probes; exact mean eigenvalue tr(H)/P = {de['exact_mean']:.6g} (seconds: median of "
              f"{de['repeats']} interleaved runs)\n")
        base = next(r["seconds"] for r in de["methods"] if r["method"] == "nnlift spectral_density")
        rows = [[r["method"], f"{r['density_mean']:.6g}", f"{r['rel_error']:.1e}", f"{r['seconds']:.2f}",
                 f"{r['seconds'] / base:.2f}"] for r in de["methods"]]
        print(_table(["method", "density mean", "|error| / mean", "s", "s / nnlift"], rows))
    print("\nTargets:")
    for line in out["targets"]:
        print(f"- {line}")


def targets(out: dict, tol_target: float = 1e-6, ratio_target: float = 3.0) -> list[str]:
    lines = []
    for model, part in out["eigenvalues"].items():
        for r in part["methods"]:
            verdict = "met" if r["rel_error"] <= tol_target else "MISSED"
            lines.append(f"top-{K} within {tol_target:g} relative, {model}, {r['method']}: {verdict} "
                         f"({r['rel_error']:.1e})")
    for key, part in out["products"].items():
        for r in part["products"]:
            if r["library"] == "nnlift" and r["product"] == "Hessian":
                lines.append(f"nnlift HVP <= {ratio_target:g}x gradient, {key}: cold {r['cold_ratio']:.2f}x "
                             f"({'met' if r['cold_ratio'] <= ratio_target else 'MISSED'}), warm "
                             f"{r['warm_ratio']:.2f}x ({'met' if r['warm_ratio'] <= ratio_target else 'MISSED'})")
    return lines


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(out["products"])
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.8), sharey=True, squeeze=False)
    colors = {"nnlift": "C0", "curvlinops": "C1", "hessian-eigenthings": "C2"}
    for ax, key in zip(axes[0], keys, strict=True):
        rows = out["products"][key]["products"]
        for i, r in enumerate(rows):
            ax.bar(i - 0.2, r["cold_ratio"], 0.4, color=colors[r["library"]], alpha=0.5)
            ax.bar(i + 0.2, r["warm_ratio"], 0.4, color=colors[r["library"]])
        ax.axhline(3.0, color="k", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xticks(range(len(rows)), [f"{r['product']}\n{r['library'][:10]}" for r in rows], fontsize=6,
                      rotation=90)
        ax.set_title(key, fontsize=8)
    axes[0][0].set_ylabel("product / autograd gradient\n(light: cold, dark: warm; dashed: 3×)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run on tiny models (seconds)")
    parser.add_argument("--cnn-rows", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=21, help="interleaved rounds of the product timings")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=list(DTYPES))
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--ncv", type=int, default=20)
    parser.add_argument("--eig-repeats", type=int, default=3)
    parser.add_argument("--max-ladder", type=int, default=320, help="largest hessian-eigenthings lanczos max_iter")
    parser.add_argument("--power-max-iter", type=int, default=200, help="power iterations per eigenvalue")
    parser.add_argument("--trace-matvecs", type=int, default=99)
    parser.add_argument("--trace-seeds", type=int, default=5)
    parser.add_argument("--slq-iter", type=int, default=80)
    parser.add_argument("--slq-probes", type=int, default=10)
    parser.add_argument("--slq-repeats", type=int, default=3)
    parser.add_argument("--warmup-probe", choices=LIBRARIES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup_probe:
        print(json.dumps(warmup_probe(args.warmup_probe, args.quick)))
        return
    if args.quick:
        args.repeats, args.eig_repeats, args.power_max_iter, args.trace_seeds = 3, 1, 50, 2
        args.slq_iter, args.slq_probes, args.slq_repeats = 20, 2, 1
    started = time.perf_counter()
    torch.set_num_threads(1)
    config = _config(args.quick)
    config["cnn_rows"] = config["cnn_rows"] or args.cnn_rows
    environment = {"torch": torch.__version__, "curvlinops": _version("curvlinops-for-pytorch"),
                   "hessian_eigenthings": _version("hessian-eigenthings"), "numpy": np.__version__,
                   "scipy": _version("scipy"), "python": platform.python_version(), "machine": platform.machine(),
                   "threads": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                   "cpu_count": os.cpu_count(), "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    out = {"args": vars(args), "config": config, "environment": environment, "models": {}, "warmups": warmups(
        args.quick), "eigenvalues": {}, "products": {}}
    for index, (name, model) in enumerate(_models(config).items()):
        rows = config["mlp_rows"] if index == 0 else config["cnn_rows"]
        X, y = _digits(rows)
        out["models"][name] = {"n_params": _n_params(model), "rows": rows,
                               **_train(model, X, y, config["mlp_steps" if index == 0 else "cnn_steps"])}
        print(f"{name}: P = {_n_params(model)}, {rows} rows, {out['models'][name]}", flush=True)
        part = top_eigenvalues(model, X, y, dense=index == 0, tol=args.tol, ncv=args.ncv, repeats=args.eig_repeats,
                               max_ladder=args.max_ladder, power_max_iter=args.power_max_iter, seed=index)
        out["eigenvalues"][name] = part
        print(f"  eigenvalues done ({time.perf_counter() - started:.0f} s)", flush=True)
        if index == 0:
            out["traces"] = traces(model, X, y, part["reference"]["trace"], args.trace_matvecs, args.trace_seeds)
            print(f"  traces done ({time.perf_counter() - started:.0f} s)", flush=True)
            out["densities"] = densities(model, X, y, part["reference"]["trace"], args.slq_iter, args.slq_probes,
                                         args.slq_repeats)
            print(f"  densities done ({time.perf_counter() - started:.0f} s)", flush=True)
        for dtype in args.dtypes:
            out["products"][f"{name}, {dtype}"] = product_costs(model, X, y, DTYPES[dtype], args.repeats,
                                                                seed=10 * index + len(out["products"]))
            print(f"  products {dtype} done ({time.perf_counter() - started:.0f} s)", flush=True)
    environment["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    out["wall_s"] = time.perf_counter() - started
    out["targets"] = targets(out)
    report(out)
    suffix = "_quick" if args.quick else ""
    write_json(RESULTS / f"curvature_peers{suffix}.json", out)
    plot(out, RESULTS / f"curvature_peers{suffix}.png")


if __name__ == "__main__":
    main()
