"""NN-LIFT on planted teachers with non-Gaussian inputs: the Gaussian score vs the input density's score.

    python benchmarks/bench_scores.py --inputs student_t --n 200000 --seeds 10
    python benchmarks/bench_scores.py --inputs mixture --n 500000 --seeds 10
    python benchmarks/bench_scores.py --inputs student_t --n 200000 --seeds 3 --scores learned

The first-layer recovery of the tensor start alone (min |cos| over neurons, no fine-tuning) is what the score
decides. "right" is the matching family fitted to X (Student-t marginals, or a 3-component Gaussian mixture);
"exact" is the true density's score. Prints a markdown table; per-seed numbers go to
benchmarks/results/scores_<inputs>_n<n>.json.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

from nnlift import LiftRegressor
from nnlift._io import write_json
from nnlift.datasets import GaussianMixtureInputs, StudentTInputs, make_teacher
from nnlift.metrics import weight_recovery
from nnlift.scores import DensityScore, MixtureScore, StudentTMarginals

RESULTS = Path(__file__).parent / "results"


def _inputs(args, seed):
    if args.inputs == "student_t":
        return StudentTInputs(args.df)
    return GaussianMixtureInputs.random(args.d, 3, args.separation, random_state=seed)


def _score(name: str, inputs, seed: int):
    if name == "right":
        return (DensityScore(StudentTMarginals()) if isinstance(inputs, StudentTInputs)
                else MixtureScore(n_components=3, random_state=seed))
    if name == "exact":
        if isinstance(inputs, StudentTInputs):
            return DensityScore(StudentTMarginals(df=inputs.df, loc=0.0, scale=inputs.scale))
        return MixtureScore.from_parameters(inputs.weights, inputs.means, inputs.covariances)
    return name


def run(args) -> dict:
    rows = []
    for seed in range(args.seeds):
        inputs = _inputs(args, seed)
        teacher = make_teacher(args.n, args.d, args.k, args.activation, weight_scale=args.weight_scale,
                               random_state=seed, inputs=inputs)
        row = {"seed": seed}
        for name in args.scores:
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = LiftRegressor(args.k, activation=args.activation, score_function=_score(name, inputs, seed),
                                      finetune=False, random_state=seed).fit(teacher.X, teacher.y)
            row[name] = {"recovery_min": weight_recovery(teacher.first_layer, model.first_layer_).min,
                         "seconds": time.perf_counter() - started,
                         "samples_needed": model.diagnostics_["samples_needed"]}
        rows.append(row)
        print(f"seed {seed}: " + ", ".join(f"{name} {row[name]['recovery_min']:.3f} ({row[name]['seconds']:.1f} s)"
                                           for name in args.scores), flush=True)
    return {"config": vars(args), "rows": rows, "summary": _summary(rows, args.scores, args.threshold)}


def _summary(rows, scores, threshold) -> dict:
    summary = {}
    for name in scores:
        values = np.array([row[name]["recovery_min"] for row in rows])
        seconds = np.array([row[name]["seconds"] for row in rows])
        summary[name] = {"median": float(np.median(values)), "min": float(values.min()),
                         "successes": int((values >= threshold).sum()), "seeds": len(values),
                         "median_seconds": float(np.median(seconds))}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", choices=["student_t", "mixture"], default="student_t")
    parser.add_argument("--scores", nargs="+", default=["gaussian", "right", "exact"])
    parser.add_argument("--activation", default="tanh")
    parser.add_argument("--d", type=int, default=10)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--weight-scale", type=float, default=1.5)
    parser.add_argument("--df", type=float, default=5.0)
    parser.add_argument("--separation", type=float, default=2.0)
    parser.add_argument("--threshold", type=float, default=0.95)
    args = parser.parse_args()
    result = run(args)
    suffix = "" if args.scores == ["gaussian", "right", "exact"] else "_" + "_".join(args.scores)
    write_json(RESULTS / f"scores_{args.inputs}_n{args.n}{suffix}.json", result)
    print(f"\n| score | median recovery | min | seeds >= {args.threshold} | median seconds |\n|---|---|---|---|---|")
    for name, s in result["summary"].items():
        print(f"| {name} | {s['median']:.3f} | {s['min']:.3f} | {s['successes']}/{s['seeds']} | "
              f"{s['median_seconds']:.1f} |")


if __name__ == "__main__":
    main()
