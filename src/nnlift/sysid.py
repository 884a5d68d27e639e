"""System identification: learn a two-layer network behind a black box by querying it with designed inputs.

NN-LIFT needs the score of the input density; when the user chooses the inputs it is exact and the guarantee of
Janzamin, Sedghi & Anandkumar (2015) holds as stated (the Stein's-lemma seed: "more relevant in the system ID
setting where p(x) is known ... open question: how to optimally select p(x)?"). `identify` queries the system at
x = s z, z ~ N(0, I); in z the score is the Hermite tensor He_m(z) exactly, and by Stein's lemma

    E[y_j He_m(z)] = s^m E[∇^m f_j(x)] = sum_i c_ij s^m |a_i|^m E[sigma^(m)(s a_i^T z + b_i)] â_i^{⊗m}.

1. Design (`design="auto"`): a pilot spends `pilot_share` of the budget spread over `PILOT_SCALES` and measures,
   for each scale s, the moment's signal-to-noise per query ||T||^2 / tr Cov: ||T||^2 from the inner products of
   the moments of disjoint folds of the pilot rows (unbiased), tr Cov from their spread. The largest scale whose
   SNR is not significantly below the best one is used (a jackknife test over the folds; `_pilot` says why the
   large scale is the default) and its pilot queries are kept. The order is the activation's.
2. Sequential queries: batches go alternately to two halves whose moment sums (`HermiteSums`) grow by addition, so
   old queries are never re-read. The sums are of residuals after a control variate, the responses' fit on the
   Hermite polynomials of degree <= 2 from other queries (`nnlift.hermite_sums`): it leaves the moment's mean
   unchanged and divides its variance by ~20 on relu networks. Each half's control uses only that half's queries (the
   pilot's folds: only their half's other folds), so the halves stay independent. After each batch both halves are
   decomposed (coupled CP over every output, `nnlift.tensor.coupled_cp`, from a random start and warm-started at the
   previous check's factors, the lower residual kept). Each half's estimate errs by ~sqrt(2) times the angle of the
   estimate from all queries, so two independent halves differ by ~2 times it: the reported direction's predicted
   |cos| to the truth is cos(theta_12 / 2), theta_12 the matched angle between the halves, a point prediction (not a
   bound: the ratio of the two errors' norms scatters around 1/2). Identification stops when that confidence reaches
   `tolerance` for every neuron and every neuron's weight is significantly non-zero, or when the budget is spent.
   Agreement alone is not evidence: at small d two halves of pure noise agree by chance (d = 1: always). The
   significance test is cross-fitted, so it holds whatever the system: each half's directions A (and output mixes)
   are fixed by that half alone, and the other half's moment gives each neuron's joint least-squares weight G^{-1}
   T(a_l, ..., a_l) (G = (A^T A)^{∘m}), which has mean zero when the system has no such component, also when other
   components are correlated with it; its standard error comes from the per-query variance over all the other
   half's queries (computing it reads their projections, O(rows d k), not the moment sums).
   Every neuron's |z| in both directions must pass the Bonferroni level for 1% over all the checks the budget allows
   (`signal_threshold`; an intersection-union test needs no split over neurons), and no two neurons' terms may nearly
   cancel (a degenerate decomposition, `DEGENERATE_CONGRUENCE`; two true units whose terms nearly cancel, |cos|^m >=
   0.8 with opposite output weights, then stop only at the budget). The directions reported come from the moment of
   all queries.
3. The network: scale and bias per neuron by least squares (`nnlift.lift.scale_bias`), the output layer by least
   squares, then fine-tuned by the shared training loop (L-BFGS into the start's basin, then Gauss-Newton to its
   optimum: L-BFGS alone stalled short of it in the ill-conditioned valleys of low-noise fits, with up to 10x the
   optimum's excess error) and kept only if the tuned network does better on held-out queries; all on the first
   `fit_rows` queries at the design's scale and the pilot's queries at the other scales.
   After a budget stop the moment's start may be rough, so fine-tunes from `N_RANDOM_STARTS` random starts compete
   with it on the held-out queries (the report's `start` says which won). Then the held-out residual is tested for
   structure the network left (`nnlift.lift.reliability.residual_structure`); material structure means the system
   is not the stated network (too few hidden units, another activation), and `identify` warns, also after an
   "identified" stop: the halves can agree on the best rank-k fit of a moment that has more components.

The moment sums are dense (d^m numbers per output): the exact sufficient statistic that makes the stopping check
free of passes over old queries, unlike the estimators' implicit operators, which must re-read rows. That limits
d to `MAX_DENSE_DIM` (order 3: 100, i.e. 8 MB per output; order 4: 24).

`log=folder` writes every batch of queries (atomically, one file each); a later call with the same folder and
arguments replays them into the sums instead of querying the system again, and continues with the same queries an
uninterrupted run would have made (batch b draws z from the seed sequence (random_state, b)).
"""

from __future__ import annotations

import json
import numbers
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.special
import scipy.stats
import torch
from sklearn.base import RegressorMixin

from ._io import atomic_write, write_json
from ._progress import ProgressReport
from ._training import TwoLayerParams, predict_two_layer, random_init, train_two_layer
from .activations import get_activation
from .hermite_sums import HermiteSums, LowOrderFit
from .lift.estimator import NNLiftWarning
from .lift.first_layer import choose_order
from .lift.output_layer import hidden_features
from .lift.reliability import residual_has_structure, residual_structure
from .lift.scale_bias import fit_scale_bias
from .metrics import weight_recovery
from .tensor._multilinear import contract_dense
from .tensor.coupled import coupled_cp

__all__ = ["identify", "IdentifiedNetwork", "IdentificationReport", "HermiteSums", "MAX_DENSE_DIM",
           "PILOT_SCALES", "DEGENERATE_CONGRUENCE"]

