"""Inference: the InferenceModel API, combine datacards, shapes files, the pyhf workspace and the limit.

Unit tests use hand-made histograms; the integration tests (``slow`` + ``sandbox``: the reference classifier is
trained in the TF sandbox) run ``cf.CreateDatacards`` and ``cf.PyhfLimit`` through ``law run`` in an isolated
store and check every number against its source: datacard rates = shapes-file integrals = sums of the
``cf.MergeHistograms`` histograms = weighted event sums of the ``cf.ProduceColumns`` output.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import warnings
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest

from analysis_template.config.analysis import analysis_template
from cf.inference import (
    CategoryShapes,
    InferenceModel,
    ParameterTransformation,
    ParameterType,
    build_pyhf_spec,
    category_shapes,
    compute_limits,
    inference_model,
    lnn_effect,
    poisson_toy,
    rebin,
    render_datacard,
    select_histogram,
    setting,
    validate_pyhf_spec,
    write_shapes_file,
)
from cf.util import UserError
from tests.conftest import LawEnv, LawOutputs, LawRun

CONFIG = "run2_2017_nano_uhh_v11_limited"


@pytest.fixture(scope="module")
def config_inst() -> Any:
    return analysis_template.get_config(CONFIG)


# a tiny hand-made model: two signals, two backgrounds, every kind of parameter


@inference_model(mc_stats=setting(5, "MC statistics threshold", nullable=True), signal_scale=setting(1.0, above=0.0))
def unit_inference(self: InferenceModel) -> None:
    """Two signals and two backgrounds in one category."""
    self.add_category("sr", data_from_processes=True, mc_stats=self.mc_stats)
    self.add_process("ggHH", is_signal=True)
    self.add_process("ttbar_long_name", is_signal=False)
    self.add_process("vbfHH", is_signal=True)
    self.add_process("dy", is_signal=False)
    self.scale_process(self.signal_scale, "*HH")
    self.add_parameter("lumi", type=ParameterType.rate_gauss, effect=1.025)
    self.add_parameter("xsec_tt", process="ttbar_long_name", type="rate_gauss", effect=(0.95, 1.06))
    self.add_parameter("jes", process=["ggHH", "ttbar_*"], type="shape", config_shift_source="jec")
    self.add_parameter_group("experimental", ["lumi", "jes"])


unit_inference_x10 = unit_inference.derive("unit_inference_x10", cls_dict={"signal_scale": 10.0})


def unit_shapes(model: InferenceModel) -> CategoryShapes:
    """The numbers category_shapes would make for unit_inference (effects as given, data = backgrounds)."""
    scale = model.signal_scale
    nominal = {
        "ggHH": np.array([0.5, 1.0, 2.0]) * scale,
        "vbfHH": np.array([0.1, 0.2, 0.4]) * scale,
        "ttbar_long_name": np.array([40.0, 20.0, 5.0]),
        "dy": np.array([10.0, 5.0, 1.0]),
    }
    return CategoryShapes(
        edges=np.array([0.0, 1.0, 2.0, 3.0]),
        processes=["ggHH", "vbfHH", "ttbar_long_name", "dy"],
        nominal=nominal,
        variances={name: values * 0.04 for name, values in nominal.items()},
        shifted={
            name: {"jes": (nominal[name] * [1.02, 1.05, 1.1], nominal[name] * [0.98, 0.96, 0.92])}
            for name in ("ggHH", "ttbar_long_name")
        },
        effects={
            **{name: {"lumi": 1.025} for name in nominal},
            "ttbar_long_name": {"lumi": 1.025, "xsec_tt": (0.95, 1.06)},
        },
        data=nominal["ttbar_long_name"] + nominal["dy"],
    )


# registry and definition


def test_the_decorator_registers_a_model_class_named_after_the_function() -> None:
    assert InferenceModel.get_cls("unit_inference") is unit_inference
    assert issubclass(unit_inference, InferenceModel)
    assert unit_inference.cls_name == "unit_inference"
    assert unit_inference.mc_stats == 5
    assert unit_inference.__doc__ == "Two signals and two backgrounds in one category."
    assert "unit_inference" in InferenceModel.names()
    assert unit_inference.setting_names() == ["mc_stats", "signal_scale"]
    assert InferenceModel.get_cls("unit_inference_x10").signal_scale == 10.0


def test_an_unknown_model_name_lists_the_available_ones() -> None:
    with pytest.raises(UserError, match=r"unknown inference model 'nope', available: .*unit_inference"):
        InferenceModel.get_cls("nope")


def test_the_tree_has_columnflows_structure_and_signals_come_first() -> None:
    model = unit_inference()
    assert list(model.model) == ["categories", "parameter_groups"]
    category = model.get_category("sr")
    assert [p.name for p in category.processes] == ["ggHH", "ttbar_long_name", "vbfHH", "dy"]
    assert [p.name for p in model.category_processes("sr")] == ["ggHH", "vbfHH", "ttbar_long_name", "dy"]
    assert [model.process_index(name) for name in ("ggHH", "vbfHH", "ttbar_long_name", "dy")] == [0, -1, 1, 2]
    lumi = model.get_parameter("lumi", process="dy")
    assert lumi == InferenceModel.parameter_spec("lumi", type="rate_gauss", effect=1.025)
    assert lumi.type.is_rate
    assert model.get_parameter("xsec_tt").effect == (0.95, 1.06)
    assert model.get_processes_with_parameter("jes") == ["ggHH", "ttbar_long_name"]
    assert model.get_parameter_group("experimental").parameter_names == ["lumi", "jes"]
    with pytest.raises(UserError, match=r"unknown process 'tt', available: ggHH, ttbar_long_name, vbfHH, dy"):
        model.get_process("tt")
    with pytest.raises(UserError, match="parameter 'lumi' is ambiguous: it matches 4 entries"):
        model.get_parameter("lumi")


def test_settings_override_class_attributes_and_unknown_ones_are_named() -> None:
    model = unit_inference(settings={"signal_scale": 3, "mc_stats": 7})
    assert model.signal_scale == 3.0
    assert model.get_process("ggHH").scale == 3.0
    assert model.get_process("dy").scale == 1.0
    assert model.mc_stats_settings("sr") == ("7",)
    assert model.settings_repr
    with pytest.raises(UserError, match=r"unknown setting 'signal_scael' .* declared: mc_stats, signal_scale"):
        unit_inference(settings={"signal_scael": 3})
    with pytest.raises(UserError, match=r"setting 'signal_scale=-1' is not a number > 0.0"):
        unit_inference(settings={"signal_scale": "-1"})
    assert unit_inference(settings={"mc_stats": "none"}).mc_stats is None
    # calibrators is a class attribute of the model, not a setting: the task's --calibrators changes it
    assert "calibrators" not in unit_config_inference.setting_names()


def test_patterns_select_categories_processes_and_parameters() -> None:
    @inference_model(name="unit_patterns")
    def build(self: InferenceModel) -> None:
        for name in ("sr_1b", "sr_2b", "cr_tt"):
            self.add_category(name)
        self.add_process("HH", is_signal=True, category="sr_*")
        self.add_process("tt", category=["sr_*", "cr_tt"])
        self.add_process("dy", category="^(sr_2b|cr_tt)$")
        self.add_parameter("lumi", type="rate_gauss", effect=1.02)
        self.add_parameter("btag", process="!HH", category="sr_*", type="rate_gauss", effect=(0.9, 1.1))
        self.add_parameter("dy_norm", process="dy", type="rate_unconstrained")
        self.add_parameter_group("rates")
        self.add_parameter_to_group(["lumi", "b*"], "rates")

    model = build()
    assert model.get_processes(flat=True) == ["HH", "tt", "dy"]
    assert model.get_categories_with_process("dy") == ["sr_2b", "cr_tt"]
    assert model.get_processes("HH", only_names=True) == {"sr_1b": ["HH"], "sr_2b": ["HH"]}
    assert model.get_categories_with_parameter("btag") == ["sr_1b", "sr_2b"]
    assert model.get_processes_with_parameter("btag") == ["tt", "dy"]
    assert model.get_parameter_group("rates").parameter_names == ["lumi", "btag"]
    assert model.get_groups_with_parameter("btag") == ["rates"]
    assert model.has_parameter("btag", process="dy", category="sr_2b")
    assert not model.has_parameter("btag", process="HH")
    assert [(c, p.name) for c, p in model.iter_processes(category="cr_*")] == [("cr_tt", "tt"), ("cr_tt", "dy")]
    assert len(list(model.iter_parameters("lumi"))) == 7
    assert model.scale_process(2.0, "tt", category="sr_1b")
    assert [p.scale for _, p in model.iter_processes("tt")] == [2.0, 1.0, 1.0]

    assert model.remove_parameter("btag", category="sr_2b")
    assert model.get_categories_with_parameter("btag") == ["sr_1b"]
    assert model.remove_process("HH")
    assert not model.has_process("HH")
    assert model.remove_category("sr_1b")
    assert model.get_parameters(flat=True) == ["lumi", "dy_norm"]
    model.cleanup()
    assert model.get_parameter_group("rates").parameter_names == ["lumi"]
    assert model.remove_parameter_from_groups("lumi")
    model.cleanup()
    assert not model.has_parameter_group("rates")
    assert not model.remove_category("nope")


def test_cleanup_removes_empty_categories_and_dangling_group_names() -> None:
    @inference_model(name="unit_cleanup")
    def build(self: InferenceModel) -> None:
        self.add_category("sr")
        self.add_category("empty")
        self.add_process("HH", is_signal=True, category="sr")
        self.add_parameter("lumi", type="rate_gauss", effect=1.02)
        self.add_parameter_group("g", ["lumi", "gone", "kept"])
        self.add_parameter_group("h", ["gone"])
        self.cleanup(keep_parameters="kept")

    with pytest.raises(UserError, match=r"parameter group 'g' .* unknown parameter\(s\) kept"):
        build()


def test_to_yaml_writes_the_tree_as_plain_yaml() -> None:
    import yaml

    model = unit_inference()
    tree = yaml.safe_load(model.to_yaml())
    assert tree["categories"][0]["name"] == "sr"
    jes = tree["categories"][0]["processes"][0]["parameters"][1]
    assert jes == {
        "name": "jes",
        "type": "shape",
        "transformations": [],
        "config_data": {},
        "effect": 1.0,
        "effect_precision": None,
    }
    assert tree["categories"][0]["flow_strategy"] == "move"
    assert tree["parameter_groups"] == [{"name": "experimental", "parameter_names": ["lumi", "jes"]}]


def test_the_analysis_model_resolves_against_the_config(config_inst: Any) -> None:
    from cf.analysis import load_modules

    load_modules("inference_modules")
    model = InferenceModel.get_cls("test_inference")(config_inst)
    assert model.config_inst is config_inst
    assert [c.name for c in model.categories] == ["sr", "cr_tt"]
    sr = model.get_category("sr").config_data[CONFIG]
    # the observation: a Poisson toy of the expected backgrounds (the data events are at 5 pb^-1 only)
    assert (sr.category, sr.variable, sr.data_datasets) == ("sr", "dnn.score_hh", [])
    assert model.data_processes("sr") == ["tt", "dy"]
    assert model.get_category("sr").data_toy_seed == 1
    assert not model.has_asimov_data()
    tt = model.get_process("tt", category="sr").config_data[CONFIG]
    assert tt.mc_datasets == ["tt_sl_powheg", "tt_dl_powheg"]
    assert model.signal_names == ["HH"]
    assert model.required_ml_models == ("dnn",)
    assert model.calibrators == ("jec",)
    assert model.get_parameter("lumi_13TeV_2017", process="dy", category="sr").effect == pytest.approx(1.023)
    shifts = ("nominal", "jec_up", "jec_down", "pu_up", "pu_down", "mu_id_up", "mu_id_down")
    assert model.dataset_shifts(CONFIG)["tt_sl_powheg"] == shifts
    assert "data_mu_b" not in model.dataset_shifts(CONFIG)
    assert model.required_shifts(CONFIG) == set(shifts[1:])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"sr_category": "sr_typo"}, r"unknown category 'sr_typo' .* available: cr_dy, cr_tt, incl, sr"),
        ({"sr_variable": "dnn.score_typo"}, r"unknown variable 'dnn.score_typo' .* available: .*dnn.score_hh"),
        ({"cr_variable": "htt"}, r"unknown variable 'htt' .* available: .*\bht\b"),
        ({"signal_process": "hh_typo"}, r"unknown process 'hh_typo' .* available: .*hh_ggf_bbtautau"),
    ],
)
def test_unknown_config_names_are_user_errors_listing_the_allowed_ones(
    config_inst: Any, settings: dict[str, str], message: str
) -> None:
    from cf.analysis import load_modules

    load_modules("inference_modules")
    with pytest.raises(UserError, match=message):
        InferenceModel.get_cls("test_inference")(config_inst, settings=settings)


def test_dataset_patterns_are_expanded_and_an_unmatched_one_is_named(config_inst: Any) -> None:
    @inference_model(name="unit_dataset_patterns", tt_datasets=setting("tt_*"))
    def build(self: InferenceModel) -> None:
        self.add_category("sr", config_variable="ht", config_data_datasets=["data_*"])
        self.add_process("HH", config_process="hh_ggf_bbtautau", is_signal=True)
        self.add_process("tt", config_mc_datasets=[self.tt_datasets])

    model = build(config_inst)
    assert model.get_process("tt").config_data[CONFIG].mc_datasets == ["tt_sl_powheg", "tt_dl_powheg"]
    assert model.get_category("sr").config_data[CONFIG].data_datasets == ["data_mu_b"]
    with pytest.raises(UserError, match=r"unknown MC dataset 'ttbar_\*' .* available: .*tt_sl_powheg"):
        build(config_inst, settings={"tt_datasets": "ttbar_*"})


def test_an_unknown_shift_source_is_named(config_inst: Any) -> None:
    @inference_model(name="unit_bad_shift")
    def build(self: InferenceModel) -> None:
        self.add_category("sr", config_variable="ht")
        self.add_process("HH", config_process="hh_ggf_bbtautau")
        self.add_parameter("pu", type="shape", config_shift_source="pileup")

    with pytest.raises(UserError, match=r"unknown shift 'pileup_up' .* available: nominal, jec_up, jec_down, pu_up"):
        build(config_inst)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": "lnX", "effect": 1.1}, r"unknown parameter type 'lnX', allowed: rate_gauss, rate_uniform, rate_unc"),
        ({"type": "rate_gauss", "effect": None}, "needs an effect kappa > 0"),
        ({"type": "rate_gauss", "effect": -1.0}, "needs an effect kappa > 0"),
        ({"type": "rate_uniform", "effect": 0.9}, r"needs an effect kappa > 1 \(the rate is free within"),
        ({"type": "rate_gauss", "effect": 1.1, "process": "ttx"}, "no process matches 'ttx' .* processes: HH"),
        ({"type": "shape", "transformations": ["asymmetrize"]}, "asymmetrize do not apply to a shape type"),
        ({"type": "rate_gauss", "transformations": ["normalize"]}, "normalize do not apply to a rate type"),
        ({"type": "rate_gauss", "transformations": ["symmetrize", "effect_from_shape"]}, "must come first"),
        ({"type": "rate_gauss", "transformations": ["smooth"]}, r"unknown transformation 'smooth', allowed: none"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, Any], message: str) -> None:
    @inference_model(name="unit_bad_parameter")
    def build(self: InferenceModel) -> None:
        self.add_category("sr")
        self.add_process("HH", is_signal=True)
        self.add_parameter("p", **kwargs)

    with pytest.raises(UserError, match=message):
        build()


def test_a_shape_parameter_without_shift_source_is_refused_for_a_config(config_inst: Any) -> None:
    @inference_model(name="unit_no_source")
    def build(self: InferenceModel) -> None:
        self.add_category("sr", config_variable="ht")
        self.add_process("HH", config_process="hh_ggf_bbtautau")
        self.add_parameter("jec", type="shape")

    with pytest.raises(UserError, match=r"parameter 'jec' \(shape\) of process 'HH' needs a shift source for config"):
        build(config_inst)


def test_bad_names_groups_and_orders_are_refused(config_inst: Any) -> None:
    @inference_model(name="unit_bad_name")
    def bad_name(self: InferenceModel) -> None:
        self.add_category("1sr")

    @inference_model(name="unit_bad_group")
    def bad_group(self: InferenceModel) -> None:
        self.add_category("sr")
        self.add_process("HH", is_signal=True)
        self.add_parameter_group("g", ["nope"])

    @inference_model(name="unit_process_first")
    def process_first(self: InferenceModel) -> None:
        self.add_process("HH", is_signal=True)

    @inference_model(name="unit_no_config_data")
    def no_config_data(self: InferenceModel) -> None:
        self.add_category("sr")
        self.add_process("HH", config_process="hh_ggf_bbtautau", is_signal=True)

    with pytest.raises(UserError, match="category name '1sr' is invalid"):
        bad_name()
    with pytest.raises(UserError, match=r"parameter group 'g' .* unknown parameter\(s\) nope"):
        bad_group()
    with pytest.raises(UserError, match=r"no category matches '\*' for process 'HH' \(add categories first\)"):
        process_first()
    with pytest.raises(UserError, match="category 'sr' of inference model 'unit_no_config_data' has no config_data"):
        no_config_data(config_inst)


def test_lnn_effect_from_numbers_with_uncertainties(config_inst: Any) -> None:
    assert lnn_effect(config_inst.x.luminosity) == pytest.approx(1.023)
    down, up = lnn_effect(config_inst.get_process("tt").get_xsec(13))
    assert down == pytest.approx(1 - math.hypot(30.0, 21.0, 22.5) / 833.9)
    assert up == pytest.approx(1 + math.hypot(20.5, 21.0, 23.2) / 833.9)
    with pytest.raises(UserError, match="unknown uncertainty source"):
        lnn_effect(config_inst.x.luminosity, ["nope"])


def test_the_docs_example_defines_a_working_model(config_inst: Any) -> None:
    """The python blocks of docs/inference.md, run in order, define models that resolve against the config."""
    text = (Path(__file__).parents[1] / "docs" / "inference.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) >= 2
    namespace: dict[str, Any] = {"__name__": "docs_inference_example"}
    for block in blocks:
        exec(compile(block, "docs/inference.md", "exec"), namespace)  # noqa: S102 (our own docs)
    model = InferenceModel.get_cls("docs_example")(config_inst)
    assert [p.name for p in model.category_processes("sr")] == ["HH", "tt", "dy"]
    assert model.get_category("sr").bin_edges == [0.0, 0.4, 0.6, 0.8, 0.9, 1.0]
    assert model.data_processes("cr_tt") == ["tt", "dy"]
    assert model.required_ml_models == ("dnn",)
    scaled = InferenceModel.get_cls("docs_example_x10")(config_inst)
    assert scaled.get_process("HH", category="sr").scale == 10.0
    assert model.get_parameter_group("experimental").parameter_names == ["lumi", "jec"]
    no_shapes = InferenceModel.get_cls("docs_example_no_shapes")(config_inst)
    assert no_shapes.get_parameters(flat=True) == ["lumi", "tt_xsec"]
    assert no_shapes.get_parameter_group("experimental").parameter_names == ["lumi"]


# datacard


def test_datacard_lines_indices_rates_and_alignment() -> None:
    model = unit_inference()
    shapes = unit_shapes(model)
    text = render_datacard(model, "sr", shapes, "shapes__sr.root")
    lines = text.splitlines()
    assert lines[1].split()[:2] == ["imax", "1"]
    assert lines[2].split()[:2] == ["jmax", "3"]
    assert lines[3].split()[:2] == ["kmax", "3"]
    assert "shapes * * shapes__sr.root $CHANNEL/$PROCESS $CHANNEL/$PROCESS__$SYSTEMATIC" in lines
    rows = {}
    for line in lines:
        words = line.split()
        if words and words[0] in {"bin", "observation", "rate", "lumi", "xsec_tt", "jes"}:
            rows.setdefault(words[0], []).append(line)
        if words and words[0] == "process":
            rows.setdefault("process", []).append(line)
    assert rows["bin"][0].split() == ["bin", "sr"]
    assert rows["observation"][0].split() == ["observation", "81"]
    assert rows["bin"][1].split() == ["bin", "sr", "sr", "sr", "sr"]
    assert rows["process"][0].split() == ["process", "ggHH", "vbfHH", "ttbar_long_name", "dy"]
    assert rows["process"][1].split() == ["process", "0", "-1", "1", "2"]
    rates = [float(x) for x in rows["rate"][0].split()[1:]]
    assert rates == pytest.approx([3.5, 0.7, 65.0, 16.0])
    assert rows["lumi"][0].split() == ["lumi", "lnN", "1.025", "1.025", "1.025", "1.025"]
    assert rows["xsec_tt"][0].split() == ["xsec_tt", "lnN", "-", "-", "0.95/1.06", "-"]
    assert rows["jes"][0].split() == ["jes", "shape", "1", "-", "1", "-"]
    assert "experimental group = lumi jes" in lines
    assert "* autoMCStats 5" in lines
    # the value columns of the rate table and of the nuisances start at the same positions
    table = [rows["bin"][1], *rows["process"], rows["rate"][0], rows["lumi"][0], rows["xsec_tt"][0], rows["jes"][0]]
    starts = [[m.start() for m in re.finditer(r"(?<=\s)\S+", line)][-4:] for line in table]
    assert all(s == starts[0] for s in starts), "\n".join(table)


def test_datacard_without_mc_stats_and_with_precisions() -> None:
    model = unit_inference(settings={"mc_stats": None})
    text = render_datacard(model, "sr", unit_shapes(model), "s.root")
    assert "autoMCStats" not in text
    model.get_category("sr").rate_precision = 1
    model.get_parameter("xsec_tt").effect_precision = 1
    text = render_datacard(model, "sr", unit_shapes(model), "s.root")
    assert re.search(r"^rate\s+3\.5\s+0\.7\s+65\s+16$", text, flags=re.MULTILINE)
    assert re.search(r"^xsec_tt\s+lnN\s+-\s+-\s+0\.9/1\.1\s+-$", text, flags=re.MULTILINE)


def test_rate_uniform_unconstrained_and_mixed_parameters_in_datacard_and_workspace() -> None:
    @inference_model(name="unit_rate_types")
    def build(self: InferenceModel) -> None:
        self.add_category("sr", data_from_processes=["tt", "dy"], mc_stats=(10, 1, 1))
        self.add_process("HH", is_signal=True)
        self.add_process("tt", is_signal=False)
        self.add_process("dy", is_signal=False)
        self.add_parameter("tt_norm", process="tt", type="rate_uniform", effect=2.0)
        self.add_parameter("dy_norm", process="dy", type="rate_unconstrained", effect=1.5)
        self.add_parameter("jes", process="HH", type="shape")
        self.add_parameter("jes", process="!HH", type="rate_gauss", effect=1.05)

    model = build()
    nominal = {"HH": np.array([1.0, 2.0]), "tt": np.array([20.0, 10.0]), "dy": np.array([5.0, 5.0])}
    shapes = CategoryShapes(
        edges=np.array([0.0, 1.0, 2.0]),
        processes=["HH", "tt", "dy"],
        nominal=nominal,
        variances={name: values * 0.1 for name, values in nominal.items()},
        shifted={"HH": {"jes": (nominal["HH"] * 1.1, nominal["HH"] * 0.9)}},
        effects={"tt": {"tt_norm": 2.0, "jes": 1.05}, "dy": {"dy_norm": 1.5, "jes": 1.05}},
        data=nominal["tt"] + nominal["dy"],
    )
    lines = [line.split() for line in render_datacard(model, "sr", shapes, "s.root").splitlines()]
    assert ["tt_norm", "lnU", "-", "2", "-"] in lines
    assert ["jes", "shape?", "1", "1.05", "1.05"] in lines
    assert ["dy_norm", "rateParam", "sr", "dy", "1.5"] in lines
    assert ["*", "autoMCStats", "10", "1", "1"] in lines
    assert ["kmax", "2", "number", "of", "nuisance", "parameters"] in lines

    spec = build_pyhf_spec(model, {"sr": shapes})
    validate_pyhf_spec(spec)
    samples = {sample["name"]: sample["modifiers"] for sample in spec["channels"][0]["samples"]}
    assert {"name": "tt_norm", "type": "normfactor", "data": None} in samples["tt"]
    # jes is a shape on HH, so its rate effect on tt becomes a histosys of the scaled nominal yields
    jes_tt = next(m for m in samples["tt"] if m["name"] == "jes")
    assert jes_tt["type"] == "histosys"
    assert jes_tt["data"]["hi_data"] == pytest.approx([21.0, 10.5])
    assert jes_tt["data"]["lo_data"] == pytest.approx([20.0 / 1.05, 10.0 / 1.05])
    # the signal gets a staterror too: the second autoMCStats argument includes it
    assert any(m["type"] == "staterror" for m in samples["HH"])
    parameters = {p["name"]: p for p in spec["measurements"][0]["config"]["parameters"]}
    assert parameters["tt_norm"]["bounds"] == [[0.5, 2.0]]
    assert parameters["dy_norm"]["inits"] == [1.5]
    assert parameters["dy_norm"]["bounds"] == [[0.0, 15.0]]


def test_shapes_file_histograms_and_integrals_equal_rates(tmp_path: Path) -> None:
    import uproot

    model = unit_inference()
    shapes = unit_shapes(model)
    path = tmp_path / "shapes__sr.root"
    write_shapes_file(str(path), model, "sr", shapes)
    assert [p.name for p in tmp_path.iterdir()] == ["shapes__sr.root"]  # no temporary file left
    with uproot.open(path) as file:
        keys = sorted(key.split(";")[0] for key in file.keys(recursive=True))
        assert "sr/data_obs" in keys
        assert "sr/ggHH__jesUp" in keys
        assert "sr/ttbar_long_name__jesDown" in keys
        assert "sr/dy__jesUp" not in keys
        for process in shapes.processes:
            histogram = file[f"sr/{process}"]
            assert histogram.values().sum() == pytest.approx(shapes.rate(process))
            np.testing.assert_allclose(histogram.variances(), shapes.variances[process])
            np.testing.assert_allclose(histogram.axis().edges(), shapes.edges)
        np.testing.assert_allclose(file["sr/ggHH__jesUp"].values(), shapes.shifted["ggHH"]["jes"][0])
        np.testing.assert_allclose(file["sr/data_obs"].values(), shapes.data)


# histograms -> shapes


def merged_histogram(config_inst: Any, fills: list[tuple[int, str, float, float]], variable_name: str = "ht") -> Any:
    """A MergeHistograms-like histogram of one variable: (category id, shift, value, weight) fills."""
    from cf.tasks.histograms import empty_histogram

    histogram = empty_histogram(config_inst.get_variable(variable_name))
    for category, shift, value, weight in fills:
        histogram.fill(category=category, shift=shift, **{variable_name: value}, weight=weight)
    return histogram


def test_select_histogram_moves_or_drops_flow_bins_and_handles_missing_categories(
    config_inst: Any, caplog: pytest.LogCaptureFixture
) -> None:
    histogram = merged_histogram(
        config_inst, [(2, "nominal", -5.0, 1.0), (2, "nominal", 5000.0, 2.0), (2, "nominal", 10.0, 4.0)]
    )
    values, variances, edges = select_histogram(histogram, 2, "nominal")
    assert len(values) == len(edges) - 1 == 50
    assert values[0] == 5.0
    assert values[-1] == 2.0
    assert variances[0] == 17.0
    for strategy in ("ignore", "remove", "warn"):
        values, _, _ = select_histogram(histogram, 2, "nominal", flow=strategy)
        assert (values[0], values[-1], values.sum()) == (4.0, 0.0, 4.0)
    assert "42.9% of the yield of 'ht' (category id 2, shift nominal) lies in its flow bins" in caplog.text
    values, _, _ = select_histogram(histogram, 3, "nominal")
    assert not values.any()
    with pytest.raises(UserError, match="has no shift 'jec_up', only: nominal"):
        select_histogram(histogram, 2, "jec_up")


def test_rebin_merges_bins_and_refuses_foreign_edges() -> None:
    edges = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(rebin(np.array([1.0, 2.0, 3.0, 4.0]), edges, (0, 1, 4)), [1.0, 9.0])
    with pytest.raises(ValueError, match=r"bin edge 1\.5 is not an edge of the variable, its edges: 0, 1, 2, 3, 4"):
        rebin(np.ones(4), edges, (0.0, 1.5, 4.0))
    with pytest.raises(ValueError, match="must increase from the variable's first edge"):
        rebin(np.ones(4), edges, (1.0, 4.0))


def test_bad_bin_edges_of_a_category_are_a_user_error(config_inst: Any) -> None:
    from cf.analysis import load_modules

    load_modules("inference_modules")
    model_cls = InferenceModel.get_cls("test_inference")
    with pytest.raises(UserError, match=r"category 'cr_tt' .* bin edge 250 is not an edge"):
        model_cls(config_inst, settings={"cr_bin_edges": (0.0, 250.0, 1000.0)})


@inference_model(calibrators=("jec",), signal_scale=setting(1.0, above=0.0), empty_bin_value=setting(0.0, minimum=0.0))
def unit_config_inference(self: InferenceModel) -> None:
    """One category of the real config, data from the backgrounds."""
    self.add_category("sr", config_variable="ht", data_from_processes=True, empty_bin_value=self.empty_bin_value)
    self.add_process("HH", config_process="hh_ggf_bbtautau")
    self.add_process("tt")
    self.add_process("dy")
    self.scale_process(self.signal_scale, "HH")
    self.add_parameter("jec", process="tt", type=ParameterType.shape, config_shift_source="jec")


def unit_config_histograms(config_inst: Any) -> dict[str, dict[str, dict[str, Any]]]:
    sr = config_inst.get_category("sr").id
    return {
        config_inst.name: {
            "hh_ggf_bbtautau_madgraph": {"nominal": merged_histogram(config_inst, [(sr, "nominal", 50.0, 0.5)])},
            "tt_sl_powheg": {
                shift: merged_histogram(
                    config_inst, [(sr, shift, 50.0, 1.0 + i), (sr, shift, 130.0, -3.0), (1, shift, 50.0, 7.0)]
                )
                for i, shift in enumerate(("nominal", "jec_up", "jec_down"))
            },
            "tt_dl_powheg": {
                shift: merged_histogram(config_inst, [(sr, shift, 130.0, 1.0), (sr, shift, 250.0, 2.0)])
                for shift in ("nominal", "jec_up", "jec_down")
            },
            "dy_lep_m50_madgraph": {"nominal": merged_histogram(config_inst, [(1, "nominal", 50.0, 3.0)])},
        }
    }


def test_category_shapes_sum_datasets_clip_scale_skip_and_build_asimov_data(config_inst: Any) -> None:
    model = unit_config_inference(config_inst, settings={"signal_scale": 4.0})
    histograms = unit_config_histograms(config_inst)
    shapes = category_shapes(model, "sr", histograms)
    assert model.get_process("HH").is_signal  # from the config process' is_signal flag
    assert shapes.rate("HH") == pytest.approx(4 * 0.5)
    assert shapes.variances["HH"].sum() == pytest.approx(16 * 0.25)
    # bin of 130: -3 + 1 < 0 is clipped to zero; the category-1 fill is not in sr
    assert shapes.nominal["tt"][6] == 0.0
    assert shapes.rate("tt") == pytest.approx(1.0 + 2.0)
    up, down = shapes.shifted["tt"]["jec"]
    assert up.sum() == pytest.approx(2.0 + 2.0)
    assert down.sum() == pytest.approx(3.0 + 2.0)
    assert "HH" not in shapes.shifted
    # dy has no event in sr: skip_if_empty leaves it out of the fit, its zeros still count for the pseudo data
    assert shapes.processes == ["HH", "tt"]
    np.testing.assert_allclose(shapes.data, shapes.nominal["tt"])
    tt_dl = histograms[CONFIG]["tt_dl_powheg"]
    with pytest.raises(UserError, match=r"no histogram of dataset 'tt_dl_powheg' .* for shift 'jec_up'"):
        category_shapes(model, "sr", {CONFIG: {**histograms[CONFIG], "tt_dl_powheg": {"nominal": tt_dl["nominal"]}}})


def test_a_seeded_toy_observes_poisson_counts_of_the_expected_backgrounds(config_inst: Any) -> None:
    @inference_model(name="unit_toy_data")
    def build(self: InferenceModel) -> None:
        self.add_category("sr", config_variable="ht", data_from_processes=True, data_toy_seed=3, empty_bin_value=0.0)
        self.add_process("HH", config_process="hh_ggf_bbtautau")
        self.add_process("tt")
        self.add_process("dy")

    model = build(config_inst)
    assert not model.has_asimov_data()
    shapes = category_shapes(model, "sr", unit_config_histograms(config_inst))
    expected = shapes.nominal["tt"] + shapes.nominal["dy"]
    np.testing.assert_array_equal(shapes.data, poisson_toy(expected, 3, "sr"))
    assert np.all(shapes.data[expected == 0] == 0)
    # reproducible from seed and category name, another seed or category draws another toy; Poisson mean
    many = np.full(4000, 50.0)
    np.testing.assert_array_equal(poisson_toy(many, 3, "sr"), poisson_toy(many, 3, "sr"))
    assert not np.array_equal(poisson_toy(many, 3, "sr"), poisson_toy(many, 4, "sr"))
    assert not np.array_equal(poisson_toy(many, 3, "sr"), poisson_toy(many, 3, "cr_tt"))
    toy = poisson_toy(many, 3, "sr")
    np.testing.assert_array_equal(toy, np.round(toy))
    assert toy.mean() == pytest.approx(50.0, rel=0.01)
    assert toy.var() == pytest.approx(50.0, rel=0.1)

    @inference_model(name="unit_toy_without_pseudo_data")
    def no_pseudo_data(self: InferenceModel) -> None:
        self.add_category("sr", config_variable="ht", data_toy_seed=3)
        self.add_process("HH", config_process="hh_ggf_bbtautau")

    with pytest.raises(UserError, match=r"category 'sr' .*: data_toy_seed must be an integer >= 0 and needs data_from"):
        no_pseudo_data(config_inst)


def test_data_at_another_luminosity_than_the_mc_is_refused_as_observation(config_inst: Any) -> None:
    from cf.analysis import load_modules

    load_modules("inference_modules")
    model_cls = InferenceModel.get_cls("test_inference")
    # the MC at 41.5 fb^-1, the data events at 5 pb^-1: the tasks refuse them before any work
    events = model_cls(config_inst, settings={"observation": "events"})
    message = r"category 'sr' .* observes the data of config '\w+', 5 pb\^-1 \(x.data_luminosity\), but the MC is"
    with pytest.raises(UserError, match=message):
        events.check_data_luminosity()
    for observation in ("toy", "asimov"):
        model = model_cls(config_inst, settings={"observation": observation})
        model.check_data_luminosity()
        assert model.has_asimov_data() == (observation == "asimov")


def test_empty_bins_get_columnflows_fill_value_by_default(config_inst: Any) -> None:
    model = unit_config_inference(config_inst, settings={"empty_bin_value": 1e-5})
    shapes = category_shapes(model, "sr", unit_config_histograms(config_inst))
    assert shapes.nominal["tt"][6] == 1e-5
    assert shapes.variances["tt"][6] == 1e-5
    assert np.count_nonzero(shapes.nominal["tt"] > 1e-5) == 2
    assert InferenceModel.category_spec("x").empty_bin_value == 1e-5


TRANSFORMATION_CASES = [
    # (type, transformations, effect, expected effect on tt, or "shape" for a parameter acting as shape)
    ("rate_gauss", ["symmetrize"], (0.9, 1.2), (0.85, 1.15)),
    ("rate_gauss", ["symmetrize"], (1.1, 1.2), (1.1, 1.2)),  # one-sided: left alone
    ("rate_gauss", ["asymmetrize"], 1.1, (0.9, 1.1)),
    ("rate_gauss", ["asymmetrize_if_large"], 1.1, 1.1),
    ("rate_gauss", ["asymmetrize_if_large"], 1.3, (0.7, 1.3)),
    ("rate_gauss", ["flip_smaller_if_one_sided"], (1.05, 1.2), (0.95, 1.2)),
    ("rate_gauss", ["flip_larger_if_one_sided"], (1.05, 1.2), (1.05, 0.8)),
    ("rate_gauss", ["effect_from_shape"], 1.0, (0.8, 1.5)),
    ("rate_gauss", ["effect_from_shape", "symmetrize"], 1.0, (0.65, 1.35)),
    ("rate_gauss", ["effect_from_shape_if_flat"], 1.0, "shape"),
]


@pytest.mark.parametrize(("parameter_type", "trafos", "effect", "expected"), TRANSFORMATION_CASES)
def test_rate_transformations(
    config_inst: Any, parameter_type: str, trafos: list[str], effect: Any, expected: Any
) -> None:
    @inference_model(name="unit_rate_trafo")
    def build(self: InferenceModel) -> None:
        self.add_category("sr", config_variable="ht", data_from_processes=True, empty_bin_value=0.0)
        self.add_process("HH", config_process="hh_ggf_bbtautau", is_signal=True)
        self.add_process("tt")
        self.add_parameter(
            "p", process="tt", type=parameter_type, transformations=trafos, effect=effect, config_shift_source="jec"
        )

    sr = config_inst.get_category("sr").id
    # tt: 10 in one bin, 30 in another; jec_up x1.5 (flat), jec_down x0.6 / x0.9 (not flat, integral 0.8)
    fills = {"nominal": (10.0, 30.0), "jec_up": (15.0, 45.0), "jec_down": (6.0, 26.0)}
    histograms = {
        CONFIG: {
            "hh_ggf_bbtautau_madgraph": {"nominal": merged_histogram(config_inst, [(sr, "nominal", 50.0, 1.0)])},
            **{
                dataset: {
                    shift: merged_histogram(config_inst, [(sr, shift, 50.0, a / 2), (sr, shift, 250.0, b / 2)])
                    for shift, (a, b) in fills.items()
                }
                for dataset in ("tt_sl_powheg", "tt_dl_powheg")
            },
        }
    }
    model = build(config_inst)
    shapes = category_shapes(model, "sr", histograms)
    if expected == "shape":
        up, down = shapes.shifted["tt"]["p"]
        assert (up.sum(), down.sum()) == pytest.approx((60.0, 32.0))
        assert "p" not in shapes.effects.get("tt", {})
        card = render_datacard(model, "sr", shapes, "s.root")
        assert re.search(r"^p\s+shape\s+-\s+1$", card, flags=re.MULTILINE)
    else:
        assert shapes.effects["tt"]["p"] == pytest.approx(expected)
        assert "p" not in shapes.shifted.get("tt", {})


def test_shape_transformations() -> None:
    from cf.inference.shapes import _shape_trafos

    nominal = np.array([10.0, 10.0, 10.0])
    up = np.array([12.0, 9.0, 11.0])
    down = np.array([9.0, 8.0, 10.0])
    same = _shape_trafos(nominal, up, down, [ParameterTransformation.none])
    np.testing.assert_allclose(same[0], up)
    up_n, down_n = _shape_trafos(nominal, up, down, [ParameterTransformation.normalize])
    assert (up_n.sum(), down_n.sum()) == pytest.approx((30.0, 30.0))
    up_s, down_s = _shape_trafos(nominal, up, down, [ParameterTransformation.symmetrize])
    assert up_s.sum() - 30.0 == pytest.approx(30.0 - down_s.sum())
    up_e, down_e = _shape_trafos(nominal, up, down, [ParameterTransformation.envelope])
    np.testing.assert_allclose(up_e, [12.0, 12.0, 11.0])
    np.testing.assert_allclose(down_e, [8.0, 8.0, 9.0])
    up_o, down_o = _shape_trafos(nominal, up, down, [ParameterTransformation.envelope_if_one_sided])
    np.testing.assert_allclose(up_o, [12.0, 12.0, 11.0])  # bin 2 is one-sided (both below)
    np.testing.assert_allclose(down_o, [9.0, 8.0, 10.0])
    up_t, down_t = _shape_trafos(nominal, up, down, [ParameterTransformation.envelope_enforce_two_sided])
    np.testing.assert_allclose(up_t, [12.0, 12.0, 11.0])
    np.testing.assert_allclose(down_t, [8.0, 8.0, 9.0])


def test_a_shape_from_a_rate_effect_needs_no_shifted_histograms(config_inst: Any) -> None:
    @inference_model(name="unit_shape_from_rate")
    def build(self: InferenceModel) -> None:
        self.add_category("sr", config_variable="ht", data_from_processes=True, empty_bin_value=0.0)
        self.add_process("HH", config_process="hh_ggf_bbtautau", is_signal=True)
        self.add_parameter("qcd_scale", type="shape", transformations=["effect_from_rate"], effect=(0.5, 1.1))

    model = build(config_inst)
    assert model.dataset_shifts(CONFIG) == {"hh_ggf_bbtautau_madgraph": ("nominal",)}
    sr = config_inst.get_category("sr").id
    histograms = {
        CONFIG: {"hh_ggf_bbtautau_madgraph": {"nominal": merged_histogram(config_inst, [(sr, "nominal", 50.0, 2.0)])}}
    }
    up, down = category_shapes(model, "sr", histograms).shifted["HH"]["qcd_scale"]
    assert (up.sum(), down.sum()) == pytest.approx((2.2, 1.0))


# the same datacards as before the config-keyed redesign

GOLDEN = Path(__file__).parent / "data" / "inference_golden"


def golden_histograms(model: InferenceModel, config_inst: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """Seeded histograms of every dataset and shift test_inference reads (flow, negative weights, empty spots).

    ``tests/data/inference_golden`` holds the datacards, shapes-file contents and pyhf workspaces that the
    flat InferenceModel of commit ce84617 (before the config-keyed redesign) wrote from exactly these
    histograms, for the settings then called default, ``signal_scale=100`` and ``asimov=True``.
    """
    from cf.tasks.histograms import empty_histogram

    rng = np.random.default_rng(7)
    variables = sorted({data.variable for c in model.categories for data in c.config_data.values()})
    histograms: dict[str, dict[str, Any]] = {}
    for dataset, shifts in sorted(model.dataset_shifts(config_inst.name).items()):
        histograms[dataset] = {}
        for shift in shifts:
            per_variable = {}
            for name in variables:
                variable = config_inst.get_variable(name)
                histogram = empty_histogram(variable)
                low, high = variable.bin_edges[0], variable.bin_edges[-1]
                for category in ("sr", "cr_tt"):
                    values = rng.uniform(low - 0.05 * (high - low), high * 1.05, 400)
                    weights = rng.uniform(-0.1, 1.0, 400) * (1.3 if shift.endswith("up") else 1.0)
                    category_id = config_inst.get_category(category).id
                    histogram.fill(category=category_id, shift=shift, **{name: values}, weight=weights)
                per_variable[name] = histogram
            histograms[dataset][shift] = per_variable
    return {config_inst.name: histograms}


GOLDEN_SETTINGS = {
    "default": {"observation": "events"},
    "signal_scale_100.0": {"signal_scale": 100.0, "observation": "events"},
    "asimov_True": {"observation": "asimov"},
}


@pytest.mark.parametrize("tag", list(GOLDEN_SETTINGS), ids=["default", "x100", "asimov"])
def test_the_config_keyed_test_inference_writes_the_same_datacards_as_before(config_inst: Any, tag: str) -> None:
    from cf.analysis import load_modules
    from cf.inference import shapes_file_histograms

    load_modules("inference_modules")
    # the golden files predate the pileup and muon ID weights: compare the model without their uncertainties
    # (the golden files observe the data; asimov_True is the former setting asimov=True)
    settings = {**GOLDEN_SETTINGS[tag], "weight_uncertainties": False}
    model = InferenceModel.get_cls("test_inference")(config_inst, settings=settings)
    histograms = golden_histograms(model, config_inst)
    shapes = {}
    for category in model.categories:
        variable = category.config_data[CONFIG].variable
        per_variable = {
            CONFIG: {d: {s: h[variable] for s, h in shifts.items()} for d, shifts in histograms[CONFIG].items()}
        }
        shapes[category.name] = category_shapes(model, category.name, per_variable)
        text = render_datacard(model, category.name, shapes[category.name], f"shapes__{category.name}.root")
        assert text == (GOLDEN / f"{tag}__datacard__{category.name}.txt").read_text()
        files = shapes_file_histograms(model, category.name, shapes[category.name])
        expected = json.loads((GOLDEN / f"{tag}__shapes.json").read_text())[category.name]
        assert sorted(files) == sorted(expected)
        for key, histogram in files.items():
            assert list(map(float, histogram.values())) == expected[key][0]
            assert list(map(float, histogram.variances())) == expected[key][1]
    spec = json.loads(json.dumps(build_pyhf_spec(model, shapes)))
    assert spec == json.loads((GOLDEN / f"{tag}__workspace.json").read_text())


def test_columnflows_older_flat_keywords_build_the_same_tree_as_config_data(config_inst: Any) -> None:
    @inference_model(name="unit_flat_style")
    def flat(self: InferenceModel) -> None:
        self.add_category("sr", config_category="sr", config_variable="ht", config_data_datasets=["data_mu_b"])
        self.add_process("HH", config_process="hh_ggf_bbtautau", config_mc_datasets=["hh_*"], is_signal=True)
        self.add_process("tt", config_process="tt")
        self.add_parameter("jec", type="shape", config_shift_source="jec")

    @inference_model(name="unit_config_data_style")
    def keyed(self: InferenceModel) -> None:
        c = self.config_inst.name
        self.add_category("sr", config_data={c: {"category": "sr", "variable": "ht", "data_datasets": ["data_mu_b"]}})
        self.add_process("HH", is_signal=True, config_data={c: {"process": "hh_ggf_bbtautau", "mc_datasets": ["hh_*"]}})
        self.add_process("tt", config_data={c: self.process_config_spec(process="tt")})
        self.add_parameter("jec", type="shape", config_data={c: {"shift_source": "jec"}})

    assert flat(config_inst).model == keyed(config_inst).model


def test_a_model_of_two_configs_sums_their_histograms_per_category(config_inst: Any) -> None:
    from cf.analysis import get_config, load_analysis

    other = get_config(load_analysis(), "run2_2018_nano_v6_limited")
    model = unit_config_inference([config_inst, other])
    assert [c.name for c in model.config_insts] == [CONFIG, other.name]
    assert model.category_configs("sr") == [CONFIG, other.name]
    assert set(model.dataset_shifts(other.name)) >= set(model.get_process("tt").config_data[other.name].mc_datasets)
    histograms = unit_config_histograms(config_inst)
    sr_other = other.get_category("sr").id
    histograms[other.name] = {
        dataset: {
            shift: merged_histogram(other, [(sr_other, shift, 50.0, 10.0)])
            for shift in model.dataset_shifts(other.name)[dataset]
        }
        for dataset in model.dataset_shifts(other.name)
    }
    shapes = category_shapes(model, "sr", histograms)
    single = category_shapes(unit_config_inference(config_inst), "sr", unit_config_histograms(config_inst))
    n_tt_other = len(model.get_process("tt").config_data[other.name].mc_datasets)
    assert shapes.rate("tt") == pytest.approx(single.rate("tt") + 10.0 * n_tt_other)
    assert shapes.rate("HH") == pytest.approx(single.rate("HH") + 10.0)
    card = render_datacard(model, "sr", shapes, "s.root")
    assert card.splitlines()[0] == (
        f"# inference model 'unit_config_inference', category 'sr': config '{CONFIG}': config category 'sr', "
        f"variable 'ht'; config '{other.name}': config category 'sr', variable 'ht'"
    )


# pyhf


def test_pyhf_spec_validates_and_has_the_datacard_modifiers() -> None:
    model = unit_inference()
    shapes = {"sr": unit_shapes(model)}
    spec = build_pyhf_spec(model, shapes)
    workspace = validate_pyhf_spec(spec)
    assert workspace.channels == ["sr"]
    samples = {sample["name"]: sample for sample in spec["channels"][0]["samples"]}
    modifiers = {name: {(m["name"], m["type"]) for m in sample["modifiers"]} for name, sample in samples.items()}
    assert modifiers["ggHH"] == {("r", "normfactor"), ("lumi", "normsys"), ("jes", "histosys")}
    assert modifiers["ttbar_long_name"] == {
        ("lumi", "normsys"),
        ("xsec_tt", "normsys"),
        ("jes", "histosys"),
        ("staterror_sr", "staterror"),
    }
    normsys = next(m for m in samples["ttbar_long_name"]["modifiers"] if m["name"] == "xsec_tt")
    assert normsys["data"] == {"hi": 1.06, "lo": 0.95}
    assert sum(samples["dy"]["data"]) == pytest.approx(shapes["sr"].rate("dy"))
    bounds = spec["measurements"][0]["config"]["parameters"][0]["bounds"]
    assert bounds[0][0] == 0.0
    assert bounds[0][1] >= 10.0
    spec["channels"][0]["samples"][0]["modifiers"][0]["type"] = "nonsense"
    with pytest.raises(UserError, match="does not follow the schema"):
        validate_pyhf_spec(spec)


@pytest.fixture(scope="module")
def unit_limits() -> tuple[dict[str, Any], dict[str, Any]]:
    results = []
    for model_cls in (unit_inference, unit_inference_x10):
        model = model_cls()
        results.append(compute_limits(build_pyhf_spec(model, {"sr": unit_shapes(model)}), observed=True, n_scan=11))
    return results[0], results[1]


def test_expected_limit_is_finite_positive_with_an_ordered_band(unit_limits: tuple[dict, dict]) -> None:
    result, _ = unit_limits
    expected = [result["expected"][k] for k in ("-2sigma", "-1sigma", "median", "+1sigma", "+2sigma")]
    assert all(math.isfinite(x) and x > 0 for x in expected)
    assert expected == sorted(expected)
    assert expected[0] < expected[2] < expected[4]
    # the observation is the background expectation: the observed limit is the median expected one
    assert result["observed"] == pytest.approx(result["expected"]["median"], rel=0.02)
    assert len(result["scan"]["poi"]) >= 11
    cls = np.asarray(result["scan"]["cls_expected"])[:, 2]
    assert np.all(np.diff(cls) < 0)
    json.dumps(result)


def test_ten_times_the_signal_gives_a_ten_times_smaller_limit(unit_limits: tuple[dict, dict]) -> None:
    nominal, scaled = unit_limits
    for key, value in nominal["expected"].items():
        assert value / scaled["expected"][key] == pytest.approx(10.0, rel=0.01)


def test_a_tiny_signal_still_gives_a_finite_limit() -> None:
    """The limited config's HH yield is ~0.01 events: the POI range follows the signal size."""
    model = unit_inference(settings={"signal_scale": 1e-4})
    shapes = {"sr": unit_shapes(model)}
    result = compute_limits(build_pyhf_spec(model, shapes), observed=False, n_scan=5)
    assert result["observed"] is None
    assert 1e2 < result["expected"]["median"] < 1e6
    assert result["expected"]["median"] < result["poi_upper_bound"]


