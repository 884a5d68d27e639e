"""Initialisation and dynamical isometry: the input-output Jacobian's singular values at initialisation and the
learning time vs depth of deep linear and deep tanh networks (Saxe, McClelland & Ganguli 2014, "Exact solutions to
the nonlinear dynamics of learning in deep linear neural networks", ICLR, Sec. 3-4 and the tanh experiments;
Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid in deep learning through dynamical isometry").

Networks: D square layers of width n, no biases, f(x) = W_D φ(W_{D−1} ⋯ φ(W_1 x)) with φ = identity (linear) or tanh
(last layer linear). Three starts: random orthogonal (Haar) weights, scaled Gaussian weights N(0, 1/n) (both with
gain σ_w = 1, the critical point of tanh with σ_b = 0), and greedy layer-wise pre-training: layer l is the encoder E
of an autoencoder h ↦ D φ(E h) trained by full-batch gradient descent from small random weights on the previous
layer's representation of the training inputs (unsupervised; the trained autoencoders, not Saxe et al.'s analytic
shortcut of setting each layer to the representation's singular vectors). The stack is greedy, so a depth-D net takes
its first D layers (for tanh nets the D-th, output, layer is then used without its tanh).

Jacobian at initialisation: J = W_D D_{D−1} W_{D−1} ⋯ D_1 W_1 with D_l = diag φ'(W_l h_{l−1}) (a product of weight
matrices for linear nets; for tanh nets at a few training inputs), in float64. Its log singular values span up to
~150 nats at depth 64, far beyond what the SVD of the explicit product resolves, so they come from the QR product
(F_l Q_{l−1} = Q_l R_l, J = Q_D R_D ⋯ R_1) and the SVD of the accumulated triangular factor. Spread = std over the
spectrum of log σ_i. For Gaussian linear nets two exact random-matrix facts check the measurement: along a fixed
input direction ‖J v‖² is a product of D independent χ²_n/n, so log ‖J v‖ has mean (D/2)(ψ(n/2) + ln(2/n)) and
variance (D/4) ψ'(n/2), linear in depth; and mean_i log σ_i = ln|det J|/n with |det W|² a product of independent
χ²_k/n, k = 1..n, so its mean is (D/2n) Σ_k (ψ(k/2) + ln(2/n)) and its variance (D/4n²) Σ_k ψ'(k/2). For D ≫ 1 the
log σ_i approach D times the Lyapunov exponents ½(ψ(k/2) + ln(2/n)) (Newman 1986), so their spread grows ∝ D.

Task: planted low-rank linear teacher y = M x on N = 2n inputs with sample covariance exactly P diag(λ) Pᵀ. Full-batch
gradient descent with learning rate η/(D λ_max), η from a geometric grid (the best η per depth and start, median over
seeds); learning time = iterations until the training loss is ≤ `criterion` × the loss of the zero predictor
(i.e. 1 − criterion of the drop from f = 0 to the optimum 0), capped at `max_iter` ("> cap").
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.special import digamma, polygamma

from ._common import batched_learning_time, fmt, markdown_table, progress, save_study, spearman, verdict
from .deep_linear import _initial_weights

__all__ = ["CLAIM", "InitializationConfig", "log_singular_values", "jacobian_factors", "gaussian_log_gain_moments",
           "gaussian_log_det_moments", "lyapunov_spread", "pretrain", "verdicts", "run", "save", "report"]

CLAIM = ("Saxe, McClelland & Ganguli (2014), 'Exact solutions to the nonlinear dynamics of learning in deep linear "
         "neural networks' (ICLR, Sec. 3-4), and Pennington, Schoenholz & Ganguli (2017), 'Resurrecting the sigmoid "
         "in deep learning through dynamical isometry': in deep linear nets random orthogonal weights make every "
         "singular value of the input-output Jacobian exactly 1 (dynamical isometry) and the learning time nearly "
         "independent of depth, while scaled Gaussian N(0, 1/n) weights spread the singular values more with every "
         "layer and the learning time grows with depth; greedy layer-wise (unsupervised) pre-training finds "
         "orthogonal-like initial conditions and also learns in a depth-independent time. In deep tanh nets at the "
         "critical gain σ_w = 1 orthogonal weights approximately keep the isometry while Gaussian ones spread the "
         "spectrum, and the better-conditioned Jacobian learns faster.")

INITS = ("orthogonal", "gaussian", "pretrained")
NETS = ("linear", "tanh")


@dataclass
class InitializationConfig:
    """Width n, depths, teacher rank and singular values, input covariance eigenvalues (λ_max, λ_min), seeds, learning
    rates η (lr = η / (depth λ_max)), iteration cap, loss criterion, pre-training budget, tanh Jacobian inputs, and the
    number of Gaussian linear nets for the random-matrix checks."""

    width: int = 32
    depths: list[int] = field(default_factory=lambda: [4, 8, 16, 32, 64])
    target_rank: int = 8
    target_singular_values: tuple[float, float] = (2.0, 0.5)
    input_eigenvalues: tuple[float, float] = (0.2, 0.05)
    seeds: int = 3
    etas: list[float] = field(default_factory=lambda: np.geomspace(0.2, 3.2, 5).tolist())
    max_iter: int = 400
    criterion: float = 0.1
    pretrain_iter: int = 100
    pretrain_lr: float = 0.8
    pretrain_scale: float = 0.1
    jacobian_inputs: int = 4
    rmt_nets: int = 256

    @classmethod
    def fast(cls) -> InitializationConfig:
        return cls(width=12, depths=[8, 32], target_rank=4, seeds=2, etas=np.geomspace(0.4, 3.2, 4).tolist(),
                   max_iter=200, jacobian_inputs=2, rmt_nets=256)


def log_singular_values(factors: list[torch.Tensor]) -> torch.Tensor:
    """log σ_i (descending, shape (B, n)) of J = F_L ⋯ F_1 for a batch of square factors (B, n, n): QR product
    F_l Q_{l−1} = Q_l R_l, so J = Q_L (R_L ⋯ R_1) has the singular values of the graded triangular product, whose SVD
    keeps relative accuracy where the explicit product's loses everything below σ_max × 1e-16."""
    first = factors[0]
    eye = torch.eye(first.shape[-1], dtype=first.dtype).expand_as(first)
    Q, T = eye, eye
    for F in factors:
        Q, R = torch.linalg.qr(F @ Q)
        T = R @ T
    return torch.log(torch.linalg.svdvals(T))


