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
import hist
import numpy as np
import pytest

from analysis_template.config.analysis import analysis_template
from cf.inference import (
    CategoryShapes,
    InferenceModel,
    ParameterType,
    build_pyhf_spec,
    category_shapes,
    compute_limits,
    inference_model,
    lnn_effect,
    read_shapes_file,
    rebin,
    render_datacard,
    select_histogram,
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


@inference_model(mc_stats_threshold=5)
def unit_inference(self: InferenceModel) -> None:
    """Two signals and two backgrounds in one category."""
    self.add_category("sr", config_category="sr", config_variable="ht", data_from_processes=True)
    self.add_process("ggHH", is_signal=True)
    self.add_process("ttbar_long_name")
    self.add_process("vbfHH", is_signal=True)
    self.add_process("dy")
    self.add_parameter("lumi", type="lnN", effect=1.025)
    self.add_parameter("xsec_tt", type="lnN", processes="ttbar_long_name", effect=(0.95, 1.06))
    self.add_parameter("jes", type="shape", processes=("ggHH", "ttbar_long_name"), config_shift_source="jec")
    self.add_parameter_group("experimental", ["lumi", "jes"])


unit_inference_x10 = unit_inference.derive("unit_inference_x10", cls_dict={"signal_scale": 10.0})


def unit_shapes(model: InferenceModel) -> CategoryShapes:
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    nominal = {
        "ggHH": np.array([0.5, 1.0, 2.0]),
        "vbfHH": np.array([0.1, 0.2, 0.4]),
        "ttbar_long_name": np.array([40.0, 20.0, 5.0]),
        "dy": np.array([10.0, 5.0, 1.0]),
    }
    variances = {name: values * 0.04 for name, values in nominal.items()}
    shifted = {
        name: {"jes": (nominal[name] * [1.02, 1.05, 1.1], nominal[name] * [0.98, 0.96, 0.92])}
        for name in ("ggHH", "ttbar_long_name")
    }
    data = nominal["ttbar_long_name"] + nominal["dy"]
    return CategoryShapes(edges=edges, nominal=nominal, variances=variances, shifted=shifted, data=data)


# registry and definition


def test_the_decorator_registers_a_model_class_named_after_the_function() -> None:
    assert InferenceModel.get_cls("unit_inference") is unit_inference
    assert issubclass(unit_inference, InferenceModel)
    assert unit_inference.mc_stats_threshold == 5
    assert unit_inference.__doc__ == "Two signals and two backgrounds in one category."
    assert "unit_inference" in InferenceModel.names()
    assert InferenceModel.get_cls("unit_inference_x10").signal_scale == 10.0


def test_an_unknown_model_name_lists_the_available_ones() -> None:
    with pytest.raises(UserError, match=r"unknown inference model 'nope', available: .*unit_inference"):
        InferenceModel.get_cls("nope")


def test_a_model_without_config_keeps_the_order_signals_first() -> None:
    model = unit_inference()
    assert [p.name for p in model.processes] == ["ggHH", "vbfHH", "ttbar_long_name", "dy"]
    assert [model.process_index(p.name) for p in model.processes] == [0, -1, 1, 2]
    assert model.get_parameter("xsec_tt").kappas == (0.95, 1.06)
    assert model.get_parameter("lumi").kappas == pytest.approx((1 / 1.025, 1.025))
    assert model.get_parameter("jes").type is ParameterType.shape
    assert model.get_parameter("jes").shifts == ("jec_up", "jec_down")
    with pytest.raises(UserError, match="unknown process 'tt' in inference model 'unit_inference', available: "):
        model.get_process("tt")


def test_settings_override_class_attributes_and_unknown_ones_are_named() -> None:
    model = unit_inference(settings={"signal_scale": 3, "mc_stats": False})
    assert model.signal_scale == 3.0
    assert model.mc_stats is False
    assert model.settings_repr
    with pytest.raises(UserError, match=r"unknown setting 'signal_scael' .* allowed: .*signal_scale"):
        unit_inference(settings={"signal_scael": 3})


def test_the_analysis_model_resolves_against_the_config(config_inst: Any) -> None:
    from cf.analysis import load_modules

    load_modules("inference_modules")
    model = InferenceModel.get_cls("test_inference")(config_inst)
    assert [c.name for c in model.categories] == ["sr", "cr_tt"]
    assert model.get_category("sr").config_variable == "dnn.score_hh"
    assert model.get_category("sr").config_data_datasets == ("data_mu_b",)
    assert model.get_process("tt").config_mc_datasets == ("tt_sl_powheg", "tt_dl_powheg")
    assert [p.name for p in model.signal_processes] == ["HH"]
    assert model.required_ml_models == ("dnn",)
    assert model.calibrators == ("jec",)
    assert model.get_parameter("lumi_13TeV_2017").effect == pytest.approx(1.023)
    assert model.dataset_shifts()["tt_sl_powheg"] == ("nominal", "jec_up", "jec_down")
    assert model.dataset_shifts()["data_mu_b"] == ("nominal",)


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


def test_an_unknown_shift_source_is_named(config_inst: Any) -> None:
    @inference_model(name="unit_bad_shift")
    def build(self: InferenceModel) -> None:
        self.add_category("sr", config_variable="ht")
        self.add_process("HH", config_process="hh_ggf_bbtautau")
        self.add_parameter("pu", type="shape", config_shift_source="pileup")

    with pytest.raises(UserError, match=r"unknown shift 'pileup_up' .* available: nominal, jec_up, jec_down"):
        build(config_inst)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": "lnU", "effect": 1.1}, r"unknown type 'lnU', allowed: lnN, shape"),
        ({"type": "lnN"}, "needs an effect"),
        ({"type": "lnN", "effect": -1.0}, "needs an effect"),
        ({"type": "shape"}, "needs a config_shift_source"),
        ({"type": "lnN", "effect": 1.1, "processes": "ttx"}, "unknown processes ttx, available: HH"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, Any], message: str) -> None:
    @inference_model(name="unit_bad_parameter")
    def build(self: InferenceModel) -> None:
        self.add_category("sr", config_variable="ht")
        self.add_process("HH", is_signal=True)
        self.add_parameter("p", **kwargs)

    with pytest.raises(UserError, match=message):
        build()


