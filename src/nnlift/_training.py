"""The one gradient-training loop for two-layer networks f(x) = sigma(x^T W + b) c + c0.

Both the NN-LIFT fine-tuning step and the backprop baseline call `train_two_layer`, so that any difference
between them comes from the initialisation, never from the optimiser, the loss or the stopping rule.

The training objective is

    F(theta) = mean_i loss(f(x_i), y_i) + alpha / 2 * (||W||_F^2 + ||c||^2),

an L2 penalty on the weights W and c but not on the biases b and c0. `loss` is the squared error ("mse",
averaged over rows and outputs), the binary log-loss on the logit f(x) ("logistic", y in {0, 1}) or the
multinomial log-loss on the logits f(x) in R^C ("cross_entropy", y in {0, ..., C-1}).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.validation import _check_sample_weight

from ._backend import resolve_device, resolve_dtype, to_tensor
from ._gauss_newton import gauss_newton
from ._progress import ProgressReport
from .activations import Activation, get_activation

__all__ = ["TwoLayerParams", "predict_two_layer", "random_init", "loss_and_grad", "train_two_layer", "LOSSES",
           "OPTIMIZERS", "OPTIMIZERS_FOR_ANY_LOSS"]

LOSSES = ("mse", "logistic", "cross_entropy")
OPTIMIZERS = ("lbfgs", "adam", "gauss_newton")
OPTIMIZERS_FOR_ANY_LOSS = ("lbfgs", "adam")  # gauss_newton minimises sums of squares only
_PARAM_NAMES = ("first_layer", "bias", "coef", "intercept")
_DEFAULT_LR = {"lbfgs": 1.0, "adam": 1e-3}


@dataclass(frozen=True)
class TwoLayerParams:
    """Parameters of f(x) = sigma(x^T W + b) c + c0, stored as float64 numpy copies.

    `first_layer` W is (d, k) with one column per hidden neuron, `bias` b is (k,), `coef` c is (k,) for a
    scalar output or (k, C) for C outputs, and `intercept` c0 is a float or (C,) to match.
    """

    first_layer: np.ndarray
    bias: np.ndarray
    coef: np.ndarray
    intercept: float | np.ndarray = field(default=0.0)

    def __post_init__(self):
        W = np.array(self.first_layer, dtype=np.float64)
        b = np.array(self.bias, dtype=np.float64)
        c = np.array(self.coef, dtype=np.float64)
        c0 = np.array(self.intercept, dtype=np.float64)
        if W.ndim != 2:
            raise ValueError(f"first_layer must be 2-D (d, k), got shape {W.shape}")
        k = W.shape[1]
        if b.shape != (k,):
            raise ValueError(f"bias must have shape ({k},), got {b.shape}")
        if c.ndim not in (1, 2) or c.shape[0] != k:
            raise ValueError(f"coef must have shape ({k},) or ({k}, C), got {c.shape}")
        expected = () if c.ndim == 1 else (c.shape[1],)
        if c0.shape != expected:
            raise ValueError(f"intercept must have shape {expected} to match coef {c.shape}, got {c0.shape}")
        object.__setattr__(self, "first_layer", W)
        object.__setattr__(self, "bias", b)
        object.__setattr__(self, "coef", c)
        object.__setattr__(self, "intercept", float(c0) if c.ndim == 1 else c0)

    @property
    def n_features(self) -> int:
        return self.first_layer.shape[0]

    @property
    def n_hidden(self) -> int:
        return self.first_layer.shape[1]

    @property
    def out_dim(self) -> int | None:
        """None for a scalar output, else the number C of outputs."""
        return None if self.coef.ndim == 1 else self.coef.shape[1]


def predict_two_layer(params: TwoLayerParams, X, activation: str | Activation) -> np.ndarray:
    """Network output sigma(X W + b) c + c0: (n,) or (n, C); raw logits for the classification losses."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != params.n_features:
        raise ValueError(f"X must have shape (n, {params.n_features}), got {X.shape}")
    act = get_activation(activation)
    return act.numpy(X @ params.first_layer + params.bias) @ params.coef + params.intercept


