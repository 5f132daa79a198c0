"""Combine text datacards and their ROOT shapes files, one per category of an inference model."""

from __future__ import annotations

from typing import Any

import numpy as np

from cf.inference.model import DATA_NAME, InferenceModel, ParameterType, shape_scale
from cf.inference.shapes import CategoryShapes
from cf.util import UserError

__all__ = [
    "category_file_name",
    "format_number",
    "render_datacard",
    "shapes_file_histograms",
    "write_shapes_file",
]

#: The combine type of a parameter line, by the set of types it has on the category's processes.
COMBINE_TYPES = {
    frozenset({ParameterType.rate_gauss}): "lnN",
    frozenset({ParameterType.rate_uniform}): "lnU",
    frozenset({ParameterType.shape}): "shape",
    # combine decides per process from the presence of shifted histograms in the shapes file
    frozenset({ParameterType.rate_gauss, ParameterType.shape}): "shape?",
}


def category_file_name(model: InferenceModel, category: str, kind: str, extension: str) -> str:
    """``<kind>__<category>[__<postfix>].<extension>``, e.g. ``datacard__sr.txt``."""
    postfix = model.get_category(category).postfix
    return f"{kind}__{category}{'__' + postfix if postfix else ''}.{extension}"


def format_number(value: float, digits: int = 10) -> str:
    """A number for a datacard: ``digits`` significant digits, no trailing zeros (``1.023``, ``0.5``, ``12``)."""
    text = f"{value:.{digits}g}"
    return "0" if text in {"-0", "0"} else text


def _rounded(value: float, precision: int | None, digits: int) -> str:
    """``precision`` decimal places (columnflow's ``*_precision``), or ``digits`` significant digits when None."""
    return format_number(value, digits) if precision is None else format_number(round(value, precision), 15)


def _effect_text(effect: Any, parameter_type: ParameterType, precision: int | None) -> str:
    if parameter_type.is_shape:
        return "1" if effect == 1.0 else _rounded(effect, precision, 6)
    if isinstance(effect, tuple):
        return f"{_rounded(effect[0], precision, 6)}/{_rounded(effect[1], precision, 6)}"
    return _rounded(effect, precision, 6)


def _header(model: InferenceModel, category: str) -> str:
    configs = model.get_category(category).config_data
    used = model.category_configs(category)
    where = [f"config category '{configs[c].category}', variable '{configs[c].variable}'" for c in used]
    if len(used) > 1:
        where = [f"config '{c}': {text}" for c, text in zip(used, where, strict=True)]
    return f"# inference model '{model.cls_name}', category '{category}': {'; '.join(where)}"


def render_datacard(model: InferenceModel, category_name: str, shapes: CategoryShapes, shapes_file: str) -> str:
    """The combine text datacard of one category.

    Processes are those in ``shapes`` (signals first with the model-wide indices ``0, -1, ...``, backgrounds
    ``1, 2, ...``); rates and the observation are the integrals of ``shapes``; rate parameters show their
    transformed effect, shape parameters their scale; ``rate_unconstrained`` parameters become ``rateParam``
    lines. Columns are aligned.

    Args:
        model: The inference model.
        category_name: The model category (the datacard's bin).
        shapes: The category's numbers.
        shapes_file: The shapes file as the datacard refers to it (relative to the datacard).

    Returns:
        The datacard text.

    Raises:
        UserError: If a parameter mixes types that combine cannot express in one line.
    """
    category = model.get_category(category_name)
    processes = shapes.processes
    names = [
        name for name in model.category_parameters(category_name) if any(shapes.acts_on(name, p) for p in processes)
    ]
    tabular, rate_params = [], []
    for name in names:
        types = shapes.parameter_types(model, category_name, name)
        if types == {ParameterType.rate_unconstrained}:
            rate_params.append(name)
        elif frozenset(types) in COMBINE_TYPES:
            tabular.append((name, COMBINE_TYPES[frozenset(types)]))
        else:
            raise UserError(
                f"parameter '{name}' has the types {', '.join(sorted(map(str, types)))} on the processes of category "
                f"'{category_name}', which one combine line cannot express",
            )
    rule = "-" * 80
    lines = [
        _header(model, category_name),
        "imax 1  number of channels",
        f"jmax {len(processes) - 1}  number of processes minus 1",
        f"kmax {len(tabular)}  number of nuisance parameters",
        rule,
        f"shapes * * {shapes_file} $CHANNEL/$PROCESS $CHANNEL/$PROCESS__$SYSTEMATIC",
        rule,
    ]
    observation = [["bin", category.name], ["observation", format_number(shapes.observation)]]
    lines += _aligned(observation)
    lines.append(rule)

    rows: list[list[str]] = [
        ["bin", "", *(category.name for _ in processes)],
        ["process", "", *processes],
        ["process", "", *(str(model.process_index(p)) for p in processes)],
        ["rate", "", *(_rounded(shapes.rate(p), category.rate_precision, 10) for p in processes)],
    ]
    n_table = len(rows)
    for name, combine_type in tabular:
        rows.append([name, combine_type, *(_parameter_cell(model, category_name, shapes, name, p) for p in processes)])
    table = _aligned(rows, merge_first=True)
    lines += table[:n_table]
    if tabular:
        lines.append(rule)
        lines += table[n_table:]

    extra = _aligned(
        [
            [name, "rateParam", category.name, process, format_number(shapes.effects[process][name], 6)]
            for name in rate_params
            for process in processes
            if name in shapes.effects.get(process, {})
        ]
    )
    for group in model.parameter_groups:
        present = [n for n in group.parameter_names if n in names]
        if present:
            extra.append(f"{group.name} group = {' '.join(present)}")
    mc_stats = model.mc_stats_settings(category_name)
    if mc_stats:
        extra.append(f"* autoMCStats {' '.join(mc_stats)}")
    if extra:
        lines.append(rule)
        lines += extra
    return "\n".join(lines) + "\n"


