"""Wall time of one LiftRegressor.fit on the recovery rows of BENCHMARKS.md, for comparing two versions of nnlift.

    git worktree add /tmp/nnlift-before 50188fa
    OMP_NUM_THREADS=1 python benchmarks/bench_fit_time.py --src /tmp/nnlift-before/src   # the version before
    OMP_NUM_THREADS=1 python benchmarks/bench_fit_time.py                                 # this checkout

Prints the best of `--repeats` fits per row (default 3) and the estimator's own step timings.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

ROWS = [("tanh", 20, 5, 500_000, 1.5), ("sigmoid", 20, 5, 500_000, 2.0), ("tanh", 50, 10, 1_000_000, 1.5)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", default=None, help="a src/ folder of another nnlift checkout to time instead")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.src:
        sys.path.insert(0, args.src)
    from nnlift import LiftRegressor
    from nnlift.datasets import make_teacher

    print("| activation | d | k | n | best fit (s) | steps (s) |")
    print("|---|---|---|---|---|---|")
    for activation, d, k, n, scale in ROWS:
        teacher = make_teacher(n, d, k, activation, weight_scale=scale, random_state=0)
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = LiftRegressor(k, activation=activation, random_state=0).fit(teacher.X, teacher.y)
            times.append(time.perf_counter() - started)
        steps = ", ".join(f"{name} {value:.2f}" for name, value in model.diagnostics_["timings"].items())
        print(f"| {activation} | {d} | {k} | {n:.0e} | {min(times):.2f} | {steps} |", flush=True)


if __name__ == "__main__":
    main()
