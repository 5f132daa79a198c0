"""Tests of the plotting functions (``cf.plotting``) and of the plotting tasks (``cf.tasks.plotting``).

Unit tests check the metrics against hand computations and the figures against the arrays they were given;
the integration tests run ``cf.PlotVariables1D`` and ``cf.PlotMLResults`` through ``law run`` in an isolated
store and compare the plotted numbers with the events they come from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest

from analysis_template.config.analysis import analysis_template
from cf.plotting import (
    HistComponent,
    auc,
    confusion_matrix,
    format_scale,
    group_datasets,
    is_signal,
    mean_roc,
    plot_confusion_matrix,
    plot_loss_curves,
    plot_roc,
    plot_score_distributions,
    plot_stack,
    poisson_interval,
    roc_curve,
    save_figure,
    signal_scale_for,
    top_level_process,
)
from cf.util import UserError
from tests.conftest import LawEnv, LawOutputs, LawRun

CONFIG = "run2_2017_nano_uhh_v11_limited"
ALL_DATASETS = ("hh_ggf_bbtautau_madgraph", "tt_sl_powheg", "tt_dl_powheg", "dy_lep_m50_madgraph", "data_mu_b")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def config_inst() -> Any:
    return analysis_template.get_config(CONFIG)


# ROC curves and AUC


def test_roc_of_perfect_separation_has_an_auc_of_one() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    labels = np.array([1, 1, 1, 0, 0, 0])
    fpr, tpr = roc_curve(scores, labels)
    assert auc(fpr, tpr) == pytest.approx(1.0)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    # the inverted discriminant is perfectly wrong
    assert auc(*roc_curve(-scores, labels)) == pytest.approx(0.0)


def test_roc_of_a_random_score_has_an_auc_of_one_half() -> None:
    rng = np.random.default_rng(7)
    scores = rng.uniform(size=200_000)
    labels = rng.uniform(size=200_000) < 0.3
    assert auc(*roc_curve(scores, labels)) == pytest.approx(0.5, abs=0.01)
    # equal scores everywhere: one straight segment, ties count one half
    fpr, tpr = roc_curve(np.full(10, 0.4), np.arange(10) < 4)
    np.testing.assert_allclose((fpr, tpr), [[0.0, 1.0], [0.0, 1.0]])
    assert auc(fpr, tpr) == pytest.approx(0.5)


def test_weighted_roc_matches_a_hand_computation() -> None:
    # signal (score, weight): (0.9, 2), (0.7, 1); background: (0.8, 1), (0.6, 3)
    scores = np.array([0.6, 0.9, 0.7, 0.8])
    labels = np.array([0, 1, 1, 0])
    weights = np.array([3.0, 2.0, 1.0, 1.0])
    fpr, tpr = roc_curve(scores, labels, weights)
    # thresholds 0.9, 0.8, 0.7, 0.6: signal passing 2, 2, 3, 3 of 3; background 0, 1, 1, 4 of 4
    np.testing.assert_allclose(fpr, [0, 0, 1 / 4, 1 / 4, 1])
    np.testing.assert_allclose(tpr, [0, 2 / 3, 2 / 3, 1, 1])
    # P(signal above background), pairs weighted: 2*1 + 2*3 + 1*3 of (2 + 1) * (1 + 3)
    assert auc(fpr, tpr) == pytest.approx(11 / 12)


def test_auc_agrees_with_the_mann_whitney_statistic_of_the_dnn_module() -> None:
    from ml.dnn import signal_vs_rest_auc

    rng = np.random.default_rng(3)
    labels = rng.uniform(size=5000) < 0.4
    scores = np.round(rng.normal(labels * 0.8, 1.0), 2)  # rounded: many ties
    weights = rng.uniform(0.1, 2.0, size=5000)
    assert auc(*roc_curve(scores, labels, weights)) == pytest.approx(signal_vs_rest_auc(scores, labels, weights))


def test_roc_refuses_inputs_without_signal_or_background() -> None:
    with pytest.raises(ValueError, match="signal and background"):
        roc_curve(np.array([0.1, 0.2]), np.array([1, 1]))
    with pytest.raises(ValueError, match="differ in length"):
        roc_curve(np.array([0.1, 0.2]), np.array([1, 0, 1]))


def test_mean_roc_of_identical_curves_is_that_curve() -> None:
    fpr, tpr = roc_curve(np.array([0.9, 0.6, 0.5, 0.2]), np.array([1, 0, 1, 0]))
    grid, mean, std = mean_roc([(fpr, tpr)] * 3, n_points=5)
    # the vertical rise at fpr = 0 (from 0 to 1/2) is kept
    np.testing.assert_allclose(grid, [0, 0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(mean, [0, 0.5, 0.5, 1, 1, 1])
    np.testing.assert_allclose(std, 0.0)
    fine_grid, fine_mean, _ = mean_roc([(fpr, tpr)] * 3)
    assert auc(fine_grid, fine_mean) == pytest.approx(auc(fpr, tpr), abs=0.005)


# confusion matrix


def test_confusion_matrix_rows_are_normalised_to_one() -> None:
    true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = np.array([0, 0, 1, 1, 1, 0, 2, 2, 1])
    matrix = confusion_matrix(true, predicted, 3)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    np.testing.assert_allclose(matrix, [[2 / 3, 1 / 3, 0], [0, 1, 0], [1 / 4, 1 / 4, 1 / 2]])
    counts = confusion_matrix(true, predicted, 3, normalize=False)
    assert counts.sum() == len(true)


def test_confusion_matrix_weights_and_empty_rows() -> None:
    matrix = confusion_matrix(np.array([0, 0]), np.array([0, 1]), 3, weights=np.array([3.0, 1.0]))
    np.testing.assert_allclose(matrix, [[0.75, 0.25, 0], [0, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="labels must lie in"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)


# Poisson intervals of the data points


def test_garwood_interval_matches_tabulated_values() -> None:
    low, high = poisson_interval(np.array([0, 1, 10, 100]))
    # 68.27% central intervals, e.g. PDG table 40.3 / scipy.stats.chi2.ppf
    np.testing.assert_allclose(low, [0.0, 0.17275, 6.89131, 90.0167], rtol=1e-4)
    np.testing.assert_allclose(high, [1.84102, 3.29953, 14.26695, 111.0334], rtol=1e-4)


def test_garwood_interval_matches_scipy_for_many_counts() -> None:
    stats = pytest.importorskip("scipy.stats")
    alpha = (1 - 0.682689492137086) / 2
    # exact up to 100 counts, the Wilson-Hilferty approximation above
    for counts, rtol in ((np.arange(1, 101), 1e-6), (np.array([101, 400, 2001, 12000, 10**6]), 2e-5)):
        low, high = poisson_interval(counts)
        np.testing.assert_allclose(low, stats.chi2.ppf(alpha, 2 * counts) / 2, rtol=rtol)
        np.testing.assert_allclose(high, stats.chi2.ppf(1 - alpha, 2 * counts + 2) / 2, rtol=rtol)


# grouping of datasets into processes


def test_datasets_are_grouped_into_the_top_level_processes_of_the_config(config_inst: Any) -> None:
    groups = group_datasets(config_inst, list(ALL_DATASETS))
    assert groups == {
        "data": ["data_mu_b"],
        "hh_ggf_bbtautau": ["hh_ggf_bbtautau_madgraph"],
        "tt": ["tt_sl_powheg", "tt_dl_powheg"],
        "dy": ["dy_lep_m50_madgraph"],
    }
    # every top-level process of the config but the resonant signal (its datasets are on request)
    assert list(groups) == [process.name for process in config_inst.processes if process.name != "x_hh_bbtautau"]
    assert group_datasets(config_inst, ["tt_dl_powheg"]) == {"tt": ["tt_dl_powheg"]}
    assert top_level_process(config_inst, config_inst.get_process("tt_sl")).name == "tt"
    assert top_level_process(config_inst, config_inst.get_process("dy")).name == "dy"
    assert [is_signal(config_inst.get_process(name)) for name in ("hh_ggf_bbtautau", "tt", "dy", "data")] == [
        True,
        False,
        False,
        False,
    ]


def test_plots_with_data_show_the_data_luminosity_and_others_the_mc_one(config_inst: Any) -> None:
    from cf.tasks.plotting import plotted_luminosity

    # the MC at the 41.5 fb^-1 of 2017, the embedded pseudo-data at 5 pb^-1
    assert plotted_luminosity(config_inst, has_data=True) == pytest.approx(5.0)
    assert plotted_luminosity(config_inst, has_data=False) == pytest.approx(41_480.0)


# the stack plot


def _bars(ax: Any) -> list[Any]:
    """The filled stack bars of an axes (StepPatch artists with a legend label)."""
    from matplotlib.patches import StepPatch

    return [p for p in ax.patches if isinstance(p, StepPatch) and p.get_fill() and p.get_label() in {"tt", "dy"}]


def test_stack_bar_heights_equal_the_histogram_contents() -> None:
    edges = np.array([0.0, 10.0, 20.0, 40.0])
    dy = HistComponent("dy", np.array([1.0, 5.0, 2.0]), np.array([0.5, 1.0, 0.2]), "#5790fc")
    tt = HistComponent("tt", np.array([4.0, 0.0, 3.0]), np.array([1.0, 0.0, 0.3]), "#f89c20")
    signal = HistComponent("HH", np.array([0.001, 0.002, 0.0]), color="#e42536")
    data = HistComponent("Data", np.array([6.0, 4.0, 0.0]))
    result = plot_stack(edges, [dy, tt], [signal], data, x_label="x / GeV", signal_scale=1000, lumi_fb=0.005)
    ax, rax = result.figure.axes

    bars = {patch.get_label(): patch.get_data() for patch in _bars(ax)}
    assert set(bars) == {"dy", "tt"}
    for component in (dy, tt):
        values, bar_edges, baseline = bars[component.label]
        np.testing.assert_allclose(values - baseline, component.values)
        np.testing.assert_allclose(bar_edges, edges)
    np.testing.assert_allclose(bars["tt"][2], dy.values)  # tt sits on dy
    np.testing.assert_allclose(result.stack_tops[-1], dy.values + tt.values)
    np.testing.assert_allclose(result.background_total, [5.0, 5.0, 5.0])
    np.testing.assert_allclose(result.background_variance, [1.5, 1.0, 0.5])

    # the signal line is scaled and says so; data points skip the empty bin; ratio is data over the stack
    (line,) = [p for p in ax.patches if p.get_label().startswith("HH")]
    np.testing.assert_allclose(line.get_data()[0], [1.0, 2.0, 0.0])
    assert line.get_label() == r"HH $\times 10^{3}$"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [6.0, 4.0])
    np.testing.assert_allclose(result.ratio, [1.2, 0.8, 0.0])
    assert {text.get_text() for text in ax.get_legend().get_texts()} >= {"Data", "dy", "tt", "MC stat. unc."}
    assert rax.get_ylabel() == "Data / MC"
    assert rax.get_xlabel() == "x / GeV"
    save_figure(result.figure, {})


def test_stack_without_data_has_no_ratio_panel_and_log_scale() -> None:
    result = plot_stack(np.arange(4.0), [HistComponent("tt", np.array([1.0, 10.0, 100.0]))], log_y=True)
    (ax,) = result.figure.axes
    assert ax.get_yscale() == "log"
    assert result.ratio is None
    save_figure(result.figure, {})


def test_stack_refuses_mismatched_bins() -> None:
    with pytest.raises(ValueError, match="has 2 bins, the edges give 3"):
        plot_stack(np.arange(4.0), [HistComponent("tt", np.ones(2))])


def test_signal_scale_is_a_power_of_ten_that_makes_the_signal_visible() -> None:
    assert signal_scale_for(4000.0, 0.009) == 1e5
    assert signal_scale_for(100.0, 100.0) == 1.0
    assert signal_scale_for(100.0, 0.0) == 1.0
    assert format_scale(1e5) == r"$\times 10^{5}$"
    assert format_scale(50) == r"$\times 50$"
    with pytest.raises(ValueError, match="positive"):
        format_scale(0)


def test_plots_and_datacards_read_histograms_through_one_selection_with_one_flow_policy() -> None:
    import hist

    from cf.hist_util import DEFAULT_FLOW_STRATEGY, FlowStrategy, flow_yields, select_histogram

    h = hist.Hist(
        hist.axis.IntCategory([], name="category", growth=True),
        hist.axis.StrCategory([], name="shift", growth=True),
        hist.axis.Regular(2, 0.0, 2.0, name="x"),
        storage=hist.storage.Weight(),
    )
    h.fill(category=[1, 1, 2, 1], shift="nominal", x=[-5.0, 0.5, 1.5, 7.0], weight=[2.0, 3.0, 4.0, 5.0])
    assert DEFAULT_FLOW_STRATEGY is FlowStrategy.move
    values, variances, edges = select_histogram(h, 1, "nominal")
    np.testing.assert_allclose(values, [5.0, 5.0])  # the underflow (2) and the overflow (5) are moved in
    np.testing.assert_allclose(variances, [13.0, 25.0])
    np.testing.assert_allclose(edges, [0.0, 1.0, 2.0])
    np.testing.assert_allclose(select_histogram(h, 1, "nominal", FlowStrategy.remove)[0], [3.0, 0.0])
    assert flow_yields(h, 1, "nominal") == (2.0, 5.0)
    np.testing.assert_allclose(select_histogram(h, 7, "nominal")[0], np.zeros(2))
    with pytest.raises(UserError, match="no shift 'jec_up', only: nominal"):
        select_histogram(h, 1, "jec_up")


# ML figures and files


def test_ml_figures_are_drawn_and_saved_atomically(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    curves = []
    for fold in range(3):
        labels = rng.uniform(size=500) < 0.5
        curves.append((f"Fold {fold}", *roc_curve(rng.normal(labels, 1.0), labels)))
    figures = {
        "roc": plot_roc(curves, mean_roc([c[1:] for c in curves]), model_label="m"),
        "confusion": plot_confusion_matrix(np.eye(2), ["a", "b"], model_label="m", events_label="held-out"),
        "scores": plot_score_distributions(
            ["a", "b"],
            [("a", "#e42536"), ("b", None)],
            {"a": (rng.uniform(size=(50, 2)), np.ones(50)), "b": (rng.uniform(size=(50, 2)), np.ones(50))},
            {"a": (rng.uniform(size=(20, 2)), np.ones(20))},
        ),
        "loss": plot_loss_curves({0: {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}, 1: {"loss": [0.9, 0.4]}}),
    }
    for name, figure in figures.items():
        save_figure(figure, {"png": tmp_path / f"{name}.png", "pdf": tmp_path / f"{name}.pdf"})
        assert (tmp_path / f"{name}.png").read_bytes().startswith(PNG_MAGIC)
        assert (tmp_path / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    assert sorted(os.listdir(tmp_path)) == sorted(f"{name}.{ext}" for name in figures for ext in ("png", "pdf"))


def test_a_failed_save_leaves_neither_a_file_nor_a_temporary(tmp_path: Path) -> None:
    figure = plot_loss_curves({0: {"loss": [1.0, 0.5]}})
    with pytest.raises(ValueError, match="not supported"):
        save_figure(figure, {"nonsense": tmp_path / "plot.nonsense"})
    assert os.listdir(tmp_path) == []


def test_model_classes_of_the_shipped_models(config_inst: Any) -> None:
    from cf.tasks.ml import model_instance
    from cf.tasks.plotting import model_classes

    classes = model_classes(model_instance("test_model", (), (CONFIG,)), config_inst)
    assert [(c.name, c.datasets, c.score_column) for c in classes] == [
        ("hh", ("hh_ggf_bbtautau_madgraph",), "test_model.score_hh"),
        ("tt", ("tt_sl_powheg",), "test_model.score_tt"),
    ]
    assert classes[0].label == config_inst.get_process("hh_ggf_bbtautau").label
    classes = model_classes(model_instance("dnn", (), (CONFIG,)), config_inst)
    assert [(c.name, c.datasets, c.score_column) for c in classes] == [
        ("hh", ("hh_ggf_bbtautau_madgraph",), "dnn.score_hh"),
        ("tt", ("tt_sl_powheg", "tt_dl_powheg"), "dnn.score_tt"),
        ("dy", ("dy_lep_m50_madgraph",), "dnn.score_dy"),
    ]


# task parameters


def test_plot_task_parameters_are_resolved_and_validated() -> None:
    from cf.tasks.plotting import DEFAULT_PLOT_VARIABLES, PlotVariables1D

    task = PlotVariables1D(version="t")
    assert task.variables == DEFAULT_PLOT_VARIABLES
    assert task.datasets == ALL_DATASETS
    assert task.categories == ("incl",)
    assert set(task.requires()) == set(ALL_DATASETS)
    assert task.output()["incl"]["jet1_pt"]["png"].path.endswith("plot__cat_incl__var_jet1_pt.png")
    with pytest.raises(UserError, match="unknown category"):
        PlotVariables1D(version="t", categories=("nope",))
    with pytest.raises(UserError, match="unknown dataset"):
        PlotVariables1D(version="t", datasets=("nope",))
    with pytest.raises(UserError, match="unknown variable"):
        PlotVariables1D(version="t", variables=("nope",))
    with pytest.raises(UserError, match="signal-scale"):
        PlotVariables1D(version="t", signal_scale=-1.0)


def test_training_score_task_follows_the_training_functions() -> None:
    from cf.tasks.ml import MLTrainingScores
    from cf.tasks.plotting import PlotMLResults

    plot = PlotMLResults(version="t", ml_model="test_model", calibrators=("skip_jecunc",), producers=("default",))
    scores = plot.requires()["training_scores"]
    assert isinstance(scores, MLTrainingScores)
    assert (scores.calibrators, scores.selector, scores.producers) == (("skip_jecunc",), "default", ("default",))
    assert scores.sandbox.endswith("venv_ml_tf.sh")
    assert set(scores.requires()["events"]) == {"hh_ggf_bbtautau_madgraph", "tt_sl_powheg"}
    outputs = plot.output()
    assert outputs["loss"]["png"].optional
    assert not outputs["roc"]["png"].optional


# integration: law run in an isolated store


def _check_figure_files(png: Path, pdf: Path) -> None:
    assert png.stat().st_size > 1000
    assert pdf.stat().st_size > 1000
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert pdf.read_bytes().startswith(b"%PDF")
    leftovers = [name for name in os.listdir(png.parent) if name.startswith(".")]
    assert leftovers == []


@pytest.fixture(scope="module")
def plot_env(test_model_store: LawEnv) -> LawEnv:
    """The session's store with test_model trained (the plots of its chain and results are added to it)."""
    return test_model_store