def random_init(d: int, k: int, out_dim: int | None = None, rng=None) -> TwoLayerParams:
    """LeCun-normal initialisation (LeCun et al. 1998, "Efficient BackProp"), the standard fan-in scheme.

    W_ij ~ N(0, 1/d), b = 0, c ~ N(0, 1/k), c0 = 0; so every pre-activation x^T w_j has unit variance for
    standardised inputs. (PyTorch's own nn.Linear default instead draws weights and biases from
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)).) `out_dim` None gives a scalar output, an integer C gives C outputs;
    `rng` is a numpy Generator, a legacy RandomState or a seed.
    """
    if d < 1 or k < 1 or (out_dim is not None and out_dim < 1):
        raise ValueError(f"d, k and out_dim must be positive, got d={d}, k={k}, out_dim={out_dim}")
    rng = _as_generator(rng)
    first_layer = rng.standard_normal((d, k)) / np.sqrt(d)
    coef_shape = (k,) if out_dim is None else (k, out_dim)
    coef = rng.standard_normal(coef_shape) / np.sqrt(k)
    intercept = 0.0 if out_dim is None else np.zeros(out_dim)
    return TwoLayerParams(first_layer, np.zeros(k), coef, intercept)


def _as_generator(random_state) -> np.random.Generator:
    """A numpy Generator from None, a seed, a Generator (used as is) or a legacy RandomState (drawn from)."""
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    return np.random.default_rng(random_state)


