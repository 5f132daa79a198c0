"""The task graph of the docs, drawn from the real law dependency tree.

The tasks of the given commands are instantiated (as ``law run`` would, from the same arguments) and their
``requires()`` are followed down to the first task. The tree is then collapsed: one box per task family, labelled
with how many tasks of that family the tree holds and which parameters tell them apart (``dataset x11``), and one
arrow per pair of families whose tasks require one another. Arrows that a longer path already implies are left
out, so the picture shows the order of the steps rather than every input of every task. The boxes are coloured by
the module that defines the task.
"""

from __future__ import annotations

import importlib
import textwrap
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import law
import luigi
from luigi.cmdline_parser import CmdlineParser

from cf.plotting import new_figure, save_figure

__all__ = ["TaskGraph", "draw_task_graph", "task_graph"]

#: Inches per layer (vertically) and per box (horizontally).
ROW_HEIGHT = 0.75
COLUMN_WIDTH = 3.4
#: Characters per line of a box's detail text.
DETAIL_WIDTH = 38
#: Resolution of the PNG file.
DPI = 150
#: The colour map of the modules (pale colours, under black text).
COLOR_MAP = "Set3"


@dataclass(frozen=True)
class TaskGraph:
    """The dependency tree of some tasks, collapsed to task families.

    Attributes:
        families: Each family's tasks in the tree.
        edges: ``(requirement, dependent)`` pairs of families.
    """

    families: dict[str, list[law.Task]]
    edges: frozenset[tuple[str, str]]


def task_from_args(args: Sequence[str]) -> law.Task:
    """The task that ``law run ARGS...`` runs (the task modules of law.cfg are imported first)."""
    for module in law.config.options("modules"):
        importlib.import_module(module)
    with CmdlineParser.global_instance(list(args)) as parser:
        return parser.get_task_obj()


def task_graph(commands: Iterable[Sequence[str]]) -> TaskGraph:
    """The collapsed dependency tree of the tasks of ``commands`` (each a ``law run`` argument list)."""
    pending = [task_from_args(args) for args in commands]
    seen: dict[str, law.Task] = {}
    edges: set[tuple[str, str]] = set()
    while pending:
        task = pending.pop()
        if task.task_id in seen:
            continue
        seen[task.task_id] = task
        for requirement in luigi.task.flatten(task.requires()):
            edges.add((requirement.task_family, task.task_family))
            pending.append(requirement)
    families: dict[str, list[law.Task]] = defaultdict(list)
    for task in seen.values():
        families[task.task_family].append(task)
    return TaskGraph(dict(families), frozenset(edges))