def test_bad_names_and_groups_are_refused() -> None:
    @inference_model(name="unit_bad_name")
    def bad_name(self: InferenceModel) -> None:
        self.add_category("1sr", config_variable="ht")

    @inference_model(name="unit_bad_group")
    def bad_group(self: InferenceModel) -> None:
        self.add_category("sr", config_variable="ht")
        self.add_process("HH", is_signal=True)
        self.add_parameter_group("g", ["nope"])

    with pytest.raises(UserError, match="category name '1sr' is invalid"):
        bad_name()
    with pytest.raises(UserError, match=r"parameter group 'g' .* unknown parameter\(s\) nope"):
        bad_group()


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
    assert [p.name for p in model.processes] == ["HH", "tt", "dy"]
    assert model.get_category("sr").bin_edges == (0.0, 0.4, 0.6, 0.8, 0.9, 1.0)
    assert model.data_processes(model.get_category("cr_tt")) == ["tt", "dy"]
    assert model.required_ml_models == ("dnn",)
    assert InferenceModel.get_cls("docs_example_x10")(config_inst).signal_scale == 10.0


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


def test_datacard_without_mc_stats_and_groups() -> None:
    model = unit_inference(settings={"mc_stats": False})
    text = render_datacard(model, "sr", unit_shapes(model), "s.root")
    assert "autoMCStats" not in text


def test_shapes_file_round_trip_and_integrals_equal_rates(tmp_path: Path) -> None:
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
        for process in model.processes:
            assert file[f"sr/{process.name}"].values().sum() == pytest.approx(shapes.rate(process.name))
    back = read_shapes_file(str(path), model, "sr")
    np.testing.assert_allclose(back.edges, shapes.edges)
    np.testing.assert_allclose(back.data, shapes.data)
    for name in shapes.nominal:
        np.testing.assert_allclose(back.nominal[name], shapes.nominal[name])
        np.testing.assert_allclose(back.variances[name], shapes.variances[name])
    np.testing.assert_allclose(back.shifted["ggHH"]["jes"][0], shapes.shifted["ggHH"]["jes"][0])


# histograms -> shapes


def merged_histogram(config_inst: Any, fills: list[tuple[int, str, float, float]]) -> Any:
    """A MergeHistograms-like histogram of ht: (category id, shift, value, weight) fills."""
    variable = config_inst.get_variable("ht")
    histogram = hist.Hist(
        hist.axis.IntCategory([], name="category", growth=True),
        hist.axis.StrCategory([], name="shift", growth=True),
        hist.axis.Regular(variable.n_bins, variable.x_min, variable.x_max, name="ht"),
        storage=hist.storage.Weight(),
    )
    for category, shift, value, weight in fills:
        histogram.fill(category=category, shift=shift, ht=value, weight=weight)
    return histogram