# integration through law run

INFERENCE = ("--version", "v1", "--inference-model", "test_inference")


@pytest.fixture(scope="module")
def inference_env(dnn_store: LawEnv) -> LawEnv:
    """The session's store with dnn trained: the inference adds its jec-calibrated chain and evaluation."""
    return dnn_store


@pytest.fixture(scope="module")
def limits(inference_env: LawEnv, law_run: LawRun, law_outputs: LawOutputs) -> dict[str, Any]:
    """Makes the datacards and computes the limit (nominal and x100 signal) with the session's trained dnn."""
    law_run("cf.PyhfLimit", *INFERENCE, env=inference_env.env, timeout=3600)
    law_run("cf.PyhfLimit", *INFERENCE, "--inference-model-settings", "signal_scale=100", env=inference_env.env)
    results = {}
    for name, extra in (("nominal", ()), ("x100", ("--inference-model-settings", "signal_scale=100"))):
        outputs = law_outputs("cf.PyhfLimit", *INFERENCE, *extra, env=inference_env.env)
        results[name] = {path.suffix: path for path in outputs}
    return results


def datacard_outputs(env: LawEnv, law_outputs: LawOutputs) -> dict[str, Path]:
    return {path.name: path for path in law_outputs("cf.CreateDatacards", *INFERENCE, env=env.env)}


