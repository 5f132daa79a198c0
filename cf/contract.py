"""The contract between the framework and an analysis: the entries and columns the framework reads.

An analysis declares what the framework needs as auxiliary entries of its order objects (``config.x.<name>``,
``dataset.x.<name>``, ``process.x.<name>``) and as columns that its selectors and producers write. This module is
the one place that names them: every task reads an entry through :func:`config_entry` (or
:func:`dataset_entry` / :func:`process_entry`), which applies the default and checks the type, so a wrong entry is
one clear error before any work starts. The docs' "Layout and contract" page lists the same entries (a test
keeps the two in step). What a model declares for the framework is part of the :class:`cf.ml.MLModel` and
:class:`cf.inference.InferenceModel` classes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cf.columnar_util import IDENTITY_COLUMNS
from cf.util import UserError

__all__ = [
    "CATEGORY_COLUMN",
    "CONFIG_ENTRIES",
    "DATASET_ENTRIES",
    "DEFAULT_WEIGHT_COLUMN",
    "IDENTITY_COLUMNS",
    "PROCESS_ENTRIES",
    "SELECTION_MASK_COLUMN",
    "Entry",
    "check_config",
    "config_entry",
    "dataset_entry",
    "default_datasets",
    "is_signal",
    "process_entry",
]

#: The column of the category ids of each event (a list per event), written by the selector or a producer.
CATEGORY_COLUMN = "category_ids"
#: The event weight of simulation when the config declares no ``event_weights``.
DEFAULT_WEIGHT_COLUMN = "normalization_weight"
#: The boolean event mask the selector returns; the reduction keeps the events where it is true.
SELECTION_MASK_COLUMN = "cf_selection"


@dataclass(frozen=True)
class Entry:
    """An auxiliary entry the framework reads from an order object.

    Attributes:
        name: The key in ``x``.
        type_text: The expected type, as the error message and the docs say it.
        default: The value when the entry is absent.
        meaning: What the framework does with it.
        accepts: Whether a given value has the expected type.
    """

    name: str
    type_text: str
    default: Any
    meaning: str
    accepts: Callable[[Any], bool]


def _is_names(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)


def _is_name(value: Any) -> bool:
    return isinstance(value, str)


def _is_mapping_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    def accepts(value: Any) -> bool:
        return isinstance(value, Mapping) and all(isinstance(key, str) and check(item) for key, item in value.items())

    return accepts


def _is_anything(value: Any) -> bool:
    return True


def _by_name(*entries: Entry) -> dict[str, Entry]:
    return {entry.name: entry for entry in entries}


CONFIG_ENTRIES: dict[str, Entry] = _by_name(
    Entry("default_calibrators", "tuple of names", (), "calibrators of a task run without --calibrators", _is_names),
    Entry("default_selector", "name", "default", "selector of a task run without --selector", _is_name),
    Entry("default_producers", "tuple of names", (), "producers of a task run without --producers", _is_names),
    Entry("default_ml_model", "name", "", "ML model of an ML task run without --ml-model", _is_name),
    Entry(
        "ml_model_groups",
        "dict of name -> tuple of ML model names",
        {},
        "names that stand for several models in --ml-models",
        _is_mapping_of(_is_names),
    ),
    Entry(
        "event_weights",
        "dict of weight column -> tuple of shift sources",
        {DEFAULT_WEIGHT_COLUMN: ()},
        "columns whose product weighs simulated events in histograms; a source's <source>_up / _down shift "
        "reads <column>_up / _down instead",
        _is_mapping_of(_is_names),
    ),
    Entry(
        "keep_columns",
        "dict of task family -> tuple of column patterns",
        {},
        "input columns that cf.ReduceEvents keeps besides the produced ones and the identity columns",
        _is_mapping_of(_is_names),
    ),
    Entry(
        "default_plot_variables",
        "tuple of variable names",
        (),
        "variables cf.PlotVariables1D plots without --variables",
        _is_names,
    ),
    Entry(
        "versions",
        "dict of task family -> version",
        {},
        "versions pinned per task family (after --<family>-version, before law.cfg [versions])",
        _is_mapping_of(_is_name),
    ),
    Entry(
        "external_files",
        "dict of name -> source or dict(source, sha256)",
        {},
        "files that cf.BundleExternalFiles fetches, checks and bundles (correctionlib json, ...)",
        _is_mapping_of(_is_anything),
    ),
    Entry(
        "luminosity",
        "scinum.Number in pb^-1",
        None,
        "the luminosity label of plots; lnN effects in inference models",
        lambda value: hasattr(value, "nominal"),
    ),
    Entry(
        "data_luminosity",
        "scinum.Number in pb^-1 or None",
        None,
        "the luminosity of the data datasets where it differs from luminosity (e.g. small pseudo-data): data/MC "
        "plots scale the MC to it; inference models refuse these data as observation",
        lambda value: value is None or hasattr(value, "nominal"),
    ),
)

DATASET_ENTRIES: dict[str, Entry] = _by_name(
    Entry(
        "absent_collections",
        "tuple of collection names",
        (),
        "collections the dataset's files lack; the functions see them without objects",
        _is_names,
    ),
    Entry(
        "on_request",
        "bool",
        False,
        "left out of the default dataset lists (cf.PlotVariables1D without --datasets, the wrappers' patterns); "
        "used where named",
        lambda value: isinstance(value, bool),
    ),
    Entry(
        "sample",
        "generator spec or None",
        None,
        "embedded sample: cf.CreateSampleFiles writes the dataset's files (None: real files)",
        _is_anything,
    ),
)

PROCESS_ENTRIES: dict[str, Entry] = _by_name(
    Entry(
        "is_signal",
        "bool",
        False,
        "signal processes are drawn as lines in plots and are the signal of inference models "
        "(the tag 'signal' counts too)",
        lambda value: isinstance(value, bool),
    ),
)


def config_entry(config_inst: Any, name: str) -> Any:
    """The config's ``x.<name>`` (its default when absent), checked against the contract.

    Raises:
        UserError: If the value does not have the contract's type.
    """
    return _entry(config_inst, CONFIG_ENTRIES[name], "config")


def dataset_entry(dataset_inst: Any, name: str) -> Any:
    """The dataset's ``x.<name>`` (its default when absent), checked against the contract."""
    return _entry(dataset_inst, DATASET_ENTRIES[name], "dataset")


