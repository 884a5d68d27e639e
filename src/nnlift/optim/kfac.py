"""K-FAC (Martens & Grosse 2015, "Optimizing neural networks with Kronecker-factored approximate curvature"):
natural gradient with a block-diagonal Fisher whose blocks are Kronecker products, factored Tikhonov damping,
the step rescaled on the exact quadratic model, and Levenberg-Marquardt adaptation of the damping.

The closure contract is that of `nnlift.optim.newton.SecondOrderOptimizer`: `step(closure)`, `closure()` returns
the step's data, one batch (X, y) or a re-iterable of batches.

The Kronecker factors of the step's data come from curvlinops (`KFACLinearOperator.compute_kronecker_factors`,
read back through its public `state_dict()`); nnlift keeps the optimiser around them: the moving averages, the
damping, the inverses, the step and its rescaling.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from nnlift.landscape.operators import GaussNewtonOperator, unflatten

from .newton import SecondOrderOptimizer

__all__ = ["KFAC", "damped_inverses", "kronecker_factors", "unsupported_layers"]

_LOSSES = {"mse": (nn.functional.mse_loss, nn.MSELoss), "cross_entropy": (nn.functional.cross_entropy,
                                                                          nn.CrossEntropyLoss)}
_FISHER_TYPES = ("mc", "type-2", "empirical")


def unsupported_layers(model: nn.Module) -> list[str]:
    """The type names of the modules other than `nn.Linear` that own parameters requiring grad."""
    return sorted({type(module).__name__ for module in model.modules() if not isinstance(module, nn.Linear)
                   and any(p.requires_grad for p in module.parameters(recurse=False))})


def kronecker_factors(model: nn.Module, loss: str, data: Iterable, *, fisher_type: str = "mc", mc_samples: int = 1,
                      seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """K-FAC's factors (A, G) of every `nn.Linear` layer with trained parameters on `data` (an iterable of batches
    (X, y)), by module name, at the model's current parameters (M&G 2015, §3).

    With L = (1/N) Σ_n κ·ℓ_n the mean loss over the N examples, ℓ_n the negative log-likelihood of example n
    (for "mse" ℓ_n = ‖f_n − y_n‖², a Gaussian of variance ½ per output, and κ = 1/C for C outputs, since
    `mse_loss` also averages over them; for "cross_entropy" the categorical, κ = 1), a layer s = W̄ā with
    ā = (a, 1) (the 1 only if its bias is trained): A = (1/N) Σ_n ā_n ā_nᵀ and G = (κ/N) Σ_n E[g_n g_nᵀ],
    g_n = ∂ℓ_n/∂s_n. A ⊗ G is then the K-FAC approximation of the Fisher of L in vec(W̄) (columns stacked).
    The expectation over the targets in g_n is `fisher_type`: "mc", `mc_samples` targets per example drawn from the
    model's predictive distribution (the true Fisher, M&G §5); "type-2", its exact value (C backward passes; for
    these losses the Gauss-Newton matrix); "empirical", the observed target (the empirical Fisher).
    `seed` seeds the draws of "mc". A layer whose weight is frozen gets A = [1] (ā = (1,)).
    """
    from curvlinops import KFACLinearOperator  # here, not at the top: its import is slow and warns (torch.jit)

    params = [p for p in model.parameters() if p.requires_grad]
    operator = KFACLinearOperator(model, _LOSSES[loss][1](), params, data, check_deterministic=False, seed=seed,
                                  fisher_type=fisher_type, mc_samples=mc_samples, separate_weight_and_bias=False)
    operator.compute_kronecker_factors()
    state = operator.state_dict()
    G = state["gradient_covariances"]
    return {name: (state["input_covariances"].get(name, G[name].new_ones(1, 1)), G[name]) for name in G}


def _pi(A: torch.Tensor, G: torch.Tensor) -> float:
    """M&G §6.3, the trace-norm π = sqrt((tr A / dim A) / (tr G / dim G)); 1 where that is not finite and > 0."""
    ratio = float(A.trace()) / A.shape[0] / (float(G.trace()) / G.shape[0]) if float(G.trace()) > 0 else 0.0
    return math.sqrt(ratio) if math.isfinite(ratio) and ratio > 0 else 1.0


def damped_inverses(A: torch.Tensor, G: torch.Tensor, damping: float) -> tuple[torch.Tensor, torch.Tensor]:
    """M&G §6.3, factored Tikhonov damping: ((A + πγI)⁻¹, (G + γ/π I)⁻¹) with γ = √λ, λ = `damping`.

    Not curvlinops' `KFACInverseLinearOperator(use_heuristic_damping=True)`, which computes the same damped inverses:
    that one inverts the factors a `KFACLinearOperator` computed on its own data, while the optimiser inverts
    moving averages of factors over many steps' batches (M&G §5), which no curvlinops operator holds."""
    gamma, pi = math.sqrt(damping), _pi(A, G)
    return (torch.linalg.inv(A + pi * gamma * torch.eye(A.shape[0], dtype=A.dtype, device=A.device)),
            torch.linalg.inv(G + gamma / pi * torch.eye(G.shape[0], dtype=G.dtype, device=G.device)))