def _descendants(edges: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    """Every family reachable from each family along the edges."""
    children: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        children[source].add(target)
    reach: dict[str, set[str]] = {}

    def visit(node: str) -> set[str]:
        if node not in reach:
            reach[node] = set()
            for child in children[node]:
                reach[node] |= {child, *visit(child)}
        return reach[node]

    for node in list(children):
        visit(node)
    return reach


def reduced_edges(edges: frozenset[tuple[str, str]]) -> set[tuple[str, str]]:
    """The edges that no longer path implies (the transitive reduction of an acyclic graph)."""
    reach = _descendants(edges)
    return {
        (source, target)
        for source, target in edges
        if not any(target in reach.get(middle, set()) for s, middle in edges if s == source and middle != target)
    }


def layers(families: Iterable[str], edges: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Each family's layer: the length of the longest path to it from a family without requirements."""
    parents: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        parents[target].add(source)
    layer: dict[str, int] = {}

    def depth(node: str) -> int:
        if node not in layer:
            layer[node] = 1 + max((depth(parent) for parent in parents[node]), default=-1)
        return layer[node]

    for family in families:
        depth(family)
    return layer


def positions(layer: dict[str, int], edges: Iterable[tuple[str, str]]) -> dict[str, tuple[float, float]]:
    """Box centres in inches: one row per layer, top down, each row ordered by the mean column of its parents."""
    parents: dict[str, list[str]] = defaultdict(list)
    for source, target in edges:
        parents[target].append(source)
    xy: dict[str, tuple[float, float]] = {}
    for row in range(max(layer.values()) + 1):
        names = sorted(name for name, value in layer.items() if value == row)
        names.sort(key=lambda name: sum(xy[p][0] for p in parents[name]) / max(len(parents[name]), 1))
        for index, name in enumerate(names):
            xy[name] = ((index - (len(names) - 1) / 2) * COLUMN_WIDTH, -row * ROW_HEIGHT)
    return xy


def varying_parameters(tasks: Sequence[law.Task]) -> str:
    """How many tasks there are and the parameters that tell them apart, e.g. ``33 tasks: dataset x11, shift x3``.

    Empty for a single task.
    """
    if len(tasks) == 1:
        return ""
    values: dict[str, set[str]] = defaultdict(set)
    for task in tasks:
        for name, value in task.param_kwargs.items():
            values[name].add(repr(value))
    varying = ", ".join(f"{name} \N{MULTIPLICATION SIGN}{len(v)}" for name, v in values.items() if len(v) > 1)
    return f"{len(tasks)} tasks: {varying}"


def module_colors(graph: TaskGraph, layer: dict[str, int]) -> dict[str, Any]:
    """A colour per module that defines tasks of the graph, in the order of the pipeline (earliest task first)."""
    from matplotlib import colormaps

    first: dict[str, int] = {}
    for name, tasks in graph.families.items():
        module = tasks[0].__module__
        first[module] = min(first.get(module, layer[name]), layer[name])
    colors = colormaps[COLOR_MAP].colors
    modules = sorted(first, key=lambda module: (first[module], module))
    return {module: colors[index % len(colors)] for index, module in enumerate(modules)}


def draw_task_graph(graph: TaskGraph, path: Path) -> None:
    """Draw the collapsed graph into a PNG file: boxes top down in the order the tasks run, arrows to dependents."""
    edges = reduced_edges(graph.edges)
    layer = layers(graph.families, edges)
    xy = positions(layer, edges)
    colors = module_colors(graph, layer)
    left, right = min(x for x, _ in xy.values()) - COLUMN_WIDTH / 2, max(x for x, _ in xy.values()) + COLUMN_WIDTH / 2
    # the rows, half a row above the first, and two rows below the last for the legend
    top, bottom = ROW_HEIGHT / 2, min(y for _, y in xy.values()) - 2 * ROW_HEIGHT
    figure, ax = new_figure((right - left, top - bottom))
    figure.subplots_adjust(left=0, right=1, bottom=0, top=1)
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_axis_off()
    boxes = {name: _box(ax, name, graph.families[name], xy[name], colors) for name in graph.families}
    for source, target in sorted(edges):
        _arrow(ax, boxes[source], boxes[target])
    handles = [_legend_patch(color, module) for module, color in colors.items()]
    ax.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False, title="defined in")
    save_figure(figure, {"png": path}, dpi=DPI)


def _box(ax: Any, name: str, tasks: Sequence[law.Task], xy: tuple[float, float], colors: dict[str, str]) -> Any:
    label = "\n".join([name, *textwrap.wrap(varying_parameters(tasks), DETAIL_WIDTH)])
    style = {"boxstyle": "round,pad=0.35", "facecolor": colors[tasks[0].__module__], "edgecolor": "0.2"}
    return ax.text(*xy, label, ha="center", va="center", fontsize=8, bbox=style)


def _arrow(ax: Any, source: Any, target: Any) -> None:
    arrow = {"arrowstyle": "-|>", "color": "0.3", "patchA": source.get_bbox_patch(), "patchB": target.get_bbox_patch()}
    ax.annotate("", xy=target.get_position(), xytext=source.get_position(), arrowprops=arrow)


def _legend_patch(color: Any, module: str) -> Any:
    from matplotlib.patches import Patch

    return Patch(facecolor=color, label=module)
