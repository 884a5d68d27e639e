"""Reproductions: each study regenerates its numbers (JSON) and figure (PNG) and compares them with the paper.

Every study module in `STUDIES` has `CLAIM` (the paper's claim), `run(fast, verbose, random_state) -> dict`,
`save(result, out_dir) -> list[Path]` and `report(result) -> str`; `nnlift reproduce NAME` runs one.
`demo` and `real_data` have their own configurations and commands.
"""

STUDIES = {
    "logistic-margin": ("logistic_margin", "GD on separable data converges to the L2 max margin (Soudry et al. 2018)"),
    "steepest-margin": ("steepest_margin", "steepest descent w.r.t. a norm -> that norm's max margin (Gunasekar 2018)"),
    "adagrad-direction": ("adagrad_direction", "AdaGrad's limit direction is not the L2 max margin"),
    "matrix-factorization": ("matrix_factorization", "GD on U U^T from small init -> minimum nuclear norm"),
    "linear-nets": ("linear_nets", "linear conv nets -> sparsity in the Fourier domain (Gunasekar et al. 2018)"),
    "adaptive-generalization": ("adaptive_generalization", "adaptive methods generalise worse (Wilson et al. 2017)"),
    "global-optimality": ("global_optimality", "homogeneous networks: certificates and growing (Haeffele-Vidal)"),
    "saddles": ("saddles", "error vs index of critical points; saddle-free Newton (Dauphin et al. 2014)"),
    "restarts": ("restarts", "final losses concentrate as networks widen (Choromanska et al. 2015)"),
    "backprop-failure": ("backprop_failure", "how often random-start backprop gets stuck"),
    "deep-linear": ("deep_linear", "exact sigmoidal learning dynamics of deep linear nets (Saxe et al. 2014)"),
    "momentum": ("momentum", "GD vs momentum vs Nesterov on ill-conditioned problems"),
    "network-size": ("network_size", "test error keeps falling past zero training error; path norm (Neyshabur 2015)"),
    "power-landscape": ("power_landscape", "tensor power method: stable fixed points = components iff orthogonal"),
    "initialization": ("initialization", "orthogonal init: dynamical isometry, depth-independent learning time"),
    "barron": ("barron", "non-realisable targets: risk vs k and n beside O(C_f^2/k) + O(1/n)"),
    "optimizers": ("optimizers", "nonlinear CG, natural gradient, Newton, HF on the deep autoencoder"),
}
