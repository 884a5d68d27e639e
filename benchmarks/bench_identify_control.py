"""The control variate of `identify`'s moment sums (`nnlift.hermite_sums`): error of the Hermite moment with and
without it, and the choice of the control's weights.

For each planted cell of `bench_identify.py`, query scale s and noise, the moment E[y He_m(z)] is estimated from n
queries in batches of 5,000 (as `identify` adds them) by plain sums and by controlled sums with weight powers 0
(plain least squares), 1/2 (the default, weights ||He_m(z)||) and 1 (weights ||He_m(z)||^2). Reported: the relative
error ||T_hat - T|| / ||T|| (mean over repetitions; T from 800k controlled queries) and the median min |cos| of the
moment's CP directions alone (coupled CP from one random start, no fine-tune). A last table is the pilot's SNR per
query of a response that lives near the origin (tanh damped by a Gaussian bump), where an unweighted control hurts,
and the controlled SNR per query at each query scale (80k queries per scale): is a wider design still worth it?

    OMP_NUM_THREADS=1 python benchmarks/bench_identify_control.py [--reps 6]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_identify import CELLS, RESULTS, planted  # noqa: E402

from nnlift._io import write_json  # noqa: E402
from nnlift.hermite_sums import HermiteSums, LowOrderFit  # noqa: E402
from nnlift.lift.first_layer import choose_order  # noqa: E402
from nnlift.metrics import weight_recovery  # noqa: E402
from nnlift.sysid import _fold_gram, _pilot_folds, _signal_to_noise  # noqa: E402
from nnlift.tensor.coupled import coupled_cp  # noqa: E402

VARIANTS = {"plain": None, "power 0": 0.0, "power 1/2": 0.5, "power 1": 1.0}
CASES = [("relu_d10_k5", 0.05, 1.0, 20_000), ("relu_d10_k5", 0.05, 4.0, 20_000), ("relu_d10_k5", 0.5, 1.0, 20_000),
         ("relu_d10_k5", 0.5, 4.0, 20_000), ("tanh_d20_k5", 0.05, 1.0, 5_000), ("tanh_d20_k5", 0.05, 4.0, 5_000),
         ("softplus_d10_k5_w1.5", 0.05, 4.0, 20_000)]
BATCH = 5_000


def _order(activation: str) -> int:
    natural = choose_order(activation)
    return max(natural) if isinstance(natural, tuple) else natural


def _sums(d: int, order: int, power) -> HermiteSums:
    return HermiteSums(d, 1, order, control=power is not None, weight_power=0.5 if power is None else power)


def moment_case(cell: str, noise: float, scale: float, n: int, seed: int, reps: int) -> dict:
    system = planted(cell, noise, seed)
    d, k = system.first_layer.shape
    order = _order(CELLS[cell]["activation"])
    rng = np.random.default_rng([seed, 7])
    reference = _sums(d, order, 0.5)
    for _ in range(8):
        Z = rng.standard_normal((100_000, d))
        reference.add(Z, system(scale * Z)[:, None])
    truth = reference.moments()
    errors = {name: [] for name in VARIANTS}
    cosines = {name: [] for name in VARIANTS}
    for _ in range(reps):
        sums = {name: _sums(d, order, power) for name, power in VARIANTS.items()}
        for begin in range(0, n, BATCH):
            Z = rng.standard_normal((min(BATCH, n - begin), d))
            Y = system(scale * Z)[:, None]
            for each in sums.values():
                each.add(Z, Y)
        for name, each in sums.items():
            moment = each.moments()
            errors[name].append(float(np.linalg.norm(moment - truth) / np.linalg.norm(truth)))
            factors = coupled_cp(moment, k, random_state=0).factors
            cosines[name].append(float(weight_recovery(system.first_layer, factors).min))
    return {"cell": cell, "noise": noise, "scale": scale, "queries": n, "seed": seed, "order": order,
            "relative_error": {name: float(np.mean(v)) for name, v in errors.items()},
            "min_cos_median": {name: float(np.median(v)) for name, v in cosines.items()}}


def bump_snr(scale: float, rows: int = 160_000, folds: int = 8) -> dict:
    """The pilot's fold SNR per query of tanh(2 a^T x + 0.3) exp(-|x|^2 / 12) + N(0, 0.05^2) at x = s z, d = 6."""
    rng, a = np.random.default_rng(9), np.ones(6) / np.sqrt(6)
    Z = rng.standard_normal((rows, 6))
    X = scale * Z
    Y = (np.tanh(2 * X @ a + 0.3) * np.exp(-np.sum(X**2, axis=1) / 12) + 0.05 * rng.standard_normal(rows))[:, None]
    out = {"scale": scale}
    for name, power in VARIANTS.items():
        sums = [_sums(6, 3, power) for _ in range(folds)]
        stats = [LowOrderFit(6, 1, 3, 0.5 if power is None else power).of(Z[f::folds], Y[f::folds])
                 for f in range(folds)]
        total = sum(stats[1:], stats[0])
        for f, fold in enumerate(sums):
            fold.add(Z[f::folds], Y[f::folds], others=None if power is None else total - stats[f])
        gram = _fold_gram(sums)
        out[name] = _signal_to_noise(gram, np.array([fold.n for fold in sums], dtype=np.float64))
    return out