MAX_DENSE_DIM = {3: 100, 4: 24}
PILOT_SCALES = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
DEGENERATE_CONGRUENCE = -0.8  # two rank-one terms this close to cancelling block an "identified" stop
_PILOT_FOLDS = 8
_CHECK_TOL = 1e-8
_FINETUNE_RELATIVE_TOL = 1e-8
_POLISH_TOL = 1e-10  # scipy's ftol, xtol and gtol on the Gauss-Newton polish
# Evaluations of the polish: from an L-BFGS end point in the optimum's basin it converged in 4-23 (softplus d = 10,
# 700 queries) and up to 90 at d = 50; in a wrong basin it crawls for its whole budget, at an SVD of the Jacobian each
_POLISH_EVALUATIONS = 100
# Only fine-tunes within this factor of the best one's held-out error are polished: the polish lowered an L-BFGS end
# point's loss by at most 5x in the probes, and one 10x worse sits in a wrong basin (a 10-output fit of 16,000
# queries takes ~4 s per Gauss-Newton step)
_POLISH_WITHIN = 10.0
_VALIDATION_SHARE = 0.2
_STRUCTURE_MATERIAL = 1e-3
_RANDOM_START_MARGIN = 0.01
# Random starts after a budget stop. Queries are what identification spends; a fine-tune costs no query, and with 3
# starts a wrong basin still won on 1 of 10 softplus d = 10 systems at 500 queries (6 found the planted one).
N_RANDOM_STARTS = 6


@dataclass
class IdentificationReport:
    """What `identify` did: queries used (pilot included), the design, the per-neuron confidence (the predicted |cos|
    of each reported direction to the truth, cos(theta_12 / 2) from the angle between the two halves'), why it
    stopped ("identified" or "budget"), one entry per check, queries replayed from the log, whether the
    fine-tuned network was kept and which start it came from (`start`: "moment", or "random-i" when after a budget
    stop a fine-tune from a random start did better on held-out queries), and whether the returned network fits
    (`network_fits`: False when its held-out residual still carries material structure, `residual_structure`,
    `_fit_verdict`). `signal`: at the last check, the smallest cross-fitted |z| of a neuron's weight (module
    docstring), which must reach `signal_threshold` for an "identified" stop; `congruence`: the smallest signed
    congruence of two neurons' terms, which must stay above DEGENERATE_CONGRUENCE (`_cross_fitted_signal`)."""

    queries: int
    design: dict
    stopping_reason: str
    confidence: list[float]
    history: list[dict] = field(default_factory=list)
    replayed_queries: int = 0
    finetuned: bool = False
    signal: float = float("nan")
    signal_threshold: float = float("nan")
    congruence: float = float("nan")
    start: str = "moment"
    residual_structure: dict = field(default_factory=dict)
    network_fits: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        design = self.design
        pilot = ", ".join(f"s={row['scale']:g}/m={row['order']}: {row['snr_per_query']:.3g}"
                          for row in design.get("pilot", []))
        lines = [f"stopped: {self.stopping_reason} after {self.queries:,} queries "
                 f"({self.replayed_queries:,} replayed from the log)",
                 f"design ({design['kind']}): x = s z, z ~ N(0, I), s = {design['scale']:g}, moment order "
                 f"{design['order']}" + (f"; pilot SNR per query {pilot}" if pilot else ""),
                 "per-neuron confidence (predicted |cos| to the truth): " + ", ".join(f"{c:.4f}"
                                                                                    for c in self.confidence),
                 f"weakest neuron's weight: {self.signal:.3g} standard errors from zero (an identified stop needs "
                 f">= {self.signal_threshold:.3g})" + ("" if self.signal >= self.signal_threshold else
                                                       "; below it, the queries show no component of this order "
                                                       "for at least one neuron (too few queries, fewer hidden "
                                                       "units than n_hidden, or no such structure)"),
                 *([f"two neurons' terms nearly cancel (congruence {self.congruence:.3f} <= "
                    f"{DEGENERATE_CONGRUENCE}): a degenerate decomposition, as when n_hidden exceeds the system's "
                    "hidden units; try a smaller n_hidden"] if self.congruence <= DEGENERATE_CONGRUENCE else []),
                 "held-out residual of the network: " + (
                     "no material structure left" if self.network_fits else
                     f"structure left along an order-{self.residual_structure.get('order')} Hermite feature (z = "
                     f"{self.residual_structure.get('z', float('nan')):.1f}): the system is not this network"),
                 "network: " + ("fine-tuned" if self.finetuned else "the start (fine-tuning did not help on "
                                                                     "held-out queries)")
                 + (" from the moment's directions" if self.start == "moment" else
                    f" from a random start ({self.start}), which did better on held-out queries than the moment's "
                    "directions")]
        return "\n".join(lines)