PLOT = ("cf.PlotVariables1D", "--version", "v1", "--variables", "jet1_pt", "--categories", "incl,sr")


@pytest.mark.slow
def test_plot_variables_sums_equal_the_weighted_events(
    plot_env: LawEnv, law_run: LawRun, law_outputs: LawOutputs
) -> None:
    law_run(*PLOT, env=plot_env.env, timeout=900)
    paths = law_outputs(*PLOT, env=plot_env.env)
    names = sorted(path.name for path in paths)
    assert names == sorted(
        f"plot__cat_{c}__var_jet1_pt.{ext}" for c in ("incl", "sr") for ext in ("png", "pdf", "json")
    )
    by_name = {path.name: path for path in paths}
    config = analysis_template.get_config(CONFIG)
    events = {}
    for dataset in ALL_DATASETS:
        produced = law_outputs("cf.ProduceColumns", "--version", "v1", "--dataset", dataset, env=plot_env.env)
        columns = ["category_ids", "normalization_weight", "pu_weight", "muon_weight"]
        events[dataset] = ak.concatenate([ak.from_parquet(path, columns=columns) for path in produced])
    for category in ("incl", "sr"):
        stem = f"plot__cat_{category}__var_jet1_pt"
        _check_figure_files(by_name[f"{stem}.png"], by_name[f"{stem}.pdf"])
        numbers = json.loads(by_name[f"{stem}.json"].read_text())
        category_id = config.get_category(category).id
        assert numbers["category"]["id"] == category_id
        # the plot shows data: the MC (normalised to 41.5 fb^-1) is scaled to the pseudo-data's 5 pb^-1
        assert numbers["luminosity_fb"] == pytest.approx(config.x.data_luminosity.nominal / 1000)
        assert numbers["mc_luminosity_pb"] == pytest.approx(config.x.luminosity.nominal)
        mc_scale = config.x.data_luminosity.nominal / config.x.luminosity.nominal
        assert numbers["mc_scale"] == pytest.approx(mc_scale)
        assert len(numbers["edges"]) == 41
        assert set(numbers["datasets"]) == set(ALL_DATASETS)

        # each dataset's histogram sum (flow included) is its weighted number of events in the category: the
        # product of the config's event weights for simulation, 1 for data
        for dataset in ALL_DATASETS:
            in_category = ak.to_numpy(ak.any(events[dataset].category_ids == category_id, axis=1))
            chunk = events[dataset]
            product = chunk.normalization_weight * chunk.pu_weight * chunk.muon_weight
            weights = ak.to_numpy(product).astype(np.float64)
            expected = float(np.sum(weights[in_category]))
            assert numbers["datasets"][dataset]["sum"] == pytest.approx(expected, rel=1e-6)

        # process groups add up their datasets; the stack adds up the backgrounds; data are integer counts
        processes = numbers["processes"]
        assert {name: entry["kind"] for name, entry in processes.items()} == {
            "data": "data",
            "hh_ggf_bbtautau": "signal",
            "tt": "background",
            "dy": "background",
        }
        # the flow bins are moved into the edge bins (as in the datacards): the bars add up to the totals; the
        # datasets' sums are at the config luminosity, the plotted MC processes scaled to the data
        assert numbers["flow"] == "move"
        for entry in processes.values():
            datasets_sum = sum(numbers["datasets"][d]["sum"] for d in entry["datasets"])
            scale = 1.0 if entry["kind"] == "data" else mc_scale
            assert entry["sum"] == pytest.approx(scale * datasets_sum, rel=1e-9)
            assert sum(entry["values"]) == pytest.approx(entry["sum"], rel=1e-9)
            assert entry["underflow"] + entry["overflow"] <= entry["sum"] + 1e-9
        stacked = np.sum([processes[name]["values"] for name in numbers["stack_order"]], axis=0)
        np.testing.assert_allclose(numbers["background_total"], stacked)
        assert sorted(numbers["stack_order"]) == ["dy", "tt"]
        data = np.array(processes["data"]["values"])
        np.testing.assert_array_equal(data, np.round(data))
        # the pseudo-data is drawn from the same expectation as the MC: their totals agree within the statistics
        mc_total = sum(processes[name]["sum"] for name in ("tt", "dy", "hh_ggf_bbtautau"))
        assert abs(data.sum() - mc_total) < 5 * np.sqrt(mc_total) + 5
        assert numbers["signal_scale"] >= 1