def parse_datacard(path: Path) -> dict[str, Any]:
    """Observation and the rate per process of a one-bin datacard."""
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    process_lines = [words for words in lines if words[0] == "process"]
    rate = next(words for words in lines if words[0] == "rate")
    observation = next(words for words in lines if words[0] == "observation")
    return {
        "observation": float(observation[1]),
        "rates": dict(zip(process_lines[0][1:], map(float, rate[1:]), strict=True)),
        "indices": dict(zip(process_lines[0][1:], map(int, process_lines[1][1:]), strict=True)),
        "lines": lines,
    }


def merged_histograms(env: LawEnv, law_outputs: LawOutputs, dataset: str, shift: str = "nominal") -> dict[str, Any]:
    from cf.tasks.histograms import load_histograms

    args = ("cf.MergeHistograms", "--version", "v1", "--dataset", dataset, "--shift", shift)
    extra = ("--calibrators", "jec", "--ml-models", "dnn", "--variables", "dnn.score_hh,ht")
    (path,) = law_outputs(*args, *extra, env=env.env)
    return load_histograms(str(path))


PROCESS_DATASETS = {
    "HH": ("hh_ggf_bbtautau_madgraph",),
    "tt": ("tt_sl_powheg", "tt_dl_powheg"),
    "dy": ("dy_lep_m50_madgraph",),
}
CATEGORY_VARIABLES = {"sr": ("sr", "dnn.score_hh"), "cr_tt": ("cr_tt", "ht")}
BIN_EDGES = {
    "sr": (0.0, 0.2, 0.4, 0.6, 0.7, 0.8, 0.9, 1.0),
    "cr_tt": (0.0, 200.0, 240.0, 280.0, 320.0, 360.0, 420.0, 500.0, 1000.0),
}


