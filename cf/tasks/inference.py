"""Statistical inference: combine datacards, a pyhf workspace and the upper limit on the signal strength.

    MergeHistograms (every dataset and shift the model needs) -> CreateDatacards -> CreatePyhfWorkspace -> PyhfLimit

All tasks take ``--inference-model NAME`` (a model of the law.cfg ``inference_modules``) and
``--inference-model-settings key=value,...`` (class attributes of the model, e.g. ``signal_scale=100``).
``--calibrators``, ``--selector``, ``--producers`` and ``--ml-models`` default to the model's choice (then the
config's defaults); the model's shape parameters must be implemented by them (e.g. ``jec`` by the calibrator
``jec``), otherwise the task refuses to run instead of writing up / down histograms that equal nominal.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import law
import luigi
import numpy as np

from cf.analysis import analysis_setting, get_config, load_analysis, load_modules
from cf.functions import calibrators, producers, selectors
from cf.inference import (
    CategoryShapes,
    InferenceModel,
    build_pyhf_spec,
    category_shapes,
    compute_limits,
    read_shapes_file,
    render_datacard,
    validate_pyhf_spec,
    write_shapes_file,
)
from cf.io import atomic_path, dump_json, load_json
from cf.ml import parse_settings
from cf.tasks.base import CalibratorsMixin, ConfigTask, ProducersMixin, SelectorMixin
from cf.tasks.histograms import MergeHistograms, MLModelsMixin, load_histograms
from cf.util import UserError

__all__ = ["CreateDatacards", "CreatePyhfWorkspace", "InferenceModelMixin", "PyhfLimit", "inference_model_instance"]


@functools.cache
def inference_model_instance(name: str, settings: tuple[str, ...], config: str) -> InferenceModel:
    """The registered inference model ``name``, resolved against the config, with ``key=value`` settings."""
    load_modules("inference_modules")
    model_cls = InferenceModel.get_cls(name)
    try:
        parsed = parse_settings(list(settings))
    except ValueError as error:
        raise UserError(str(error)) from None
    return model_cls(get_config(load_analysis(), config), settings=parsed)


def _function_providers(shifts: set[str]) -> list[str]:
    """The registered calibrators / selectors / producers implementing all of ``shifts``, as 'kind name'."""
    return [
        f"{registry.kind} '{name}'"
        for registry in (calibrators, selectors, producers)
        for name in registry.names()
        if shifts <= registry.get(name).shifts
    ]


class InferenceModelMixin(MLModelsMixin, ProducersMixin, SelectorMixin, CalibratorsMixin, ConfigTask):
    """``--inference-model NAME`` and ``--inference-model-settings k=v,...``; function defaults from the model."""

    inference_model = luigi.Parameter(description="name of the inference model (see inference_modules in law.cfg)")
    inference_model_settings = law.CSVParameter(
        default=(),
        description="settings of the inference model as key=value pairs, e.g. signal_scale=100",
    )

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        model = None
        if "inference_model" in params:
            config = params.get("config") or analysis_setting("default_config")
            model = inference_model_instance(
                params["inference_model"], tuple(params.get("inference_model_settings", ())), config
            )
            # the model's functions are the defaults; explicit command-line values win
            defaults = {
                "calibrators": model.calibrators,
                "producers": model.producers,
                "ml_models": model.required_ml_models,
            }
            for key, value in defaults.items():
                if key in params and not params[key] and value is not None:
                    params[key] = tuple(value)
            if "selector" in params and not params["selector"] and model.selector:
                params["selector"] = model.selector
        params = super().modify_param_values(params)
        if model is not None and "calibrators" in params:
            cls._check_model_functions(model, params)
        return params

    @staticmethod
    def _check_model_functions(model: InferenceModel, params: dict[str, Any]) -> None:
        missing_models = [name for name in model.required_ml_models if name not in params.get("ml_models", ())]
        if missing_models:
            raise UserError(
                f"inference model '{model.name}' reads variables of the ML model(s) {', '.join(missing_models)}; "
                f"add them to --ml-models (given: {', '.join(params.get('ml_models', ())) or 'none'})",
            )
        funcs = [calibrators.get(name) for name in params["calibrators"]]
        funcs += [selectors.get(params["selector"])]
        funcs += [producers.get(name) for name in params["producers"]]
        implemented = {shift for func in funcs for shift in func.shifts}
        missing = sorted(model.required_shifts() - implemented)
        if missing:
            providers = _function_providers(set(missing))
            raise UserError(
                f"the shape parameters of inference model '{model.name}' need the shift(s) {', '.join(missing)}, "
                f"which none of calibrators ({', '.join(params['calibrators']) or 'none'}), selector "
                f"'{params['selector']}' and producers ({', '.join(params['producers']) or 'none'}) implement: "
                f"their histograms would equal nominal; implemented by: {', '.join(providers) or 'nothing'} "
                "(set calibrators / selector / producers in the model or on the command line)",
            )

    @property
    def inference_model_inst(self) -> InferenceModel:
        return inference_model_instance(self.inference_model, tuple(self.inference_model_settings), self.config)

    def store_parts(self) -> list[str]:
        model = self.inference_model_inst
        parts = [
            *super().store_parts(),
            "calib__" + ("__".join(self.calibrators) or "none"),
            f"sel__{self.selector}",
            "prod__" + ("__".join(self.producers) or "none"),
        ]
        if self.ml_models:
            parts.append("ml__" + "__".join(self.ml_models))
        inference = f"inf__{model.name}"
        return [*parts, f"{inference}__{model.settings_repr}" if model.settings_repr else inference]


class CreateDatacards(InferenceModelMixin):
    """Per category of the inference model, a combine text datacard and its ROOT shapes file (written with uproot).

    Requires ``cf.MergeHistograms`` of the model's variables for every dataset of the model: nominal, and for
    MC the up / down shifts of its shape parameters. Histogram flow bins are folded into the first / last bin,
    negative bins are set to zero (``clip_negative_bins``), so that the datacard rates are the integrals of the
    shapes-file histograms.
    """

    def requires(self) -> dict[str, dict[str, MergeHistograms]]:
        model = self.inference_model_inst
        variables = tuple(sorted({category.config_variable for category in model.categories}))
        reqs: dict[str, dict[str, MergeHistograms]] = {}
        for dataset, shifts in model.dataset_shifts().items():
            reqs[dataset] = {
                shift: MergeHistograms.req(
                    self, dataset=dataset, shift=shift, variables=variables, ml_models=self.ml_models
                )
                for shift in shifts
            }
        return reqs

    def output(self) -> dict[str, dict[str, law.LocalFileTarget]]:
        return {
            category.name: {
                "datacard": self.target(f"datacard__{category.name}.txt"),
                "shapes": self.target(f"shapes__{category.name}.root"),
            }
            for category in self.inference_model_inst.categories
        }

    def run(self) -> None:
        model = self.inference_model_inst
        inputs = self.input()
        loaded: dict[str, dict[str, dict[str, Any]]] = {
            dataset: {shift: load_histograms(target.path) for shift, target in shifts.items()}
            for dataset, shifts in inputs.items()
        }
        outputs = self.output()
        for category in model.categories:
            variable = category.config_variable
            histograms: dict[str, dict[str, Any]] = {}
            for dataset, shifts in loaded.items():
                histograms[dataset] = {}
                for shift, content in shifts.items():
                    if variable not in content:
                        raise UserError(
                            f"the histograms of dataset '{dataset}' (shift '{shift}', {inputs[dataset][shift].path}) "
                            f"have no variable '{variable}'",
                        )
                    histograms[dataset][shift] = content[variable]
            shapes = category_shapes(model, category.name, histograms)
            shapes_target = outputs[category.name]["shapes"]
            write_shapes_file(shapes_target.path, model, category.name, shapes)
            text = render_datacard(model, category.name, shapes, os.path.basename(shapes_target.path))
            with atomic_path(outputs[category.name]["datacard"].path) as tmp_path, open(tmp_path, "w") as file:
                file.write(text)
            self.publish_message(yields_summary(model, category.name, shapes))


def yields_summary(model: InferenceModel, category: str, shapes: CategoryShapes) -> str:
    """One line per process with its rate in the category, and the observation."""
    lines = [f"category '{category}':"]
    lines += [f"  {process.name:<16} {shapes.rate(process.name):14.6g}" for process in model.processes]
    lines.append(f"  {'observation':<16} {shapes.observation:14.6g}")
    return "\n".join(lines)


class CreatePyhfWorkspace(InferenceModelMixin):
    """The inference model as a pyhf (HistFactory) workspace, from the datacards' shapes files, schema-validated."""

    def requires(self) -> CreateDatacards:
        return CreateDatacards.req(self)

    def output(self) -> law.LocalFileTarget:
        return self.target("workspace.json")

    def run(self) -> None:
        model = self.inference_model_inst
        inputs = self.input()
        shapes = {
            category.name: read_shapes_file(inputs[category.name]["shapes"].path, model, category.name)
            for category in model.categories
        }
        spec = build_pyhf_spec(model, shapes)
        validate_pyhf_spec(spec)
        dump_json(self.output().path, spec)