@pytest.mark.slow
@pytest.mark.sandbox
def test_plot_ml_results_of_test_model(plot_env: LawEnv, law_run: LawRun, law_outputs: LawOutputs) -> None:
    args = ("cf.PlotMLResults", "--version", "v1", "--ml-model", "test_model")
    result = law_run(*args, env=plot_env.env, timeout=1800)
    assert "no training history" in result.stdout + result.stderr
    by_name = {path.name: path for path in law_outputs(*args, env=plot_env.env)}
    for name in ("roc", "confusion", "scores"):
        _check_figure_files(by_name[f"plot__{name}.png"], by_name[f"plot__{name}.pdf"])
    # test_model saves no history: no loss plot, and the task is complete without it
    assert not by_name["plot__loss.png"].exists()
    assert not by_name["plot__loss.pdf"].exists()
    rerun = law_run(*args, env=plot_env.env)
    assert "no training history" not in rerun.stdout + rerun.stderr

    results = json.loads(by_name["ml_results.json"].read_text())
    assert results["signal_class"] == "hh"
    assert results["history"]["available"] is False
    aucs = results["auc"]["held_out"]["per_fold"]
    assert len(aucs) == 3
    assert all(0.5 < value <= 1.0 for value in aucs)
    assert 0.5 < results["auc"]["held_out"]["mean"] <= 1.0
    assert all(0.5 < value <= 1.0 for value in results["auc"]["training"]["per_fold"])
    np.testing.assert_allclose(np.sum(results["confusion_matrix"]["matrix"], axis=1), 1.0)

    # the training-score task: every event is scored by every fold model, as training event by all but its own
    (scores_path,) = law_outputs("cf.MLTrainingScores", "--version", "v1", "--ml-model", "test_model", env=plot_env.env)
    rows = ak.from_parquet(scores_path)
    fold, event_fold = ak.to_numpy(rows.fold), ak.to_numpy(rows.event_fold)
    np.testing.assert_array_equal(ak.to_numpy(rows.is_training), fold != event_fold)
    assert results["n_events"]["training"]["hh"] == 2 * results["n_events"]["held_out"]["hh"]
    assert int(np.sum(~ak.to_numpy(rows.is_training))) == sum(results["n_events"]["held_out"].values())

    # its held-out rows are exactly the MLEvaluation scores (each event scored by the model that did not see it)
    for dataset in ("hh_ggf_bbtautau_madgraph", "tt_sl_powheg"):
        common = ("--version", "v1", "--dataset", dataset)
        evaluation = law_outputs("cf.MLEvaluation", *common, "--ml-model", "test_model", env=plot_env.env)
        reduced = law_outputs("cf.ReduceEvents", *common, env=plot_env.env)
        evaluated = ak.concatenate([ak.from_parquet(p) for p in evaluation])
        events = ak.concatenate([ak.from_parquet(p, columns=["event"]) for p in reduced])
        expected = dict(zip(ak.to_numpy(events.event), ak.to_numpy(evaluated.test_model.score_hh), strict=True))
        held_out = rows[(rows.dataset == dataset) & ~rows.is_training]
        assert len(held_out) == len(expected)
        got = ak.to_numpy(held_out.test_model.score_hh)
        want = np.array([expected[event] for event in ak.to_numpy(held_out.event)])
        np.testing.assert_allclose(got, want, atol=1e-6)
