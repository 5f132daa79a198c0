"""Statistical inference: combine datacards, a pyhf workspace and the upper limit on the signal strength.

    MergeHistograms (every config, dataset and shift the model needs) -> CreateDatacards -> CreatePyhfWorkspace
    -> PyhfLimit

All tasks take ``--inference-model NAME`` (a model of the law.cfg ``inference_modules``) and
``--inference-model-settings key=value,...`` (class attributes of the model, e.g. ``signal_scale=100``).
``--configs a,b`` resolves the model against several configs (the histograms of a category are summed over
them; default: ``--config``). ``--calibrators``, ``--selector``, ``--producers`` and ``--ml-models`` default to
the model's choice (then the config's defaults); the model's shape parameters must be implemented by them
(e.g. ``jec`` by the calibrator ``jec``), otherwise the task refuses to run instead of writing up / down
histograms that equal nominal.
"""

from __future__ import annotations

import functools
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
    category_file_name,
    category_shapes,
    compute_limits,
    render_datacard,
    validate_pyhf_spec,
    write_shapes_file,
)
from cf.io import atomic_path, dump_json, load_json
from cf.ml import split_model_spec
from cf.registry import split_settings
from cf.tasks.base import CalibratorsMixin, ConfigTask, ProducersMixin, SelectorMixin, function_store_parts
from cf.tasks.histograms import MergeHistograms, MLModelsMixin, load_histograms, weight_shifts
from cf.util import UserError

__all__ = ["CreateDatacards", "CreatePyhfWorkspace", "InferenceModelMixin", "PyhfLimit", "inference_model_instance"]


@functools.cache
def inference_model_instance(name: str, settings: tuple[str, ...], configs: tuple[str, ...]) -> InferenceModel:
    """The registered inference model ``name``, resolved against the configs, with ``key=value`` settings."""
    load_modules("inference_modules")
    model_cls = InferenceModel.get_cls(name)
    analysis_inst = load_analysis()
    return model_cls([get_config(analysis_inst, config) for config in configs], settings=split_settings(list(settings)))


def _function_providers(shifts: set[str]) -> list[str]:
    """The registered calibrators / selectors / producers implementing all of ``shifts``, as 'kind name'."""
    return [
        f"{registry.kind} '{name}'"
        for registry in (calibrators, selectors, producers)
        for name in registry.names()
        if shifts <= registry.get(name).shifts
    ]