def jacobian_factors(weights: list[torch.Tensor], net: str, inputs: torch.Tensor | None = None) -> list[torch.Tensor]:
    """The factors of ∂f/∂x: W_1, …, W_D for a linear net; D_1 W_1, …, D_{D−1} W_{D−1}, W_D with D_l = diag(1 −
    tanh²(W_l h_{l−1})) for a tanh net at each input x (rows of `inputs`, (K, n)), batched as (B·K, n, n)."""
    if net == "linear":
        return list(weights)
    B, K = weights[0].shape[0], inputs.shape[0]
    h = inputs.expand(B, K, -1).unsqueeze(-1)
    factors = []
    for W in weights[:-1]:
        a = W.unsqueeze(1) @ h
        factors.append(((1 - torch.tanh(a) ** 2) * W.unsqueeze(1)).reshape(B * K, *W.shape[1:]))
        h = torch.tanh(a)
    factors.append(weights[-1].unsqueeze(1).expand(B, K, *weights[-1].shape[1:]).reshape(B * K, *weights[-1].shape[1:]))
    return factors


def gaussian_log_gain_moments(depth: int, width: int) -> tuple[float, float]:
    """Mean and variance of log ‖J v‖ (unit v) for J a product of `depth` n×n matrices with N(0, 1/n) entries:
    ‖J v‖² = Π χ²_n/n exactly, so (D/2)(ψ(n/2) + ln(2/n)) and (D/4) ψ'(n/2)."""
    return (depth / 2 * (float(digamma(width / 2)) + math.log(2 / width)),
            depth / 4 * float(polygamma(1, width / 2)))


