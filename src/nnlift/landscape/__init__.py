"""The loss landscape: curvature operators (Hessian, Gauss-Newton, empirical Fisher) on flat parameter vectors,
their spectra (Lanczos, Hutchinson, Hutch++, stochastic Lanczos quadrature, the index of a critical point) and
low-dimensional slices of the loss."""

from .operators import (
    CurvatureOperator,
    EmpiricalFisherOperator,
    FunctionalLoss,
    GaussNewtonOperator,
    HessianOperator,
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
    Eigenpairs,
    IndexEstimate,
    SpectralDensity,
    TraceEstimate,
    critical_point_index,
    extreme_ratio,
    hutchinson_trace,
    hutchpp_trace,
    lanczos,
    spectral_density,
)

__all__ = ["CurvatureOperator", "EmpiricalFisherOperator", "FunctionalLoss", "GaussNewtonOperator", "HessianOperator",
           "flatten_params", "parameter_names", "unflatten", "SliceResult", "curvature_map_2d",
           "filter_normalized_direction", "loss_interpolation", "loss_slice_1d", "loss_slice_2d", "plot_slice",
           "Eigenpairs", "IndexEstimate", "SpectralDensity", "TraceEstimate", "critical_point_index", "extreme_ratio",
           "hutchinson_trace", "hutchpp_trace", "lanczos", "spectral_density"]
