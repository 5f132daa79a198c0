"""The grid of ``cf.MLTrainingScan`` and the ranking of its points, without training (the scan itself runs in
``tests/test_ml_chain.py``, as the guide shows it)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from cf.util import UserError
from tests.conftest import require_cf_base


@pytest.fixture(scope="module")
def dnn_cls() -> Any:
    require_cf_base()
    from cf.analysis import load_modules
    from cf.ml import MLModel

    load_modules("ml_modules")
    return MLModel.get_cls("dnn")


def test_the_grid_is_the_product_of_the_axes_merged_over_the_settings(dnn_cls: Any) -> None:
    from cf.tasks.ml_scan import scan_points

    points = scan_points(dnn_cls, ("epochs=1", "layers=4"), "layers=64:64,128:128; learning_rate=0.001,0.003")
    assert [scanned for scanned, _ in points] == [
        {"layers": layers, "learning_rate": rate} for layers in ("64:64", "128:128") for rate in ("0.001", "0.003")
    ]
    # a scanned setting replaces the given one in place, the others stay
    assert points[1][1] == ("epochs=1", "layers=64:64", "learning_rate=0.003")


@pytest.mark.parametrize(
    ("scan", "message"),
    [
        ("", "--scan is empty: give axes name=value1,value2,... separated by ';'"),
        ("layers", "--scan axis 'layers' is not of the form name=value1,value2,..."),
        ("layers=8,", "--scan axis 'layers=8,' is not of the form name=value1,value2,..."),
        ("layers=8;layers=16", "--scan gives the axis 'layers' twice"),
        ("layers=abc", "--scan: ML model 'dnn': setting 'layers=abc': item 'abc' is not an integer >= 1"),
        ("lyers=8", "--scan: unknown setting 'lyers' (did you mean 'layers'?) for ML model 'dnn', declared:"),
        ("learning_rate=0.001,1e-3", "--scan points 0 and 1 train the same model ({'learning_rate': '1e-3'})"),
        ("evaluation_backend=onnx,keras", "--scan: setting 'evaluation_backend' of ML model 'dnn' only changes"),
    ],
)
def test_a_bad_scan_is_one_clear_error(dnn_cls: Any, scan: str, message: str) -> None:
    from cf.tasks.ml_scan import scan_points

    with pytest.raises(UserError) as error:
        scan_points(dnn_cls, (), scan)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def rows(means: list[float]) -> list[dict[str, Any]]:
    return [{"point": index, "mean": {"auc": mean}} for index, mean in enumerate(means)]


def test_the_best_point_follows_the_direction_and_skips_non_finite_means() -> None:
    from cf.tasks.ml_scan import best_point

    assert best_point(rows([0.5, math.nan, 0.3, 0.3]), "auc", higher_is_better=False) == 2
    assert best_point(rows([0.5, math.nan, 0.9, 0.3]), "auc", higher_is_better=True) == 2
    with pytest.raises(UserError, match="no point of the scan has a finite mean auc"):
        best_point(rows([math.nan, math.inf]), "auc", higher_is_better=False)


def test_training_metrics_read_metrics_json_else_the_history(tmp_path: Path) -> None:
    require_cf_base()
    from cf.ml import MLModel, model_instance

    fold = tmp_path / "mlmodel_f0of2"
    fold.mkdir()
    (fold / "history.json").write_text(json.dumps({"loss": [0.9, 0.5], "val_loss": [0.7, 0.4, 0.6]}))
    model = model_instance("dnn", (), ("run2_2017_nano_uhh_v11_limited",))
    # the default: the lowest validation loss of the history when there is no metrics.json
    assert MLModel.training_metrics(model, str(fold)) == {"val_loss": 0.4}
    (fold / "metrics.json").write_text(json.dumps({"val_loss": 0.41, "val_auc_hh": 0.9, "fold": 0, "device": "CPU"}))
    assert MLModel.training_metrics(model, str(fold)) == {"val_loss": 0.41, "val_auc_hh": 0.9, "fold": 0.0}
    # dnn keeps the validation metrics only
    assert model.training_metrics(str(fold)) == {"val_loss": 0.41, "val_auc_hh": 0.9}
    assert MLModel.training_metrics(model, str(tmp_path / "missing")) is None