def test_select_histogram_folds_flow_bins_and_handles_missing_categories(config_inst: Any) -> None:
    histogram = merged_histogram(
        config_inst, [(2, "nominal", -5.0, 1.0), (2, "nominal", 5000.0, 2.0), (2, "nominal", 10.0, 4.0)]
    )
    values, variances, edges = select_histogram(histogram, 2, "nominal")
    assert len(values) == len(edges) - 1 == 50
    assert values[0] == 5.0
    assert values[-1] == 2.0
    assert variances[0] == 17.0
    values, _, _ = select_histogram(histogram, 3, "nominal")
    assert not values.any()
    with pytest.raises(UserError, match="has no shift 'jec_up', only: nominal"):
        select_histogram(histogram, 2, "jec_up")


def test_rebin_merges_bins_and_refuses_foreign_edges() -> None:
    edges = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(rebin(np.array([1.0, 2.0, 3.0, 4.0]), edges, (0.0, 2.0, 4.0)), [3.0, 7.0])
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


@inference_model(calibrators=("jec",))
def unit_config_inference(self: InferenceModel) -> None:
    """One category of the real config, data from the backgrounds."""
    self.add_category("sr", config_variable="ht", data_from_processes=True)
    self.add_process("HH", config_process="hh_ggf_bbtautau")
    self.add_process("tt")
    self.add_parameter("jec", type="shape", processes="tt", config_shift_source="jec")


def test_category_shapes_sum_datasets_clip_scale_and_build_asimov_data(config_inst: Any) -> None:
    model = unit_config_inference(config_inst, settings={"signal_scale": 4.0})
    sr = config_inst.get_category("sr").id
    histograms = {
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
    }
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
    np.testing.assert_allclose(shapes.data, shapes.nominal["tt"])
    with pytest.raises(UserError, match="no histogram of dataset 'tt_dl_powheg' for shift 'jec_up'"):
        category_shapes(model, "sr", {**histograms, "tt_dl_powheg": {"nominal": histograms["tt_dl_powheg"]["nominal"]}})


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
        shapes = {"sr": unit_shapes(model)}
        shapes["sr"].nominal = {
            k: v * (model.signal_scale if k.endswith("HH") else 1.0) for k, v in shapes["sr"].nominal.items()
        }
        shapes["sr"].shifted["ggHH"]["jes"] = tuple(v * model.signal_scale for v in shapes["sr"].shifted["ggHH"]["jes"])
        results.append(compute_limits(build_pyhf_spec(model, shapes), observed=True, n_scan=11))
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
    model = unit_inference()
    shapes = {"sr": unit_shapes(model)}
    for name in ("ggHH", "vbfHH"):
        shapes["sr"].nominal[name] = shapes["sr"].nominal[name] * 1e-4
    shapes["sr"].shifted["ggHH"]["jes"] = tuple(v * 1e-4 for v in shapes["sr"].shifted["ggHH"]["jes"])
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
    data = merged_histograms(inference_env, law_outputs, "data_mu_b")
    for category, (config_category, variable) in CATEGORY_VARIABLES.items():
        card = parse_datacard(outputs[f"datacard__{category}.txt"])
        assert card["indices"] == {"HH": 0, "tt": 1, "dy": 2}
        assert any(words[:2] == ["jec", "shape"] for words in card["lines"])
        assert ["*", "autoMCStats", "10"] in card["lines"]
        category_id = config_inst.get_category(config_category).id
        with uproot.open(outputs[f"shapes__{category}.root"]) as file:
            observed = file[f"{category}/data_obs"].values()
            assert card["observation"] == pytest.approx(observed.sum(), rel=1e-8)
            data_values = select_histogram(data[variable], category_id, "nominal")[0]
            assert observed.sum() == pytest.approx(data_values.sum(), rel=1e-8)
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
    # the signal is there, and tiny at 5 pb^-1
    assert 0 < parse_datacard(outputs["datacard__sr.txt"])["rates"]["HH"] < 0.05


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
    merged = merged_histograms(inference_env, law_outputs, dataset)
    for config_category, variable in CATEGORY_VARIABLES.values():
        category_id = config_inst.get_category(config_category).id
        in_category = ak.to_numpy(ak.any(events.category_ids == category_id, axis=1))
        expected = float(np.sum(ak.to_numpy(events.normalization_weight)[in_category]))
        assert in_category.sum() > 10
        total = select_histogram(merged[variable], category_id, "nominal")[0].sum()
        assert total == pytest.approx(expected, rel=1e-5)


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