def gaussian_log_det_moments(depth: int, width: int) -> tuple[float, float]:
    """Mean and variance of mean_i log σ_i = ln|det J| / n for the same product: |det W|² = Π_{k=1..n} χ²_k / n
    (Bartlett decomposition), so (D/2n) Σ_k (ψ(k/2) + ln(2/n)) and (D/4n²) Σ_k ψ'(k/2)."""
    k = np.arange(1, width + 1) / 2
    return (depth / (2 * width) * float(np.sum(digamma(k) + math.log(2 / width))),
            depth / (4 * width**2) * float(np.sum(polygamma(1, k))))


def lyapunov_spread(depth: int, width: int) -> float:
    """Large-depth prediction of std_i log σ_i for the Gaussian product: D × the std of the Lyapunov exponents
    ½(ψ(k/2) + ln(2/n)), k = 1..n (Newman 1986)."""
    return depth / 2 * float(np.std(digamma(np.arange(1, width + 1) / 2)))


def _task(config: InitializationConfig, rng: np.random.Generator) -> dict:
    """Inputs X (n, N = 2n) with X Xᵀ/N = P diag(λ) Pᵀ exactly, a rank-r teacher M = U diag(s) Vᵀ, Y = M X."""
    n = config.width
    N = 2 * n
    P = np.linalg.qr(rng.standard_normal((n, n)))[0]
    Z = np.linalg.qr(rng.standard_normal((N, n)))[0]
    lam = np.geomspace(*config.input_eigenvalues, n)
    X = math.sqrt(N) * (P * np.sqrt(lam)) @ Z.T
    U = np.linalg.qr(rng.standard_normal((n, config.target_rank)))[0]
    V = np.linalg.qr(rng.standard_normal((n, config.target_rank)))[0]
    M = U * np.geomspace(*config.target_singular_values, config.target_rank) @ V.T
    X, M = torch.from_numpy(X), torch.from_numpy(M)
    C = X @ X.T / N
    return {"X": X, "Y": M @ X, "M": M, "C": C, "zero_loss": float(0.5 * torch.trace(M @ C @ M.T))}


def pretrain(net: str, X: torch.Tensor, depth: int, n_nets: int, config: InitializationConfig,
             generator: torch.Generator) -> list[torch.Tensor]:
    """Greedy layer-wise autoencoders (the unsupervised pre-training Saxe et al. 2014 analyse): layer l is the
    encoder E of h ↦ D φ(E h), trained by full-batch GD (`pretrain_iter` steps, lr `pretrain_lr` / the largest
    variance of h) from N(0, scale²/n) weights on the representation h_{l−1} of the inputs X (n, N); φ = identity or
    tanh as in the net. Returns D tensors (n_nets, n, n)."""
    n, N = X.shape
    act = torch.tanh if net == "tanh" else (lambda a: a)
    h = X.expand(n_nets, n, N)
    weights = []
    for _ in range(depth):
        lr = config.pretrain_lr / torch.linalg.eigvalsh(h @ h.mT / N)[:, -1].view(-1, 1, 1)
        E, Dec = (config.pretrain_scale / math.sqrt(n) * torch.randn(n_nets, n, n, generator=generator,
                                                                     dtype=torch.float64) for _ in range(2))
        E.requires_grad_()
        Dec.requires_grad_()
        for _ in range(config.pretrain_iter):
            loss = 0.5 * ((h - Dec @ act(E @ h)) ** 2).sum() / N
            gE, gD = torch.autograd.grad(loss, (E, Dec))
            with torch.no_grad():
                E -= lr * gE
                Dec -= lr * gD
        weights.append(E.detach())
        h = act(E.detach() @ h)
    return weights


def _initial(init: str, net: str, depth: int, task: dict, config: InitializationConfig, seed: int,
             pretrained: dict) -> list[torch.Tensor]:
    """`config.seeds` starts of one kind; pre-trained layers are greedy, so every depth takes a prefix of the deepest
    stack (computed once per net)."""
    if init == "pretrained":
        if net not in pretrained:
            generator = torch.Generator().manual_seed(seed)
            pretrained[net] = pretrain(net, task["X"], max(config.depths), config.seeds, config, generator)
        return pretrained[net][:depth]
    generator = torch.Generator().manual_seed(seed)
    return [W.detach() for W in _initial_weights(init, depth, config.seeds, config.width, generator)]


