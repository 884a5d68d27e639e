"""The fixed points of the tensor power map and their stability (Anandkumar, Ge, Hsu, Kakade & Telgarsky 2014,
"Tensor decompositions for learning latent variable models", JMLR, §4.1, Theorem 4.1).

For T = Σ_i λ_i a_i^{⊗3} the power map is φ(u) = T(I, u, u) / ‖T(I, u, u)‖ (eq. (5)); iterated with the sign of
T(u, u, u) attached (as `nnlift.tensor.power.power_iterate` does), both u and −u are fixed when one is, so every
fixed point is counted once, with the sign that makes μ = T(u, u, u) > 0. Fixed points are the eigenpairs
T(I, u, u) = μu, ‖u‖ = 1; a generic order-3 tensor on R^d has at most 2^d − 1 of them (Cartwright & Sturmfels
2013). For orthonormal v_i they are exactly u_S ∝ Σ_{i∈S} v_i / λ_i, S ≠ ∅ (all 2^k − 1 of them); there the
Jacobian of φ on the tangent space of the sphere is 2 P_S restricted to u_S^⊥, spectral radius 0 for |S| = 1 and
2 for |S| ≥ 2: the components attract (quadratically) and every other fixed point repels.

Each tensor is searched in two ways: the power iteration from many random starts (which can only end at stable
fixed points) and Levenberg-Marquardt root finding (scipy.optimize.root) on (T(I,u,u) − μu, (‖u‖² − 1)/2) from
many random starts (which finds unstable ones too); each fixed point is classified by the spectral radius of the
tangent Jacobian 2 P^T T(I, I, u) P / μ. Three families: orthogonal tensors (closed form above), tensors whose
unit components have pairwise cosine ρ with weights λ_i = r^{U_i}, and those tensors whitened by
M2 = Σ λ_i a_i a_i^T (§4.3: T(W, W, W) = Σ λ_i^{-1/2} (√λ_i W^T a_i)^{⊗3} is orthogonally decomposable).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.stats
from scipy.cluster.hierarchy import fcluster, linkage

from ..tensor import DenseSymmetricTensor, whiten
from ..tensor._multilinear import cp_to_tensor, normalize_columns, signs_of
from ..tensor.power import power_iterate
from ._common import fmt, markdown_table, progress, save_study, verdict

__all__ = ["CLAIM", "PowerLandscapeConfig", "orthogonal_factors", "correlated_factors", "power_map",
           "tangent_jacobian", "spectral_radius", "closed_form_fixed_points", "attractors", "roots", "analyse",
           "verdicts", "run", "save", "report"]

CLAIM = ("Anandkumar, Ge, Hsu, Kakade & Telgarsky (2014), 'Tensor decompositions for learning latent variable "
         "models' (JMLR), §4.1, Theorem 4.1: for an orthogonally decomposable T = Σ λ_i v_i^{⊗3} (λ_i > 0) the "
         "power map u ↦ T(I,u,u)/‖T(I,u,u)‖ has the 2^k − 1 fixed points u_S ∝ Σ_{i∈S} v_i/λ_i and the robust "
         "(attracting) ones are exactly the components v_i; every other fixed point is unstable. For non-orthogonal "
         "components this fails (attractors that are not components, components that attract nothing), and "
         "whitening with M2 = Σ λ_i a_i a_i^T (§4.3) restores an orthogonal tensor whose attractors are the "
         "components.")

SAME = 1e-6  # two unit vectors closer than this (Euclidean) are the same fixed point
SPURIOUS_DEGREES = 10.0  # an attractor farther than this from every component is spurious, not a perturbed one
RADIUS_TOL = 1e-6  # measured vs closed-form Jacobian spectral radius
ORTHOGONALITY_TOL = 1e-10  # ‖V^T V − I‖ of the whitened components
_RESIDUAL_TOL = 1e-9  # ‖T(I,u,u) − μu‖ below which an iterate or root counts as a fixed point


@dataclass
class PowerLandscapeConfig:
    """Orthogonal ranks d = k; the dimension, pairwise cosines, weight ratios and seeds of the correlated tensors;
    power-iteration starts; root-finder starts per bound 2^d − 1 (orthogonal tensors get more: at k = 8, 20 per
    bound missed 2 of the 255 fixed points, 40 found all); iteration cap and step tolerance."""

    orthogonal_dims: list[int] = field(default_factory=lambda: [5, 6, 7, 8])
    dim: int = 6
    correlations: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2, 0.3, 0.5, 0.7])
    weight_ratios: list[float] = field(default_factory=lambda: [1.0, 10.0])
    seeds: int = 2
    power_starts: int = 2000
    root_starts_per_bound: int = 20
    orthogonal_root_starts_per_bound: int = 40
    max_iter: int = 3000
    tol: float = 1e-13

    @classmethod
    def fast(cls) -> PowerLandscapeConfig:
        return cls(orthogonal_dims=[4, 5], dim=5, correlations=[0.05, 0.3], seeds=1, power_starts=500,
                   root_starts_per_bound=10, orthogonal_root_starts_per_bound=20)


def orthogonal_factors(k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Weights λ_i log-uniform on [1, 10] and a Haar-random orthonormal basis (columns v_i)."""
    return 10.0 ** rng.uniform(0, 1, k), scipy.stats.ortho_group.rvs(k, random_state=rng)