def process_entry(process_inst: Any, name: str) -> Any:
    """The process's ``x.<name>`` (its default when absent), checked against the contract."""
    return _entry(process_inst, PROCESS_ENTRIES[name], "process")


def _entry(inst: Any, entry: Entry, kind: str) -> Any:
    value = inst.x(entry.name, entry.default)
    if not entry.accepts(value):
        raise UserError(f"{kind} '{inst.name}': x.{entry.name} must be a {entry.type_text}, got {value!r}")
    return value


def is_signal(process_inst: Any) -> bool:
    """Whether a process is a signal: ``process.x.is_signal`` or the tag ``"signal"``."""
    return bool(process_entry(process_inst, "is_signal")) or process_inst.has_tag("signal")


def default_datasets(config_inst: Any) -> list[Any]:
    """The datasets of a config that tasks use when none are named: all but those on request (``x.on_request``)."""
    return [dataset_inst for dataset_inst in config_inst.datasets if not dataset_entry(dataset_inst, "on_request")]


def check_config(config_inst: Any) -> None:
    """Check every entry the config, its datasets and its processes declare against the contract (once per config).

    Tasks call this when their config is resolved, so that a wrong entry is one error before any work starts, not
    a failure of the first task that reads it. Absent entries are not checked: they take their defaults, and
    required ones (``luminosity``) are an error where they are read.

    Raises:
        UserError: For the first entry that does not have the contract's type.
    """
    if id(config_inst) in _CHECKED:
        return
    for name in CONFIG_ENTRIES:
        if config_inst.has_aux(name):
            config_entry(config_inst, name)
    for dataset_inst in config_inst.datasets:
        for name in DATASET_ENTRIES:
            if dataset_inst.has_aux(name):
                dataset_entry(dataset_inst, name)
    pending = list(config_inst.processes)
    while pending:
        process_inst = pending.pop()
        pending.extend(process_inst.processes)
        for name in PROCESS_ENTRIES:
            if process_inst.has_aux(name):
                process_entry(process_inst, name)
    _CHECKED.add(id(config_inst))


#: The ids of the configs that :func:`check_config` found in order.
_CHECKED: set[int] = set()