def _loss_function(net: str, task: dict):
    """Per-network training loss ½ mean_k ‖y_k − f(x_k)‖²; for linear nets ½ tr((J − M) C (J − M)ᵀ), the same."""
    if net == "linear":
        def loss(weights):
            E = weights[0]
            for W in weights[1:]:
                E = W @ E
            E = E - task["M"]
            return 0.5 * ((E @ task["C"]) * E).sum(dim=(1, 2))
        return loss

    def loss(weights):
        h = task["X"]
        for W in weights[:-1]:
            h = torch.tanh(W @ h)
        return 0.5 * ((weights[-1] @ h - task["Y"]) ** 2).sum(dim=(1, 2)) / task["X"].shape[1]
    return loss


def _learning_time(weights0: list[torch.Tensor], loss_fn, task: dict, depth: int, config: InitializationConfig) -> dict:
    """Full-batch GD from the same `seeds` starts for every η at once (lr = η / (depth λ_max), λ_max the largest
    input variance); iterations until the loss is ≤ criterion × the zero predictor's, median over seeds, best η
    (`batched_learning_time`)."""
    n_eta, n_seed = len(config.etas), weights0[0].shape[0]
    zero_loss = task["zero_loss"]
    weights = [W.repeat(n_eta, 1, 1).requires_grad_() for W in weights0]
    lr = torch.tensor(np.repeat(config.etas, n_seed) / (depth * config.input_eigenvalues[0]),
                      dtype=torch.float64).view(-1, 1, 1)
    found = batched_learning_time(weights, loss_fn, lr, config.criterion * zero_loss, n_eta, config.max_iter,
                                  blow_up=1e6 * zero_loss)
    return {"iterations": found["iterations"], "censored": found["censored"],
            "best_eta": None if found["censored"] else float(config.etas[found["best"]]),
            "initial_loss_over_zero_loss": float(np.median(found["first_losses"][:n_seed])) / zero_loss}


def _spectrum(weights: list[torch.Tensor], net: str, task: dict, config: InitializationConfig) -> dict:
    """Statistics of log σ(J) at the start over the nets (and, for tanh, the Jacobian inputs)."""
    inputs = task["X"][:, :config.jacobian_inputs].T
    log_sigma = log_singular_values(jacobian_factors(weights, net, inputs)).numpy()
    return {"spread": float(np.mean(np.std(log_sigma, axis=1))),
            "log_condition": float(np.mean(log_sigma[:, 0] - log_sigma[:, -1])),
            "mean_log_sigma": float(np.mean(log_sigma)),
            "max_abs_sigma_minus_1": float(np.max(np.abs(np.expm1(log_sigma)))),
            "example_log_sigma": log_sigma[0].tolist()}


def _random_matrix_checks(config: InitializationConfig, seed: int) -> list[dict]:
    """`rmt_nets` Gaussian linear nets per depth: log ‖J e_j‖ over all columns and nets, and mean_i log σ_i per net,
    against the exact moments; the spectrum's spread against the Lyapunov prediction."""
    generator = torch.Generator().manual_seed(seed)
    n, rows = config.width, []
    for depth in config.depths:
        weights = [W.detach() for W in _initial_weights("gaussian", depth, config.rmt_nets, n, generator)]
        product = weights[0]
        for W in weights[1:]:
            product = W @ product
        log_gain = torch.log(torch.linalg.vector_norm(product, dim=1)).numpy().ravel()
        log_sigma = log_singular_values(weights).numpy()
        gain_mean, gain_var = gaussian_log_gain_moments(depth, n)
        det_mean, det_var = gaussian_log_det_moments(depth, n)
        mean_log_sigma = log_sigma.mean(axis=1)
        rows.append({"depth": depth, "log_gain_mean": float(log_gain.mean()), "log_gain_mean_exact": gain_mean,
                     "log_gain_var": float(log_gain.var(ddof=1)), "log_gain_var_exact": gain_var,
                     "mean_log_sigma": float(mean_log_sigma.mean()), "mean_log_sigma_exact": det_mean,
                     "mean_log_sigma_z": float((mean_log_sigma.mean() - det_mean) / math.sqrt(det_var / len(
                         mean_log_sigma))),
                     "spread": float(np.mean(np.std(log_sigma, axis=1))), "lyapunov_spread": lyapunov_spread(depth, n)})
    return rows


