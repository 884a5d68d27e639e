"""The loss landscape: curvature operators (Hessian, Gauss-Newton, empirical Fisher; Monte Carlo Fisher, K-FAC
and EKFAC from curvlinops) on flat parameter vectors, their damped inverses (CG, LSMR, Neumann), the output
Jacobian and the Hessian with respect to an intermediate feature, their spectra (Lanczos with residuals,
Hutchinson, Hutch++, XTrace, diagonal estimators, stochastic Lanczos quadrature, the index of a critical point)
and low-dimensional slices of the loss."""

from .feature_hessian import FeatureHessianOperator
from .fisher import MCFisherOperator
from .inverse import InverseOperator
from .jacobian import JacobianOperator, TransposedJacobianOperator
from .kfac_operator import EKFACOperator, KFACInverseOperator, KFACOperator
from .operators import (
    CurvatureOperator,
    EmpiricalFisherOperator,
    FunctionalLoss,
    GaussNewtonOperator,
    HessianOperator,
    SymmetricOperator,
    flatten_params,
    parameter_names,
    unflatten,
)
from .slices import (
    SliceResult,
    curvature_map_2d,
    filter_normalized_direction,
    loss_interpolation,
    loss_slice_1d,
    loss_slice_2d,
    plot_slice,
)
from .spectrum import (
    DiagonalEstimate,
    Eigenpairs,
    IndexEstimate,
    SpectralDensity,
    TraceEstimate,
    critical_point_index,
    extreme_ratio,
    hutchinson_diagonal,
    hutchinson_trace,
    hutchpp_trace,
    lanczos,
    spectral_density,
    xdiag,
    xtrace,
)
from .tracking import TrackingResult, plot_tracking, track
from .trajectory import (
    TrajectoryPlane,
    TrajectorySurface,
    plot_trajectory,
    stack_snapshots,
    trajectory_plane,
    trajectory_surface,
)

__all__ = ["CurvatureOperator", "EmpiricalFisherOperator", "FunctionalLoss", "GaussNewtonOperator", "HessianOperator",
           "SymmetricOperator", "EKFACOperator", "KFACInverseOperator", "KFACOperator", "flatten_params",
           "parameter_names", "unflatten", "SliceResult", "curvature_map_2d", "filter_normalized_direction",
           "loss_interpolation", "loss_slice_1d", "loss_slice_2d", "plot_slice", "DiagonalEstimate", "Eigenpairs",
           "IndexEstimate", "SpectralDensity", "TraceEstimate", "critical_point_index", "extreme_ratio",
           "hutchinson_diagonal", "hutchinson_trace", "hutchpp_trace", "lanczos", "spectral_density", "xdiag", "xtrace",
           "FeatureHessianOperator", "InverseOperator", "JacobianOperator", "MCFisherOperator",
           "TransposedJacobianOperator",
           "TrackingResult", "plot_tracking", "track", "TrajectoryPlane", "TrajectorySurface", "plot_trajectory",
           "stack_snapshots", "trajectory_plane", "trajectory_surface"]