@pytest.mark.slow
@pytest.mark.sandbox
def test_datacard_rates_equal_shapes_integrals_and_merged_histograms(
    limits: dict[str, Any],
    inference_env: LawEnv,
    law_outputs: LawOutputs,
    config_inst: Any,
) -> None:
    import uproot

    outputs = datacard_outputs(inference_env, law_outputs)
    assert sorted(outputs) == ["datacard__cr_tt.txt", "datacard__sr.txt", "shapes__cr_tt.root", "shapes__sr.root"]
    merged = {
        dataset: merged_histograms(inference_env, law_outputs, dataset)
        for datasets in PROCESS_DATASETS.values()
        for dataset in datasets
    }
    for category, (config_category, variable) in CATEGORY_VARIABLES.items():
        card = parse_datacard(outputs[f"datacard__{category}.txt"])
        assert card["indices"] == {"HH": 0, "tt": 1, "dy": 2}
        assert any(words[:2] == ["jec", "shape"] for words in card["lines"])
        assert ["*", "autoMCStats", "10"] in card["lines"]
        category_id = config_inst.get_category(config_category).id
        with uproot.open(outputs[f"shapes__{category}.root"]) as file:
            observed = file[f"{category}/data_obs"].values()
            assert card["observation"] == pytest.approx(observed.sum(), rel=1e-8)
            # the observation: the seeded Poisson toy of the expected backgrounds (observation=toy, toy_seed=1)
            backgrounds = file[f"{category}/tt"].values() + file[f"{category}/dy"].values()
            np.testing.assert_array_equal(observed, poisson_toy(backgrounds, 1, category))
            shifted_differs = False
            for process, datasets in PROCESS_DATASETS.items():
                nominal = file[f"{category}/{process}"].values()
                assert card["rates"][process] == pytest.approx(nominal.sum(), rel=1e-8)
                # per bin: the summed merged histograms (flow folded in, merged bins), negative bins set to zero
                values = sum(select_histogram(merged[d][variable], category_id, "nominal")[0] for d in datasets)
                edges = select_histogram(merged[datasets[0]][variable], category_id, "nominal")[2]
                bins = rebin(values, edges, BIN_EDGES[category])
                np.testing.assert_allclose(nominal, np.clip(bins, 0.0, None), rtol=1e-6, atol=1e-12)
                up = file[f"{category}/{process}__jecUp"].values()
                down = file[f"{category}/{process}__jecDown"].values()
                shifted_differs |= not np.allclose(up, nominal) and not np.allclose(down, nominal)
            assert shifted_differs, "the jec shapes equal nominal: the jec calibrator did not run"
    # the signal is there: about ten events at 41.5 fb^-1, next to far more tt events
    rates = parse_datacard(outputs["datacard__sr.txt"])["rates"]
    assert 1 < rates["HH"] < 100 < rates["tt"]