def run(fast: bool = False, verbose: int = 0, random_state: int = 0) -> dict:
    """Jacobian spectra at the start and learning times for every (net, start, depth); the random-matrix checks."""
    started = time.perf_counter()
    config = InitializationConfig.fast() if fast else InitializationConfig()
    task = _task(config, np.random.default_rng(random_state))
    pretrained: dict = {}
    runs = []
    with progress(verbose) as bar:
        bar_task = bar.add_task("initialization", total=1 + len(NETS) * len(INITS) * len(config.depths))
        rmt = _random_matrix_checks(config, random_state * 1000 + 7)
        bar.advance(bar_task)
        for net in NETS:
            loss_fn = _loss_function(net, task)
            for init in INITS:
                for depth in config.depths:
                    weights = _initial(init, net, depth, task, config, random_state * 1000 + depth, pretrained)
                    row = {"net": net, "init": init, "depth": depth, **_spectrum(weights, net, task, config),
                           **_learning_time(weights, loss_fn, task, depth, config)}
                    runs.append(row)
                    bar.advance(bar_task)
    result = {"config": asdict(config), "random_state": random_state, "zero_loss": task["zero_loss"],
              "random_matrix": rmt, "runs": runs}
    result["summary"] = _summary(result)
    result["agrees"] = verdicts(result["summary"])
    result["wall_time_s"] = time.perf_counter() - started
    return result


def _rows(result: dict, net: str, init: str) -> list[dict]:
    return [r for r in result["runs"] if r["net"] == net and r["init"] == init]


def _growth(rows: list[dict]) -> float:
    """Learning time at the largest depth over that at the smallest."""
    return rows[-1]["iterations"] / max(rows[0]["iterations"], 1.0)


def _plateau(rows: list[dict]) -> float:
    """Learning time at the largest depth D over that at the smallest depth ≥ D/4: Saxe et al.'s depth independence
    is a limit (the time tends to a constant as D grows), so it is read on the deepest factor-4 range."""
    deep = [r for r in rows if 4 * r["depth"] >= rows[-1]["depth"]]
    return _growth(deep)


def _summary(result: dict) -> dict:
    """The numbers the verdicts read."""
    rmt = result["random_matrix"]
    summary = {
        "depths": [r["depth"] for r in rmt],
        "orthogonal_linear_max_abs_sigma_minus_1": max(r["max_abs_sigma_minus_1"]
                                                       for r in _rows(result, "linear", "orthogonal")),
        "gaussian_linear_spreads": [r["spread"] for r in rmt],
        "log_gain_var_ratios": [r["log_gain_var"] / r["log_gain_var_exact"] for r in rmt],
        "mean_log_sigma_z": [r["mean_log_sigma_z"] for r in rmt],
        "spread_over_lyapunov": [r["spread"] / r["lyapunov_spread"] for r in rmt],
    }
    for net in NETS:
        for init in INITS:
            rows = _rows(result, net, init)
            summary[f"{net}_{init}_growth"] = _growth(rows)
            summary[f"{net}_{init}_plateau"] = _plateau(rows)
            summary[f"{net}_{init}_censored_at_max_depth"] = rows[-1]["censored"]
            summary[f"{net}_{init}_time_at_max_depth"] = rows[-1]["iterations"]
            summary[f"{net}_{init}_spreads"] = [r["spread"] for r in rows]
    runs = result["runs"]
    summary["spearman_spread_time"] = spearman([r["spread"] for r in runs], [r["iterations"] for r in runs])
    # within each depth, so that depth (which raises both the spread and the time) cannot carry the correlation
    summary["spearman_spread_time_by_depth"] = [
        spearman([r["spread"] for r in runs if r["depth"] == depth], [r["iterations"] for r in runs
                                                                       if r["depth"] == depth])
        for depth in summary["depths"]]
    return summary


