"""Bias error of the Fourier method (Janzamin, Sedghi, Anandkumar 2015, Procedure 2) against n and d.

One planted neuron y = a2 σ(<a, x> + b) + 0.05 noise, b ~ U(-1, 1), |a2| ~ U(0.5, 1.5), with the true unit
direction a and sign(a2) given (oracle), so only the Fourier step is measured. Inputs: uniform on the ball of
radius sqrt(d + 2) (so <a, x> has unit variance) and N(0, I) restricted to the ball of radius sqrt(d) + 2
with the truncated density. Frequency radius ρ = 1/2 (the paper) and ρ = 1/(4π) (the paper's exponent
without 2π). Prints, per setting, the RMS of the wrapped error b̂ - b over repetitions, the median reported
bias_stderr and the median |v|/stderr. Chance level: RMS = period/sqrt(12) = 0.58 (ρ = 1/2), 3.63 (1/(4π)).

    .venv/bin/python benchmarks/fourier_bias_error.py [--reps 8] [--max-exp 6]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import special

from nnlift.lift.fourier import (
    fourier_bias,
    gaussian_ball_log_density,
    restrict_to_ball,
    uniform_ball_log_density,
)

ACTIVATIONS = {"sigmoid": special.expit, "tanh": np.tanh}
RADII = {"1/2": 0.5, "1/(4pi)": 1 / (4 * np.pi)}


def sample_inputs(kind: str, n: int, d: int, rng):
    if kind == "ball":
        radius = np.sqrt(d + 2)
        g = rng.standard_normal((n, d))
        X = g / np.linalg.norm(g, axis=1, keepdims=True) * radius * rng.uniform(size=(n, 1)) ** (1 / d)
        return X, uniform_ball_log_density(radius)
    radius = np.sqrt(d) + 2
    X, _ = restrict_to_ball(rng.standard_normal((n, d)), np.zeros(n), radius)
    return X, gaussian_ball_log_density(radius)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--max-exp", type=int, default=6, help="largest n is 10**max_exp")
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 2, 5, 10])
    args = parser.parse_args()
    ns = [10**e for e in range(3, args.max_exp + 1)]
    print(f"{'input':5s} {'act':7s} {'rho':8s} {'d':>3s} {'n':>8s} {'rms err':>8s} {'med se':>8s} {'med snr':>8s}")
    start = time.time()
    for kind in ("ball", "gauss"):
        for d in args.dims:
            errors: dict[tuple, list] = {}
            for rep in range(args.reps):
                rng = np.random.default_rng(1000 * d + rep)
                a = rng.standard_normal((d, 1))
                a /= np.linalg.norm(a)
                b = rng.uniform(-1, 1)
                a2 = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.5)
                for n in ns:
                    X, log_p = sample_inputs(kind, n, d, rng)
                    noise = 0.05 * rng.standard_normal(len(X))
                    for act, sigma in ACTIVATIONS.items():
                        y = a2 * sigma(X @ a[:, 0] + b) + noise
                        for rho_name, rho in RADII.items():
                            res = fourier_bias(X, y, a, log_p, act, log_density=True, frequency_radius=rho,
                                               coef_sign=[np.sign(a2)], random_state=rep)
                            period = 1 / rho
                            err = (res.bias[0] - b + period / 2) % period - period / 2
                            errors.setdefault((act, rho_name, n), []).append(
                                (err, res.bias_stderr[0], res.snr[0]))
            for (act, rho_name, n), rows in errors.items():
                e, se, snr = np.array(rows).T
                print(f"{kind:5s} {act:7s} {rho_name:8s} {d:3d} {n:8d} {np.sqrt(np.mean(e**2)):8.3f} "
                      f"{np.median(se):8.3f} {np.median(snr):8.2f}", flush=True)
    print(f"# {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