class PyhfLimit(InferenceModelMixin):
    """The 95% CL upper limit on the signal strength with pyhf (asymptotic CLs): json numbers and a CLs plot.

    ``limits.json`` holds the expected limits of the background-only Asimov data (median, +-1 sigma, +-2 sigma),
    the observed limit when every category has real data (else null), and the CLs scan; ``limits.png`` /
    ``limits.pdf`` show the scan with the expected band (the "Brazil" band).
    """

    def requires(self) -> CreatePyhfWorkspace:
        return CreatePyhfWorkspace.req(self)

    def output(self) -> dict[str, law.LocalFileTarget]:
        return {name: self.target(f"limits.{name}") for name in ("json", "png", "pdf")}

    def run(self) -> None:
        model = self.inference_model_inst
        spec = load_json(self.input().path)
        observed = all(category.has_real_data for category in model.categories)
        result = compute_limits(spec, observed=observed)
        result.update(
            {
                "inference_model": model.name,
                "settings": model.settings,
                "signal_scale": model.signal_scale,
                "config": self.config,
                "workspace": self.input().path,
            }
        )
        outputs = self.output()
        dump_json(outputs["json"].path, result)
        title = f"{model.name} ({self.config})"
        for fmt in ("png", "pdf"):
            plot_limits(result, outputs[fmt].path, fmt, title)
        expected = result["expected"]
        self.publish_message(
            f"expected 95% CL limit on {result['poi']}: {expected['median']:.4g} "
            f"(-1 sigma {expected['-1sigma']:.4g}, +1 sigma {expected['+1sigma']:.4g}), observed: {result['observed']}",
        )