@pytest.mark.slow
@pytest.mark.sandbox
def test_merged_histograms_equal_weighted_event_sums_of_the_produced_columns(
    limits: dict[str, Any],
    inference_env: LawEnv,
    law_outputs: LawOutputs,
    config_inst: Any,
) -> None:
    dataset = "tt_sl_powheg"
    args = ("cf.ProduceColumns", "--version", "v1", "--dataset", dataset, "--calibrators", "jec")
    events = ak.concatenate([ak.from_parquet(p) for p in law_outputs(*args, env=inference_env.env)])
    # the event weights of the config; a weight shift reads the varied column of the weight it varies
    weights = {
        "nominal": events.normalization_weight * events.pu_weight * events.muon_weight,
        "pu_up": events.normalization_weight * events.pu_weight_up * events.muon_weight,
        "mu_id_down": events.normalization_weight * events.pu_weight * events.muon_weight_down,
    }
    for shift, weight in weights.items():
        merged = merged_histograms(inference_env, law_outputs, dataset, shift)
        for config_category, variable in CATEGORY_VARIABLES.values():
            category_id = config_inst.get_category(config_category).id
            in_category = ak.to_numpy(ak.any(events.category_ids == category_id, axis=1))
            expected = float(np.sum(ak.to_numpy(weight)[in_category]))
            assert in_category.sum() > 10
            total = select_histogram(merged[variable], category_id, shift)[0].sum()
            assert total == pytest.approx(expected, rel=1e-5)
    # the weights are not all one: the pileup weights vary, the muon scale factors are below one
    assert np.std(ak.to_numpy(events.pu_weight)) > 0.1
    assert ak.all(events.muon_weight <= 1.0)
    assert not np.allclose(ak.to_numpy(events.pu_weight_up), ak.to_numpy(events.pu_weight))


