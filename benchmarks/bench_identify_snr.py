"""Why `identify`'s pilot defaults to the largest scale: each neuron's signal per query vs the query scale s.

For the planted cells of `bench_identify.py`, neuron i's weight in E[y He_m(z)] at x = s z is
lambda_i(s, m) = c_i E[sigma(s |a_i| u + b_i) He_m(u)], u ~ N(0, 1) (Stein's lemma along a_i; Gauss-Hermite
quadrature, 80 nodes), and Var(y) (noise included) sets the noise of the moment per query. The table prints
min_i lambda_i^2 / Var(y) (the weakest neuron, which decides recovery) and sum_i lambda_i^2 / Var(y) (what the
pilot's ||T||^2 measures), for each scale and order, 3 systems per cell.

    OMP_NUM_THREADS=1 python benchmarks/bench_identify_snr.py   # ~10 s; writes results/identify_snr.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_identify import CELLS, RESULTS, planted  # noqa: E402

from nnlift._io import write_json  # noqa: E402
from nnlift.activations import get_activation  # noqa: E402
from nnlift.sysid import PILOT_SCALES  # noqa: E402

NODES, WEIGHTS = np.polynomial.hermite_e.hermegauss(80)
WEIGHTS = WEIGHTS / WEIGHTS.sum()


def neuron_signals(system, scale: float, order: int) -> np.ndarray:
    """lambda_i(s, m) of every neuron by quadrature along its own direction."""
    act = get_activation(system.activation)
    hermite = np.polynomial.hermite_e.hermeval(NODES, [0] * order + [1])
    norms = np.linalg.norm(system.first_layer, axis=0)
    return np.array([c * np.sum(WEIGHTS * act.numpy(scale * n * NODES + b) * hermite)
                     for c, n, b in zip(np.ravel(system.coef), norms, system.bias, strict=True)])


def main() -> None:
    rows = []
    for cell in ("tanh_d20_k5", "relu_d10_k5", "softplus_d10_k5_w1.5"):
        for seed in range(3):
            system = planted(cell, 0.05, seed)
            Z = np.random.default_rng([seed, 9]).standard_normal((100_000, CELLS[cell]["d"]))
            for scale in PILOT_SCALES:
                variance = float(np.var(system.clean(scale * Z))) + system.noise**2
                for order in (3, 4):
                    signal = neuron_signals(system, scale, order) ** 2 / variance
                    rows.append({"cell": cell, "seed": seed, "scale": scale, "order": order,
                                 "weakest": float(signal.min()), "total": float(signal.sum())})
    print("| cell | seed | order | weakest neuron, s = " + " / ".join(f"{s:g}" for s in PILOT_SCALES)
          + " | total, s = " + " / ".join(f"{s:g}" for s in PILOT_SCALES) + " |")
    print("|---|---|---|---|---|")
    for cell in dict.fromkeys(r["cell"] for r in rows):
        for seed in range(3):
            for order in (3, 4):
                sel = [r for r in rows if (r["cell"], r["seed"], r["order"]) == (cell, seed, order)]
                print(f"| {cell} | {seed} | {order} | " + " / ".join(f"{r['weakest']:.1e}" for r in sel) + " | "
                      + " / ".join(f"{r['total']:.2f}" for r in sel) + " |")
    write_json(RESULTS / "identify_snr.json", {"command": "python benchmarks/bench_identify_snr.py", "rows": rows})


if __name__ == "__main__":
    main()