def plot_limits(result: dict[str, Any], path: str, fmt: str, title: str) -> None:
    """The CLs scan with the expected +-1 / +-2 sigma band, the observed CLs and the CL line, written atomically."""
    from matplotlib.figure import Figure

    scan = result["scan"]
    # CLs is 1 at a signal strength of 0
    pois = np.asarray([0.0, *scan["poi"]])
    expected = np.asarray([[1.0] * 5, *scan["cls_expected"]])
    observed = [1.0, *scan["cls_observed"]] if scan["cls_observed"] is not None else None
    level = 1.0 - result["cl"]
    figure = Figure(figsize=(7.0, 5.0), layout="constrained")
    ax = figure.add_subplot()
    ax.fill_between(pois, expected[:, 0], expected[:, 4], color="#ffcc00", label=r"expected $\pm 2\sigma$")
    ax.fill_between(pois, expected[:, 1], expected[:, 3], color="#00cc00", label=r"expected $\pm 1\sigma$")
    ax.plot(pois, expected[:, 2], color="black", linestyle="--", label="expected (median)")
    if observed is not None:
        ax.plot(pois, observed, color="black", marker=".", label="observed")
    ax.axhline(level, color="red", label=f"CLs = {level:g}")
    median = result["expected"]["median"]
    ax.axvline(median, color="grey", linestyle=":")
    text = f"expected: {median:.3g} (68%: {result['expected']['-1sigma']:.3g} - {result['expected']['+1sigma']:.3g})"
    if result["observed"] is not None:
        text += f"\nobserved: {result['observed']:.3g}"
    ax.text(0.97, 0.6, text, transform=ax.transAxes, ha="right", va="top", fontsize=9)
    ax.set_xlim(0.0, float(pois[-1]))
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel(f"signal strength {result['poi']}")
    ax.set_ylabel("CLs")
    ax.set_title(f"{title}: {100 * result['cl']:.0f}% CL upper limit", fontsize=10)
    ax.legend(loc="upper right", fontsize=9)
    with atomic_path(path) as tmp_path:
        figure.savefig(tmp_path, format=fmt)