def correlated_factors(d: int, rho: float, ratio: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Weights λ_i = ratio^{U_i} and unit components with every pairwise cosine ρ: a random rotation of the
    Cholesky factor of the Gram matrix (1 − ρ)I + ρ11^T."""
    gram = (1 - rho) * np.eye(d) + rho
    factors = scipy.stats.ortho_group.rvs(d, random_state=rng) @ scipy.linalg.cholesky(gram)
    return ratio ** rng.uniform(0, 1, d), factors


def power_map(T: np.ndarray, U: np.ndarray) -> np.ndarray:
    """One step of the power map (AGHKT eq. (5)) on every column, with the sign of T(u, u, u) attached."""
    Y = DenseSymmetricTensor(T).contract(U)
    return normalize_columns(Y * signs_of(np.einsum("ij,ij->j", U, Y)))


def tangent_jacobian(T: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Jacobian of the power map at a fixed point u (μ = T(u,u,u) > 0) on the tangent space u^⊥, in an orthonormal
    basis P of it: D[F/‖F‖] = (I − uu^T) 2T(I, I, u) / μ, so the restriction is 2 P^T T(I, I, u) P / μ."""
    M = np.einsum("ijk,k->ij", T, u)
    P = scipy.linalg.null_space(u[None, :])
    return 2 * P.T @ M @ P / (u @ M @ u)


def spectral_radius(T: np.ndarray, u: np.ndarray) -> float:
    """Largest |eigenvalue| of the (symmetric) tangent Jacobian: < 1 attracting, > 1 repelling."""
    return float(np.max(np.abs(scipy.linalg.eigvalsh(tangent_jacobian(T, u)))))


def closed_form_fixed_points(weights: np.ndarray, factors: np.ndarray) -> dict:
    """All 2^k − 1 fixed points u_S ∝ Σ_{i∈S} v_i/λ_i of an orthogonal tensor (AGHKT §4.1) with their eigenvalues
    μ_S = (Σ_{i∈S} λ_i^{-2})^{-1/2} and Jacobian spectral radii (0 for |S| = 1, 2 otherwise)."""
    k = len(weights)
    subsets = [S for size in range(1, k + 1) for S in itertools.combinations(range(k), size)]
    coefficients = np.zeros((k, len(subsets)))
    for column, S in enumerate(subsets):
        coefficients[list(S), column] = 1 / weights[list(S)]
    norms = np.linalg.norm(coefficients, axis=0)
    return {"points": factors @ coefficients / norms, "eigenvalues": 1 / norms,
            "sizes": np.array([len(S) for S in subsets]),
            "radii": np.array([0.0 if len(S) == 1 else 2.0 for S in subsets])}


def _residuals(T: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(μ = T(u,u,u), ‖T(I,u,u) − μu‖) per column."""
    Y = DenseSymmetricTensor(T).contract(U)
    mu = np.einsum("ij,ij->j", U, Y)
    return mu, np.linalg.norm(Y - mu * U, axis=0)


def _distinct(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns merged when closer than SAME (single linkage): (one representative per point, count per point)."""
    if U.shape[1] == 0:
        return U, np.zeros(0, dtype=int)
    labels = fcluster(linkage(U.T, "single"), SAME, criterion="distance") if U.shape[1] > 1 else np.ones(1, int)
    first = np.array([np.flatnonzero(labels == label)[0] for label in np.unique(labels)])
    return U[:, first], np.bincount(labels)[np.unique(labels)]


def attractors(T: np.ndarray, n_starts: int, rng: np.random.Generator, max_iter: int, tol: float) -> dict:
    """Power iteration from `n_starts` uniform unit starts (AGHKT Algorithm 1's inner loop, all starts at once);
    the distinct limits with μ > 0, their basin counts and the number of starts that did not converge."""
    starts = normalize_columns(rng.standard_normal((T.shape[0], n_starts)))
    U, values, steps = power_iterate(DenseSymmetricTensor(T), starts, max_iter, tol)
    U = U * signs_of(values)
    _, residual = _residuals(T, U)
    points, basins = _distinct(U[:, residual < _RESIDUAL_TOL])
    return {"points": points, "basins": basins, "not_converged": int(np.sum(residual >= _RESIDUAL_TOL)),
            "iterations": int(steps)}


def _eigen_equations(x: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T(I,u,u) − μu, (‖u‖² − 1)/2) and its Jacobian [[2T(I,I,u) − μI, −u], [u^T, 0]] for x = (u, μ)."""
    u, mu = x[:-1], x[-1]
    M = np.einsum("ijk,k->ij", T, u)
    jacobian = np.block([[2 * M - mu * np.eye(len(u)), -u[:, None]], [u[None, :], np.zeros((1, 1))]])
    return np.append(M @ u - mu * u, (u @ u - 1) / 2), jacobian


def roots(T: np.ndarray, n_starts: int, rng: np.random.Generator) -> np.ndarray:
    """Distinct fixed points (μ > 0 sign) found by scipy.optimize.root (Levenberg-Marquardt) on the eigen-equations
    from `n_starts` uniform unit starts with μ0 = T(u,u,u); stable and unstable alike."""
    starts = normalize_columns(rng.standard_normal((T.shape[0], n_starts)))
    mu0, _ = _residuals(T, starts)
    found = []
    for u, mu in zip(starts.T, mu0, strict=True):
        x = scipy.optimize.root(_eigen_equations, np.append(u, mu), args=(T,), jac=True, method="lm").x
        if np.linalg.norm(_eigen_equations(x, T)[0]) < _RESIDUAL_TOL and abs(x[-1]) > _RESIDUAL_TOL:
            found.append(x[:-1] * np.sign(x[-1]) / np.linalg.norm(x[:-1]))
    return _distinct(np.array(found).T.reshape(T.shape[0], -1))[0]


def _nearest(points: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of `points`: index of the nearest ±column of `reference`, that Euclidean distance and the angle
    in degrees."""
    cosines = reference.T @ points
    index = np.argmax(np.abs(cosines), axis=0)
    nearest = reference[:, index]
    distance = np.minimum(np.linalg.norm(points - nearest, axis=0), np.linalg.norm(points + nearest, axis=0))
    return index, distance, np.degrees(2 * np.arcsin(np.minimum(distance / 2, 1)))


def _covered(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per column of `reference`: whether some column of `points` lies within SAME of it (up to sign)."""
    if points.shape[1] == 0:
        return np.zeros(reference.shape[1], dtype=bool)
    return _nearest(reference, points)[1] < SAME


def analyse(T: np.ndarray, components: np.ndarray, config: PowerLandscapeConfig, rng: np.random.Generator,
            closed_form: dict | None = None, starts_per_bound: int | None = None) -> dict:
    """Attractors by iteration, all fixed points by root finding (`starts_per_bound`·(2^d − 1) starts, default
    config.root_starts_per_bound), each classified by its Jacobian, matched to the unit components (exactly:
    within SAME; loosely: within SPURIOUS_DEGREES) and, when given, to the closed form."""
    d = T.shape[0]
    iterated = attractors(T, config.power_starts, rng, config.max_iter, config.tol)
    found = roots(T, (starts_per_bound or config.root_starts_per_bound) * (2 ** d - 1), rng)
    radii = np.array([spectral_radius(T, u) for u in found.T])
    stable = found[:, radii < 1]
    index, distance, degrees = _nearest(iterated["points"], components)
    basin_fraction = iterated["basins"] / config.power_starts
    spurious = degrees > SPURIOUS_DEGREES
    loose_components = set(index[~spurious].tolist())
    out = {"dim": d, "n_components": int(components.shape[1]), "power_iterations": iterated["iterations"],
           "attractors": int(iterated["points"].shape[1]), "not_converged": iterated["not_converged"],
           "basin_fractions": basin_fraction.tolist(),
           "attractor_points": iterated["points"].T.tolist(),
           "attractor_nearest_component": index.tolist(), "attractor_degrees_from_component": degrees.tolist(),
           "attractor_radii": [spectral_radius(T, u) for u in iterated["points"].T],
           "fixed_points_found": int(found.shape[1]), "stable_found": int(stable.shape[1]),
           "unstable_found": int(np.sum(radii > 1)), "radii": radii.tolist(),
           "fixed_point_eigenvalues": [float(u @ np.einsum("ijk,j,k->i", T, u, u)) for u in found.T],
           "attractors_not_components": int(np.sum(distance >= SAME)),
           "spurious_attractors": int(np.sum(spurious)),
           "fraction_starts_spurious": float(basin_fraction[spurious].sum()),
           "fraction_starts_not_component": float(basin_fraction[distance >= SAME].sum()),
           "components_attracting": int(np.sum(_covered(iterated["points"], components))),
           "components_attracting_loosely": len(loose_components),
           "components_fixed_loosely": int(np.sum(_nearest(components, found)[2] <= SPURIOUS_DEGREES)),
           "iteration_matches_jacobian": bool(np.all(_covered(stable, iterated["points"]))
                                              and np.all(_covered(iterated["points"], stable)))}
    if closed_form is not None:
        out |= _against_closed_form(found, radii, closed_form)
    return out


def _against_closed_form(found: np.ndarray, radii: np.ndarray, closed_form: dict) -> dict:
    """How the root finder's fixed points and their Jacobian radii compare with the closed-form u_S."""
    points = closed_form["points"]
    index, distance, _ = _nearest(found, points)
    matched = distance < SAME
    return {"closed_form_fixed_points": int(points.shape[1]),
            "closed_form_found": int(np.sum(_covered(found, points))),
            "found_not_in_closed_form": int(np.sum(~matched)),
            "max_radius_error": float(np.max(np.abs(radii[matched] - closed_form["radii"][index[matched]]),
                                             initial=0.0)),
            "stable_sizes": sorted(set(closed_form["sizes"][index[matched & (radii < 1)]].tolist()))}


def _whitened(weights: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """T(W, W, W) with W from nnlift.tensor.whiten(M2) (W^T M2 W = I, AGHKT §4.3), its weights λ_i^{-1/2}, its
    components v_i = √λ_i W^T a_i, and M2 W (which maps whitened directions back: a_i ∝ M2 W v_i)."""
    T = cp_to_tensor(weights, factors, 3)
    second_moment = factors @ np.diag(weights) @ factors.T
    W = whiten(second_moment, factors.shape[1]).matrix
    return DenseSymmetricTensor(T).project(W), weights ** -0.5, np.sqrt(weights) * (W.T @ factors), second_moment @ W


def _orthogonal_case(k: int, config: PowerLandscapeConfig, rng: np.random.Generator) -> dict:
    weights, factors = orthogonal_factors(k, rng)
    T = cp_to_tensor(weights, factors, 3)
    return {"k": k, "weights": weights.tolist()} | analyse(T, factors, config, rng,
                                                            closed_form_fixed_points(weights, factors),
                                                            config.orthogonal_root_starts_per_bound)


def _correlated_case(rho: float, ratio: float, seed: int, config: PowerLandscapeConfig,
                     rng: np.random.Generator) -> dict:
    weights, factors = correlated_factors(config.dim, rho, ratio, rng)
    T = cp_to_tensor(weights, factors, 3)
    T_w, weights_w, factors_w, unwhiten = _whitened(weights, factors)
    whitened = analyse(T_w, factors_w, config, rng, closed_form_fixed_points(weights_w, factors_w))
    recovered = normalize_columns(unwhiten @ np.array(whitened["attractor_points"]).T)
    whitened |= {"orthogonality_error": float(np.linalg.norm(factors_w.T @ factors_w - np.eye(config.dim))),
                 "unwhitened_max_distance": float(np.max(_nearest(recovered, factors)[1]))}
    return {"rho": rho, "weight_ratio": ratio, "seed": seed, "weights": weights.tolist(),
            "raw": analyse(T, factors, config, rng), "whitened": whitened}


def verdicts(orthogonal: list[dict], correlated: list[dict]) -> dict[str, bool]:
    """The claims, decided from the measured counts with the tolerances SAME, SPURIOUS_DEGREES, RADIUS_TOL and
    ORTHOGONALITY_TOL."""

    def exact_components(case: dict) -> bool:
        return (case["attractors"] == case["components_attracting"] == case["n_components"]
                and case["attractors_not_components"] == 0 and case["not_converged"] == 0)

    def closed_form(case: dict) -> bool:
        return (case["closed_form_found"] == case["closed_form_fixed_points"] == case["fixed_points_found"]
                and case["found_not_in_closed_form"] == 0 and case["max_radius_error"] <= RADIUS_TOL
                and case["stable_sizes"] == [1] and case["stable_found"] == case["n_components"])

    whitened = [c["whitened"] for c in correlated]
    return {"orthogonal_attractors_are_components": bool(orthogonal) and all(map(exact_components, orthogonal)),
            "orthogonal_fixed_points_match_closed_form": bool(orthogonal) and all(map(closed_form, orthogonal)),
            "correlated_has_spurious_attractors": any(c["raw"]["spurious_attractors"] > 0 for c in correlated),
            "whitened_attractors_are_components": bool(whitened) and all(
                exact_components(c) and c["found_not_in_closed_form"] == 0 and c["stable_sizes"] == [1]
                and c["orthogonality_error"] <= ORTHOGONALITY_TOL and c["unwhitened_max_distance"] < SAME
                for c in whitened),
            "iteration_matches_jacobian": all(c["iteration_matches_jacobian"] for c in
                                              orthogonal + [c["raw"] for c in correlated] + whitened)}


def run(fast: bool = False, verbose: int = 0, random_state: int = 0) -> dict:
    """Orthogonal tensors for each k, then each (ρ, weight ratio, seed) raw and whitened; counts and verdicts."""
    config = PowerLandscapeConfig.fast() if fast else PowerLandscapeConfig()
    start = time.perf_counter()
    grid = list(itertools.product(config.correlations, config.weight_ratios, range(config.seeds)))
    with progress(verbose) as bar:
        task = bar.add_task("power-map fixed points (tensors)", total=len(config.orthogonal_dims) + len(grid))
        orthogonal = []
        for k in config.orthogonal_dims:
            orthogonal.append(_orthogonal_case(k, config, np.random.default_rng([random_state, 0, k])))
            bar.advance(task)
        correlated = []
        for index, (rho, ratio, seed) in enumerate(grid):
            rng = np.random.default_rng([random_state, 1, index])
            correlated.append(_correlated_case(rho, ratio, seed, config, rng))
            bar.advance(task)
    return {"config": asdict(config), "random_state": random_state,
            "tolerances": {"same": SAME, "spurious_degrees": SPURIOUS_DEGREES, "radius": RADIUS_TOL,
                           "orthogonality": ORTHOGONALITY_TOL},
            "orthogonal": orthogonal, "correlated": correlated, "agrees": verdicts(orthogonal, correlated),
            "wall_time_s": time.perf_counter() - start}


def save(result: dict, out_dir) -> list[Path]:
    """power_landscape.json and .png: the Jacobian spectral radius of every fixed point found per family; the
    fraction of starts ending at a spurious attractor vs ρ; the components that attract vs ρ (raw vs whitened)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(16, 4.5))
    ax = figure.add_subplot(1, 3, 1)
    families = {"orthogonal": result["orthogonal"], "correlated": [c["raw"] for c in result["correlated"]],
                "whitened": [c["whitened"] for c in result["correlated"]]}
    rng = np.random.default_rng(0)
    for position, cases in enumerate(families.values()):
        radii = np.maximum([r for case in cases for r in case["radii"]], 1e-17)
        ax.scatter(position + rng.uniform(-0.3, 0.3, len(radii)), radii, s=6, alpha=0.4, color=f"C{position}")
    ax.axhline(1, color="k", ls="--", lw=1)
    ax.set(yscale="log", xticks=range(3), xticklabels=list(families), ylabel="Jacobian spectral radius (floor 1e-17)",
           title="every fixed point found by root finding")
    rows = result["correlated"]
    for panel, (key, label) in enumerate([("fraction_starts_spurious", "fraction of starts at a spurious attractor"),
                                          ("components_attracting_loosely", "components with an attractor nearby")],
                                         start=2):
        ax = figure.add_subplot(1, 3, panel)
        for shade, ratio in enumerate(result["config"]["weight_ratios"]):
            picked = [r for r in rows if r["weight_ratio"] == ratio]
            for side, marker in (("raw", "o"), ("whitened", "x")):
                ax.scatter([r["rho"] + 0.006 * shade for r in picked], [r[side][key] for r in picked],
                           marker=marker, color=f"C{shade}", label=f"{side}, weight ratio {ratio:g}")
        ax.set(xlabel="pairwise cosine ρ of the components", ylabel=label,
               title=f"d = k = {result['config']['dim']}, {SPURIOUS_DEGREES:g}° tolerance")
        ax.legend(fontsize="small")
    return save_study(result, out_dir, "power_landscape", figure)


def _per_setting(rows: list[dict], side: str, key: str) -> str:
    return ", ".join(fmt(r[side][key]) if isinstance(r[side][key], float) else str(r[side][key]) for r in rows)


def report(result: dict) -> str:
    """The claim, a table per family and the verdicts."""
    config, agrees = result["config"], result["agrees"]
    orthogonal = markdown_table(
        ["k", "closed form 2^k−1", "found by root finder", "of them in closed form", "stable by Jacobian",
         "attractors by iteration", "max error of ρ(J) vs closed form", "basin fractions"],
        [[c["k"], c["closed_form_fixed_points"], c["fixed_points_found"], c["closed_form_found"], c["stable_found"],
          c["attractors"], fmt(c["max_radius_error"], 2), ", ".join(f"{f:.2f}" for f in c["basin_fractions"])]
         for c in result["orthogonal"]])
    settings = {}
    for row in result["correlated"]:
        settings.setdefault((row["rho"], row["weight_ratio"]), []).append(row)
    correlated = markdown_table(
        ["ρ", "weight ratio", "fixed points found", "attractors", "spurious (> 10°)", "starts at spurious",
         "max angle to component (°)", "components attracting (≤ 10°)", "components near any fixed point (≤ 10°)",
         "whitened: components attracting / attractors", "whitened: closed-form fixed points found",
         "whitened ‖VᵀV − I‖"],
        [[rho, fmt(ratio), _per_setting(rows, "raw", "fixed_points_found"), _per_setting(rows, "raw", "attractors"),
          _per_setting(rows, "raw", "spurious_attractors"), _per_setting(rows, "raw", "fraction_starts_spurious"),
          ", ".join(f"{max(r['raw']['attractor_degrees_from_component']):.1f}" for r in rows),
          ", ".join(f"{r['raw']['components_attracting_loosely']}/{r['raw']['n_components']}" for r in rows),
          ", ".join(f"{r['raw']['components_fixed_loosely']}/{r['raw']['n_components']}" for r in rows),
          ", ".join(f"{r['whitened']['components_attracting']}/{r['whitened']['attractors']}" for r in rows),
          ", ".join(f"{r['whitened']['closed_form_found']}/{r['whitened']['closed_form_fixed_points']}"
                    for r in rows),
          ", ".join(fmt(r["whitened"]["orthogonality_error"], 2) for r in rows)]
         for (rho, ratio), rows in settings.items()])
    dims = ", ".join(str(c["k"]) for c in result["orthogonal"])
    n_spurious = sum(r["raw"]["spurious_attractors"] > 0 for r in result["correlated"])
    n_orphaned = sum(r["raw"]["components_attracting_loosely"] < r["raw"]["n_components"] for r in result["correlated"])
    claims = markdown_table(["paper's claim", "measured", "verdict"], [
        ["orthogonal: the attractors are exactly the components v_i",
         f"k = {dims}: every attractor within {SAME:g} of a component and every component attracts",
         verdict(agrees["orthogonal_attractors_are_components"])],
        ["orthogonal: fixed points are the 2^k − 1 u_S; those with S of size ≥ 2 unstable (ρ(J) = 2), "
         "v_i stable (ρ(J) = 0)",
         "root finder: " + ", ".join(f"{c['closed_form_found']}/{c['closed_form_fixed_points']}"
                                     for c in result["orthogonal"]) + " found, "
         + str(sum(c["found_not_in_closed_form"] for c in result["orthogonal"])) + " outside the closed form; "
         f"max radius error {fmt(max(c['max_radius_error'] for c in result['orthogonal']), 2)}",
         verdict(agrees["orthogonal_fixed_points_match_closed_form"])],
        [f"correlated components: spurious attractors (> {SPURIOUS_DEGREES:g}° from every component)",
         f"{n_spurious} of {len(result['correlated'])} tensors have one; in {n_orphaned} some component has no "
         f"attractor within {SPURIOUS_DEGREES:g}°",
         verdict(agrees["correlated_has_spurious_attractors"])],
        ["whitened: orthogonal, attractors exactly the whitened components, un-whitened they give the a_i",
         f"max ‖VᵀV − I‖ = {fmt(max(r['whitened']['orthogonality_error'] for r in result['correlated']), 2)}, "
         f"max distance of un-whitened attractor to a_i = "
         f"{fmt(max(r['whitened']['unwhitened_max_distance'] for r in result['correlated']), 2)}",
         verdict(agrees["whitened_attractors_are_components"])],
        ["(method) stable by Jacobian = attractors of the iteration", "every tensor, up to " + f"{SAME:g}",
         verdict(agrees["iteration_matches_jacobian"])],
    ])
    setting = (f"Orthogonal: d = k, weights log-uniform on [1, 10]. Correlated: d = k = {config['dim']}, unit "
               f"components with every pairwise cosine ρ, weights ratio^U(0,1), {config['seeds']} seed(s) per "
               f"setting (values per seed, comma-separated). {config['power_starts']} power-iteration starts and "
               f"{config['orthogonal_root_starts_per_bound']}·(2^d − 1) (orthogonal) or "
               f"{config['root_starts_per_bound']}·(2^d − 1) (correlated, whitened) Levenberg-Marquardt starts per "
               "tensor.")
    return (f"## power-landscape\n\n{CLAIM}\n\n{setting}\n\n{orthogonal}\n\n{correlated}\n\n{claims}\n\n"
            f"Wall time {result['wall_time_s']:.0f} s.")
