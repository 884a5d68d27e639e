"""LiftClassifier's tensor start on digits: the coupled moment of the one-hot columns vs one random mix of them.

The splits and column filter of `nnlift reproduce real-data` (75/25, stratified, seeded), k = 16 tanh units and
`finetune=False`, so the number is the start itself: held-out accuracy of the tensor start with its logistic
output layer. The random mix is the behaviour before the coupled decomposition: the same estimator run with its
class targets dropped, in the same process.

    OMP_NUM_THREADS=1 python benchmarks/bench_classifier_start.py --seeds 10
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from nnlift import LiftClassifier
from nnlift._io import write_json
from nnlift.lift.estimator import _LiftBase
from nnlift.reproduce.real_data import RealDataConfig, _split

RESULTS = Path(__file__).parent / "results" / "classifier_start.json"


def _random_mix_fit(self, X, target, labels, loss, order, out_dim, weight=None, class_targets=None):
    """The estimator without its class targets: directions from the random mix `target` alone."""
    return _COUPLED(self, X, target, labels, loss, order, out_dim, weight, None)


_COUPLED = _LiftBase._fit_network


def start_accuracy(score: str, seed: int, coupled: bool) -> tuple[float, float]:
    split = _split(*load_digits(return_X_y=True), "classification", seed, RealDataConfig())
    X_train, X_test, y_train, y_test = split.X_train, split.X_test, split.y_train, split.y_test
    _LiftBase._fit_network = _COUPLED if coupled else _random_mix_fit
    try:
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = LiftClassifier(16, activation="tanh", score_function=score, finetune=False,
                                   random_state=seed).fit(X_train, y_train)
        return float(model.score(X_test, y_test)), time.perf_counter() - started
    finally:
        _LiftBase._fit_network = _COUPLED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--scores", default="gaussian,mixture,student_t")
    args = parser.parse_args()
    rows = []
    for score in args.scores.split(","):
        for seed in range(args.seeds):
            mix, mix_time = start_accuracy(score, seed, coupled=False)
            joint, joint_time = start_accuracy(score, seed, coupled=True)
            rows.append({"score": score, "seed": seed, "random_mix": mix, "coupled": joint,
                         "random_mix_seconds": mix_time, "coupled_seconds": joint_time})
            print(f"{score:10s} seed {seed}: random mix {mix:.3f} ({mix_time:.1f} s), coupled {joint:.3f} "
                  f"({joint_time:.1f} s)", flush=True)
    print("\n| score | random mix (mean ± sd) | coupled (mean ± sd) | coupled better on | time ratio |")
    print("|---|---|---|---|---|")
    summary = {}
    for score in args.scores.split(","):
        part = [r for r in rows if r["score"] == score]
        mix = np.array([r["random_mix"] for r in part])
        joint = np.array([r["coupled"] for r in part])
        ratio = np.median([r["coupled_seconds"] / r["random_mix_seconds"] for r in part])
        summary[score] = {"random_mix": [float(mix.mean()), float(mix.std())],
                          "coupled": [float(joint.mean()), float(joint.std())],
                          "coupled_better": int(np.sum(joint > mix)), "seeds": len(part),
                          "median_time_ratio": float(ratio)}
        print(f"| {score} | {mix.mean():.3f} ± {mix.std():.3f} | {joint.mean():.3f} ± {joint.std():.3f} | "
              f"{int(np.sum(joint > mix))}/{len(part)} | {ratio:.2f} |")
    write_json(RESULTS, {"rows": rows, "summary": summary, "config": vars(args)})
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