@pytest.mark.slow
@pytest.mark.sandbox
def test_workspace_validates_and_the_limit_shrinks_with_more_signal(
    limits: dict[str, Any],
    inference_env: LawEnv,
    law_outputs: LawOutputs,
) -> None:
    import pyhf

    (workspace_path,) = law_outputs("cf.CreatePyhfWorkspace", *INFERENCE, env=inference_env.env)
    spec = json.loads(workspace_path.read_text())
    with warnings.catch_warnings():
        # pyhf 0.7.6 validates with jsonschema's deprecated RefResolver
        warnings.filterwarnings("ignore", message="jsonschema.RefResolver is deprecated", category=DeprecationWarning)
        pyhf.schema.validate(spec, "workspace.json")
        workspace = pyhf.Workspace(spec)
    assert workspace.channels == ["cr_tt", "sr"]
    assert sorted(workspace.samples) == ["HH", "dy", "tt"]
    assert set(workspace.modifiers) == {
        ("jec", "histosys"),
        ("pu", "histosys"),
        ("mu_id", "histosys"),
        ("lumi_13TeV_2017", "normsys"),
        ("r", "normfactor"),
        ("staterror_cr_tt", "staterror"),
        ("staterror_sr", "staterror"),
        ("tt_xsec", "normsys"),
    }

    nominal = json.loads(limits["nominal"][".json"].read_text())
    scaled = json.loads(limits["x100"][".json"].read_text())
    band = [nominal["expected"][k] for k in ("-2sigma", "-1sigma", "median", "+1sigma", "+2sigma")]
    assert all(math.isfinite(x) and x > 0 for x in band)
    assert band == sorted(band)
    assert nominal["observed"] is not None
    assert math.isfinite(nominal["observed"])
    assert nominal["observed"] > 0
    assert scaled["expected"]["median"] < nominal["expected"]["median"] / 20
    assert scaled["expected"]["median"] == pytest.approx(nominal["expected"]["median"] / 100, rel=0.05)
    for suffix in (".png", ".pdf"):
        assert limits["nominal"][suffix].stat().st_size > 1000
    print(
        f"expected limit on r: {band} (x100 signal: {scaled['expected']['median']:.4g}), "
        f"observed {nominal['observed']:.4g}"
    )


