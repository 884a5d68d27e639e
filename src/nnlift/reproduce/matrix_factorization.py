"""Gunasekar et al. (2017): gradient descent on a full-dimensional factorization X = U U^T from U_0 = sqrt(alpha) I
tends, as alpha -> 0, to the minimum-nuclear-norm solution; and Razin & Cohen's (2020) counter-example, where
gradient descent on a deep factorization drives every norm to infinity.

Problems (n x n, rank-r PSD ground truth with top eigenvalue 1): symmetric Gaussian sensing and symmetric
completion, each with more measurements than the nuclear norm needs to recover the truth and with fewer (then
the cvxpy minimiser of ||X||_* over X PSD differs from the truth, and only the conjecture, not recovery theory,
says where gradient descent goes). Step 0.25 / (||A||^2 ||X_*||), a quarter of the stable step at the solution.
Razin & Cohen's 2 x 2 completion: W = W_L ... W_1 from balanced layers with product 1e-3 I (det > 0, their
theorem's condition) and, as a control, 1e-3 diag(1, -1) (det < 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.progress import Progress

from ..bias.factorization import (
    RAZIN_COHEN_MASK,
    RAZIN_COHEN_TARGET,
    deep_factorization_completion,
    factorized_gd,
    gaussian_sensing,
    symmetric_completion,
)
from ..bias.references import min_nuclear_norm
from ._common import save_study, verdict

__all__ = ["CLAIM", "run", "save", "report"]

CLAIM = ("Gradient descent on f(U) = ||A(U U^T) - b||^2 with U n x n (no rank constraint), started at "
         "U_0 = sqrt(alpha) I, converges as alpha -> 0 (and step -> 0) to the minimum-nuclear-norm solution "
         "argmin ||X||_* s.t. A(X) = b, X PSD (Gunasekar, Woodworth, Bhojanapalli, Neyshabur & Srebro 2017, "
         "Conjecture 1; proved for commuting A_i). Counter-claim: on the 2 x 2 completion with W_12 = W_21 = 1, "
         "W_22 = 0 observed, gradient descent on a depth-L >= 2 factorization with det W(0) > 0 drives |W_11| and "
         "every norm to infinity while the nuclear-norm minimiser (W_11 = 0, ||W||_* = 2) is bounded "
         "(Razin & Cohen 2020, NeurIPS).")

RELATIVE_RECOVERY = 1e-3  # the convex minimiser "recovers" the truth when ||X_* - truth||_F / ||truth||_F is below


def _config(fast: bool) -> dict:
    if fast:
        return {"n": 8, "rank": 1, "sensing_m": [10, 30], "completion_m": [14, 30], "alphas": [1e-1, 1e-3, 1e-6],
                "n_steps": 3_000, "depths": [2, 3], "rc_steps": 3_000, "rc_init": 1e-3, "rc_step": 0.2}
    return {"n": 20, "rank": 2, "sensing_m": [60, 120], "completion_m": [60, 120],
            "alphas": [10.0 ** -k for k in range(1, 9)], "n_steps": 40_000, "depths": [2, 3, 4],
            "rc_steps": 100_000, "rc_init": 1e-3, "rc_step": 0.2}


def _relative(a, b) -> np.ndarray:
    return np.linalg.norm(a - b, axis=(-2, -1)) / np.linalg.norm(b)


def _factorization_run(kind: str, problem, alphas, n_steps: int) -> dict:
    A, b = problem.measurements, problem.b
    reference = min_nuclear_norm(A, b, psd=True)
    smoothness = np.linalg.norm(A.reshape(len(b), -1), 2) ** 2
    step = 0.25 / (smoothness * np.linalg.norm(reference, 2))
    path = factorized_gd(A, b, alphas, step, n_steps, tol=1e-20)
    optimum = float(np.trace(reference))
    return {
        "problem": kind, "m": int(len(b)), "step": float(step), "steps_run": int(path.steps[-1]),
        "min_nuclear_norm": optimum, "truth_nuclear_norm": float(np.trace(problem.truth)),
        "reference_truth_error": float(_relative(reference, problem.truth)),
        "alphas": path.alphas.tolist(), "final_loss": path.loss[-1].tolist(),
        "nuclear_norm": path.nuclear_norm[-1].tolist(),
        "nuclear_excess": (path.nuclear_norm[-1] / optimum - 1).tolist(),
        "distance_to_min_nuclear": _relative(path.X, reference).tolist(),
        "truth_error": _relative(path.X, problem.truth).tolist(),
        "eigenvalues": np.sort(np.linalg.eigvalsh(path.X), axis=1)[:, ::-1][:, :6].tolist(),
        "reference_eigenvalues": np.sort(np.linalg.eigvalsh(reference))[::-1][:6].tolist(),
    }


def _step_check(problem, first: dict, n_steps: int) -> dict:
    """The smallest alpha of the first problem again with a 4x smaller step for 4x as many steps."""
    A, b = problem.measurements, problem.b
    reference = min_nuclear_norm(A, b, psd=True)
    alpha, step = first["alphas"][-1], first["step"] / 4
    path = factorized_gd(A, b, [alpha], step, 4 * n_steps, tol=1e-20)
    return {"problem": f"{first['problem']} m={first['m']}", "alpha": alpha, "step": step,
            "final_loss": float(path.loss[-1, 0]),
            "nuclear_excess": float(path.nuclear_norm[-1, 0] / np.trace(reference) - 1),
            "distance_to_min_nuclear": float(_relative(path.X[0], reference)),
            "truth_error": float(_relative(path.X[0], problem.truth))}


def _razin_cohen(depths, init: float, step: float, n_steps: int) -> dict:
    A = np.stack([np.eye(4)[k].reshape(2, 2) for k in (1, 2, 3)])  # the observed entries (1,2), (2,1), (2,2)
    reference = min_nuclear_norm(A, RAZIN_COHEN_TARGET.ravel()[[1, 2, 3]])
    starts = {"det > 0": init * np.eye(2), "det < 0": init * np.diag([1.0, -1.0])}
    runs = []
    for depth in depths:
        path = deep_factorization_completion(RAZIN_COHEN_MASK, RAZIN_COHEN_TARGET, depth, np.stack(list(
            starts.values())), step, n_steps)
        for b, start in enumerate(starts):
            w11 = path.entries[:, b, 0, 0]
            runs.append({"depth": depth, "start": start, "steps": path.steps.tolist(), "time": path.time[:, b].tolist(),
                         "w11": w11.tolist(), "loss": path.loss[:, b].tolist(),
                         "nuclear_norm": path.nuclear_norm[:, b].tolist(),
                         "effective_rank": path.effective_rank[:, b].tolist(), "det": path.det[:, b].tolist(),
                         # at a fit of W_12 = W_21 = 1 with W_11 W_22 = 1 (det -> 0+) the loss is W_22^2 / 2
                         "w11_sqrt_2loss": float(abs(w11[-1]) * np.sqrt(2 * path.loss[-1, b]))})
    return {"reference": reference.tolist(), "reference_nuclear_norm": float(np.linalg.norm(reference, "nuc")),
            "runs": runs}


def _verdicts(result: dict) -> dict:
    out = {}
    for r in result["factorization"]:
        excess, distance = np.array(r["nuclear_excess"]), np.array(r["distance_to_min_nuclear"])
        # agreement: at the smallest alpha, converged (loss < 1e-6), within 1% of the optimal nuclear norm and of
        # the minimiser (relative Frobenius), and still approaching it over the last three alphas
        tail = distance[-3:]
        out[f"{r['problem']} m={r['m']}"] = bool(r["final_loss"][-1] < 1e-6 and excess[-1] < 0.01
                                                   and distance[-1] < 0.01 and np.all(np.diff(tail) <= 0))
    rc = result["razin_cohen"]
    for r in rc["runs"]:
        w11 = np.abs(r["w11"])
        if r["start"] == "det > 0":  # |W_11| and ||W||_* growing without bound while the loss falls
            ok = w11[-1] > 5 * max(1.0, abs(rc["reference"][0][0])) and w11[-1] > w11[len(w11) // 2] \
                and r["nuclear_norm"][-1] > 2 * rc["reference_nuclear_norm"] and r["loss"][-1] < r["loss"][0]
        else:  # the control reaches the nuclear-norm minimiser
            ok = r["loss"][-1] < 1e-8 and abs(r["nuclear_norm"][-1] - rc["reference_nuclear_norm"]) < 1e-3
        out[f"razin-cohen L={r['depth']} {r['start']}"] = bool(ok)
    return out


def run(fast: bool = False, verbose: int = 0, random_state: int = 0) -> dict:
    """Four factorization problems over alpha and the Razin-Cohen example; `fast` is a few seconds, full ~1.5 min."""
    cfg = _config(fast)
    problems = [("sensing", gaussian_sensing(cfg["n"], cfg["rank"], m, random_state)) for m in cfg["sensing_m"]]
    problems += [("completion", symmetric_completion(cfg["n"], cfg["rank"], m, random_state))
                 for m in cfg["completion_m"]]
    runs = []
    with Progress(disable=not verbose, transient=True) as progress:
        task = progress.add_task("matrix factorization", total=len(problems) + 2)
        for kind, problem in problems:
            runs.append(_factorization_run(kind, problem, cfg["alphas"], cfg["n_steps"]))
            progress.advance(task)
        razin_cohen = _razin_cohen(cfg["depths"], cfg["rc_init"], cfg["rc_step"], cfg["rc_steps"])
        progress.advance(task)
        step_check = _step_check(problems[0][1], runs[0], cfg["n_steps"])
        progress.advance(task)
    result = {"claim": CLAIM, "fast": fast, "random_state": random_state, "config": cfg,
              "relative_recovery": RELATIVE_RECOVERY, "factorization": runs, "step_check": step_check,
              "razin_cohen": razin_cohen}
    result["agrees"] = _verdicts(result)
    return result


def save(result: dict, out_dir) -> list[Path]:
    """matrix_factorization.json and .png (nuclear-norm excess and distances vs alpha; Razin-Cohen |W_11| vs loss)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.5))
    (ax_excess, ax_dist, ax_rc) = fig.subplots(1, 3)
    for i, r in enumerate(result["factorization"]):
        label = f"{r['problem']} m={r['m']}"
        alphas = np.array(r["alphas"])
        ax_excess.loglog(alphas, np.maximum(r["nuclear_excess"], 1e-8), "o-", color=f"C{i}", label=label)
        ax_dist.loglog(alphas, r["distance_to_min_nuclear"], "o-", color=f"C{i}", label=f"{label}: to min ||X||_*")
        ax_dist.loglog(alphas, r["truth_error"], "x:", color=f"C{i}", label=f"{label}: to truth")
    ax_excess.set(xlabel="alpha (U_0 = sqrt(alpha) I)", ylabel="||U U^T||_* / min ||X||_* - 1",
                  title="nuclear norm above the convex minimum")
    ax_dist.set(xlabel="alpha", ylabel="relative Frobenius distance", title="distance to min-nuclear-norm / truth")
    ax_excess.legend(fontsize="small")
    ax_dist.legend(fontsize="x-small")
    for i, r in enumerate(result["razin_cohen"]["runs"]):
        style = "-" if r["start"] == "det > 0" else "--"
        ax_rc.loglog(r["time"][1:], np.abs(r["w11"][1:]), style, color=f"C{i // 2}",
                     label=f"L={r['depth']}, {r['start']}")
    ax_rc.set(xlabel="gradient-flow time (sum of steps)", ylabel="|W_11| (unobserved entry)",
              title="Razin-Cohen 2x2 completion (min ||W||_*: W_11 = 0)")
    ax_rc.legend(fontsize="small")
    fig.suptitle("Implicit bias of gradient descent on matrix factorizations")
    return save_study(result, out_dir, "matrix_factorization", fig)