class IdentifiedNetwork(RegressorMixin):
    """The identified network sigma(x W + b) c + c0 in the system's units: `first_layer_` (d, k), `bias_` (k,),
    `coef_` ((k,) for outputs (m,), (k, p) for outputs (m, p), p = 1 included), `intercept_`, `activation`,
    `report_`; `predict` returns the system's output shape."""

    def __init__(self, params: TwoLayerParams, activation: str, report: IdentificationReport):
        self.first_layer_, self.bias_ = params.first_layer, params.bias
        self.coef_, self.intercept_ = params.coef, params.intercept
        self.activation = activation
        self.report_ = report
        self.n_features_in_ = params.first_layer.shape[0]

    def predict(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have shape (n, {self.n_features_in_}), got {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or inf")
        params = TwoLayerParams(self.first_layer_, self.bias_, self.coef_, self.intercept_)
        return predict_two_layer(params, X, self.activation)


def _fold_gram(folds: list[HermiteSums]) -> np.ndarray:
    """Inner products <T_f, T_g> of the moments of independent folds of the same design's queries."""
    flat = np.stack([fold.moments().ravel() for fold in folds])
    return flat @ flat.T


def _signal_to_noise(gram: np.ndarray, rows: np.ndarray) -> float:
    """||T||^2 / tr Cov per query from F independent folds: the mean of <T_f, T_g> over f != g estimates ||T||^2
    without bias, and sum_f n_f ||T_f - T_mean||^2 / (F - 1) estimates tr Cov (Var T_f = Cov / n_f)."""
    F = len(gram)
    signal = (gram.sum() - np.trace(gram)) / (F * (F - 1))
    deviations = np.diag(gram) - 2 * gram.mean(axis=1) + gram.mean()  # ||T_f - T_mean||^2
    noise = float(rows @ deviations) / (F - 1)
    return float(signal / noise) if noise > 0 else float("inf")


def _leave_one_out(gram: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The jackknife replicates: the SNR per query of every F - 1 of the F folds."""
    keep = [np.delete(np.arange(len(gram)), f) for f in range(len(gram))]
    return np.array([_signal_to_noise(gram[np.ix_(rest, rest)], rows[rest]) for rest in keep])


class _System:
    """The user's system as a function of an (m, d) float64 array to an (m, p) array, with its output checked."""

    def __init__(self, system, d: int):
        if not callable(system):
            raise TypeError(f"system must be a callable or a torch.nn.Module mapping (m, {d}) inputs to outputs, "
                            f"got {type(system).__name__}")
        self.system, self.d, self.n_outputs = system, d, None
        self.column = False  # the first outputs came as an (m, 1) column, not (m,)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        if isinstance(self.system, torch.nn.Module):
            parameter = next(self.system.parameters(), None)
            dtype = torch.float32 if parameter is None else parameter.dtype
            device = "cpu" if parameter is None else parameter.device
            with torch.no_grad():
                Y = self.system(torch.as_tensor(X, dtype=dtype, device=device))
        else:
            Y = self.system(X.copy())
        Y = _as_outputs(Y)
        if Y.ndim == 2 and Y.shape[1] == 0:
            raise ValueError(f"the system returned shape {Y.shape}: no outputs to identify")
        if self.n_outputs is None:
            self.column = Y.ndim == 2
        Y = Y[:, None] if Y.ndim == 1 else Y
        if Y.ndim != 2 or Y.shape[0] != len(X):
            raise ValueError(f"the system returned shape {Y.shape} for {len(X)} queries; it must return one output "
                             "(m,) or several (m, p) per query")
        if self.n_outputs is not None and Y.shape[1] != self.n_outputs:
            raise ValueError(f"the system returned {Y.shape[1]} outputs per query, earlier {self.n_outputs}")
        if not np.isfinite(Y).all():
            row = int(np.flatnonzero(~np.isfinite(Y).all(axis=1))[0])
            raise ValueError(f"the system returned NaN or inf for query {row} of a batch (x = {X[row]})")
        self.n_outputs = Y.shape[1]
        return Y


def _as_outputs(Y) -> np.ndarray:
    """The system's outputs as a fresh float64 array (a copy: a system may reuse its output buffer), or a clear
    error for outputs that are not real numbers."""
    if isinstance(Y, tuple | dict):
        raise TypeError(f"the system returned a {type(Y).__name__}; it must return one array of outputs, (m,) or "
                        "(m, p) (for a module with several heads, wrap it to return one of them or their stack)")
    if isinstance(Y, torch.Tensor):
        Y = Y.detach().resolve_conj().cpu().numpy() if Y.is_complex() else Y.detach().to("cpu", torch.float64).numpy()
    if np.iscomplexobj(Y):
        raise ValueError("the system returned complex outputs; identify fits real outputs (pass the real and "
                         "imaginary parts as two outputs)")
    try:
        return np.array(Y, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"the system's outputs must be real numbers, (m,) or (m, p); got {type(Y).__name__} that "
                        f"does not convert to float64 ({error})") from None


class _QueryLog:
    """One .npz per batch (X in the system's units, Y) in a folder with a JSON header naming the call's settings."""

    def __init__(self, folder, settings: dict):
        self.folder = None if folder is None else Path(folder)
        self.settings = settings
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        header = self.folder / "identify.json"
        if header.exists():
            saved = json.loads(header.read_text())
            if saved != settings:
                changed = sorted(k for k in settings if saved.get(k) != settings[k])
                raise ValueError(f"the query log in {self.folder} was written with other settings ({changed}); use "
                                 "another folder or the same arguments to resume")
        else:
            write_json(header, settings)

    def read(self, index: int):
        if self.folder is None or not (path := self._path(index)).exists():
            return None
        with np.load(path, allow_pickle=False) as data:
            return data["X"], data["Y"]

    def write(self, index: int, X: np.ndarray, Y: np.ndarray) -> None:
        if self.folder is not None:
            def save(tmp: str) -> None:
                with open(tmp, "wb") as handle:
                    np.savez(handle, X=X, Y=Y)
            atomic_write(self._path(index), save)

    def _path(self, index: int) -> Path:
        return self.folder / f"batch_{index:06d}.npz"


def identify(system, n_features: int, n_hidden: int, *, activation: str = "tanh", budget: int = 200_000,
             batch_size: int = 5_000, design="auto", order="auto", tolerance: float = 0.99,
             pilot_share: float = 0.1, fit_rows: int = 20_000, finetune: bool = True, max_iter: int = 1000,
             log=None, random_state=0, verbose: int = 1) -> tuple[IdentifiedNetwork, IdentificationReport]:
    """Identify the two-layer network behind `system` (module docstring); returns the network and the report.

    `system`: a callable or `torch.nn.Module` mapping an (m, n_features) array to (m,) or (m, p) outputs, noisy or
    not. `design`: "auto" (the pilot chooses s), "standard" (N(0, I)) or a scale s > 0 (N(0, s^2 I)). `order`:
    "auto" (the highest of the orders the activation's `choose_order` allows and `MAX_DENSE_DIM` permits: 4 for
    relu, gelu and softplus up to d = 24, else 3) or 3 / 4.
    `tolerance`: the predicted |cos| of every reported direction to the truth at which querying stops (module
    docstring). `log`: a folder for the query log (resume; needs an integer `random_state`). `random_state` seeds
    every query (None: fresh ones).
    """
    get_activation(activation)
    d, k, budget, batch_size, fit_rows, max_iter = (_count(value, name) for value, name in (
        (n_features, "n_features"), (n_hidden, "n_hidden"), (budget, "budget"), (batch_size, "batch_size"),
        (fit_rows, "fit_rows"), (max_iter, "max_iter")))
    if not isinstance(finetune, bool | np.bool_):
        raise TypeError(f"finetune must be True or False, got {finetune!r}")
    for value, name in ((tolerance, "tolerance"), (pilot_share, "pilot_share")):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a number, got {value!r}")
    if random_state is not None and (isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral)
                                     or random_state < 0):
        raise ValueError(f"random_state must be None or a non-negative integer (batch b of queries is drawn from the "
                         f"seed sequence (random_state, b), which a log replays), got {random_state!r}")
    if not 1 <= k <= d:
        raise ValueError(f"n_hidden={k} must be between 1 and n_features={d}: the moment's CP decomposition "
                         "recovers at most d linearly independent directions")
    chosen_order = _moment_order(activation, order, d)
    if batch_size < 2 * d or budget < 4 * batch_size:
        raise ValueError(f"batch_size={batch_size} must be at least 2 n_features and budget={budget} at least 4 "
                         "batches: the stopping check compares two halves of at least one batch each")
    if not 0 < tolerance < 1 or not 0 <= pilot_share < 0.5:
        raise ValueError(f"tolerance must be in (0, 1) and pilot_share in [0, 0.5), got {tolerance}, {pilot_share}")
    n_weights = k * (d + 2) + 1
    if fit_rows < n_weights:
        raise ValueError(f"fit_rows={fit_rows} is below the {n_weights} weights of a one-output network with these "
                         "sizes; the output layer and the fine-tune need more queries than weights")
    kind, scale = _design_kind(design)
    pilot_rows = max(2 * _PILOT_FOLDS, 2 * d, int(pilot_share * budget) // len(PILOT_SCALES))
    if kind == "auto" and len(PILOT_SCALES) * pilot_rows + 2 * batch_size > budget:
        raise ValueError(f"budget={budget} cannot pay for the pilot ({len(PILOT_SCALES)} scales x {pilot_rows} "
                         f"queries) and two batches of {batch_size}; raise the budget or give a fixed design "
                         "(design='standard' or a scale s)")
    if log is not None and random_state is None:
        raise ValueError("a query log needs an integer random_state: resuming replays the same queries")
    settings = {"n_features": d, "n_hidden": k, "activation": activation, "budget": budget,
                "batch_size": batch_size, "design": design if isinstance(design, str) else float(design),
                "order": str(order), "tolerance": tolerance, "pilot_share": pilot_share, "random_state": random_state}
    run = _Run(_System(system, d), d, batch_size, _QueryLog(log, settings), random_state)
    run.budget = budget
    total_batches = budget // batch_size + (len(PILOT_SCALES) if kind == "auto" else 0)
    with ProgressReport("identifying", total_batches, verbose, unit="batches") as progress:
        run.progress = progress
        pilot, halves = [], None
        if kind == "auto":
            scale, pilot, halves = _pilot(run, chosen_order, pilot_rows)
        design_info = {"kind": kind, "scale": scale, "order": chosen_order, "pilot": pilot}
        progress.log(f"design: x = {scale:g} z, z ~ N(0, I), moment order {chosen_order} ({kind})")
        threshold = _signal_threshold(budget // batch_size)
        halves, history, reason, warm = run.sequential(scale, chosen_order, k, tolerance, halves, threshold)
        directions, confidence = _directions(halves, k, run.seed, warm)
        reason_words = {"identified": "identified: the two halves agree", "budget": "the budget is spent"}[reason]
        progress.finish(f"{reason_words} after {run.queries:,} queries, confidence min {min(confidence):.4f}")
    report = IdentificationReport(run.queries, design_info, reason, confidence, history, run.replayed,
                                  signal=history[-1]["signal"] if history else float("nan"),
                                  signal_threshold=threshold,
                                  congruence=history[-1]["congruence"] if history else float("nan"))
    if reason == "budget":
        warnings.warn(NNLiftWarning(_unconfirmed_message(report, budget, tolerance)), stacklevel=2)
    X_fit, Y_fit = run.kept(scale, fit_rows)
    params, report.finetuned, report.start, report.residual_structure = _network(
        X_fit / scale, Y_fit, directions, activation, finetune, max_iter, random_state,
        random_starts=N_RANDOM_STARTS if reason == "budget" else 0)
    report.network_fits = _fit_verdict(report.residual_structure)
    if not report.network_fits:
        structure = report.residual_structure
        warnings.warn(NNLiftWarning(
            f"the returned network does not fit the system: its held-out residual still correlates with an "
            f"order-{structure['order']} Hermite feature of the queries (z = {structure['z']:.1f}, "
            f"{structure['explained']:.1%} of the residual's mean square, which is "
            f"{structure['residual_mean_square']:.2g} of output {structure['output']}'s variance). The moment's "
            f"directions may agree, but the system is not a two-layer {activation} network with {k} hidden units: "
            "try a larger n_hidden or another activation"), stacklevel=2)
    single = params.coef.shape[1] == 1 and not run.system.column  # outputs (m,): coef (k,), intercept a float
    params = TwoLayerParams(params.first_layer / scale, params.bias, params.coef[:, 0] if single else params.coef,
                            float(params.intercept[0]) if single else params.intercept)
    return IdentifiedNetwork(params, activation, report), report


def _fit_verdict(structure: dict) -> bool:
    """False when the held-out residual carries structure that is significant and material by the estimators' rule
    (`residual_has_structure`: z > 5 and >= 0.5% of the residual's mean square) and also material against the
    outputs: >= `_STRUCTURE_MATERIAL` of their variance. The last condition keeps a noiseless system's near-exact fit
    from being flagged: its residual is all structure, but ~1e-11 of the variance (a one-off probe, tanh d = 6: z = 10
    on 5% of it; tests/test_sysid.py::test_a_noiseless_identification_warns_about_nothing)."""
    return not (residual_has_structure(structure)
                and structure["explained"] * structure["residual_mean_square"] >= _STRUCTURE_MATERIAL)


def _unconfirmed_message(report: IdentificationReport, budget: int, tolerance: float) -> str:
    """Why a budget stop is not an identification, and what to do."""
    unmet = []
    if min(report.confidence) < tolerance:
        unmet.append(f"the halves' directions agree only to a predicted |cos| of {min(report.confidence):.3f} < "
                     f"tolerance {tolerance}")
    if not report.signal >= report.signal_threshold:
        unmet.append(f"the weakest neuron's weight is {report.signal:.2g} standard errors from zero < "
                     f"{report.signal_threshold:.2g}")
    if report.congruence <= DEGENERATE_CONGRUENCE:
        unmet.append(f"two neurons' terms nearly cancel (congruence {report.congruence:.2f})")
    return (f"identify spent its budget of {budget:,} queries without confirming the network ("
            + "; ".join(unmet or ["the last check did not pass"]) + "): the returned network fits the queries but "
            "is not identified. Raise the budget, or check n_hidden and the activation; model.report_ says more")


def _moment_order(activation: str, order, d: int) -> int:
    """The moment order: the one asked, or the highest the activation's `choose_order` allows within MAX_DENSE_DIM
    (the higher order when both are allowed: the odd part of relu-like activations vanishes at zero bias)."""
    if order == "auto":
        natural = choose_order(activation)
        allowed = tuple(m for m in ((natural,) if isinstance(natural, int) else natural) if d <= MAX_DENSE_DIM[m])
        if not allowed:
            raise ValueError(f"n_features={d} is above {MAX_DENSE_DIM[3]}, the largest d whose dense order-3 moment "
                             "sums identify keeps")
        return max(allowed)
    if isinstance(order, bool) or not isinstance(order, numbers.Integral) or order not in (3, 4):
        raise ValueError(f"order must be 'auto', 3 or 4, got {order!r}")
    order = int(order)
    if d > MAX_DENSE_DIM[order]:
        raise ValueError(f"order {order} keeps d^{order} sums per output: n_features={d} is above "
                         f"{MAX_DENSE_DIM[order]}; use order=3")
    return order


def _design_kind(design) -> tuple[str, float]:
    if design == "auto":
        return "auto", float("nan")
    if design == "standard":
        return "standard", 1.0
    if isinstance(design, numbers.Real) and not isinstance(design, bool) and 0 < design < np.inf:
        return "fixed", float(design)
    raise ValueError(f"design must be 'auto', 'standard' or a positive, finite scale s, got {design!r}")


def _count(value, name: str) -> int:
    """A positive integer argument (a whole float such as 2e5 counts), refused, not rounded, otherwise."""
    whole = isinstance(value, numbers.Integral) or (isinstance(value, numbers.Real) and float(value).is_integer())
    if isinstance(value, bool) or not whole or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class _Run:
    """Batches of queries: drawn from the seed sequence (random_state, batch index), read from the log when there,
    else asked of the system and logged, and kept for the network fit (`kept`)."""

    def __init__(self, system: _System, d: int, batch_size: int, log: _QueryLog, random_state):
        self.system, self.d, self.batch_size, self.log = system, d, batch_size, log
        self.seed = np.random.SeedSequence().entropy if random_state is None else random_state
        self.index = self.queries = self.replayed = 0
        self.budget = 0
        self.saved: dict[float, list] = {}  # per scale: (Z in z units, Y) of every batch
        # per half of the sequential sums: (Z, R) of each batch it was given, R the residuals its sums took
        self.half_rows: tuple[list, list] = ([], [])
        self.progress = None
        self.lowest = self.highest = None
        self.unit = None  # per output, fixed by `set_unit`

    def batch(self, scale: float, rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The next batch (`rows` queries, default `batch_size`) in z units and its responses (m, p)."""
        Z = np.random.default_rng([self.seed, self.index]).standard_normal((rows or self.batch_size, self.d))
        logged = self.log.read(self.index)
        if logged is not None and np.allclose(logged[0], scale * Z, rtol=0, atol=1e-12 * max(scale, 1.0)):
            Y = logged[1]
            if self.system.n_outputs is None:  # the log keeps the system's output shape, (m,) or (m, p)
                self.system.column = Y.ndim == 2
            Y = Y[:, None] if Y.ndim == 1 else Y
            self.replayed += len(Y)
        else:
            Y = self.system(scale * Z)
            self.log.write(self.index, scale * Z, Y if self.system.column or Y.shape[1] > 1 else Y[:, 0])
        self.index += 1
        self.queries += len(Y)
        self.saved.setdefault(scale, []).append((Z, Y))
        self._check_not_constant(Y)
        self.progress.advance(f"{self.queries:,} queries")
        return Z, Y

    def set_unit(self, batches: list[tuple[np.ndarray, np.ndarray]], order: int) -> None:
        """Fix each output's unit: the root mean square, over `batches` (the pilot's, one per scale, or a fixed
        design's first batch), of the residual of its least-squares fit on the Hermite polynomials of degree <= 2,
        i.e. the spread of what the moment sums (`HermiteSums`); 1 where that is 0. The moments are linear in the
        outputs, so a unit changes no direction of one output; with several, it makes the joint decomposition
        independent of each output's units (an output in mm would otherwise outweigh one in m a thousand times),
        and, as the residual is mostly noise and higher-degree terms, weighs the outputs by how noisy their moments
        are. The outputs' own spread did not: a noisy output with a small signal got the weight of a clean one, and
        a 10-output tanh system stopped "identified" on a wrong network (min |cos| 0.989)."""
        squares = [np.mean((Y - LowOrderFit(self.d, Y.shape[1], order).of(Z, Y).predict(Z)) ** 2, axis=0)
                   for Z, Y in batches]
        spread = np.sqrt(np.mean(squares, axis=0))
        self.unit = np.where(spread > 0, spread, 1.0)

    def _check_not_constant(self, Y: np.ndarray) -> None:
        """Refuse, once two batches' worth of queries are in, an output that has not changed on any of them."""
        low, high = Y.min(axis=0), Y.max(axis=0)
        self.lowest = low if self.lowest is None else np.minimum(self.lowest, low)
        self.highest = high if self.highest is None else np.maximum(self.highest, high)
        constant = np.flatnonzero(self.highest == self.lowest)
        if self.queries >= 2 * self.batch_size and constant.size:
            raise ValueError(f"output(s) {constant.tolist()} of the system were constant on all {self.queries:,} "
                             "queries so far: there is nothing to identify there")

    def kept(self, scale: float, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """The first `rows` queries at the design's `scale` and every pilot query at the other scales: the network
        is fitted over the whole range the pilot probed (s = 0.5 to 4), not only at the design's scale."""
        parts = [(scale * np.concatenate([z for z, _ in self.saved[scale]])[:rows],
                  np.concatenate([y for _, y in self.saved[scale]])[:rows])]
        parts += [(other * z, y) for other, batches in self.saved.items() if other != scale for z, y in batches]
        return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])

    def sequential(self, scale, order, k, tolerance, halves, threshold):
        """Batches into the smaller of two halves (started from the pilot's, if any) until their directions agree
        and every neuron's cross-fitted weight passes `threshold` standard errors, or the budget is spent."""
        history, warm = [], [None, None]
        while self.queries + self.batch_size <= self.budget:
            Z, Y = self.batch(scale)
            if self.unit is None:
                self.set_unit([(Z, Y)], order)
            Y = Y / self.unit
            if halves is None:
                halves = [HermiteSums(self.d, Y.shape[1], order) for _ in range(2)]
            smaller = 0 if halves[0].n <= halves[1].n else 1
            self.half_rows[smaller].append((Z, halves[smaller].add(Z, Y)))
            if min(h.n for h in halves) == 0:
                continue
            moments = [half.moments() for half in halves]
            warm = [_decompose(moment, k, [self.seed, len(history)], start)
                    for moment, start in zip(moments, warm, strict=True)]
            confidence = _predicted_cosine(weight_recovery(*warm).cosines)
            if confidence.min() >= tolerance:  # the halves agree: check the whole moment's directions too
                confidence = np.asarray(_directions(halves, k, self.seed, warm)[1])
            signal, congruence = _cross_fitted_signal(moments, warm, self.half_rows)
            history.append({"queries": self.queries, "confidence": float(confidence.min()), "signal": signal,
                            "congruence": congruence})
            if confidence.min() >= tolerance and signal >= threshold and congruence > DEGENERATE_CONGRUENCE:
                return halves, history, "identified", warm
        return halves, history, "budget", warm


def _pilot(run: _Run, order: int, rows: int):
    """`rows` queries at each of PILOT_SCALES, split into `_PILOT_FOLDS` folds; returns the chosen scale, the table of
    every scale and the chosen scale's two halves (its even and odd folds).

    The chosen scale is the largest whose SNR per query is not significantly below the highest one: below it by more
    than the one-sided 95% t quantile times the jackknife standard error of the difference (folds paired; Efron &
    Stein 1981). For tanh, relu, softplus and their kin the weakest neuron's signal grows with s and saturates once
    s |a_i| is past the activation's curvature (sigma^(m) of a wide Gaussian is the homogeneous limit), while at a
    small budget the pilot's estimates are mostly noise; the pilot then keeps the large scale, and moves down only
    where the data say a smaller scale is better. The total ||T||^2 is not a safe guide across orders: it can be
    dominated by a few neurons while others vanish (relu's order-3 weights are phi'(b_i / (s |a_i|)), zero at b_i = 0),
    so the order is the activation's (`_orders`), not the pilot's.
    """
    table = []
    batches = {scale: run.batch(scale, rows) for scale in PILOT_SCALES}
    run.set_unit(list(batches.values()), order)
    for scale, (Z, Y) in batches.items():
        folds, residuals = _pilot_folds(Z, Y / run.unit, order)
        gram, counts = _fold_gram(folds), np.array([fold.n for fold in folds], dtype=np.float64)
        table.append({"scale": scale, "order": order, "snr_per_query": _signal_to_noise(gram, counts),
                      "replicates": _leave_one_out(gram, counts), "folds": folds, "rows": (Z, residuals)})
    best = max(table, key=lambda row: row["snr_per_query"])
    t_quantile = float(scipy.stats.t.ppf(0.95, _PILOT_FOLDS - 1))
    for row in table:
        differences = best["replicates"] - row["replicates"]
        row["stderr_vs_best"] = float(np.sqrt((_PILOT_FOLDS - 1) * np.var(differences)))
        row["worse_than_best"] = bool(best["snr_per_query"] - row["snr_per_query"]
                                      > t_quantile * row["stderr_vs_best"])
    chosen = max((row for row in table if not row["worse_than_best"]), key=lambda row: row["scale"])
    run.progress.log("pilot SNR per query: " + ", ".join(f"s={row['scale']:g}: {row['snr_per_query']:.3g}"
                                                        for row in table))
    public = [{key: value for key, value in row.items() if key not in ("folds", "replicates", "rows")}
              for row in table]
    folds = chosen["folds"]
    halves = [sum(folds[2::2], folds[0]), sum(folds[3::2], folds[1])]
    Z, residuals = chosen["rows"]
    for half in (0, 1):  # the even folds are the even rows
        run.half_rows[half].append((Z[half::2], residuals[half::2]))
    return chosen["scale"], public, halves


def _pilot_folds(Z: np.ndarray, Y: np.ndarray, order: int) -> tuple[list[HermiteSums], np.ndarray]:
    """The pilot's `_PILOT_FOLDS` folds of one scale's queries (fold f: rows f, f + F, ...) and the residuals each
    row was summed with. A fold's control is also fitted on the other folds of its half (the even or the odd folds,
    which become the two halves), so the halves' sums stay independent."""
    folds = [HermiteSums(Z.shape[1], Y.shape[1], order) for _ in range(_PILOT_FOLDS)]
    stats = [LowOrderFit(Z.shape[1], Y.shape[1], order).of(Z[f::_PILOT_FOLDS], Y[f::_PILOT_FOLDS])
             for f in range(_PILOT_FOLDS)]
    parity = [sum(stats[first + 2::2], stats[first]) for first in (0, 1)]
    residuals = np.empty_like(Y, dtype=np.float64)
    for f, fold in enumerate(folds):
        residuals[f::_PILOT_FOLDS] = fold.add(Z[f::_PILOT_FOLDS], Y[f::_PILOT_FOLDS], others=parity[f % 2] - stats[f])
    return folds, residuals


def _signal_threshold(checks: int, level: float = 0.01) -> float:
    """The two-sided normal quantile at `level` split (Bonferroni) over the `checks` the budget allows. No split over
    neurons or cross-fits: a stop needs every one of those tests to pass, an intersection-union test (Berger
    1982), so a system that lacks any one neuron passes a check with at most that neuron's single-test level."""
    return float(scipy.stats.norm.isf(level / (2 * max(checks, 1))))


def _cross_fitted_signal(moments: list[np.ndarray], directions: list[np.ndarray],
                         half_rows: tuple[list, list]) -> tuple[float, float]:
    """The smallest |z| over neurons and both cross-fits (`_cross_fitted_scores`), and the smallest congruence."""
    scores, congruence = _cross_fitted_scores(moments, directions, half_rows)
    return float(np.min(np.abs(scores))), congruence


def _cross_fitted_scores(moments: list[np.ndarray], directions: list[np.ndarray],
                         half_rows: tuple[list, list]) -> tuple[np.ndarray, float]:
    """(2, k) z-scores, one per cross-fit and neuron, of a neuron's joint least-squares weight: half h's unit
    directions A fix the Gram matrix G = (A^T A)^{∘m} of their rank-one tensors and each neuron's output mix u_i (its
    weights over the outputs in half h's own moment, normalised); the other half's moment gives the weights
    G^{-1} [u_i^T T_j(a_l, ..., a_l)]_l, which are zero for a neuron the system lacks even when the others are
    correlated with it. The standard error comes from the per-query values (r - mean r) u_i (G^{-1} He_m(A^T z))_i
    over every query of the other half (`half_rows`: its batches' z and the residuals r its sums were given), so
    near-collinear directions (a degenerate decomposition) inflate it (module docstring). All of them, not a recent
    window: a half's first batches, controlled by a fit on few queries, keep larger residuals in its sums for good,
    and a window of the latest queries underestimated the variance (var(z) = 2.2 on relu d = 10 after 30k queries).
    Also returns the smallest signed congruence of two neurons' rank-one terms in either half, cos(a_i, a_j)^m times
    the cosine of their output weights: near -1 the two terms cancel, the mark of a degenerate CP decomposition
    (Krijnen, Dijkstra & Stegeman 2008), which is what asking for more hidden units than the system has gives."""
    order = moments[0].ndim - 1
    scores, congruence = [], 1.0
    for own, other, other_rows, A in ((moments[0], moments[1], half_rows[1], directions[0]),
                                      (moments[1], moments[0], half_rows[0], directions[1])):
        Z, R = (np.concatenate(parts) for parts in zip(*other_rows, strict=True))
        centred = R - R.mean(axis=0)
        inverse = np.linalg.pinv((A.T @ A) ** order)
        own_rhs, other_rhs = (np.stack([np.einsum("ij,ij->j", A, contract_dense(t, A)) for t in moment])
                              for moment in (own, other))  # (p, k): T_j(a_l, ..., a_l)
        own_weights = inverse @ own_rhs.T  # (k, p)
        mix = own_weights.T / np.maximum(np.linalg.norm(own_weights, axis=1), np.finfo(float).tiny)  # (p, k)
        estimate = np.diag(inverse @ other_rhs.T @ mix)
        # He_m(z)(a, ..., a) = He_m(a^T z) for a unit a: the scalar probabilists' Hermite polynomial
        per_query = (centred @ mix) * (scipy.special.eval_hermitenorm(order, Z @ A) @ inverse.T)
        stderr = np.sqrt(per_query.var(axis=0, ddof=1) / len(Z))
        scores.append(estimate / np.maximum(stderr, np.finfo(float).tiny))
        pairs = (A.T @ A) ** order * (mix.T @ mix)
        if len(pairs) > 1:
            congruence = min(congruence, float(np.min(pairs[~np.eye(len(pairs), dtype=bool)])))
    return np.array(scores), congruence


def _decompose(moment: np.ndarray, k: int, seed, warm: np.ndarray | None) -> np.ndarray:
    """Unit factors of a moment: from a random start (`seed`) and warm-started at `warm` (the previous check's
    factors; None: none), the lowest coupled residual wins. The warm start alone can stay in the basin an early,
    noisier check found (tanh d20 k5, p = 10: "identified" at 45k instead of 35k when the random start ran only every
    fourth check); the random start alone can land in a wrong basin while the halves are right."""
    fits = [coupled_cp(moment, k, random_state=seed, tol=_CHECK_TOL)]
    if warm is not None:
        fits.append(coupled_cp(moment, k, init=warm, tol=_CHECK_TOL))
    return min(fits, key=lambda fit: fit.residual).factors


def _predicted_cosine(agreement) -> np.ndarray:
    """cos(theta_12 / 2): the predicted |cos| to the truth of the direction estimated from both halves together."""
    return np.cos(np.arccos(np.clip(np.asarray(agreement, dtype=np.float64), 0.0, 1.0)) / 2)


def _directions(halves: list[HermiteSums], k: int, seed, warm=(None, None)) -> tuple[np.ndarray, list[float]]:
    """Unit directions from the moment of all queries and each one's confidence.

    The whole moment is decomposed from a random start and warm-started from each half's factors; the lowest coupled
    residual wins (one start alone can land in a wrong basin while both halves are right). A direction's confidence
    is `_predicted_cosine` of the matched |cos| between the halves' directions for it, provided the direction agrees
    with each half at least as well as the halves agree with each other (as independent noise predicts); otherwise
    it is that smaller agreement, which blocks an "identified" stop.
    """
    moment = (halves[0] + halves[1]).moments()
    found = [_decompose(half.moments(), k, seed, start) for half, start in zip(halves, warm, strict=True)]
    candidates = [coupled_cp(moment, k, random_state=seed)] + [coupled_cp(moment, k, init=f) for f in found]
    full = min(candidates, key=lambda fit: fit.residual).factors
    first, second = (weight_recovery(full, half) for half in found)
    agreement = np.array([float(abs(found[0][:, i] @ found[1][:, j])) if i >= 0 and j >= 0 else 0.0
                          for i, j in zip(first.matching, second.matching, strict=True)])
    consistency = np.minimum(first.cosines, second.cosines)
    confidence = np.where(consistency >= agreement, _predicted_cosine(agreement), consistency)
    return full, confidence.tolist()


def _network(Z: np.ndarray, Y: np.ndarray, directions: np.ndarray, activation: str, finetune: bool,
             max_iter: int, seed, random_starts: int = 0) -> tuple[TwoLayerParams, bool, str, dict]:
    """Scale/bias by least squares on the outputs' first principal combination, the output layer by least squares,
    then a fine-tune (L-BFGS, then a Gauss-Newton polish of those within `_POLISH_WITHIN` of the best held-out
    error) kept only if it lowers the held-out error; in z units, outputs (n, p) in the system's units.

    `random_starts` > 0 (an unconfirmed stop): that many fine-tunes from LeCun-normal starts compete with the
    moment's start on the held-out queries; one replaces it only if its held-out error is lower by more than
    `_RANDOM_START_MARGIN` (relative), since both often end at the same optimum. Returns the network, whether it
    is a fine-tune, which start it came from ("moment" or "random-i"), and the structure left in its held-out
    residual (`_residual_structure`, on the standardised outputs)."""
    mean, spread = Y.mean(axis=0), Y.std(axis=0)
    if not np.all(spread > 0):
        raise ValueError(f"output(s) {np.flatnonzero(~(spread > 0)).tolist()} of the system are constant on the "
                         "queries: there is nothing to identify there")
    T = (Y - mean) / spread
    order = np.random.default_rng(seed).permutation(len(T))
    held = np.sort(order[:int(_VALIDATION_SHARE * len(T))])
    train = np.sort(order[int(_VALIDATION_SHARE * len(T)):])
    principal = T @ np.linalg.eigh(np.cov(T.T).reshape(T.shape[1], T.shape[1]))[1][:, -1]
    fitted = fit_scale_bias(Z[train], principal[train], directions, activation)
    first_layer = directions * fitted.scale
    H = np.column_stack([hidden_features(Z[train], first_layer, fitted.bias, activation), np.ones(len(train))])
    solution = np.linalg.lstsq(H, T[train], rcond=None)[0]
    start = TwoLayerParams(first_layer, fitted.bias, solution[:-1], solution[-1])

    def held_out_error(params: TwoLayerParams) -> float:
        return float(np.mean((predict_two_layer(params, Z[held], activation) - T[held]) ** 2))

    def rough(init: TwoLayerParams) -> TwoLayerParams:
        # the training loop's default test (a change of 1e-7 per iteration) ends far from the optimum when the fit
        # is close (the loss of standardised outputs ~ 1e-4 at low noise), so the test is relative to the start's
        init_loss = float(np.mean((predict_two_layer(init, Z[train], activation) - T[train]) ** 2))
        return train_two_layer(Z[train], T[train], init, activation, max_iter=max_iter,
                               tol=_FINETUNE_RELATIVE_TOL * init_loss, random_state=seed)[0]

    def polish(params: TwoLayerParams) -> TwoLayerParams:
        # L-BFGS steps are cheap from a random start; near the optimum they stall where Gauss-Newton converges
        return train_two_layer(Z[train], T[train], params, activation, optimizer="gauss_newton",
                               max_iter=min(max_iter, _POLISH_EVALUATIONS), tol=_POLISH_TOL)[0]

    tuned = []
    if finetune:
        tuned.append((rough(start), "moment"))
        rng = np.random.default_rng(seed)
        outputs = None if T.shape[1] == 1 else T.shape[1]
        for i in range(random_starts):
            init = random_init(Z.shape[1], directions.shape[1], outputs, rng)
            if outputs is None:
                init = TwoLayerParams(init.first_layer, init.bias, init.coef[:, None], np.zeros(1))
            tuned.append((rough(init), f"random-{i + 1}"))
        closest = min(held_out_error(params) for params, _ in tuned)
        tuned = [(polish(params) if held_out_error(params) <= _POLISH_WITHIN * closest else params, origin)
                 for params, origin in tuned]
    best, tuned_kept, origin = start, False, "moment"
    for params, name in tuned:
        # a random start replaces the moment's only if clearly better: both often end at the same optimum
        margin = 0.0 if name == "moment" else _RANDOM_START_MARGIN
        if held_out_error(params) < (1 - margin) * held_out_error(best):
            best, tuned_kept, origin = params, True, name
    structure = _residual_structure(best, Z, T, train, held, activation, seed)
    return TwoLayerParams(best.first_layer, best.bias, best.coef * spread, best.intercept * spread + mean), \
        tuned_kept, origin, structure


def _residual_structure(params: TwoLayerParams, Z, T, train, held, activation: str, seed) -> dict:
    """`residual_structure` of each standardised output alone, with that output's held-out residual mean square;
    the output whose structure is the largest share of its variance."""
    found = []
    for j in range(T.shape[1]):
        column = TwoLayerParams(params.first_layer, params.bias, params.coef[:, j:j + 1], params.intercept[j:j + 1])
        structure = residual_structure(column, (Z[train], T[train, j:j + 1]), (Z[held], T[held, j:j + 1]),
                                       activation, "mse", seed)
        residual = predict_two_layer(column, Z[held], activation).reshape(-1) - T[held, j]
        found.append(structure | {"output": j, "residual_mean_square": float(np.mean(residual**2))})
    return max(found, key=lambda s: (not _fit_verdict(s), s["explained"] * s["residual_mean_square"]))
