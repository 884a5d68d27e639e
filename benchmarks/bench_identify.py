"""System identification (`nnlift.identify`): designed vs passive queries vs backprop on planted two-layer systems.

    OMP_NUM_THREADS=1 python benchmarks/bench_identify.py --quick                      # smoke run, about a minute
    OMP_NUM_THREADS=1 python benchmarks/bench_identify.py --parts ladder stop --seeds 10
    OMP_NUM_THREADS=1 python benchmarks/bench_identify.py --parts honest --honest-seeds 20
    OMP_NUM_THREADS=1 python benchmarks/bench_identify.py --parts multi --multi-seeds 5

The moment sums' control variate on its own (error with and without it, and its weights): bench_identify_control.py.

Planted systems y = sum_i c_i sigma(a_i^T x + b_i) + noise: columns a_i random unit directions times the cell's
weight scale, b_i ~ U(-0.5, 0.5), c_i = ±U(0.5, 1.5), Gaussian noise of sd sigma. A model *succeeds* when
min |cos| (`weight_recovery(true, model.first_layer_).min`, Hungarian-matched) >= 0.99 AND its excess test error
over the noise, mean((f_hat(x) - f(x))^2) / sigma^2 on 20,000 fresh x ~ N(0, I) against the noise-free outputs f,
is <= 0.1 (i.e. test MSE against fresh noisy outputs <= 1.1 sigma^2 in expectation).

Parts (each writes benchmarks/results/identify_<part>[_quick].json; every run redraws identify[_quick].png from
whatever part files exist):

- ladder: queries to succeed. `identify` with tolerance 0.9999 (no early stop in practice: it spends the budget) at
  budgets 25k, 50k, 100k, 200k, 400k, smallest first, stopping at the first budget that succeeds; "designed"
  (design="auto"), "passive" (design="standard", x ~ N(0, I)) and "backprop" (`BackpropRegressor` trained on that
  many N(0, I) queries of the same system).
- stop: `identify` with its real stopping rule (tolerance 0.99) and the cell's budget (200k; 400k at d = 50):
  stopping reason, queries used, min |cos| and excess of the returned model, designed and passive.
- honest: design="auto", tolerance 0.99, noise 0.05, many systems: of the runs that stop with "identified", how
  many have min |cos| >= 0.99, for the returned (fine-tuned) model and for the moment's directions alone (the same
  run with finetune=False: same queries, same noise).
- multi: p = 10 outputs sharing the first layer (tanh d=20 k=5, output weights (k, p) standard normal): queries at
  stop of the joint identification vs identifying each output alone (same seed), tolerance 0.99.
- basin: relu d10 k5, noise 0.05, designed and passive at 25k and 50k (tolerance 0.9999), with and without the
  fine-tune: how far the moment's directions alone are from the truth, and how often fine-tuning rescues them.
- null: systems with less structure than asked for (pure noise; a tanh network with one hidden unit fewer than
  n_hidden), budget 20k in batches of 500, tolerance 0.99: how often the stop says "identified" under the rule
  (halves agree and every neuron's cross-fitted weight is significant) and under the old one (halves agree).

Tasks run in `--workers` processes (one BLAS/torch thread each); every task seeds itself, so results do not depend on
the scheduling.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnlift import identify
from nnlift._io import atomic_write, write_json
from nnlift.activations import get_activation
from nnlift.baselines import BackpropRegressor
from nnlift.datasets import make_teacher
from nnlift.metrics import weight_recovery

RESULTS = Path(__file__).parent / "results"
CELLS = {
    "tanh_d20_k5": {"activation": "tanh", "d": 20, "k": 5, "weight_scale": 1.0, "budget": 200_000},
    "tanh_d50_k10": {"activation": "tanh", "d": 50, "k": 10, "weight_scale": 1.0, "budget": 400_000},
    "relu_d10_k5": {"activation": "relu", "d": 10, "k": 5, "weight_scale": 1.0, "budget": 200_000},
    "softplus_d10_k5_w1.5": {"activation": "softplus", "d": 10, "k": 5, "weight_scale": 1.5, "budget": 200_000},
}
METHODS = ("designed", "passive", "backprop")
DESIGNS = {"designed": "auto", "passive": "standard"}
LADDER = (25_000, 50_000, 100_000, 200_000, 400_000)
LADDER_TOLERANCE = 0.9999
COS_TARGET, EXCESS_TARGET = 0.99, 0.1
N_TEST = 20_000


@dataclass
class Planted:
    """A planted network as a black box: `clean(X)` the noise-free outputs, `__call__` adds N(0, noise^2) from its own
    generator (seeded, so two runs making the same queries see the same noise). `output` picks one column of a
    multi-output system."""

    activation: str
    first_layer: np.ndarray
    bias: np.ndarray
    coef: np.ndarray
    noise: float
    seed: int
    output: int | None = None

    def __post_init__(self):
        self._rng = np.random.default_rng([self.seed, 1])
        self._act = get_activation(self.activation)

    def clean(self, X: np.ndarray) -> np.ndarray:
        Y = self._act.numpy(X @ self.first_layer + self.bias) @ self.coef
        return Y if self.output is None else Y[:, self.output]

    def __call__(self, X: np.ndarray) -> np.ndarray:
        Y = self.clean(X)
        return Y + self.noise * self._rng.standard_normal(Y.shape)


def planted(cell: str, noise: float, seed: int, n_outputs: int | None = None, output: int | None = None) -> Planted:
    spec = CELLS[cell]
    teacher = make_teacher(1, spec["d"], spec["k"], spec["activation"], noise=noise, weight_scale=spec["weight_scale"],
                           random_state=seed, bias_range=0.5)
    coef = teacher.coef if n_outputs is None else np.random.default_rng([seed, 4]).standard_normal((spec["k"],
                                                                                                    n_outputs))
    return Planted(spec["activation"], teacher.first_layer, teacher.bias, coef, noise, seed, output)


def evaluate(system: Planted, model, design_scale: float | None = None) -> dict:
    """min |cos| and the excess over the noise on fresh x ~ N(0, I) (the success criterion); with `design_scale` s
    also the excess on fresh x = s z, the distribution `identify` queried and fitted the network on."""
    Z = np.random.default_rng([system.seed, 3]).standard_normal((N_TEST, system.first_layer.shape[0]))
    excess = float(np.mean((model.predict(Z) - system.clean(Z)) ** 2) / system.noise ** 2)
    cos = float(weight_recovery(system.first_layer, model.first_layer_).min)
    row = {"recovery_min": cos, "excess": excess, "success": bool(cos >= COS_TARGET and excess <= EXCESS_TARGET)}
    if design_scale is not None:
        X = design_scale * Z
        row["excess_design"] = float(np.mean((model.predict(X) - system.clean(X)) ** 2) / system.noise ** 2)
    return row


def run_identify(cell, noise, seed, design, budget, tolerance, finetune=True, n_outputs=None, output=None) -> dict:
    system = planted(cell, noise, seed, n_outputs, output)
    spec = CELLS[cell]
    started = time.perf_counter()
    batch_size = min(5_000, budget // 4)  # identify's default, made smaller only for budgets under 20k
    model, report = identify(system, spec["d"], spec["k"], activation=spec["activation"], budget=budget,
                             batch_size=batch_size, design=design, tolerance=tolerance, finetune=finetune,
                             random_state=seed, verbose=0)
    row = {"seconds": time.perf_counter() - started, "queries": report.queries, "batch_size": batch_size,
           "stopping_reason": report.stopping_reason, "confidence_min": float(min(report.confidence)),
           "scale": report.design["scale"], "order": report.design["order"], "finetuned": report.finetuned,
           "start": report.start, "network_fits": report.network_fits, "history": report.history}
    row.update(evaluate(system, model, report.design["scale"]))
    return row


def run_backprop(cell, noise, seed, n) -> dict:
    system = planted(cell, noise, seed)
    X = np.random.default_rng([seed, 2]).standard_normal((max(LADDER), CELLS[cell]["d"]))[:n]
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BackpropRegressor(CELLS[cell]["k"], activation=CELLS[cell]["activation"], random_state=seed)
        model.fit(X, system(X))
    row = {"seconds": time.perf_counter() - started, "queries": n, "n_iter": int(model.n_iter_)}
    row.update(evaluate(system, model))
    return row


def run_ladder(method, cell, noise, seed, budgets) -> dict:
    """Budgets smallest first until one succeeds; `reached` = the queries of the first success (None if none)."""
    rungs = []
    for budget in budgets:
        if method == "backprop":
            row = run_backprop(cell, noise, seed, budget)
        else:
            row = run_identify(cell, noise, seed, DESIGNS[method], budget, LADDER_TOLERANCE)
            row.pop("history")
        rungs.append({"budget": budget, **row})
        if row["success"]:
            return {"reached": row["queries"], "rungs": rungs}
    return {"reached": None, "rungs": rungs}


NULL_CELLS = {"noise d1 k1": (1, 1, 0), "noise d2 k1": (2, 1, 0), "noise d3 k1": (3, 1, 0),
              "noise d5 k2": (5, 2, 0), "noise d10 k3": (10, 3, 0), "tanh k=2, asked 3, d5": (5, 3, 2),
              "tanh k=3, asked 4, d10": (10, 4, 3)}
NULL_BUDGET, NULL_BATCH = 20_000, 500


def run_null(cell, seed) -> dict:
    """A system with less structure than asked for: pure N(0, 1) noise (planted k = 0), or a planted tanh network
    (unit directions, c = ±U(0.5, 1.5), noise 0.05) with one hidden unit fewer than `n_hidden`. The old rule stopped
    at the first check whose halves agreed; it is read off the history, whose checks up to there are the same."""
    d, asked, planted_k = NULL_CELLS[cell]
    rng = np.random.default_rng([seed, 11])
    A = rng.standard_normal((d, max(planted_k, 1)))
    A /= np.linalg.norm(A, axis=0)
    c = rng.choice([-1.0, 1.0], max(planted_k, 1)) * rng.uniform(0.5, 1.5, max(planted_k, 1))
    noise = np.random.default_rng([seed, 12])

    def system(X):
        clean = np.tanh(X @ A) @ c if planted_k else np.zeros(len(X))
        return clean + (0.05 if planted_k else 1.0) * noise.standard_normal(len(X))

    _, report = identify(system, d, asked, budget=NULL_BUDGET, batch_size=NULL_BATCH, finetune=False,
                         random_state=seed, verbose=0)
    old = next((h["queries"] for h in report.history if h["confidence"] >= 0.99), None)
    return {"stopping_reason": report.stopping_reason, "queries": report.queries, "signal": report.signal,
            "signal_threshold": report.signal_threshold, "old_rule_identified_at": old,
            "history": report.history}


TASKS = {"identify": run_identify, "backprop": run_backprop, "ladder": run_ladder, "null": run_null}


def _worker_init() -> None:
    import torch

    from nnlift.lift import NNLiftWarning

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=NNLiftWarning)  # the ladder's runs spend their budget on purpose


def _call(key):
    return TASKS[key[0]](*key[1:])


def _cost(key) -> float:
    """Rough relative cost, to start the long tasks first."""
    if key[0] == "ladder":
        method, cell, budgets = key[1], key[2], key[5]
        return CELLS[cell]["d"] ** 1.5 * sum(budgets) * (0.5 if method == "backprop" else 1.0)
    if key[0] == "identify":
        return CELLS[key[1]]["d"] ** 1.5 * key[5]
    return 0.0


def run_tasks(keys, workers: int) -> dict:
    keys = sorted(set(keys), key=_cost, reverse=True)
    results, started = {}, time.perf_counter()
    with ProcessPoolExecutor(workers, initializer=_worker_init) as pool:
        futures = {pool.submit(_call, key): key for key in keys}
        for done, future in enumerate(as_completed(futures), 1):
            key = futures[future]
            results[key] = future.result()
            print(f"[{done}/{len(keys)} {time.perf_counter() - started:.0f} s] {key[:5]}", file=sys.stderr,
                  flush=True)
    return results


# ----------------------------------------------------------------------------------------------------------------------
# parts: the task keys each needs, and its summary from the results


def ladder_keys(cfg):
    return [("ladder", method, cell, noise, seed, tuple(cfg.ladder)) for cell in cfg.cells for noise in cfg.noises
            for method in cfg.methods for seed in range(cfg.seeds)]


def stop_key(cfg, cell, noise, seed, design, finetune=True):
    return ("identify", cell, noise, seed, design, cfg.budget(cell), 0.99, finetune)


def stop_keys(cfg):
    return [stop_key(cfg, cell, noise, seed, design) for cell in cfg.cells for noise in cfg.noises
            for design in DESIGNS.values() for seed in range(cfg.seeds)]


def honest_keys(cfg):
    return [stop_key(cfg, cell, 0.05, seed, "auto", finetune) for cell in cfg.honest_cells
            for seed in range(cfg.honest_seeds) for finetune in (True, False)]


def multi_keys(cfg):
    keys = []
    for seed in range(cfg.multi_seeds):
        keys.append(("identify", "tanh_d20_k5", 0.05, seed, "auto", cfg.budget("tanh_d20_k5"), 0.99, True,
                     cfg.n_outputs))
        keys += [("identify", "tanh_d20_k5", 0.05, seed, "auto", cfg.budget("tanh_d20_k5"), 0.99, True,
                  cfg.n_outputs, j) for j in range(cfg.n_outputs)]
    return keys


def _fmt_queries(q) -> str:
    return ">max" if q is None or not math.isfinite(q) else f"{q / 1000:.3g}k"


def _median(values) -> float:
    values = [math.inf if v is None else v for v in values]
    return float(np.median(values)) if values else math.nan


def ladder_summary(cfg, results) -> dict:
    rows, lines = [], ["| cell | noise sd | method | succeeded | median queries to succeed | per seed (k queries) |",
                       "|---|---|---|---|---|---|"]
    verdicts = []
    for cell in cfg.cells:
        for noise in cfg.noises:
            medians = {}
            for method in cfg.methods:
                runs = [results[("ladder", method, cell, noise, seed, tuple(cfg.ladder))] for seed in range(cfg.seeds)]
                reached = [r["reached"] for r in runs]
                medians[method] = _median(reached)
                rows.append({"cell": cell, "noise": noise, "method": method, "reached": reached,
                             "runs": runs, "median": medians[method]})
                ok = sum(r is not None for r in reached)
                lines.append(f"| {cell} | {noise} | {method} | {ok}/{len(runs)} | {_fmt_queries(medians[method])} | "
                             + " ".join(_fmt_queries(r) for r in reached) + " |")
            if not {"designed", "passive"} <= set(medians):
                continue
            designed, passive = medians["designed"], medians["passive"]
            if math.isfinite(passive):
                met = designed <= passive / 2
                verdict = (f"{cell}, noise {noise}: designed median {_fmt_queries(designed)} vs passive "
                           f"{_fmt_queries(passive)}: designed <= half passive {'MET' if met else 'NOT MET'}")
            else:
                met = math.isfinite(designed)
                verdict = (f"{cell}, noise {noise}: passive median does not succeed within {max(cfg.ladder):,}; "
                           f"designed median {_fmt_queries(designed)}: success where passive fails "
                           f"{'MET' if met else 'NOT MET'}")
            verdicts.append({"cell": cell, "noise": noise, "met": bool(met), "text": verdict})
    return {"rows": rows, "table": lines, "verdicts": verdicts}


def stop_summary(cfg, results) -> dict:
    rows, lines = [], ["| cell | noise sd | design | stopped identified | median queries at stop | chosen s / order | "
                       "min \\|cos\\| median (worst) | excess/σ² median (worst) | succeeded |",
                       "|---|---|---|---|---|---|---|---|---|"]
    for cell in cfg.cells:
        for noise in cfg.noises:
            for method, design in DESIGNS.items():
                runs = [results[stop_key(cfg, cell, noise, seed, design)] for seed in range(cfg.seeds)]
                identified = sum(r["stopping_reason"] == "identified" for r in runs)
                cos = np.array([r["recovery_min"] for r in runs])
                excess = np.array([r["excess"] for r in runs])
                designs = sorted({(r["scale"], r["order"]) for r in runs})
                chosen = ", ".join(f"{s:g}/{m}" for s, m in designs)
                rows.append({"cell": cell, "noise": noise, "method": method,
                             "runs": [{k: v for k, v in r.items() if k != "history"} for r in runs],
                             "histories": [r["history"] for r in runs]})
                lines.append(f"| {cell} | {noise} | {method} | {identified}/{len(runs)} | "
                             f"{np.median([r['queries'] for r in runs]) / 1000:.0f}k | {chosen} | "
                             f"{np.median(cos):.4f} ({cos.min():.4f}) | {np.median(excess):.3g} ({excess.max():.3g}) | "
                             f"{sum(r['success'] for r in runs)}/{len(runs)} |")
    return {"rows": rows, "table": lines}


def honest_summary(cfg, results) -> dict:
    rows, lines = [], ["| cell | systems | stopped identified | of those min \\|cos\\| >= 0.99: returned model | "
                       "of those: moment directions alone (finetune=False) | worst min \\|cos\\| among identified "
                       "(model / directions) | median queries at stop | warned \"does not fit\" |",
                       "|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for cell in cfg.honest_cells:
        tuned = [results[stop_key(cfg, cell, 0.05, seed, "auto", True)] for seed in range(cfg.honest_seeds)]
        bare = [results[stop_key(cfg, cell, 0.05, seed, "auto", False)] for seed in range(cfg.honest_seeds)]
        stopped = [i for i, r in enumerate(tuned) if r["stopping_reason"] == "identified"]
        good_model = sum(tuned[i]["recovery_min"] >= COS_TARGET for i in stopped)
        good_dirs = sum(bare[i]["recovery_min"] >= COS_TARGET for i in stopped)
        worst = (min((tuned[i]["recovery_min"] for i in stopped), default=math.nan),
                 min((bare[i]["recovery_min"] for i in stopped), default=math.nan))
        rows.append({"cell": cell, "tuned": [{k: v for k, v in r.items() if k != "history"} for r in tuned],
                     "directions_only": [{k: v for k, v in r.items() if k != "history"} for r in bare],
                     "histories": [r["history"] for r in tuned]})
        lines.append(f"| {cell} | {len(tuned)} | {len(stopped)}/{len(tuned)} | {good_model}/{len(stopped)} | "
                     f"{good_dirs}/{len(stopped)} | {worst[0]:.4f} / {worst[1]:.4f} | "
                     f"{np.median([r['queries'] for r in tuned]) / 1000:.0f}k | "
                     f"{sum(not r.get('network_fits', True) for r in tuned)}/{len(tuned)} |")
        need = math.ceil(0.95 * len(stopped))
        verdicts.append({"cell": cell, "stopped": len(stopped), "good_model": good_model, "good_directions": good_dirs,
                         "wrong_stops_model": [i for i in stopped if tuned[i]["recovery_min"] < COS_TARGET],
                         "wrong_stops_directions": [i for i in stopped if bare[i]["recovery_min"] < COS_TARGET],
                         "met_model": good_model >= need if stopped else None,
                         "met_directions": good_dirs >= need if stopped else None})
    return {"rows": rows, "table": lines, "verdicts": verdicts}


def multi_summary(cfg, results) -> dict:
    rows, lines = [], ["| seed | joint: queries (reason) | joint min \\|cos\\| / excess | singles identified | "
                       "best single: queries (output) | joint < best single |", "|---|---|---|---|---|---|"]
    budget = cfg.budget("tanh_d20_k5")
    for seed in range(cfg.multi_seeds):
        joint = results[("identify", "tanh_d20_k5", 0.05, seed, "auto", budget, 0.99, True, cfg.n_outputs)]
        singles = [results[("identify", "tanh_d20_k5", 0.05, seed, "auto", budget, 0.99, True, cfg.n_outputs, j)]
                   for j in range(cfg.n_outputs)]
        best = int(np.argmin([s["queries"] for s in singles]))
        fewer = joint["queries"] < singles[best]["queries"]
        rows.append({"seed": seed, "joint": {k: v for k, v in joint.items() if k != "history"},
                     "singles": [{k: v for k, v in s.items() if k != "history"} for s in singles], "fewer": fewer})
        lines.append(f"| {seed} | {joint['queries'] / 1000:.0f}k ({joint['stopping_reason']}) | "
                     f"{joint['recovery_min']:.4f} / {joint['excess']:.3g} | "
                     f"{sum(s['stopping_reason'] == 'identified' for s in singles)}/{len(singles)} | "
                     f"{singles[best]['queries'] / 1000:.0f}k (y{best}, {singles[best]['stopping_reason']}) | "
                     f"{'yes' if fewer else 'no'} |")
    return {"rows": rows, "table": lines}


BASIN_BUDGETS = (25_000, 50_000)


def basin_keys(cfg):
    return [("identify", "relu_d10_k5", 0.05, seed, design, budget, LADDER_TOLERANCE, finetune)
            for design in DESIGNS.values() for budget in BASIN_BUDGETS for finetune in (False, True)
            for seed in range(cfg.seeds)]


def basin_summary(cfg, results) -> dict:
    lines = ["| design | budget | moment directions alone: min \\|cos\\| median, >= 0.99 | after fine-tuning: "
             "min \\|cos\\| median, >= 0.99 |", "|---|---|---|---|"]
    rows = []
    for method, design in DESIGNS.items():
        for budget in BASIN_BUDGETS:
            found = {finetune: [results[("identify", "relu_d10_k5", 0.05, seed, design, budget, LADDER_TOLERANCE,
                                         finetune)]["recovery_min"] for seed in range(cfg.seeds)]
                     for finetune in (False, True)}
            rows.append({"method": method, "budget": budget, "directions": found[False], "finetuned": found[True]})
            cells = [f"{np.median(v):.2f}, {sum(c >= COS_TARGET for c in v)}/{len(v)}" for v in found.values()]
            lines.append(f"| {method} | {budget / 1000:.0f}k | {cells[0]} | {cells[1]} |")
    return {"rows": rows, "table": lines}


def null_keys(cfg):
    return [("null", cell, seed) for cell in NULL_CELLS for seed in range(cfg.null_seeds)]


def null_summary(cfg, results) -> dict:
    lines = ["| system | runs | stopped \"identified\", old rule (halves agree) | stopped \"identified\", new rule "
             "(also every weight significant) | smallest \\|z\\| at the end, median (max) | threshold |",
             "|---|---|---|---|---|---|"]
    rows = []
    for cell in NULL_CELLS:
        runs = [results[("null", cell, seed)] for seed in range(cfg.null_seeds)]
        old = sum(r["old_rule_identified_at"] is not None for r in runs)
        new = sum(r["stopping_reason"] == "identified" for r in runs)
        signals = [r["signal"] for r in runs]
        rows.append({"cell": cell, "runs": [{k: v for k, v in r.items() if k != "history"} for r in runs],
                     "old_rule_identified": old, "new_rule_identified": new})
        lines.append(f"| {cell} | {len(runs)} | {old}/{len(runs)} | {new}/{len(runs)} | {np.median(signals):.2f} "
                     f"({max(signals):.2f}) | {runs[0]['signal_threshold']:.2f} |")
    return {"rows": rows, "table": lines}


PARTS = {"ladder": (ladder_keys, ladder_summary), "stop": (stop_keys, stop_summary),
         "honest": (honest_keys, honest_summary), "multi": (multi_keys, multi_summary),
         "null": (null_keys, null_summary), "basin": (basin_keys, basin_summary)}


# ----------------------------------------------------------------------------------------------------------------------
# figure


def figure(suffix: str) -> Path | None:
    """identify<suffix>.png: fraction of seeds that succeeded within each budget (ladder), and, from the honest
    part, the stopping confidence history of every run."""
    import matplotlib

    matplotlib.use("Agg")
    import json

    import matplotlib.pyplot as plt

    ladder_path, honest_path = RESULTS / f"identify_ladder{suffix}.json", RESULTS / f"identify_honest{suffix}.json"
    if not ladder_path.exists():
        return None
    ladder = json.loads(ladder_path.read_text())
    budgets = ladder["config"]["ladder"]
    panels = sorted({(r["cell"], r["noise"]) for r in ladder["summary"]["rows"]},
                    key=lambda cn: (list(CELLS).index(cn[0]), cn[1]))
    extra = 1 if honest_path.exists() else 0
    ncols = min(4, len(panels) + extra)
    nrows = math.ceil((len(panels) + extra) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.2 * nrows), squeeze=False)
    colors = {"designed": "C0", "passive": "C1", "backprop": "C2"}
    for ax, (cell, noise) in zip(axes.flat, panels, strict=False):
        for row in ladder["summary"]["rows"]:
            if (row["cell"], row["noise"]) != (cell, noise):
                continue
            reached = [math.inf if r is None else r for r in row["reached"]]
            frac = [np.mean([r <= b * 1.0001 for r in reached]) for b in budgets]
            ax.plot(budgets, frac, "o-", color=colors[row["method"]], label=row["method"])
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(budgets, [f"{b / 1000:g}k" for b in budgets], fontsize=7)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(f"{cell}, σ={noise}", fontsize=9)
        ax.set_xlabel("queries")
        ax.set_ylabel("first success within")
    axes.flat[0].legend(fontsize=8)
    if extra:
        honest = json.loads(honest_path.read_text())
        ax = axes.flat[len(panels)]
        for i, row in enumerate(honest["summary"]["rows"]):
            for history in row["histories"]:
                ax.plot([h["queries"] for h in history], [h["confidence"] for h in history], color=f"C{i}",
                        alpha=0.4, lw=0.8)
            ax.plot([], [], color=f"C{i}", label=row["cell"])
        ax.axhline(0.99, color="k", ls=":", lw=0.8)
        ax.set_title("confidence (min over neurons) per check", fontsize=9)
        ax.set_xlabel("queries")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) + extra:]:
        ax.axis("off")
    fig.tight_layout()
    path = RESULTS / f"identify{suffix}.png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------------------------------


class Config:
    def __init__(self, args):
        self.cells = args.cells
        self.methods = args.methods
        self.noises = args.noises
        self.seeds = args.seeds
        self.ladder = args.ladder
        self.honest_cells = args.honest_cells
        self.honest_seeds = args.honest_seeds
        self.multi_seeds = args.multi_seeds
        self.n_outputs = args.n_outputs
        self.budget_cap = args.budget_cap
        self.null_seeds = args.null_seeds

    def budget(self, cell: str) -> int:
        return min(CELLS[cell]["budget"], self.budget_cap) if self.budget_cap else CELLS[cell]["budget"]

    def to_dict(self) -> dict:
        out = dict(vars(self))
        out["budgets"] = {cell: self.budget(cell) for cell in set(self.cells) | set(self.honest_cells)}
        return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--cells", nargs="+", choices=list(CELLS), default=list(CELLS))
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
                        help="ladder methods (designed and passive are needed for the verdicts)")
    parser.add_argument("--noises", nargs="+", type=float, default=[0.05, 0.5])
    parser.add_argument("--seeds", type=int, default=10, help="systems per cell and noise (ladder, stop)")
    parser.add_argument("--ladder", nargs="+", type=int, default=list(LADDER))
    parser.add_argument("--honest-cells", nargs="+", choices=list(CELLS), default=["tanh_d20_k5",
                                                                                  "softplus_d10_k5_w1.5"])
    parser.add_argument("--honest-seeds", type=int, default=20)
    parser.add_argument("--multi-seeds", type=int, default=5)
    parser.add_argument("--n-outputs", type=int, default=10)
    parser.add_argument("--null-seeds", type=int, default=20, help="runs per system of the null part")
    parser.add_argument("--budget-cap", type=int, default=0, help="cap the stop/honest/multi budgets (0: none)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke run: tanh d=20 k=5, noise 0.05, tiny budgets")
    parser.add_argument("--tag", default="", help="suffix for the result files")
    args = parser.parse_args(argv)
    suffix = args.tag
    if args.quick:
        args.cells, args.noises, args.seeds, args.ladder = ["tanh_d20_k5"], [0.05], 1, [25_000, 50_000]
        args.honest_cells, args.honest_seeds, args.multi_seeds, args.n_outputs = ["tanh_d20_k5"], 2, 1, 3
        args.null_seeds = 2
        args.budget_cap = 50_000
        suffix = suffix or "_quick"
    cfg = Config(args)
    started = time.perf_counter()
    keys = [key for part in args.parts for key in PARTS[part][0](cfg)]
    results = run_tasks(keys, args.workers)
    wall = time.perf_counter() - started
    command = "OMP_NUM_THREADS=1 python benchmarks/bench_identify.py " + " ".join(argv or sys.argv[1:])
    for part in args.parts:
        summary = PARTS[part][1](cfg, results)
        print(f"\n### {part}\n")
        print("\n".join(summary["table"]))
        for verdict in summary.get("verdicts", []):
            print("-", verdict.get("text", verdict))
        write_json(RESULTS / f"identify_{part}{suffix}.json",
                   {"command": command, "config": cfg.to_dict(), "wall_seconds_all_parts": wall,
                    "workers": args.workers, "criteria": {"min_cos": COS_TARGET, "excess_over_noise": EXCESS_TARGET,
                                                          "n_test": N_TEST, "ladder_tolerance": LADDER_TOLERANCE},
                    "summary": summary})
    path = figure(suffix)
    print(f"\nwall {wall:.0f} s with {args.workers} workers; figure {path}")


if __name__ == "__main__":
    main()
