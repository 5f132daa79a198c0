"""What ``--ml-model-settings epochs=10,layers=64:64,learning_rate=0.001`` does to ``test_model``.

The machine learning chapter includes this file, and ``tests/test_docs.py`` runs it in the base environment
(``python docs/user_guide/examples/ml_settings.py`` after ``source setup.sh``), so the listing stays true.
"""

from __future__ import annotations

from analysis_template.config.analysis import analysis_template
from cf.registry import split_settings
from ml.test import test_model

settings = split_settings("epochs=10,layers=64:64,learning_rate=0.001")
assert settings == {"epochs": "10", "layers": "64:64", "learning_rate": "0.001"}

# the tasks create the model like this; each text becomes the type its setting declares
model = test_model(
    analysis_template,
    requested_configs=["run2_2017_nano_uhh_v11_limited"],
    parameters=settings,
)
assert (model.epochs, model.layers, model.learning_rate) == (10, (64, 64), 0.001)
assert model.settings == {"epochs": 10, "layers": (64, 64), "learning_rate": 0.001}
assert test_model.epochs == 5  # the class keeps its own values

# what each setting allows
for name, declared in test_model.declared_settings().items():
    print(f"{name}: {declared.describe()} (default {declared.default}) - {declared.help}")

# the settings are part of every output path of the model's tasks
print(f"ml__{model.cls_name}__{model.parameters_repr}")