def assert_clear_failure(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    for needle in needles:
        assert needle in output, f"'{needle}' not in output:\n{output[-3000:]}"
    assert "Traceback" not in output, output[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (("--inference-model", "test_inferenc"), ("unknown inference model 'test_inferenc'", "test_inference")),
        (("--inference-model-settings", "sr_category=sr_typo"), ("unknown category 'sr_typo'", "cr_tt")),
        (("--inference-model-settings", "sr_variable=dnn.score_typo"), ("unknown variable 'dnn.score_typo'",)),
        (("--inference-model-settings", "signal_process=hh_typo"), ("unknown process 'hh_typo'", "hh_ggf_bbtautau")),
        (("--inference-model-settings", "signal_scael=3"), ("unknown setting 'signal_scael'", "signal_scale")),
        (("--calibrators", "skip_jecunc"), ("need the shift(s) jec_down, jec_up", "calibrator 'jec'")),
        (
            ("--inference-model-settings", "observation=events"),
            ("observes the data of config", "5 pb^-1 (x.data_luminosity)", "use data_from_processes"),
        ),
    ],
)
def test_bad_input_fails_with_one_clear_message_and_no_output(
    fresh_law_env: LawEnv,
    law_run: LawRun,
    extra: tuple[str, ...],
    needles: tuple[str, ...],
) -> None:
    args = list(INFERENCE)
    if extra[0] == "--inference-model":
        args[args.index("--inference-model") + 1] = extra[1]
        extra = ()
    result = law_run("cf.CreateDatacards", *args, *extra, env=fresh_law_env.env, check=False)
    assert_clear_failure(result, *needles)
    assert not [path for path in fresh_law_env.store.rglob("*") if path.is_file()]