def verdicts(summary: dict) -> dict[str, bool]:
    """One boolean per claim, each against a stated tolerance (see `report`)."""
    gauss, depths = summary["gaussian_linear_spreads"], summary["depths"]
    tanh_orth, tanh_gauss = summary["tanh_orthogonal_spreads"], summary["tanh_gaussian_spreads"]
    g_orth, g_gauss = summary["linear_orthogonal_growth"], summary["linear_gaussian_growth"]
    return {
        "orthogonal_linear_isometry": summary["orthogonal_linear_max_abs_sigma_minus_1"] <= 1e-10,
        "gaussian_linear_spread_grows": bool(all(a < b for a, b in zip(gauss, gauss[1:], strict=False))
                                             and gauss[-1] / gauss[0] >= math.sqrt(depths[-1] / depths[0])),
        "gaussian_linear_random_matrix_theory": bool(all(0.8 <= r <= 1.25 for r in summary["log_gain_var_ratios"])
                                                     and all(abs(z) < 4 for z in summary["mean_log_sigma_z"])),
        "linear_orthogonal_depth_independent": bool(summary["linear_orthogonal_plateau"] < 1.5
                                                    and not summary["linear_orthogonal_censored_at_max_depth"]),
        "linear_gaussian_slows_with_depth": bool(g_gauss > 4 * max(g_orth, 1.0)),
        "linear_pretrained_depth_independent": bool(summary["linear_pretrained_plateau"] < 1.5
                                                    and not summary["linear_pretrained_censored_at_max_depth"]),
        "linear_pretrained_near_isometric": summary["linear_pretrained_spreads"][-1] <= 0.25 * gauss[-1],
        "tanh_orthogonal_concentrates": bool(all(o <= 0.25 * g for o, g in zip(tanh_orth, tanh_gauss, strict=True))),
        "tanh_orthogonal_learns_faster": summary["tanh_orthogonal_time_at_max_depth"]
        <= 0.5 * summary["tanh_gaussian_time_at_max_depth"],
        "faster_when_better_conditioned": bool(sum(rho >= 0.5 for rho in summary["spearman_spread_time_by_depth"])
                                               > len(summary["depths"]) / 2),
    }