class KFAC(SecondOrderOptimizer):
    """K-FAC (M&G 2015) for a model whose trained parameters all sit in `nn.Linear` layers, with `loss` "mse"
    (`mse_loss`, a Gaussian predictive distribution; targets (N, C)) or "cross_entropy" (categorical; class labels).

    Per `step`, with ∇L the gradient on the closure's data and λ the damping:
    the factors (A, G) of every layer (`kronecker_factors`, `fisher_type`, `mc_samples`) go into exponential moving
    averages every `update_factors_every` steps, A ← εA + (1 − ε)A_batch with ε = min(1 − 1/k, `ema_decay`) at the
    k-th update (M&G §5); every `update_inverses_every` steps the damped inverses are recomputed at the current λ
    (`damped_inverses`, §6.3). The proposal Δ = vec(Ğ⁻¹ ∇W̄ Ă⁻¹) per layer (Ă, Ğ the damped factors, ∇W̄ = [∇W, ∇b])
    is (Ă ⊗ Ğ)⁻¹∇L, and the update δ = −αΔ + μδ₀ (δ₀ the last update), θ ← θ + δ. α = `lr` and μ = `momentum`;
    either one left None is chosen (with the other) to minimise the quadratic model
    M(δ) = ∇Lᵀδ + ½δᵀ(F + λI)δ (§6.4, §7), F the exact Fisher on the step's data (the Gauss-Newton matrix,
    `GaussNewtonOperator`, equal to the Fisher for these losses).

    With `adapt_damping`, every `update_damping_every` steps (M&G's T₁) λ follows the Levenberg-Marquardt rule
    (§6.5): ρ = (L(θ + δ) − L(θ)) / (∇Lᵀδ + ½δᵀFδ) on the step's data (the model without λ), λ ← ω₁λ if
    ρ > 3/4, λ ← λ/ω₁ if ρ < 1/4 (ρ = −∞ where the model predicts no decrease), never below `min_damping`;
    ω₁ = `damping_factor`, by default (19/20)^T₁. The factored damping uses γ = √λ (M&G's γ = √(λ + η), with no
    ℓ2 term η here); their separate adaptation of γ (§6.6) is not done.

    The "mc" draws are seeded with (`random_state`, step count), so a run survives `state_dict`. State: `step`,
    `damping` (λ for the next step), `factors` and `inverses` (module name → (A, G), (Ă⁻¹, Ğ⁻¹)), `factor_updates`,
    `update` (δ), `lr` and `momentum` (the α and μ used), `rho` (None on steps without adaptation).
    """

    def __init__(self, model: nn.Module, *, loss: str = "mse", lr: float | None = None,
                 momentum: float | None = None, damping: float = 1e-2, adapt_damping: bool = True,
                 update_damping_every: int = 5, damping_factor: float | None = None, min_damping: float = 1e-8,
                 fisher_type: str = "mc", mc_samples: int = 1, ema_decay: float = 0.95,
                 update_factors_every: int = 1, update_inverses_every: int = 1, random_state: int = 0):
        unsupported = unsupported_layers(model)
        if unsupported:
            raise ValueError(f"KFAC supports nn.Linear layers only; the model has trained parameters in {unsupported}")
        if loss not in _LOSSES:
            raise ValueError(f"loss must be one of {list(_LOSSES)}, got {loss!r}")
        if fisher_type not in _FISHER_TYPES:
            raise ValueError(f"fisher_type must be one of {list(_FISHER_TYPES)}, got {fisher_type!r}")
        if mc_samples < 1 or (fisher_type != "mc" and mc_samples != 1):
            raise ValueError(f"mc_samples must be >= 1, and 1 unless fisher_type='mc'; got {mc_samples}")
        if (lr is not None and lr <= 0) or damping <= 0 or min_damping <= 0 or not 0 <= ema_decay < 1:
            raise ValueError(f"need lr > 0 or None, damping > 0, min_damping > 0 and 0 <= ema_decay < 1, got "
                             f"lr={lr}, damping={damping}, min_damping={min_damping}, ema_decay={ema_decay}")
        if min(update_damping_every, update_factors_every, update_inverses_every) < 1:
            raise ValueError("update_damping_every, update_factors_every and update_inverses_every must be >= 1")
        if damping_factor is not None and not 0 < damping_factor < 1:
            raise ValueError(f"damping_factor must lie in (0, 1), got {damping_factor}")
        super().__init__(model, _LOSSES[loss][0], dict(
            loss=loss, lr=lr, momentum=momentum, damping=damping, adapt_damping=adapt_damping,
            update_damping_every=update_damping_every,
            damping_factor=(19 / 20) ** update_damping_every if damping_factor is None else damping_factor,
            min_damping=min_damping, fisher_type=fisher_type, mc_samples=mc_samples, ema_decay=ema_decay,
            update_factors_every=update_factors_every, update_inverses_every=update_inverses_every,
            random_state=random_state))
        index = {name: i for i, name in enumerate(self.names)}
        self.layers = [(name, index.get(f"{name}.weight" if name else "weight"),
                        index.get(f"{name}.bias" if name else "bias"))
                       for name, module in model.named_modules() if isinstance(module, nn.Linear)
                       and any(p.requires_grad for p in module.parameters(recurse=False))]

    def _update_factors(self, data: Iterable, state: dict) -> None:
        group, count = self.param_groups[0], state.get("step", 0)
        seed = int(np.random.SeedSequence([group["random_state"], count]).generate_state(1)[0])
        batch = kronecker_factors(self.model, group["loss"], data, fisher_type=group["fisher_type"],
                                  mc_samples=group["mc_samples"], seed=seed)
        k = state.get("factor_updates", 0) + 1
        decay = min(1 - 1 / k, group["ema_decay"])
        old = state.get("factors", batch)
        state["factors"] = {name: tuple(decay * o + (1 - decay) * b for o, b in zip(old[name], batch[name],
                                                                                      strict=True))
                            for name in batch}
        state["factor_updates"] = k

    def precondition(self, gradient: torch.Tensor) -> torch.Tensor:
        """Δ = (Ă ⊗ Ğ)⁻¹ gradient, layer by layer, with the stored inverses (flat, the parameters' order)."""
        inverses = self.global_state["inverses"]
        parts = list(unflatten(gradient, [p.shape for p in self.param_groups[0]["params"]]))
        out = [None] * len(parts)
        for name, weight, bias in self.layers:
            blocks = [parts[i] if i == weight else parts[i][:, None] for i in (weight, bias) if i is not None]
            A_inv, G_inv = inverses[name]
            solved = G_inv @ torch.cat(blocks, dim=1) @ A_inv
            if weight is not None:
                out[weight] = solved[:, :parts[weight].shape[1]]
            if bias is not None:
                out[bias] = solved[:, -1]
        return torch.cat([part.reshape(-1) for part in out])

    def step(self, closure: Callable | None = None) -> float:
        group, state = self.param_groups[0], self.global_state
        op = self._operator(closure, GaussNewtonOperator)
        objective = op.objective
        theta, f0, g = objective.point, objective.loss(), objective.gradient()
        count, lam = state.get("step", 0), state.get("damping", group["damping"])
        if count % group["update_factors_every"] == 0:
            self._update_factors(objective.data, state)
        if count % group["update_inverses_every"] == 0 or "inverses" not in state:
            state["inverses"] = {name: damped_inverses(*factors, lam) for name, factors in state["factors"].items()}
        directions = [-self.precondition(g)] + ([state["update"]] if "update" in state else [])
        coefficients = [group["lr"], group["momentum"]][:len(directions)]
        adapt = group["adapt_damping"] and (count + 1) % group["update_damping_every"] == 0
        rho = None
        if adapt or None in coefficients:
            D = torch.stack(directions, dim=1)
            curvature = D.T @ (op @ D)
            coefficients = _minimise_model(D.T @ g, curvature + lam * D.T @ D, coefficients)
        delta = sum(c * d for c, d in zip(coefficients, directions, strict=True))
        if adapt:
            c = torch.tensor(coefficients, dtype=g.dtype, device=g.device)
            predicted = float(c @ (D.T @ g) + 0.5 * c @ curvature @ c)
            rho = (objective.loss(theta + delta) - f0) / predicted if predicted < 0 else -math.inf
            if rho > 0.75:
                lam = max(lam * group["damping_factor"], group["min_damping"])
            elif rho < 0.25:
                lam = lam / group["damping_factor"]
        self._write(theta + delta)
        state.update(step=count + 1, damping=lam, update=delta, lr=coefficients[0],
                     momentum=coefficients[1] if len(coefficients) == 2 else 0.0, rho=rho)
        return f0


def _minimise_model(b: torch.Tensor, C: torch.Tensor, fixed: list[float | None]) -> list[float]:
    """argmin over the coefficients c_i left None of bᵀc + ½cᵀCc, the others held at their values (M&G §7)."""
    free = [i for i, value in enumerate(fixed) if value is None]
    c = torch.tensor([0.0 if value is None else value for value in fixed], dtype=b.dtype, device=b.device)
    if free:
        held = [i for i in range(len(fixed)) if i not in free]
        rhs = -(b[free] + C[free][:, held] @ c[held])
        c[free] = torch.linalg.pinv(C[free][:, free]) @ rhs
    return [float(value) for value in c]