def scale_snr(cell: str, noise: float, seed: int, rows: int = 80_000, folds: int = 8) -> dict:
    """The pilot's fold SNR per query of the controlled moment (default weights) at each query scale, with `rows`
    queries per scale and the pilot's fold layout (`nnlift.sysid._pilot_folds`)."""
    system = planted(cell, noise, seed)
    order = _order(CELLS[cell]["activation"])
    out = {"cell": cell, "noise": noise, "seed": seed}
    for scale in (1.0, 1.5, 2.0, 3.0, 4.0):
        Z = np.random.default_rng([seed, int(10 * scale)]).standard_normal((rows, system.first_layer.shape[0]))
        fold_sums, _ = _pilot_folds(Z, system(scale * Z)[:, None], order)
        out[scale] = _signal_to_noise(_fold_gram(fold_sums), np.array([f.n for f in fold_sums], dtype=np.float64))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = []
    for cell, noise, scale, n in CASES:
        for seed in args.seeds:
            rows.append(moment_case(cell, noise, scale, n, seed, args.reps))
            print(f"[{time.perf_counter() - started:.0f} s] {cell} sd {noise} s {scale} seed {seed}", flush=True)
    names = list(VARIANTS)
    table = ["| cell | noise sd | s | queries | relative error: " + " / ".join(names)
             + " | median min \\|cos\\| of the moment alone: " + " / ".join(names) + " |", "|---|---|---|---|---|---|"]
    for cell, noise, scale, n in CASES:
        group = [row for row in rows if (row["cell"], row["noise"], row["scale"]) == (cell, noise, scale)]
        errors = " / ".join(f"{np.mean([row['relative_error'][name] for row in group]):.2f}" for name in names)
        cosines = " / ".join(f"{np.median([row['min_cos_median'][name] for row in group]):.2f}" for name in names)
        table.append(f"| {cell} | {noise} | {scale:g} | {n:,} | {errors} | {cosines} |")
    bump = [bump_snr(scale) for scale in (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)]
    table += ["", "| bump, s | SNR per query: " + " / ".join(names) + " |", "|---|---|"]
    table += [f"| {row['scale']:g} | " + " / ".join(f"{row[name]:.4f}" for name in names) + " |" for row in bump]
    scales = [scale_snr(cell, noise, seed) for cell in ("tanh_d20_k5", "relu_d10_k5") for noise in (0.05, 0.5)
              for seed in (0, 1)]
    table += ["", "| cell, noise sd, seed | controlled SNR per query at s = 1 / 1.5 / 2 / 3 / 4 |", "|---|---|"]
    table += [f"| {row['cell']}, {row['noise']}, {row['seed']} | "
              + " / ".join(f"{row[s]:.1e}" for s in (1.0, 1.5, 2.0, 3.0, 4.0)) + " |" for row in scales]
    print("\n".join(table))
    wall = time.perf_counter() - started
    command = "OMP_NUM_THREADS=1 python benchmarks/bench_identify_control.py " + " ".join(argv or sys.argv[1:])
    write_json(RESULTS / "identify_control.json", {"command": command, "wall_seconds": wall, "rows": rows,
                                                   "bump": bump, "scales": [{str(k): v for k, v in row.items()}
                                                                            for row in scales], "table": table})
    print(f"wall {wall:.0f} s")


if __name__ == "__main__":
    main()
