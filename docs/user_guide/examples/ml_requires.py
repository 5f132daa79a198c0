"""A model whose training needs the outputs of other tasks: the ``requires`` hook.

The machine learning chapter includes the hook, and ``tests/test_docs.py`` runs this file in the base environment
(``python docs/user_guide/examples/ml_requires.py`` after ``source setup.sh``): it creates the training task of
fold 0 and prints what the hook adds to its requirements. It runs no task.
"""

from __future__ import annotations

from typing import Any

import law

from cf.tasks.ml import MLTraining
from cf.tasks.selection import MergeSelectionStats
from ml.test import TestModel


class StatsModel(TestModel):
    """``test_model`` with the selection statistics of its training datasets at hand in ``train``."""

    def requires(self, task: law.Task) -> Any:
        # one cf.MergeSelectionStats per training dataset: the numbers of events and the sums of weights
        # before and after the selection; train() finds the outputs in input["model"][dataset name]
        return {
            dataset.name: MergeSelectionStats.req(task, dataset=dataset.name)
            for config_inst in self.config_insts
            for dataset in self.datasets(config_inst)
        }


stats_model = StatsModel.derive("stats_model", cls_dict={"folds": 3})

task = MLTraining(version="v1", ml_model="stats_model", branch=0)
print("input['model'] of the training of fold 0:")
for name, requirement in sorted(task.requires()["model"].items()):
    print(f"  {name}: {requirement.task_family} -> {requirement.output().basename}")
