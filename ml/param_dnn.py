"""A parametrized network for the resonance search: X -> HH -> bbtautau against tt and Drell-Yan at every mass.

One network takes the mass of the signal hypothesis as an input next to the event's features (Baldi et al.,
"Parameterized neural networks for high-energy physics", Eur. Phys. J. C 76 (2016) 235, arXiv:1601.07913):

* **Training**: the signal events of every mass in ``training_masses`` carry their mass; each background event gets
  a mass drawn from the masses of the signal training events (so that the mass alone tells nothing about the
  class). One training for all masses, k-fold as every model here; everything else (features, standardization,
  validation split, class weights, early stopping, ONNX export) is that of :class:`ml.dnn.DNNClassifier`.
* **Evaluation**: the same fold networks score every event once per mass of the evaluation setting ``masses``,
  into one column each, ``param_dnn.score_m<mass>``; changing ``masses`` does not retrain. A mass left out of
  ``training_masses`` (e.g. ``training_masses=300:1000`` with ``masses=300:500:1000``) shows how well the network
  interpolates.

``--ml-models "param_dnn[masses=300:500]"`` makes the histogram and inference tasks read (and evaluate) these
masses; their score variables exist in every config the model is set up for.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import law
import numpy as np

from analysis_template.config.processes import x_hh_bbtautau_masses
from cf.columnar_util import set_ak_column
from cf.ml import MLModel, held_out_outputs, setting
from ml.dnn import DNNClassifier

__all__ = ["BACKGROUND_DATASETS", "ParametrizedDNN", "draw_background_masses", "param_dnn", "signal_dataset"]

#: The masses in GeV of the resonant signal samples.
MASSES: tuple[int, ...] = tuple(x_hh_bbtautau_masses)
#: The background datasets of the training.
BACKGROUND_DATASETS = ("tt_sl_powheg", "tt_dl_powheg", "dy_lep_m50_madgraph")
#: The name of the network input that holds the signal mass.
MASS_INPUT = "mass"


def signal_dataset(mass: int) -> str:
    """The dataset of the resonant signal of a mass in GeV."""
    return f"x_hh_bbtautau_m{mass}_madgraph"


def draw_background_masses(signal_masses: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Masses for ``n`` background events, drawn from the masses of the signal events (with replacement).

    Args:
        signal_masses: The mass of every signal training event.
        n: The number of background events.
        seed: The seed of the draw (the same events get the same masses in every fold).

    Raises:
        ValueError: If there are no signal events to draw from.
    """
    if len(signal_masses) == 0:
        raise ValueError("background masses are drawn from the signal masses, but there are no signal events")
    return np.random.default_rng(seed).choice(np.asarray(signal_masses, dtype=np.float64), size=n)


class ParametrizedDNN(DNNClassifier):
    """Signal (X -> HH at the mass given as input) against tt and Drell-Yan; one network per fold for all masses.

    Settings besides those of :class:`ml.dnn.DNNClassifier`: ``training_masses`` (the signal masses trained on)
    and the evaluation setting ``masses`` (one score column per mass).
    """

    training_masses: tuple[int, ...] = setting(MASSES, "the signal masses in GeV trained on", choices=MASSES)
    masses: tuple[int, ...] = setting(
        MASSES, "the masses in GeV the evaluation scores every event at (one column each)", minimum=251, maximum=3000
    )
    evaluation_settings = DNNClassifier.evaluation_settings | {"masses"}

    def setup(self) -> None:
        # the classes follow the training masses: an instance attribute, read by datasets() and class_index()
        signals = tuple(signal_dataset(mass) for mass in sorted(set(self.training_masses)))
        self.classes = (("signal", signals), ("background", BACKGROUND_DATASETS))
        for config_inst in self.config_insts:
            for mass in self.masses:
                column = self.mass_score_column(mass)
                if not config_inst.has_variable(column):
                    config_inst.add_variable(
                        name=column,
                        expression=column,
                        binning=(40, 0.0, 1.0),
                        x_title=rf"{self.cls_name} score ($m_X$ = {mass} GeV)",
                    )

    def mass_score_column(self, mass: int) -> str:
        """The evaluation column of the score at a mass, ``"{cls_name}.score_m{mass}"``."""
        return f"{self.cls_name}.score_m{mass}"

    def produces(self, config_inst: Any) -> set[str]:
        return {self.mass_score_column(mass) for mass in self.masses}

    # the permutation importance permutes the features without the mass input, which this network also needs:
    # not offered (cf.PlotMLImportance refuses the model at parameter time); the input plots are
    predict_inputs = MLModel.predict_inputs

    def input_names(self) -> list[str]:
        return [*self.features, MASS_INPUT]

    def feature_fills(self) -> list[float]:
        # the mass is never missing; its fill value is never used
        return [*super().feature_fills(), 0.0]

    def load_training_events(self, input: dict[str, Any]) -> dict[str, np.ndarray]:
        """The training events of :class:`DNNClassifier`, the signal mass as the last input column."""
        data = super().load_training_events(input)
        dataset_masses = {signal_dataset(mass): float(mass) for mass in self.training_masses}
        is_signal = data["label"] == 0
        masses = np.zeros(len(data["label"]))
        masses[is_signal] = [dataset_masses[name] for name in data["dataset"][is_signal]]
        n_background = int((~is_signal).sum())
        masses[~is_signal] = draw_background_masses(masses[is_signal], n_background, self.seed)
        data["x"] = np.column_stack([data["x"], masses])
        return data

    def evaluate(
        self,
        task: law.Task,
        events: ak.Array,
        models: list[Any],
        fold_indices: np.ndarray,
        events_used_in_training: bool = False,
    ) -> ak.Array:
        x = self.feature_matrix(events)
        predictors = [model.predict for model in models]
        for mass in self.masses:
            inputs = np.column_stack([x, np.full(len(x), float(mass))])
            scores = np.zeros(0, dtype=np.float32)
            if len(x):
                # as in dnn: each fold model scores only the events whose score it gives
                held_out = held_out_outputs(predictors, inputs, fold_indices, events_used_in_training)
                scores = held_out[:, 0]
            events = set_ak_column(events, self.mass_score_column(mass), scores, value_type=np.float32)
        return events


# the model used on the command line: --ml-model param_dnn or --ml-models "param_dnn[masses=300:500]"
param_dnn = ParametrizedDNN.derive("param_dnn", cls_dict={"folds": 3})
