"""Statistical models of the analysis: combine datacards and pyhf workspaces from the merged histograms.

An *inference model* (:mod:`cf.inference.model`) says which histograms enter the fit and how: categories
(per config: a config category, a variable and the data), their processes (per config: a config process and
its MC datasets) and the nuisance parameters of each process, keyed by config as in columnflow. It is filled
by a function registered with the :func:`inference_model` decorator and chosen on the command line with
``--inference-model NAME``::

    @inference_model(calibrators=("jec",))
    def my_model(self: InferenceModel) -> None:
        self.add_category("sr", config_category="sr", config_variable="dnn.score_hh", mc_stats=True)
        self.add_process("HH", config_process="hh_ggf_bbtautau", is_signal=True)
        self.add_process("tt", config_process="tt")
        self.add_parameter("lumi", type=ParameterType.rate_gauss, effect=1.023)
        self.add_parameter("jec", process="*", type=ParameterType.shape, config_shift_source="jec")

The other modules turn merged histograms into the model's numbers (:mod:`cf.inference.shapes`), render the
combine datacards and shapes files (:mod:`cf.inference.datacard`), and build the equivalent pyhf workspace and
its asymptotic CLs limits (:mod:`cf.inference.workspace`).
"""

from __future__ import annotations

from cf.hist_util import FlowStrategy, select_histogram
from cf.inference.datacard import (
    category_file_name,
    format_number,
    render_datacard,
    shapes_file_histograms,
    write_shapes_file,
)
from cf.inference.model import (
    DATA_NAME,
    InferenceModel,
    ParameterTransformation,
    ParameterTransformations,
    ParameterType,
    inference_model,
    lnn_effect,
)
from cf.inference.shapes import CategoryShapes, category_shapes, poisson_toy, rebin, rebin_indices
from cf.inference.workspace import build_pyhf_spec, compute_limits, rough_limit_estimate, validate_pyhf_spec
from cf.registry import setting

__all__ = [
    "DATA_NAME",
    "CategoryShapes",
    "FlowStrategy",
    "InferenceModel",
    "ParameterTransformation",
    "ParameterTransformations",
    "ParameterType",
    "build_pyhf_spec",
    "category_file_name",
    "category_shapes",
    "compute_limits",
    "format_number",
    "inference_model",
    "lnn_effect",
    "poisson_toy",
    "rebin",
    "rebin_indices",
    "render_datacard",
    "rough_limit_estimate",
    "select_histogram",
    "setting",
    "shapes_file_histograms",
    "validate_pyhf_spec",
    "write_shapes_file",
]
