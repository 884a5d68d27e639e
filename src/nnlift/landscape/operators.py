"""Curvature of a network's loss as linear operators on flat parameter vectors, built on `torch.func`.

`HessianOperator` (∇²L), `GaussNewtonOperator` (the generalised Gauss-Newton JᵀH_ℓJ, Schraudolph 2002) and
`EmpiricalFisherOperator` ((1/n) Σ_i g_i g_iᵀ over per-sample gradients) stand for P×P matrices that are never
formed: `op @ v` costs a few passes of the model. The loss is L(θ) = (1/N) Σ_b n_b · loss_fn(model(X_b; θ), y_b)
over the batches of `data`, so `loss_fn` must average over a batch (torch's default `reduction="mean"`).

The model is never modified: its parameters are copied when an operator is made (the point θ where the
curvature is taken; `at=` moves it), its buffers are copied inside every call, and its train/eval mode is left
as it is (unlike PyHessian, which switches to eval). In train mode, dropout and batch norm make the loss itself
depend on the draw and on the batch: the operator is then the curvature of that stochastic loss, and two
products with the same vector can differ. Put the model in eval mode for a fixed, symmetric operator;
`check_deterministic()` (off by default) finds such randomness.

Measured reason for keeping these torch.func operators next to curvlinops' `HessianLinearOperator`,
`GGNLinearOperator` and `EFLinearOperator` (the same products to 1e-15 in float64, except that curvlinops'
empirical Fisher of `MSELoss` is C times this one, see `EmpiricalFisherOperator`): one product on a 64-32-10 tanh MLP
(P = 2410) with cross-entropy on sklearn's `load_digits` (1797 rows), one thread, median of 7, both in one process,
two runs on a shared 2-core CPU; curvlinops' time / nnlift's, for a vector (P,) and a block (P, 16):

                                  Hessian            Gauss-Newton       empirical Fisher
    float64, one batch of 1797    3.1-5.1 / 1.2-1.3  1.5-2.0 / 1.1      1.9-2.0 / 2.1
    float64, 8 batches of 225     1.7-1.9 / 1.4      1.6 / 1.2-1.3      1.2 / 1.4-1.5
    float32, one batch of 1797    3.2-4.5 / 1.2-1.3  1.5-2.2 / 1.1-1.2  3.2-4.9 / 2.4-2.8
    float32, 8 batches of 225     1.8-1.9 / 1.5      1.6 / 1.3-1.4      1.4-1.5 / 1.9-2.0

nnlift's are faster in every case (for one batch they keep the linearisation between products; curvlinops
redoes the forward pass per product), and they also take any averaging `loss_fn`, a point `at=` other than the
model's parameters and models with buffers, so they stay the default. The Kronecker-factored approximations come
from curvlinops (`nnlift.landscape.kfac_operator`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from fnmatch import fnmatchcase
from itertools import zip_longest

import numpy as np
import torch
from rich.progress import track
from scipy.sparse.linalg import LinearOperator
from torch.func import functional_call, grad, grad_and_value, jvp, vjp, vmap
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.instancenorm import _InstanceNorm

__all__ = ["FunctionalLoss", "HessianOperator", "GaussNewtonOperator", "EmpiricalFisherOperator",
           "CurvatureOperator", "SymmetricOperator", "parameter_names", "flatten_params", "unflatten"]

ParameterSelection = Sequence[str] | str | Callable[[str, torch.nn.Parameter], bool] | None


def parameter_names(model: torch.nn.Module, parameters: ParameterSelection = None) -> list[str]:
    """Names of the selected parameters in the model's order.

    `parameters`: None (every parameter that requires grad); a string or a list of strings, each an exact name from
    `model.named_parameters()` or an `fnmatch` pattern (case-sensitive) such as "layer1.*" or "*.bias", which
    selects every name it matches, whether or not the parameter requires grad; or a predicate
    `(name, parameter) -> bool`. A name or pattern that matches nothing is an error that lists the model's names.
    """
    named = dict(model.named_parameters())
    if parameters is None:
        names = [name for name, p in named.items() if p.requires_grad]
    elif callable(parameters):
        names = [name for name, p in named.items() if parameters(name, p)]
    else:
        requested = [parameters] if isinstance(parameters, str) else list(parameters)
        unmatched = [pattern for pattern in requested if not any(_matches(name, pattern) for name in named)]
        if unmatched:
            raise ValueError(f"unknown parameter names {unmatched}: they match none of the model's parameters "
                             f"{list(named)}; give names from model.named_parameters() or fnmatch patterns such as "
                             "'layer1.*'")
        names = [name for name in named if any(_matches(name, pattern) for pattern in requested)]
    if not names:
        raise ValueError("no parameter is selected: the model has none, or `parameters` matched none of "
                         f"{list(named)}")
    return names


def _matches(name: str, pattern: str) -> bool:
    return name == pattern or fnmatchcase(name, pattern)


def flatten_params(model: torch.nn.Module, parameters: ParameterSelection = None) -> torch.Tensor:
    """A detached copy of the selected parameters as one flat vector (model order, each tensor row-major)."""
    named = dict(model.named_parameters())
    return torch.cat([named[name].detach().reshape(-1) for name in parameter_names(model, parameters)]).clone()


def unflatten(vector: torch.Tensor, shapes: Sequence[torch.Size]) -> tuple[torch.Tensor, ...]:
    """Split a flat vector into views with the given shapes (the inverse of `flatten_params`)."""
    sizes = [int(np.prod(shape)) for shape in shapes]
    if vector.shape != (sum(sizes),):
        raise ValueError(f"expected a flat vector of length {sum(sizes)}, got shape {tuple(vector.shape)}")
    return tuple(part.reshape(shape) for part, shape in zip(torch.split(vector, sizes), shapes, strict=True))


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def all_finite(tensor: torch.Tensor) -> bool:
    """No NaN or inf in `tensor`. A finite sum means every entry is finite, and the sum takes one pass without a
    boolean copy, 6× faster than `isfinite(...).all()` on the digits matrix, which matters in an operator's cold
    product; only a non-finite sum (NaN, inf, or finite entries whose sum overflows the dtype) is checked entry by
    entry."""
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def _is_batch(data) -> bool:
    return (isinstance(data, tuple | list) and len(data) == 2
            and all(isinstance(part, torch.Tensor | np.ndarray) for part in data))


class _Batches:
    """The data as (X, y) tensor pairs on the parameters' device: one batch, or a re-iterable of batches, each
    split into chunks of at most `micro_batch_size` rows when that is given."""

    def __init__(self, data, dtype: torch.dtype, device: torch.device, micro_batch_size: int | None = None):
        self.dtype, self.device = dtype, device
        if micro_batch_size is not None and (isinstance(micro_batch_size, bool)
                                             or not isinstance(micro_batch_size, int | np.integer)
                                             or micro_batch_size < 1):
            raise ValueError(f"micro_batch_size must be a positive integer or None, got {micro_batch_size!r}")
        self.micro_batch_size = micro_batch_size
        if _is_batch(data):
            self.single = self._convert(*data)
            self.source = None
        elif isinstance(data, Iterator) or not isinstance(data, Iterable):
            raise TypeError("data must be one batch (X, y) or a re-iterable of (X, y) batches such as a list or a "
                            f"DataLoader; got {type(data).__name__} (a one-shot iterator cannot be read twice)")
        else:
            self.single, self.source = None, data

    @property
    def cacheable(self) -> bool:
        """Whether the data is one batch that is read in one piece (so a linearisation on it can be kept)."""
        return self.single is not None and (self.micro_batch_size is None
                                            or self.single[0].shape[0] <= self.micro_batch_size)

    def _convert(self, X, y) -> tuple[torch.Tensor, torch.Tensor]:
        X, y = torch.as_tensor(X, device=self.device), torch.as_tensor(y, device=self.device)
        if X.ndim == 0 or y.ndim == 0 or X.shape[0] != y.shape[0]:
            raise ValueError(f"a batch must be (X, y) with one target per row, got shapes {tuple(X.shape)} and "
                             f"{tuple(y.shape)}")
        if X.shape[0] == 0:
            raise ValueError("empty batch: every batch of data must have at least one row")
        for name, part in (("X", X), ("y", y)):
            if part.is_floating_point() and not all_finite(part):
                raise ValueError(f"{name} contains NaN or inf")
        return tuple(part.to(self.dtype) if part.is_floating_point() else part for part in (X, y))

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.single is not None:
            yield self.single
            return
        for batch in self.source:
            if not (isinstance(batch, tuple | list) and len(batch) == 2):
                raise TypeError(f"each batch must be a pair (X, y), got {type(batch).__name__}")
            yield self._convert(*batch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for X, y in self._batches():
            if self.micro_batch_size is None:
                yield X, y
            else:
                yield from zip(X.split(self.micro_batch_size), y.split(self.micro_batch_size), strict=True)


class FunctionalLoss:
    """L(θ) = (1/N) Σ_b n_b loss_fn(model(X_b; θ), y_b) as a function of the flat vector θ of selected parameters.

    The unselected parameters stay at their values when this object is made; `point` is θ there (or `at`).
    `micro_batch_size` splits every batch into chunks of at most that many rows, each its own pass of the model
    (bounded memory, the same L since every chunk is weighted by its rows); it needs rows that do not interact, so
    batch norm in train mode is refused.
    """

    def __init__(self, model: torch.nn.Module, loss_fn: Callable, data, *, parameters: ParameterSelection = None,
                 at: torch.Tensor | np.ndarray | None = None, micro_batch_size: int | None = None):
        if micro_batch_size is not None and any(isinstance(m, _BatchNorm) and m.training for m in model.modules()):
            raise ValueError("micro_batch_size splits batches, which changes batch norm's batch statistics in train "
                             "mode; put the model in eval mode or leave micro_batch_size None")
        self.model, self.loss_fn = model, loss_fn
        self.names = parameter_names(model, parameters)
        named = dict(model.named_parameters())
        kinds = {(named[name].dtype, named[name].device) for name in self.names}
        if len(kinds) > 1:
            raise ValueError(f"the selected parameters mix dtypes/devices {sorted(map(str, kinds))}; select one kind")
        self.dtype, self.device = kinds.pop()
        if not self.dtype.is_floating_point:
            raise ValueError(f"parameters must be floating point, got {self.dtype}")
        self.shapes = [named[name].shape for name in self.names]
        self.n_params = sum(math.prod(shape) for shape in self.shapes)
        self._fixed = {name: p.detach().clone() for name, p in named.items() if name not in self.names}
        self._buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
        self.point = (torch.cat([named[name].detach().reshape(-1) for name in self.names]) if at is None
                      else self.as_vector(at, "at")).clone()  # a copy: the caller may reuse its vector
        if self.point.ndim != 1:
            raise ValueError(f"at must be one parameter vector of shape ({self.n_params},), got "
                             f"{tuple(self.point.shape)}")
        self.data = _Batches(data, self.dtype, self.device, micro_batch_size)

    def as_vector(self, v, name: str = "v") -> torch.Tensor:
        """`v` as a (P,) or (P, m) tensor of this loss's dtype and device; refuses wrong lengths and NaN."""
        v = torch.as_tensor(v).to(device=self.device, dtype=self.dtype)
        if v.ndim not in (1, 2) or v.shape[0] != self.n_params:
            raise ValueError(f"{name} must have shape ({self.n_params},) or ({self.n_params}, m) for the "
                             f"{self.n_params} selected parameters, got {tuple(v.shape)}")
        if not all_finite(v):
            raise ValueError(f"{name} contains NaN or inf")
        return v

    def as_directions(self, D) -> torch.Tensor:
        """`D` as a (k, P) tensor of directions in parameter space, checked like `as_vector`."""
        D = torch.as_tensor(D)
        if D.ndim != 2 or D.shape[1] != self.n_params or D.shape[0] == 0:
            raise ValueError(f"directions must have shape (k, {self.n_params}) with k >= 1, got {tuple(D.shape)}")
        return self.as_vector(D.T, "directions").T

    def unflatten(self, vector: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return unflatten(vector, self.shapes)

    def forward(self, params: Sequence[torch.Tensor], X: torch.Tensor, buffers: dict | None = None):
        """model(X) with the selected parameters set to `params`; the buffers are fresh copies (batch norm in
        train mode updates them in place, and a torch.func transform may only mutate tensors made inside it)."""
        buffers = {name: b.clone() for name, b in (self._buffers if buffers is None else buffers).items()}
        return functional_call(self.model, ({**self._fixed, **dict(zip(self.names, params, strict=True))}, buffers),
                               (X,))

    def batch_loss(self, params: Sequence[torch.Tensor], X: torch.Tensor, y: torch.Tensor,
                   buffers: dict | None = None) -> torch.Tensor:
        return self.loss_fn(self.forward(params, X, buffers), y)

    def average(self, per_batch: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """(1/N) Σ_b n_b · per_batch(X_b, y_b)."""
        total, rows = None, 0
        for X, y in self.data:
            value = X.shape[0] * per_batch(X, y)
            total = value if total is None else total + value
            rows += X.shape[0]
        if total is None:
            raise ValueError("data has no batches")
        return total / rows

    def loss(self, theta=None) -> float:
        """L at `theta` (default: `point`)."""
        params = self.unflatten(self.point if theta is None else self.as_vector(theta, "theta"))
        with torch.no_grad():
            return float(self.average(lambda X, y: self.batch_loss(params, X, y)))

    def gradient(self, theta=None) -> torch.Tensor:
        """∇L at `theta` (default: `point`), flat."""
        params = self.unflatten(self.point if theta is None else self.as_vector(theta, "theta"))
        return self.average(lambda X, y: _flat(grad(lambda p: self.batch_loss(p, X, y))(params)))

    def check_deterministic(self) -> None:
        """Raise a RuntimeError if two passes over the data disagree (curvlinops' `check_deterministic`, the same
        idea): the passes are read side by side, batch against batch, with the loss and gradient of each batch at
        `point`. Batches that differ between passes (a shuffled DataLoader) are harmless as long as the totals
        agree, since L does not depend on the order; totals that differ, or one batch whose loss or gradient
        differs between passes (dropout in train mode), are errors. Tolerance: √eps of the dtype, relative.
        Costs two passes of loss and gradient.
        """
        params = self.unflatten(self.point)
        rtol = math.sqrt(torch.finfo(self.dtype).eps)

        def weighted(X, y):  # n_b · (loss, gradient) of one batch
            gradient, loss = grad_and_value(lambda p: self.batch_loss(p, X, y))(params)
            return X.shape[0] * torch.cat([loss.reshape(1), _flat(gradient)]).detach()

        rows, totals, same_batches = [0, 0], [0.0, 0.0], True
        for pair in zip_longest(self.data, self.data):
            same_batches &= all(batch is not None for batch in pair) and all(
                a.shape == b.shape and torch.equal(a, b) for a, b in zip(*pair, strict=True))
            values = [None if batch is None else weighted(*batch) for batch in pair]
            if same_batches and not _close(*values, rtol):
                n = pair[0][0].shape[0]
                raise RuntimeError("the model is not deterministic: the same batch gave a different loss or gradient "
                                   f"on a second pass (loss {float(values[0][0]) / n:.6g} vs "
                                   f"{float(values[1][0]) / n:.6g}); put it in eval mode (dropout) or make its "
                                   "forward pass deterministic")
            for k, (batch, value) in enumerate(zip(pair, values, strict=True)):
                if batch is not None:
                    totals[k], rows[k] = totals[k] + value, rows[k] + batch[0].shape[0]
        if rows[0] == 0:
            raise ValueError("data has no batches")
        if rows[0] != rows[1] or not _close(totals[0] / rows[0], totals[1] / rows[1], rtol):
            cause = f"{rows[0]} and {rows[1]} rows" if rows[0] != rows[1] else "different total loss or gradient"
            raise RuntimeError(f"two passes over data give {cause}, and the batches change between passes (a "
                               "shuffled DataLoader with drop_last, random augmentation, batch norm in train mode on "
                               "reshuffled batches, or those with dropout); pass a fixed list of batches or a "
                               "DataLoader with shuffle=False and no random transforms")

    def losses(self, coefficients, directions, *, chunk_size: int = 64, verbose: int = 0) -> np.ndarray:
        """L(point + c_g @ D) for each row c_g of `coefficients` (G, k), D = `directions` (k, P); float64 (G,).

        The parameter sets are evaluated `chunk_size` at a time with `vmap` over `functional_call` (one batched
        forward per chunk and data batch), so a 51×51 grid of a small MLP takes seconds.
        """
        C = torch.as_tensor(coefficients).to(device=self.device, dtype=self.dtype)
        D = self.as_directions(directions)
        if C.ndim != 2 or C.shape[1] != D.shape[0] or C.shape[0] == 0:
            raise ValueError(f"coefficients must have shape (G, {D.shape[0]}) with G >= 1, got {tuple(C.shape)}")

        def chunk_loss(c, buffers, X, y):
            return self.batch_loss(self.unflatten(self.point + c @ D), X, y, buffers)

        chunks = torch.split(C, chunk_size)

        def per_batch(X, y):
            values = []
            for chunk in track(chunks, description="loss grid", disable=not verbose, transient=True):
                buffers = {name: b.expand(len(chunk), *b.shape).clone() for name, b in self._buffers.items()}
                values.append(vmap(chunk_loss, in_dims=(0, 0, None, None), randomness="same")(chunk, buffers, X, y))
            return torch.cat(values)

        with torch.no_grad():
            return self.average(per_batch).double().cpu().numpy()


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> bool:
    """Equal up to rtol relative to the larger entry of either."""
    scale = float(torch.maximum(a.abs().max(), b.abs().max()))
    return bool(torch.allclose(a, b, rtol=0, atol=rtol * scale))


class SymmetricOperator:
    """A symmetric P×P matrix seen through `op @ v` (P,) and `op @ V` (P, m); subclasses give `shape`, `dtype`,
    `device` and `_matmat` on (P, m) tensors.

    Torch input gives torch output (the operator's dtype and device); NumPy input gives float64 NumPy output.
    """

    name = "operator"

    @property
    def shape(self) -> tuple[int, int]:
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        raise NotImplementedError

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        """A V for V of shape (P, m), already checked and in the operator's dtype and device."""
        raise NotImplementedError

    def __matmul__(self, v):
        is_numpy = not isinstance(v, torch.Tensor)
        given = torch.as_tensor(v)
        if given.is_complex():
            raise ValueError("v is complex; the operator is real: apply it to the real and imaginary parts")
        V = given.to(device=self.device, dtype=self.dtype)
        P = self.shape[0]
        if V.ndim not in (1, 2) or V.shape[0] != P or (V.ndim == 2 and V.shape[1] == 0):
            raise ValueError(f"v must have shape ({P},) or ({P}, m) with m >= 1 for the {P} selected parameters, got "
                             f"{tuple(V.shape)}")
        if not all_finite(V):
            raise ValueError("v contains NaN or inf" if not all_finite(given) else
                             f"v overflows the operator's {self.dtype}: rescale it")
        out = self._matmat(V if V.ndim == 2 else V[:, None])
        out = out if V.ndim == 2 else out[:, 0]
        return out.detach().double().cpu().numpy() if is_numpy else out.detach()

    def to_dense(self, *, block: int = 256, verbose: int = 0) -> torch.Tensor:
        """The P×P matrix, `block` columns of the identity at a time (small P only)."""
        P = self.shape[0]
        identity = torch.eye(P, dtype=self.dtype, device=self.device)
        columns = [self @ identity[:, start:start + block]
                   for start in track(range(0, P, block), description=f"dense {self.name}", disable=not verbose,
                                      transient=True)]
        return torch.cat(columns, dim=1)

    def to_scipy(self) -> LinearOperator:
        """A float64 `scipy.sparse.linalg.LinearOperator` of the same (symmetric) matrix."""
        def matmat(X):
            return self @ np.asarray(X, dtype=np.float64)

        return LinearOperator(self.shape, matvec=matmat, rmatvec=matmat, matmat=matmat, rmatmat=matmat,
                              dtype=np.float64)


class CurvatureOperator(SymmetricOperator):
    """A symmetric P×P curvature matrix of the loss, seen through `op @ v` (P,) and `op @ V` (P, m).

    Torch input gives torch output (the parameters' dtype and device); NumPy input gives float64 NumPy output.
    For one batch (X, y) the linearisation of the model at θ is built on the first product and reused (its
    memory is that of one backward pass with `create_graph`); for an iterable of batches, or with
    `micro_batch_size` (see `FunctionalLoss`), every product makes one pass over the data. `chunk_size` bounds how
    many probes (samples, for the Fisher) one `vmap` call holds. `check_deterministic=True` runs
    `check_deterministic()` when the operator is made (off by default: it costs two passes of loss and gradient and
    two products, and nnlift's optimizers make an operator every step).
    """

    name = "curvature"

    def __init__(self, model: torch.nn.Module, loss_fn: Callable, data, *, parameters: ParameterSelection = None,
                 at=None, chunk_size: int | None = None, micro_batch_size: int | None = None,
                 check_deterministic: bool = False):
        self.objective = FunctionalLoss(model, loss_fn, data, parameters=parameters, at=at,
                                        micro_batch_size=micro_batch_size)
        self.chunk_size = chunk_size
        self._cached: Callable | None = None
        if check_deterministic:
            self.check_deterministic()

    @property
    def shape(self) -> tuple[int, int]:
        return (self.objective.n_params, self.objective.n_params)

    @property
    def dtype(self) -> torch.dtype:
        return self.objective.dtype

    @property
    def device(self) -> torch.device:
        return self.objective.device

    def check_deterministic(self) -> None:
        """`FunctionalLoss.check_deterministic` on the data, then two products with one seeded vector, which must
        agree to √eps of the dtype; a RuntimeError says which check failed and what to do."""
        self.objective.check_deterministic()
        generator = torch.Generator(device="cpu").manual_seed(0)
        v = torch.randn(self.shape[0], generator=generator, dtype=torch.float64).to(self.device, self.dtype)
        first, second = self @ v, self @ v
        if not _close(first, second, math.sqrt(torch.finfo(self.dtype).eps)):
            raise RuntimeError(f"two products of the {self.name} with the same vector differ (by "
                               f"{float((first - second).abs().max()):.3g}): the model or the data are random between "
                               "passes; put the model in eval mode and pass fixed batches")

    def _linearize(self, X: torch.Tensor, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """A function mapping probes (m, P) to the batch-mean products (m, P) on the batch (X, y)."""
        raise NotImplementedError

    def _products(self, X: torch.Tensor, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        if not self.objective.data.cacheable:
            return self._linearize(X, y)
        if self._cached is None:
            self._cached = self._linearize(X, y)
        return self._cached

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.objective.average(lambda X, y: self._products(X, y)(V.T)).T

    def _vmap(self, fn: Callable, **kwargs) -> Callable:
        """`fn` of one probe (P,) mapped over probes (m, P); a single probe is passed to `fn` directly, because vmap
        over one vector costs more than the product (bench_curvature_peers: a cold Hessian product of the digits
        MLP was 4.5 gradients through vmap, 2.9 without)."""
        batched = vmap(fn, chunk_size=self.chunk_size, **kwargs)
        return lambda V: fn(V[0])[None] if V.shape[0] == 1 else batched(V)


_NORMALISATIONS = (_BatchNorm, _InstanceNorm, torch.nn.GroupNorm, torch.nn.LayerNorm)


class HessianOperator(CurvatureOperator):
    """The Hessian ∇²L(θ). Products Hv = ∇(∇Lᵀv) (Pearlmutter 1994).

    A single vector: ∇L is built once with `create_graph` and each product is one more backward pass through it
    (`retain_graph`). On CPU the first product of a model with convolutions goes reverse-over-forward instead
    (autograd's gradient of the `jvp` ∇Lᵀv: one forward pass carrying the tangent, one backward pass through both),
    which avoids the convolutions' double backward, torch's CPU transposed convolution that loops over the samples.
    Not with normalisation layers: through batch norm in train mode that product came out wrong, without an error
    (tests/landscape/test_operators.py).
    In benchmarks/bench_curvature_peers.py that made a cold product of the digits CNN 2.45–3.04 gradients (median
    2.7 over five runs) instead of 3.3–3.6 (BENCHMARKS.md), while on the MLP a one-off probe found the retained
    graph cheaper, as is every warm product. Where forward-mode AD lacks a formula, the first product also takes the
    retained graph. A block of vectors goes through `torch.func.vjp` of `grad`, vmapped over the probes; a one-off
    probe found autograd's batched grad slower."""

    name = "Hessian"

    def _linearize(self, X, y):
        objective = self.objective
        built: dict[str, Callable] = {}

        def batch_loss(params):
            return objective.batch_loss(params, X, y)

        def reverse_over_forward(v: torch.Tensor) -> torch.Tensor | None:
            params = tuple(t.detach().requires_grad_() for t in objective.unflatten(objective.point))
            try:
                with torch.enable_grad():
                    directional = jvp(batch_loss, (params,), (objective.unflatten(v),))[1]
                if not directional.requires_grad:  # the loss is linear in every parameter
                    return torch.zeros_like(v)
                return _flat(torch.autograd.grad(directional, params, allow_unused=True, materialize_grads=True))
            except (NotImplementedError, RuntimeError):
                return None

        def retained(v: torch.Tensor) -> torch.Tensor:
            if "retained" not in built:
                params = [t.detach().requires_grad_() for t in objective.unflatten(objective.point)]
                with torch.enable_grad():
                    gradient = torch.autograd.grad(batch_loss(params), params, create_graph=True,
                                                   allow_unused=True, materialize_grads=True)
                live = [i for i, part in enumerate(gradient) if part.requires_grad]  # others: unused or linear

                def product(u: torch.Tensor) -> torch.Tensor:
                    if not live:
                        return torch.zeros_like(u)
                    parts = objective.unflatten(u)
                    return _flat(torch.autograd.grad([gradient[i] for i in live], params, [parts[i] for i in live],
                                                     retain_graph=True, allow_unused=True, materialize_grads=True))

                built["retained"] = product
            return built["retained"](v)

        modules = list(objective.model.modules())
        first = [objective.point.device.type == "cpu" and any(isinstance(m, _ConvNd) for m in modules)
                 and not any(isinstance(m, _NORMALISATIONS) for m in modules)]

        def single(v: torch.Tensor) -> torch.Tensor:
            if first[0]:
                first[0] = False
                product = reverse_over_forward(v)
                if product is not None:
                    return product
            return retained(v)

        def block(V: torch.Tensor) -> torch.Tensor:
            if "block" not in built:
                _, hvp = vjp(grad(batch_loss), objective.unflatten(objective.point))
                built["block"] = vmap(lambda v: _flat(hvp(objective.unflatten(v))[0]), chunk_size=self.chunk_size)
            return built["block"](V)

        return lambda V: single(V[0])[None] if V.shape[0] == 1 else block(V)


class GaussNewtonOperator(CurvatureOperator):
    """The generalised Gauss-Newton matrix G = Jᵀ H_ℓ J (Schraudolph 2002; Martens 2020, eq. 10): J the Jacobian
    of the model's output in θ, H_ℓ the Hessian of `loss_fn` in that output. Positive semi-definite when the loss
    is convex in the output (MSE, cross-entropy). Jv by `jvp`, H_ℓ and Jᵀ by `vjp`."""

    name = "Gauss-Newton"

    def _linearize(self, X, y):
        objective = self.objective
        params = objective.unflatten(objective.point)
        output, output_vjp = vjp(lambda p: objective.forward(p, X), params)
        _, loss_hvp = vjp(grad(lambda out: objective.loss_fn(out, y)), output)

        def product(v):
            _, Jv = jvp(lambda p: objective.forward(p, X), (params,), (objective.unflatten(v),))
            return _flat(output_vjp(loss_hvp(Jv)[0])[0])

        return self._vmap(product, randomness="same")


class EmpiricalFisherOperator(CurvatureOperator):
    """The empirical Fisher F = (1/N) Σ_i g_i g_iᵀ, g_i = ∇_θ loss_fn(model(x_i), y_i) (Martens 2020, eq. 22).
    For `mse_loss` on C outputs g_i is the gradient of (1/C)‖f_i − y_i‖²; curvlinops' `EFLinearOperator` with
    `MSELoss` takes ‖f_i − y_i‖² with 1/(NC) in front, C times this matrix.

    Per-sample gradients by `vmap(grad(...))` over the rows, each row run through the model alone, so modules
    that couple rows (batch norm in train mode) are not supported. For one batch the (n, P) matrix of
    per-sample gradients is kept between products.
    """

    name = "empirical Fisher"

    def _linearize(self, X, y):
        objective = self.objective

        def sample_loss(params, x, t):
            return objective.batch_loss(params, x[None], t[None])

        per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0), randomness="different",
                          chunk_size=self.chunk_size)(objective.unflatten(objective.point), X, y)
        G = torch.cat([g.reshape(X.shape[0], -1) for g in per_sample], dim=1)
        return lambda V: (V @ G.T) @ G / X.shape[0]