def _parameter_cell(model: InferenceModel, category: str, shapes: CategoryShapes, name: str, process: str) -> str:
    if name in shapes.shifted.get(process, {}):
        parameter = model.get_parameter(name, process=process, category=category)
        return _effect_text(shape_scale(parameter), ParameterType.shape, parameter.effect_precision)
    if name in shapes.effects.get(process, {}):
        parameter = model.get_parameter(name, process=process, category=category)
        return _effect_text(shapes.effects[process][name], parameter.type, parameter.effect_precision)
    return "-"


def _aligned(rows: list[list[str]], merge_first: bool = False) -> list[str]:
    """Left-aligned columns, two spaces apart.

    With ``merge_first`` the first two cells form the label column (``name type`` of a nuisance, or a table
    label with an empty second cell), so that the value columns of the rate table and the nuisances line up.
    """
    if not rows:
        return []
    if merge_first:
        name_width = max(len(row[0]) for row in rows)
        rows = [[row[0].ljust(name_width) + (" " + row[1] if row[1] else ""), *row[2:]] for row in rows]
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(max(len(row) for row in rows))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def _hist_1d(edges: np.ndarray, values: np.ndarray, variances: np.ndarray, name: str) -> Any:
    import hist

    histogram = hist.Hist(
        hist.axis.Variable(edges, name=name, underflow=False, overflow=False), storage=hist.storage.Weight()
    )
    view = histogram.view()
    view.value = values
    view.variance = variances
    return histogram


def shapes_file_histograms(model: InferenceModel, category_name: str, shapes: CategoryShapes) -> dict[str, Any]:
    """The histograms of the category's shapes file, keyed by their path in the file.

    ``<category>/<process>`` (nominal), ``<category>/<process>__<parameter>Up`` / ``Down`` for the parameters
    acting as shapes, and ``<category>/data_obs``, as the datacard's ``shapes`` line maps them.
    """
    category = model.get_category(category_name)
    configs = model.category_configs(category_name)
    axis_name = category.config_data[configs[0]].variable if configs else category.name
    result: dict[str, Any] = {}
    for name in shapes.processes:
        result[f"{category.name}/{name}"] = _hist_1d(
            shapes.edges, shapes.nominal[name], shapes.variances[name], axis_name
        )
        for parameter, (up, down) in shapes.shifted.get(name, {}).items():
            for suffix, values in (("Up", up), ("Down", down)):
                # the shifted histograms carry the nominal variances: only their yields enter the fit
                path = f"{category.name}/{name}__{parameter}{suffix}"
                result[path] = _hist_1d(shapes.edges, values, shapes.variances[name], axis_name)
    result[f"{category.name}/{DATA_NAME}"] = _hist_1d(shapes.edges, shapes.data, np.asarray(shapes.data), axis_name)
    return result


def write_shapes_file(path: str, model: InferenceModel, category_name: str, shapes: CategoryShapes) -> None:
    """Write the category's shapes file with uproot, atomically (temporary sibling, then renamed)."""
    import uproot

    from cf.io import atomic_path

    with atomic_path(path) as tmp_path, uproot.recreate(tmp_path) as file:
        for key, histogram in shapes_file_histograms(model, category_name, shapes).items():
            file[key] = histogram
