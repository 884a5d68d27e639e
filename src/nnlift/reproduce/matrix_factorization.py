"""Gunasekar et al. (2017): gradient descent on a full-dimensional factorization X = U U^T from U_0 = sqrt(alpha) I
tends, as alpha -> 0, to the minimum-nuclear-norm solution; Li, Luo & Lyu's (2021) refutation, where small-init
gradient descent instead follows greedy low-rank learning; and Razin & Cohen's (2020) counter-example, where
gradient descent on a deep factorization drives every norm to infinity.

Problems (n x n, rank-r PSD ground truth with top eigenvalue 1): symmetric Gaussian sensing and symmetric
completion, each with more measurements than the nuclear norm needs to recover the truth and with fewer (then
the cvxpy minimiser of ||X||_* over X PSD differs from the truth, and only the conjecture, not recovery theory,
says where gradient descent goes). Step 0.25 / (||A||^2 ||X_*||), a quarter of the stable step at the solution.
Li, Luo & Lyu's greedy low-rank learning (GLRL) on each problem gives the alternative limit.
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

__all__ = ["CLAIM", "greedy_low_rank", "run", "save", "report"]

CLAIM = ("Gradient descent on f(U) = ||A(U U^T) - b||^2 with U n x n (no rank constraint), started at "
         "U_0 = sqrt(alpha) I, converges as alpha -> 0 (and step -> 0) to the minimum-nuclear-norm solution "
         "argmin ||X||_* s.t. A(X) = b, X PSD (Gunasekar, Woodworth, Bhojanapalli, Neyshabur & Srebro 2017, "
         "Conjecture 1; proved for commuting A_i). Counter-claim: on the 2 x 2 completion with W_12 = W_21 = 1, "
         "W_22 = 0 observed, gradient descent on a depth-L >= 2 factorization with det W(0) > 0 drives |W_11| and "
         "every norm to infinity while the nuclear-norm minimiser (W_11 = 0, ||W||_* = 2) is bounded "
         "(Razin & Cohen 2020, NeurIPS). Refutation of Conjecture 1: gradient descent from infinitesimal init follows "
         "greedy low-rank learning (rank-1 steps from the top eigenvector of -grad f, each run to convergence) and "
         "need not reach the minimum nuclear norm when the measurements do not pin it to the low-rank truth "
         "(Li, Luo & Lyu 2021, ICLR, 'Towards resolving the implicit bias of gradient descent for matrix "
         "factorization: greedy low-rank learning').")

RELATIVE_RECOVERY = 1e-3  # the convex minimiser "recovers" the truth when ||X_* - truth||_F / ||truth||_F is below
GREEDY_EPS = 1e-8  # GLRL's initial scale of each new rank-1 direction (alpha of the smallest full-init run)
GREEDY_TOL = 1e-16  # GLRL stops adding ranks once the loss is below


def _config(fast: bool) -> dict:
    if fast:
        return {"n": 8, "rank": 1, "sensing_m": [10, 30], "completion_m": [14, 30], "alphas": [1e-1, 1e-3, 1e-6],
                "n_steps": 3_000, "depths": [2, 3], "rc_steps": 3_000, "rc_init": 1e-3, "rc_step": 0.2}
    return {"n": 20, "rank": 2, "sensing_m": [60, 120], "completion_m": [60, 120],
            "alphas": [10.0 ** -k for k in range(1, 9)], "n_steps": 40_000, "depths": [2, 3, 4],
            "rc_steps": 100_000, "rc_init": 1e-3, "rc_step": 0.2}


def _relative(a, b) -> np.ndarray:
    return np.linalg.norm(a - b, axis=(-2, -1)) / np.linalg.norm(b)


def greedy_low_rank(A, b, step: float, n_steps: int, max_rank: int) -> tuple[np.ndarray, list[float]]:
    """Li, Luo & Lyu (2021)'s GLRL: from U = [] add sqrt(GREEDY_EPS) u, u the top eigenvector of -grad f(U U^T),
    and run gradient descent on U for `n_steps` (or to loss <= GREEDY_TOL); repeat while that eigenvalue is
    positive, up to `max_rank` columns. Returns U U^T and the loss after each rank."""
    m, n = A.shape[:2]
    flat = (0.5 * (A + A.transpose(0, 2, 1))).reshape(m, n * n)
    U, losses = np.zeros((n, 0)), []
    while U.shape[1] < max_rank and not (losses and losses[-1] <= GREEDY_TOL):
        eigenvalues, vectors = np.linalg.eigh(-((flat @ (U @ U.T).ravel() - b) @ flat).reshape(n, n))
        if eigenvalues[-1] <= 0:
            break
        U = np.column_stack([U, np.sqrt(GREEDY_EPS) * vectors[:, -1]])
        for _ in range(n_steps):
            residual = flat @ (U @ U.T).ravel() - b
            if 0.5 * residual @ residual <= GREEDY_TOL:
                break
            U = U - step * 2 * (residual @ flat).reshape(n, n) @ U
        residual = flat @ (U @ U.T).ravel() - b
        losses.append(float(0.5 * residual @ residual))
    return U @ U.T, losses


def _greedy(problem, reference: np.ndarray, step: float, n_steps: int, X_gd: np.ndarray) -> dict:
    """GLRL's solution next to the truth, the nuclear-norm minimiser and gradient descent's X per alpha."""
    X, losses = greedy_low_rank(problem.measurements, problem.b, step, n_steps,
                                int(np.linalg.matrix_rank(problem.truth)) + 2)
    eigenvalues = np.sort(np.linalg.eigvalsh(X))[::-1]
    return {"rank": int(np.sum(eigenvalues > 1e-4 * eigenvalues[0])), "phase_losses": losses,
            "truth_error": float(_relative(X, problem.truth)),
            "distance_to_min_nuclear": float(_relative(X, reference)),
            "nuclear_excess": float(np.trace(X) / np.trace(reference) - 1),
            "eigenvalues": eigenvalues[:6].tolist(), "gd_distance": _relative(X_gd, X).tolist()}


def _factorization_run(kind: str, problem, alphas, n_steps: int) -> dict:
    A, b = problem.measurements, problem.b
    reference = min_nuclear_norm(A, b, psd=True)
    smoothness = np.linalg.norm(A.reshape(len(b), -1), 2) ** 2
    step = 0.25 / (smoothness * np.linalg.norm(reference, 2))
    path = factorized_gd(A, b, alphas, step, n_steps, tol=1e-20)
    optimum = float(np.trace(reference))
    return {"greedy": _greedy(problem, reference, step, n_steps, path.X),
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
        # the refutation (Li, Luo & Lyu 2021) is a limit as alpha -> 0: GD's distance to the GLRL solution falls
        # from the largest to the smallest alpha and over the last three alphas
        greedy = np.array(r["greedy"]["gd_distance"])
        out[f"greedy {r['problem']} m={r['m']}"] = bool(greedy[-1] < greedy[0] and np.all(np.diff(greedy[-3:]) <= 0))
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



def _conjecture_mark(agrees: bool, run: dict, recovery: float) -> str:
    """The verdict on Conjecture 1, flagged as the expected refutation (Li, Luo & Lyu 2021) where the minimum
    nuclear norm is not the truth."""
    if agrees or run["reference_truth_error"] < recovery:
        return verdict(agrees)
    return "does not agree (expected: Li, Luo & Lyu 2021 refute the conjecture)"


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
            mark = _conjecture_mark(ok[name], r, result["relative_recovery"]) if k == last else ""
            lines.append(f"| {name} | {recovers} | {r['alphas'][k]:.0e} | {r['final_loss'][k]:.1e} "
                         f"| {r['nuclear_excess'][k]:.2e} | {r['distance_to_min_nuclear'][k]:.2e} "
                         f"| {r['truth_error'][k]:.2e} | {mark} |")
    lines += ["", "Greedy low-rank learning (Li, Luo & Lyu 2021): GLRL's solution and gradient descent's distance to "
              "it (relative Frobenius) at the largest, middle and smallest alpha; agrees when that distance falls "
              "from the largest to the smallest alpha and over the last three alphas (their result is the limit "
              "alpha -> 0).", "",
              "| problem | GLRL rank (truth) | GLRL loss | GLRL dist. to truth | GLRL ||X||_*/min - 1 "
              "| GLRL dist. to min-||X||_* | GD dist. to GLRL | GD dist. to min-||X||_* | verdict |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in result["factorization"]:
        g, last, name = r["greedy"], len(r["alphas"]) - 1, f"{r['problem']} m={r['m']}"
        path = " → ".join(f"{g['gd_distance'][k]:.3f}" for k in (0, last // 2, last))
        nuclear = " → ".join(f"{r['distance_to_min_nuclear'][k]:.3f}" for k in (0, last // 2, last))
        lines.append(f"| {name} | {g['rank']} ({result['config']['rank']}) "
                     f"| {g['phase_losses'][-1]:.1e} | {g['truth_error']:.2e} | {g['nuclear_excess']:.2e} "
                     f"| {g['distance_to_min_nuclear']:.2e} | {path} | {nuclear} "
                     f"| {verdict(ok['greedy ' + name])} |")
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
    lines += ["", "Where the minimum nuclear norm is not the truth (fewer measurements), 'does not agree' is the "
              "expected outcome, not a defect: Li, Luo & Lyu (2021) refute Conjecture 1 and show that gradient "
              "descent from small init follows greedy low-rank learning, whose solution is given above.",
              "", "Verdicts: a factorization problem agrees when, at the smallest alpha, GD has converged "
              "(loss < 1e-6) to within 1% of the minimum nuclear norm and of the minimiser, and is still approaching "
              "it over the last three alphas; a det > 0 Razin-Cohen run agrees (with the counter-example) when "
              "|W_11| keeps growing past 5 and ||W||_* past twice the minimum while the loss falls; the det < 0 "
              "control agrees when it converges to the nuclear-norm minimiser."]
    return "\n".join(lines)