def save(result: dict, out_dir) -> list[Path]:
    """initialization.json and initialization.png (spectra at the largest depth; spread vs depth with the exact and
    Lyapunov predictions; learning time vs depth; learning time vs spread)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(16, 8.5))
    axes = figure.subplots(2, 3)
    depths = result["config"]["depths"]
    markers = {"orthogonal": "o", "gaussian": "s", "pretrained": "^"}
    for ax, net in zip(axes[0, :2], NETS, strict=True):
        for init in INITS:
            row = _rows(result, net, init)[-1]
            ax.plot(np.arange(1, len(row["example_log_sigma"]) + 1), row["example_log_sigma"], marker=markers[init],
                    ms=4, ls="--" if init == "pretrained" else "-", label=init)
        ax.set(xlabel="index i", ylabel="log σ_i(J)",
               title=f"{net} net, depth {depths[-1]}: Jacobian spectrum at start")
        ax.legend(fontsize="small")
    ax = axes[0, 2]
    rmt = result["random_matrix"]
    ax.plot(depths, [r["spread"] for r in rmt], "ks-", label="Gaussian linear: std log σ")
    ax.plot(depths, [r["lyapunov_spread"] for r in rmt], "k:", label="Lyapunov prediction D·std(μ)")
    ax.plot(depths, [math.sqrt(r["log_gain_var"]) for r in rmt], "C3o-", label="Gaussian linear: std log‖Jv‖")
    ax.plot(depths, [math.sqrt(r["log_gain_var_exact"]) for r in rmt], "C3--", label="exact √(D ψ'(n/2)/4)")
    for net, style in (("linear", "-"), ("tanh", "--")):
        for init in ("orthogonal", "pretrained") if net == "linear" else INITS:
            ax.plot(depths, [max(r["spread"], 1e-3) for r in _rows(result, net, init)], style,
                    marker=markers[init], label=f"{net} {init}: std log σ")
    ax.set(xscale="log", yscale="log", xlabel="depth D", ylabel="spread (floored at 1e-3)",
           title="Jacobian spread at start")
    ax.set_xticks(depths, [str(D) for D in depths])
    ax.minorticks_off()
    ax.legend(fontsize="x-small")
    for ax, net in zip(axes[1, :2], NETS, strict=True):
        for init in INITS:
            rows = _rows(result, net, init)
            ax.plot(depths, [r["iterations"] for r in rows], marker=markers[init], label=init)
            capped = [r for r in rows if r["censored"]]
            if capped:
                ax.plot([r["depth"] for r in capped], [r["iterations"] for r in capped], "kx", ms=10)
        ax.set(xscale="log", yscale="log", xlabel="depth D", ylabel="iterations to criterion (best η; x: > cap)",
               title=f"{net} net: learning time vs depth")
        ax.set_xticks(depths, [str(D) for D in depths])
        ax.minorticks_off()
        ax.legend(fontsize="small")
    ax = axes[1, 2]
    for net, color in (("linear", "C0"), ("tanh", "C1")):
        for init in INITS:
            rows = _rows(result, net, init)
            ax.scatter([max(r["spread"], 1e-3) for r in rows], [r["iterations"] for r in rows], c=color,
                       marker=markers[init], label=f"{net} {init}")
    ax.set(xscale="log", yscale="log", xlabel="std log σ(J) at start (floored at 1e-3)",
           ylabel="iterations to criterion",
           title=f"learning time vs spread (Spearman {fmt(result['summary']['spearman_spread_time'], 2)})")
    ax.legend(fontsize="x-small")
    return save_study(result, out_dir, "initialization", figure)


def report(result: dict) -> str:
    """The claims next to the measured numbers, one verdict each."""
    s, ok, config = result["summary"], result["agrees"], result["config"]
    rmt, cap = result["random_matrix"], config["max_iter"]

    def times(net, init):
        return ", ".join(f"D={r['depth']}: {'> ' if r['censored'] else ''}{r['iterations']:.0f}"
                         for r in _rows(result, net, init))

    def spreads(values):
        return ", ".join(fmt(v, 2) for v in values)

    table = [
        ["orthogonal linear: all σ_i(J) = 1 (tolerance 1e-10)",
         f"max abs(σ_i − 1) = {s['orthogonal_linear_max_abs_sigma_minus_1']:.1e}",
         verdict(ok["orthogonal_linear_isometry"])],
        ["Gaussian linear: spread of log σ grows with depth (monotone, and at least like √D: Var log σ ∝ D or faster)",
         f"std log σ: {spreads(s['gaussian_linear_spreads'])}; / Lyapunov D·std(μ): "
         f"{spreads(s['spread_over_lyapunov'])}", verdict(ok["gaussian_linear_spread_grows"])],
        ["Gaussian linear: Var log‖Jv‖ = D ψ'(n/2)/4 (linear in D) and E mean log σ = (D/2n) Σ(ψ(k/2) + ln(2/n)) "
         "(variance ratio in [0.8, 1.25], z-score of the mean within ±4)",
         f"Var ratio: {spreads(s['log_gain_var_ratios'])}; z: {spreads(s['mean_log_sigma_z'])}",
         verdict(ok["gaussian_linear_random_matrix_theory"])],
        ["orthogonal linear: depth-independent learning time (< 1.5× over the deepest factor-4 range of D)",
         f"{times('linear', 'orthogonal')}; ×{s['linear_orthogonal_plateau']:.2g} over that range, "
         f"×{s['linear_orthogonal_growth']:.2g} over all depths",
         verdict(ok["linear_orthogonal_depth_independent"])],
        ["Gaussian linear: learning time grows with depth (growth over all depths > 4× the orthogonal one)",
         f"{times('linear', 'gaussian')}; ×{'>' if s['linear_gaussian_censored_at_max_depth'] else ''}"
         f"{s['linear_gaussian_growth']:.2g}", verdict(ok["linear_gaussian_slows_with_depth"])],
        ["pre-trained linear: depth-independent learning time (< 1.5× over the deepest factor-4 range of D)",
         f"{times('linear', 'pretrained')}; ×{s['linear_pretrained_plateau']:.2g} over that range, "
         f"×{s['linear_pretrained_growth']:.2g} over all depths",
         verdict(ok["linear_pretrained_depth_independent"])],
        ["pre-trained linear: orthogonal-like start (spread at max depth ≤ ¼ Gaussian's)",
         f"std log σ: {spreads(s['linear_pretrained_spreads'])}", verdict(ok["linear_pretrained_near_isometric"])],
        ["tanh σ_w = 1: orthogonal keeps σ_i concentrated (spread ≤ ¼ Gaussian's at every depth)",
         f"orthogonal {spreads(s['tanh_orthogonal_spreads'])} vs Gaussian {spreads(s['tanh_gaussian_spreads'])}",
         verdict(ok["tanh_orthogonal_concentrates"])],
        ["tanh: orthogonal learns faster (≤ ½ the Gaussian time at max depth)",
         f"orthogonal {times('tanh', 'orthogonal')}; Gaussian {times('tanh', 'gaussian')}",
         verdict(ok["tanh_orthogonal_learns_faster"])],
        ["learning is faster for a better-conditioned Jacobian (Spearman ρ(spread, time) ≥ 0.5 within a majority of "
         "the depths, over the (net, start) runs of each)",
         "ρ by depth: " + ", ".join(f"D={d}: {fmt(rho, 2)}" for d, rho in
                                    zip(s["depths"], s["spearman_spread_time_by_depth"], strict=True))
         + f"; pooled over all {len(result['runs'])} runs {fmt(s['spearman_spread_time'], 3)}",
         verdict(ok["faster_when_better_conditioned"])],
    ]
    detail = markdown_table(
        ["net", "start", "depth", "std log σ(J)", "log σ_max/σ_min", "mean log σ", "iterations", "best η"],
        [[r["net"], r["init"], str(r["depth"]), fmt(r["spread"]), fmt(r["log_condition"]), fmt(r["mean_log_sigma"]),
          f"{'> ' if r['censored'] else ''}{r['iterations']:.0f}", fmt(r["best_eta"], 2)]
         for r in result["runs"]])
    rmt_table = markdown_table(
        ["depth", "mean log‖Jv‖ (exact)", "Var log‖Jv‖ (exact)", "mean log σ (exact)", "std log σ (Lyapunov)"],
        [[str(r["depth"]), f"{fmt(r['log_gain_mean'])} ({fmt(r['log_gain_mean_exact'])})",
          f"{fmt(r['log_gain_var'])} ({fmt(r['log_gain_var_exact'])})",
          f"{fmt(r['mean_log_sigma'])} ({fmt(r['mean_log_sigma_exact'])})",
          f"{fmt(r['spread'])} ({fmt(r['lyapunov_spread'])})"] for r in rmt])
    setup = (f"Width n = {config['width']}, no biases; task: rank-{config['target_rank']} linear teacher on "
             f"{2 * config['width']} inputs; full-batch GD with lr = η/(D λ_max), best η of {len(config['etas'])} "
             f"(median of {config['seeds']} seeds); learning time = iterations until the loss ≤ "
             f"{config['criterion']:g} × the zero predictor's, cap {cap}. Pre-training: greedy layer-wise "
             f"autoencoders trained by GD ({config['pretrain_iter']} steps per layer). Random-matrix checks: "
             f"{config['rmt_nets']} Gaussian linear nets per depth.")
    return ("## initialization\n\n" + CLAIM + "\n\n" + setup + "\n\n"
            + markdown_table(["claim", "measured", "verdict"], table) + "\n\n" + detail + "\n\n" + rmt_table)