class InferenceModelMixin(MLModelsMixin, ProducersMixin, SelectorMixin, CalibratorsMixin, ConfigTask):
    """``--inference-model NAME``, ``--inference-model-settings k=v,...`` and ``--configs``; defaults from the model."""

    inference_model = luigi.Parameter(description="name of the inference model (see inference_modules in law.cfg)")
    inference_model_settings = law.CSVParameter(
        default=(),
        description="settings of the inference model as key=value pairs, e.g. signal_scale=100",
    )
    configs = law.CSVParameter(
        default=(),
        description="configs of the model, their histograms summed per category; default: --config",
    )

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        model = None
        if "inference_model" in params:
            configs = tuple(params.get("configs") or (params.get("config") or analysis_setting("default_config"),))
            params["configs"] = configs
            params["config"] = configs[0]
            model = inference_model_instance(
                params["inference_model"], tuple(params.get("inference_model_settings", ())), configs
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
            model.check_data_luminosity()
        return params

    @staticmethod
    def _check_model_functions(model: InferenceModel, params: dict[str, Any]) -> None:
        given = {split_model_spec(spec)[0] for spec in params.get("ml_models", ())}
        missing_models = [name for name in model.required_ml_models if name not in given]
        if missing_models:
            raise UserError(
                f"inference model '{model.cls_name}' reads variables of the ML model(s) {', '.join(missing_models)}; "
                f"add them to --ml-models (given: {', '.join(params.get('ml_models', ())) or 'none'})",
            )
        funcs = [calibrators.get(name) for name in params["calibrators"]]
        funcs += [selectors.get(params["selector"])]
        funcs += [producers.get(name) for name in params["producers"]]
        implemented = {shift for func in funcs for shift in func.shifts}
        analysis_inst = load_analysis()
        missing = sorted(
            shift
            for config in params["configs"]
            for shift in model.required_shifts(config) - implemented - weight_shifts(get_config(analysis_inst, config))
        )
        if missing:
            providers = _function_providers(set(missing))
            raise UserError(
                f"the shape parameters of inference model '{model.cls_name}' need the shift(s) {', '.join(missing)}, "
                f"which none of calibrators ({', '.join(params['calibrators']) or 'none'}), selector "
                f"'{params['selector']}' and producers ({', '.join(params['producers']) or 'none'}) implement: "
                f"their histograms would equal nominal; implemented by: {', '.join(providers) or 'nothing'} "
                "(set calibrators / selector / producers in the model or on the command line)",
            )

    @property
    def inference_model_inst(self) -> InferenceModel:
        return inference_model_instance(self.inference_model, tuple(self.inference_model_settings), tuple(self.configs))

    def store_parts(self) -> list[str]:
        model = self.inference_model_inst
        parts = [
            *super().store_parts()[:-1],
            "__".join(self.configs),
            *function_store_parts(self.calibrators, self.selector, self.producers, self.ml_models),
        ]
        inference = f"inf__{model.cls_name}"
        return [*parts, f"{inference}__{model.settings_repr}" if model.settings_repr else inference]

    def histogram_requirements(self) -> dict[str, dict[str, dict[str, MergeHistograms]]]:
        """``cf.MergeHistograms`` per config, dataset and shift the model reads."""
        model = self.inference_model_inst
        reqs: dict[str, dict[str, dict[str, MergeHistograms]]] = {}
        for config in self.configs:
            variables = model_variables(model, config)
            if not variables:
                continue
            reqs[config] = {
                dataset: {
                    shift: MergeHistograms.req(
                        self, config=config, dataset=dataset, shift=shift, variables=variables, ml_models=self.ml_models
                    )
                    for shift in shifts
                }
                for dataset, shifts in model.dataset_shifts(config).items()
            }
        return reqs

    def model_shapes(self, inputs: dict[str, Any]) -> dict[str, CategoryShapes]:
        """The numbers of every category of the model from the histogram inputs."""
        model = self.inference_model_inst
        loaded = {
            config: {
                dataset: {shift: (target.path, load_histograms(target.path)) for shift, target in shifts.items()}
                for dataset, shifts in datasets.items()
            }
            for config, datasets in inputs.items()
        }
        shapes = {}
        for category in model.categories:
            histograms = {
                config: {
                    dataset: {
                        shift: _variable_histogram(content, category.config_data[config].variable, dataset, shift, path)
                        for shift, (path, content) in shifts.items()
                    }
                    for dataset, shifts in loaded[config].items()
                }
                for config in model.category_configs(category.name)
            }
            shapes[category.name] = category_shapes(model, category.name, histograms)
        return shapes


def model_variables(model: InferenceModel, config: str) -> tuple[str, ...]:
    """The variables the model's categories read in a config."""
    return tuple(sorted({c.config_data[config].variable for c in model.categories if config in c.config_data}))


def _variable_histogram(content: dict[str, Any], variable: str, dataset: str, shift: str, path: str) -> Any:
    if variable not in content:
        raise UserError(
            f"the histograms of dataset '{dataset}' (shift '{shift}', {path}) have no variable '{variable}'"
        )
    return content[variable]


class CreateDatacards(InferenceModelMixin):
    """Per category of the inference model, a combine text datacard and its ROOT shapes file (written with uproot).

    Requires ``cf.MergeHistograms`` of the model's variables for every config and dataset of the model: nominal,
    and for MC the up / down shifts of the parameters that read them. How flow bins, empty bins, process scales
    and parameter transformations enter is the model's choice (:func:`cf.inference.category_shapes`); the
    datacard rates are the integrals of the shapes-file histograms.
    """

    def requires(self) -> dict[str, dict[str, dict[str, MergeHistograms]]]:
        return self.histogram_requirements()

    def output(self) -> dict[str, dict[str, law.LocalFileTarget]]:
        model = self.inference_model_inst
        return {
            category.name: {
                "datacard": self.target(category_file_name(model, category.name, "datacard", "txt")),
                "shapes": self.target(category_file_name(model, category.name, "shapes", "root")),
            }
            for category in model.categories
        }

    def run(self) -> None:
        model = self.inference_model_inst
        outputs = self.output()
        for name, shapes in self.model_shapes(self.input()).items():
            shapes_target = outputs[name]["shapes"]
            write_shapes_file(shapes_target.path, model, name, shapes)
            text = render_datacard(model, name, shapes, shapes_target.basename)
            with atomic_path(outputs[name]["datacard"].path) as tmp_path, open(tmp_path, "w") as file:
                file.write(text)
            self.publish_message(yields_summary(name, shapes))


def yields_summary(category: str, shapes: CategoryShapes) -> str:
    """One line per process with its rate in the category, and the observation."""
    lines = [f"category '{category}':"]
    lines += [f"  {process:<16} {shapes.rate(process):14.6g}" for process in shapes.processes]
    lines.append(f"  {'observation':<16} {shapes.observation:14.6g}")
    return "\n".join(lines)


class CreatePyhfWorkspace(InferenceModelMixin):
    """The inference model as a pyhf (HistFactory) workspace, schema-validated.

    Its numbers come from the same histograms and the same function as the datacards', which it requires.
    """

    def requires(self) -> dict[str, Any]:
        return {"datacards": CreateDatacards.req(self), "histograms": self.histogram_requirements()}

    def output(self) -> law.LocalFileTarget:
        return self.target("workspace.json")

    def run(self) -> None:
        model = self.inference_model_inst
        spec = build_pyhf_spec(model, self.model_shapes(self.input()["histograms"]))
        validate_pyhf_spec(spec)
        dump_json(self.output().path, spec)


class PyhfLimit(InferenceModelMixin):
    """The 95% CL upper limit on the signal strength with pyhf (asymptotic CLs): json numbers and a CLs plot.

    ``limits.json`` holds the expected limits of the background-only Asimov data (median, +-1 sigma, +-2 sigma),
    the observed limit when no category observes Asimov pseudo data (data or Poisson toys; else null), and the
    CLs scan; ``limits.png`` / ``limits.pdf`` show the scan with the expected band (the "Brazil" band).
    """

    def requires(self) -> CreatePyhfWorkspace:
        return CreatePyhfWorkspace.req(self)

    def output(self) -> dict[str, law.LocalFileTarget]:
        return {name: self.target(f"limits.{name}") for name in ("json", "png", "pdf")}

    def run(self) -> None:
        model = self.inference_model_inst
        spec = load_json(self.input().path)
        result = compute_limits(spec, observed=not model.has_asimov_data())
        result.update(
            {
                "inference_model": model.cls_name,
                "settings": model.settings,
                "configs": list(self.configs),
                "workspace": self.input().path,
            }
        )
        outputs = self.output()
        dump_json(outputs["json"].path, result)
        title = f"{model.cls_name} ({', '.join(self.configs)})"
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