def report(result: dict) -> str:
    """The claim and markdown tables: per problem at the largest and smallest alpha; Razin-Cohen per depth."""
    ok = result["agrees"]
    lines = [f"**Claim.** {result['claim']}", "",
             "| problem | min-||X||_* recovers truth? | alpha | loss | ||X||_*/min - 1 | dist. to min-||X||_* "
             "| dist. to truth | verdict |", "|---|---|---|---|---|---|---|---|"]
    for r in result["factorization"]:
        name = f"{r['problem']} m={r['m']}"
        recovers = f"{'yes' if r['reference_truth_error'] < result['relative_recovery'] else 'no'} " \
                   f"({r['reference_truth_error']:.1e})"
        last = len(r["alphas"]) - 1
        for k in (0, last // 2, last):
            mark = verdict(ok[name]) if k == last else ""
            lines.append(f"| {name} | {recovers} | {r['alphas'][k]:.0e} | {r['final_loss'][k]:.1e} "
                         f"| {r['nuclear_excess'][k]:.2e} | {r['distance_to_min_nuclear'][k]:.2e} "
                         f"| {r['truth_error'][k]:.2e} | {mark} |")
    sc = result["step_check"]
    lines += ["", f"Step check ({sc['problem']}, alpha = {sc['alpha']:.0e}, step / 4 for 4x the steps): "
              f"loss {sc['final_loss']:.1e}, ||X||_*/min - 1 = {sc['nuclear_excess']:.2e}, distance to "
              f"min-||X||_* {sc['distance_to_min_nuclear']:.2e}, to truth {sc['truth_error']:.2e}."]
    rc = result["razin_cohen"]
    lines += ["", f"Razin-Cohen: the nuclear-norm minimiser (cvxpy) has W_11 = {rc['reference'][0][0]:.1e}, "
              f"||W||_* = {rc['reference_nuclear_norm']:.4f}.", "",
              "| depth | start | steps | loss | W_11 | ||W||_* | effective rank | |W_11| sqrt(2 loss) | verdict |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rc["runs"]:
        mark = verdict(ok[f"razin-cohen L={r['depth']} {r['start']}"])
        lines.append(f"| {r['depth']} | {r['start']} | {r['steps'][-1]:,} | {r['loss'][-1]:.2e} | {r['w11'][-1]:.3f} "
                     f"| {r['nuclear_norm'][-1]:.3f} | {r['effective_rank'][-1]:.3f} | {r['w11_sqrt_2loss']:.3f} "
                     f"| {mark} |")
    lines += ["", "Verdicts: a factorization problem agrees when, at the smallest alpha, GD has converged "
              "(loss < 1e-6) to within 1% of the minimum nuclear norm and of the minimiser, and is still approaching "
              "it over the last three alphas; a det > 0 Razin-Cohen run agrees (with the counter-example) when "
              "|W_11| keeps growing past 5 and ||W||_* past twice the minimum while the loss falls; the det < 0 "
              "control agrees when it converges to the nuclear-norm minimiser."]
    return "\n".join(lines)