class _Objective:
    """Torch parameters and the objective F(theta) on given rows; the single definition used everywhere."""

    def __init__(self, init: TwoLayerParams, activation, loss, alpha, device, dtype, train_mask):
        self.act = get_activation(activation)
        self.loss = loss
        self.alpha = float(alpha)
        values = (init.first_layer, init.bias, init.coef, np.asarray(init.intercept))
        # L-BFGS flattens gradients with .view(-1), so parameters must be contiguous (init may be Fortran-ordered).
        self.params = [to_tensor(np.asarray(v, order="C"), device, dtype).requires_grad_(True) for v in values]
        self.masks = _resolve_masks(train_mask, self.params, device, dtype)

    def __call__(self, X: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """F(theta) on the rows (X, y); `weight` (mean 1 over all training rows) weights each row's loss."""
        W, b, c, c0 = self.params
        out = self.act.torch(X @ W + b) @ c + c0
        if self.loss == "mse":
            rows = (out - y) ** 2
            rows = rows.mean(dim=1) if rows.ndim > 1 else rows
        elif self.loss == "logistic":
            rows = F.binary_cross_entropy_with_logits(out, y, reduction="none")
        else:
            rows = F.cross_entropy(out, y, reduction="none")
        data = rows.mean() if weight is None else (weight * rows).mean()
        return data + 0.5 * self.alpha * (W.square().sum() + c.square().sum())

    def backward(self, value: torch.Tensor) -> None:
        for p in self.params:
            p.grad = None
        value.backward()
        for p, mask in zip(self.params, self.masks, strict=True):
            if mask is not None:
                p.grad.mul_(mask)

    def max_abs_grad(self) -> float:
        return max(float(p.grad.abs().max()) if p.grad.numel() else 0.0 for p in self.params)

    def to_params(self) -> TwoLayerParams:
        return TwoLayerParams(*(p.detach().cpu().numpy().astype(np.float64) for p in self.params))


def _resolve_masks(train_mask, params, device, dtype):
    """`train_mask` maps parameter names to True/False or to a boolean array broadcastable to the parameter."""
    if train_mask is None:
        return [None] * len(params)
    if not isinstance(train_mask, Mapping) or set(train_mask) - set(_PARAM_NAMES):
        raise ValueError(f"train_mask must be a mapping with keys among {_PARAM_NAMES}, got {train_mask!r}")
    masks = []
    for name, p in zip(_PARAM_NAMES, params, strict=True):
        mask = np.asarray(train_mask.get(name, True), dtype=bool)
        try:
            mask = np.broadcast_to(mask, tuple(p.shape))
        except ValueError:
            raise ValueError(f"train_mask[{name!r}] of shape {mask.shape} does not broadcast to the "
                             f"parameter shape {tuple(p.shape)}") from None
        masks.append(None if mask.all() else to_tensor(mask, device, dtype))
    return masks


def _check_inputs(X, y, init: TwoLayerParams, loss: str):
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[1] != init.n_features:
        raise ValueError(f"X must have shape (n, {init.n_features}) to match init.first_layer, got {X.shape}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    if X.shape[0] == 0:
        raise ValueError("cannot train on 0 rows")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or inf; remove or impute such rows before training")
    if loss == "cross_entropy":
        n_classes = init.out_dim
        if n_classes is None or n_classes < 2:
            raise ValueError("loss='cross_entropy' needs coef of shape (k, C) with C >= 2")
        if y.ndim != 1 or not np.all(np.isin(y, np.arange(n_classes))):
            raise ValueError(f"loss='cross_entropy' needs integer labels y in {{0, ..., {n_classes - 1}}}")
        return X, y.astype(np.int64)
    y = y.astype(np.float64)
    if not np.isfinite(y).all():
        raise ValueError("y contains NaN or inf; remove or impute such rows before training")
    if loss == "logistic":
        if init.out_dim is not None or y.ndim != 1 or not np.all((y == 0) | (y == 1)):
            raise ValueError("loss='logistic' needs a scalar-output coef of shape (k,) and labels y in {0, 1}")
    elif y.shape[1:] != init.coef.shape[1:]:
        raise ValueError(f"y of shape {y.shape} does not match the network output of coef {init.coef.shape}")
    return X, y


def _tensors(X, y, loss, device, dtype):
    Xt = to_tensor(X, device, dtype)
    yt = torch.as_tensor(y, device=device) if loss == "cross_entropy" else to_tensor(y, device, dtype)
    return Xt, yt


def loss_and_grad(params: TwoLayerParams, X, y, activation: str | Activation, *, loss: str = "mse",
                  alpha: float = 0.0, sample_weight=None, device="cpu", dtype=torch.float64
                  ) -> tuple[float, TwoLayerParams]:
    """The training objective F(theta) (module docstring) and its gradient, by the same torch code as training."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    X, y = _check_inputs(X, y, params, loss)
    weight = _weight_tensor(_checked_weights(sample_weight, X), device, dtype)
    objective = _Objective(params, activation, loss, alpha, device, dtype, None)
    value = objective(*_tensors(X, y, loss, device, dtype), weight)
    objective.backward(value)
    grads = TwoLayerParams(*(p.grad.cpu().numpy().astype(np.float64) for p in objective.params))
    return float(value.detach()), grads


def train_two_layer(X, y, init: TwoLayerParams, activation: str | Activation, *, loss: str = "mse",
                    optimizer: str = "lbfgs", max_iter: int = 200, lr: float | None = None, alpha: float = 0.0,
                    batch_size: int | None = None, tol: float = 1e-7, max_rows: int | None = None,
                    random_state=None, device="cpu", dtype=torch.float64, verbose: int = 0,
                    train_mask: Mapping | None = None, n_iter_no_change: int = 10, sample_weight=None):
    """Minimise F(theta) (module docstring) from `init` by full-batch L-BFGS, Adam or Gauss-Newton; return
    (params, history).

    optimizer="lbfgs": torch.optim.LBFGS with a strong-Wolfe line search, full batch; one iteration is one
    quasi-Newton step (several function evaluations). It stops, converged, once max |dF/dtheta| <= tol or F
    changes by at most tol * max(1, |F|) in an iteration (so a stalled line search also ends it, flagged
    converged). `lr` (default 1) scales the initial step.
    optimizer="adam": torch.optim.Adam (lr default 1e-3) over shuffled mini-batches of `batch_size` rows
    (default: full batch); one iteration is one epoch and its recorded loss the row-weighted mean of the
    mini-batch objectives, as in scikit-learn's MLP. It stops, converged, once the epoch loss has failed to
    improve on the best so far by tol for `n_iter_no_change` consecutive epochs (scikit-learn's rule).
    optimizer="gauss_newton" (loss="mse" only): scipy's trust-region Gauss-Newton on the residuals
    (`nnlift._gauss_newton`), full batch, in float64 NumPy on the CPU whatever `device` and `dtype`; one iteration
    is one trust-region step taken and `max_iter` bounds the evaluations of F after the start's (a rejected trial
    step costs one too). It stops, converged, once F falls by less than tol * F in a step, the step is shorter than
    tol * ||theta||, or max |dF/dtheta| <= tol (scipy's ftol, xtol and gtol). Near a good start it converges where
    L-BFGS stalls in the ill-conditioned valleys of low-noise fits.

    `max_rows` fits on that many rows drawn uniformly without replacement by `random_state` (which also
    shuffles Adam's batches). `train_mask` maps any of "first_layer", "bias", "coef", "intercept" to False (or
    to a boolean array broadcastable to that parameter) to freeze it; frozen entries are returned unchanged.
    `sample_weight` (n,) non-negative weights the rows' losses: F's data term becomes sum_i w_i loss_i / sum_i w_i
    (Adam's mini-batches use the weights normalised to mean 1 over all rows, an unbiased estimate of it).
    `verbose > 0` shows progress on stderr (a bar on a terminal, log lines
    otherwise) and a final line saying whether it converged. Inputs are never modified.

    history: "loss" (F after each iteration, n_iter values), "initial_loss", "n_iter", "converged" and
    "wall_time" (seconds).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if optimizer != "adam" and batch_size is not None:
        raise ValueError(f"batch_size applies to optimizer='adam' only; {optimizer!r} always uses the full batch")
    if optimizer == "gauss_newton" and loss != "mse":
        raise ValueError(f"optimizer='gauss_newton' minimises a sum of squares, so it needs loss='mse', got {loss!r}; "
                         "use 'lbfgs' or 'adam' for the log-losses")
    if optimizer == "gauss_newton" and lr is not None:
        raise ValueError(f"optimizer='gauss_newton' takes no lr (its trust region sets the step), got lr={lr!r}")
    if max_iter < 0 or tol < 0 or alpha < 0:
        raise ValueError(f"max_iter, tol and alpha must be >= 0, got {max_iter}, {tol}, {alpha}")
    if (batch_size is not None and batch_size < 1) or (max_rows is not None and max_rows < 1):
        raise ValueError(f"batch_size and max_rows must be positive, got {batch_size}, {max_rows}")
    lr = _DEFAULT_LR.get(optimizer) if lr is None else float(lr)
    if lr is not None and lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    start = time.perf_counter()
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    rng = _as_generator(random_state)
    X, y = _check_inputs(X, y, init, loss)
    weight = _checked_weights(sample_weight, X)
    if max_rows is not None and max_rows < X.shape[0]:
        rows = np.sort(rng.choice(X.shape[0], size=max_rows, replace=False))
        X, y = X[rows], y[rows]
        weight = None if weight is None else weight[rows]
    Xt, yt = _tensors(X, y, loss, device, dtype)
    wt = _weight_tensor(weight, device, dtype)
    objective = _Objective(init, activation, loss, alpha, device, dtype, train_mask)

    with _Progress(verbose, optimizer, max_iter) as report:
        if optimizer == "lbfgs":
            initial, losses, converged = _run_lbfgs(objective, Xt, yt, wt, max_iter, lr, tol, dtype, report)
        elif optimizer == "gauss_newton":
            initial, losses, converged = _run_gauss_newton(objective, X, y, weight, max_iter, tol, report)
        else:
            initial, losses, converged = _run_adam(objective, Xt, yt, wt, max_iter, lr, tol, batch_size,
                                                   n_iter_no_change, rng, report)
        report.conclude(losses[-1] if losses else initial, converged)
    history = {"loss": losses, "initial_loss": initial, "n_iter": len(losses), "converged": converged,
               "wall_time": time.perf_counter() - start}
    return objective.to_params(), history


def _run_lbfgs(objective: _Objective, X, y, weight, max_iter, lr, tol, dtype, report):
    # One optimizer.step per iteration (max_iter=1) so the loss is recorded per iteration; the closure caches
    # its last evaluation, so re-evaluating at the point the line search accepted costs nothing.
    opt = torch.optim.LBFGS(objective.params, lr=lr, max_iter=1, max_eval=25, tolerance_grad=tol,
                            tolerance_change=float(torch.finfo(dtype).tiny), history_size=100,
                            line_search_fn="strong_wolfe")
    cache = {}

    def closure():
        flat = torch.cat([p.detach().reshape(-1) for p in objective.params])
        if cache and torch.equal(flat, cache["x"]):
            for p, g in zip(objective.params, cache["grads"], strict=True):
                p.grad = g.clone()
            return cache["value"]
        value = objective(X, y, weight)
        objective.backward(value)
        cache.update(x=flat, value=value.detach(), grads=[p.grad.clone() for p in objective.params])
        return cache["value"]

    initial = previous = float(closure())
    _check_finite(initial, 0)
    losses: list[float] = []
    converged = objective.max_abs_grad() <= tol
    while not converged and len(losses) < max_iter:
        opt.step(closure)
        current = float(closure())
        _check_finite(current, len(losses) + 1)
        losses.append(current)
        report(current)
        converged = objective.max_abs_grad() <= tol or abs(previous - current) <= tol * max(1.0, abs(current))
        previous = current
    return initial, losses, converged


def _run_gauss_newton(objective: _Objective, X, y, weight, max_iter, tol, report):
    """`gauss_newton` from the objective's parameters, which it then holds; outputs as columns (q = 1 for (n,))."""
    W, b, c, c0 = (p.detach().cpu().numpy().astype(np.float64) for p in objective.params)
    scalar = c.ndim == 1
    masks = [np.ones(np.shape(p), dtype=bool) if m is None else m.cpu().numpy() > 0
             for p, m in zip(objective.params, objective.masks, strict=True)]
    if scalar:
        c, c0, masks[2], masks[3] = c[:, None], c0.reshape(1), masks[2][:, None], masks[3].reshape(1)
    weight = None if weight is None else weight * (len(weight) / weight.sum())
    (W, b, c, c0), initial, losses, converged = gauss_newton(
        X, y.reshape(len(X), -1), weight, (W, b, c, c0), masks, objective.alpha, objective.act, max_iter, tol, report)
    if scalar:
        c, c0 = c[:, 0], c0.reshape(())
    with torch.no_grad():
        for p, value in zip(objective.params, (W, b, c, c0), strict=True):
            p.copy_(torch.as_tensor(value, dtype=p.dtype, device=p.device))
    return initial, losses, converged


def _run_adam(objective: _Objective, X, y, weight, max_iter, lr, tol, batch_size, patience, rng, report):
    opt = torch.optim.Adam(objective.params, lr=lr)
    n = X.shape[0]
    batch_size = n if batch_size is None else min(batch_size, n)
    with torch.no_grad():
        initial = float(objective(X, y, weight))
    _check_finite(initial, 0)
    losses: list[float] = []
    best, stale, converged = np.inf, 0, False
    while not converged and len(losses) < max_iter:
        order = torch.as_tensor(rng.permutation(n), device=X.device) if batch_size < n else None
        total = 0.0
        for begin in range(0, n, batch_size):
            rows = slice(begin, begin + batch_size) if order is None else order[begin:begin + batch_size]
            value = objective(X[rows], y[rows], None if weight is None else weight[rows])
            objective.backward(value)
            opt.step()
            total += value.item() * (min(begin + batch_size, n) - begin)
        current = total / n
        _check_finite(current, len(losses) + 1)
        losses.append(current)
        report(current)
        stale = stale + 1 if current > best - tol else 0
        best = min(best, current)
        converged = stale >= patience
    return initial, losses, converged


def _checked_weights(sample_weight, X: np.ndarray) -> np.ndarray | None:
    """`sample_weight` checked by scikit-learn (one finite, non-negative weight per row, not all zero) or None."""
    if sample_weight is None:
        return None
    return _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)


def _weight_tensor(weight: np.ndarray | None, device, dtype) -> torch.Tensor | None:
    """Checked weights normalised to mean 1, as a tensor (None when not given)."""
    return None if weight is None else to_tensor(weight * (len(weight) / weight.sum()), device, dtype)


def _check_finite(value: float, iteration: int) -> None:
    if not np.isfinite(value):
        raise FloatingPointError(f"the training objective became {value} at iteration {iteration}; "
                                 "lower lr or rescale the inputs")


class _Progress(ProgressReport):
    """The training's progress (`nnlift._progress`): report(loss) after each iteration, then `conclude`."""

    def __init__(self, verbose, optimizer, max_iter):
        names = {"lbfgs": "L-BFGS", "adam": "Adam", "gauss_newton": "Gauss-Newton"}
        super().__init__(f"{names[optimizer]} training", max_iter, verbose,
                         unit="epochs" if optimizer == "adam" else "iterations")

    def __call__(self, loss: float) -> None:
        self.advance(f"loss {loss:.6g}")

    def conclude(self, loss: float, converged: bool) -> None:
        """The final line: converged after n of max_iter iterations, or stopped at the budget; the last loss."""
        if converged:
            status = f"converged after {self.done} of {self.total} {self.unit}"
        else:
            status = f"stopped at the {self.total}-{self.unit[:-1]} budget without converging"
        self.finish(f"{status}, loss {loss:.6g}")
