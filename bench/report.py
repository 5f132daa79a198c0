"""Render the results of a bench run into the performance page (bench/performance.md.in -> docs/performance.md).

``python -m bench.report RESULTS_JSON OUTPUT`` re-renders a page from a saved results file.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from string import Template
from typing import Any

from bench.common import format_count
from bench.measure import summarize

__all__ = ["Target", "page_numbers", "render", "summary", "target_notes", "targets"]

TEMPLATE = Path(__file__).with_name("performance.md.in")
#: What limits each group of targets, with this run's numbers (see its header).
NOTES_TEMPLATE = Path(__file__).with_name("target_notes.md.in")
#: How the page shows a number that the run did not measure (a smoke run has no scaling sizes or ML lines).
NOT_MEASURED = "(not measured)"
#: The width of the page's generated paragraphs.
WIDTH = 118

#: Row labels of the main table.
LABELS = {
    "raw": "raw uproot read of the chain's branches (I/O limit)",
    "baseline": "hand-written script (calibrate → … → ML inputs)",
    "chain": "`law run` chain, 1 worker",
    "chain_nothread": "`law run` chain, 1 worker, no parquet writing thread (`CF_TASK_PROCESSES` = cores)",
    "chain_w2": "`law run` chain, `--workers 2`",
    "coffea": "coffea peer: NanoEvents (eager), same physics and outputs",
}
#: The measurement each row's first ratio refers to.
REFERENCES = {
    "raw": None,
    "baseline": "raw",
    "chain": "baseline",
    "chain_nothread": "chain",
    "chain_w2": "baseline",
    "coffea": "raw",
}
#: What a physicist would use instead of the chain: every row says whether it or this peer is ahead.
PEER = "coffea"


def _fmt_rate(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:,.0f}k"
    if value >= 1_000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}"


def _fmt_time(stats: Mapping[str, float]) -> str:
    if stats["n"] == 1:
        return f"{stats['wall']:.1f}"
    return f"{stats['wall']:.1f} ({stats['wall_min']:.1f}-{stats['wall_max']:.1f})"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def summary(runs: Sequence[Mapping[str, Any]], events: float | None = None) -> dict[str, float]:
    """``summarize`` plus the event rate (events per wall second and per CPU second) of the median run."""
    stats = summarize(runs)
    n = events if events is not None else statistics.median(run["output"].get("events", 0) for run in runs)
    stats["events"] = n
    stats["rate"] = n / stats["wall"] if stats["wall"] else 0.0
    stats["cpu_rate"] = n / stats["cpu"] if stats["cpu"] else 0.0
    return stats


def best_ratio(ours: Sequence[Mapping[str, Any]], theirs: Sequence[Mapping[str, Any]]) -> float:
    """The events/s ratio of the fastest runs: other users of the machine only ever slow a run down."""
    return min(run["wall"] for run in theirs) / min(run["wall"] for run in ours)


class Target:
    """One target of the issue: its description, the measured value, whether it is met, and its group.

    The group names the note of ``target_notes.md.in`` that explains the target (several targets can share one).
    """

    def __init__(self, name: str, goal: str, measured: str, met: bool | None, note: str = "", group: str = "") -> None:
        self.name, self.goal, self.measured, self.met, self.note = name, goal, measured, met, note
        self.group = group

    def row(self) -> list[str]:
        status = "n/a" if self.met is None else ("**met**" if self.met else "**not met**")
        return [self.name, self.goal, self.measured, status, self.note]


def _training_rates(ml: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    rates: dict[str, dict[str, float]] = {}
    for key in ("train_cf", "train_cf_deterministic", "train_plain"):
        runs = ml.get(key, [])
        if not runs:
            continue
        samples = [run["output"]["n_fit"] * run["output"]["epochs"] for run in runs]
        rates[key] = {
            "samples": statistics.median(samples),
            "fit": statistics.median(
                s / run["output"]["load_fit_seconds"] for s, run in zip(samples, runs, strict=True)
            ),
            "wall_rate": statistics.median(s / run["wall"] for s, run in zip(samples, runs, strict=True)),
            **{
                k: v
                for k, v in summarize(runs).items()
                if k in {"wall", "wall_min", "wall_max", "spread", "max_rss_mb"}
            },
            "fit_seconds": statistics.median(run["output"]["load_fit_seconds"] for run in runs),
            "n": len(runs),
        }
    return rates


def targets(results: Mapping[str, Any]) -> list[Target]:
    """The issue's targets, evaluated on the results."""
    label = format_count(results["settings"]["events"])
    sizes = results["sizes"]
    main = {item: summary(runs) for item, runs in sizes[label].items() if item != "chain_complete"}
    out = []
    chain = main.get("chain")
    runs = sizes[label]
    for item, reference, name, goal, group in (
        ("chain", "baseline", "chain vs hand-written", 0.8, "script"),
        ("chain_w2", "baseline", "chain (`--workers 2`) vs hand-written", 0.8, "script"),
        ("chain", "raw", "chain vs raw read", 0.5, "raw"),
        ("chain", PEER, "chain, 1 worker vs coffea peer", 1.2, "coffea"),
        ("chain_w2", "chain", "chain, 2 workers vs 1 worker", 1.7, "workers"),
    ):
        if item in main and reference in main:
            ratio = main[item]["rate"] / main[reference]["rate"]
            best = best_ratio(runs[item], runs[reference])
            note = f"events/s; fastest runs: {best:.2f}x"
            out.append(Target(name, f">= {goal}x", f"{ratio:.2f}x", ratio >= goal, note, group))
    ml = results.get("ml", {})
    rates = _training_rates(ml)
    if "train_cf" in rates and "train_plain" in rates:
        fit_ratio = rates["train_cf"]["fit"] / rates["train_plain"]["fit"]
        wall_ratio = rates["train_cf"]["wall_rate"] / rates["train_plain"]["wall_rate"]
        best = min(run["output"]["load_fit_seconds"] for run in ml["train_plain"]) / min(
            run["output"]["load_fit_seconds"] for run in ml["train_cf"]
        )
        deterministic = rates.get("train_cf_deterministic")
        note = (
            ""
            if deterministic is None
            else f"; default (op determinism): {deterministic['fit'] / rates['train_plain']['fit']:.2f}x"
        )
        out.append(
            Target(
                "MLTraining fold (`deterministic=false`) vs plain `keras.fit`",
                ">= 0.95x",
                f"{fit_ratio:.2f}x (whole process: {wall_ratio:.2f}x)",
                fit_ratio >= 0.95,
                f"samples/s of load + fit; fastest runs: {best:.2f}x; the whole process adds law, model export "
                f"and ONNX check{note}",
                "training",
            )
        )
    for item, backend, goal in (("eval_onnx", "ONNX", 2.5), ("eval_keras", "Keras", 1.0)):
        if ml.get(item) and ml.get("predict_plain"):
            ratio = summary(ml[item])["rate"] / summary(ml["predict_plain"])["rate"]
            best = best_ratio(ml[item], ml["predict_plain"])
            name = f"MLEvaluation ({backend}) vs plain Keras `predict`"
            note = f"events/s; fastest runs: {best:.2f}x"
            out.append(Target(name, f">= {goal}x", f"{ratio:.2f}x", ratio >= goal, note, item))
    scaled = [
        n for n in results["settings"]["scaling"] if format_count(n) in sizes and "chain" in sizes[format_count(n)]
    ]
    if scaled and chain:
        largest = format_count(max(scaled))
        if "chain_w2" in sizes[largest]:
            ratio = summary(sizes[largest]["chain_w2"])["rate"] / summary(sizes[largest]["chain"])["rate"]
            best = best_ratio(sizes[largest]["chain_w2"], sizes[largest]["chain"])
            note = f"events/s; fastest runs: {best:.2f}x"
            name = f"chain, 2 workers vs 1 worker at {largest}"
            out.append(Target(name, ">= 1.7x", f"{ratio:.2f}x", ratio >= 1.7, note, "workers"))
        rss = max(run["max_rss_mb"] for run in sizes[largest]["chain"]) / chain["max_rss_mb"] - 1.0
        out.append(
            Target(
                f"chain peak RSS flat {label} → {largest}",
                "within ±20%",
                f"{rss:+.0%} ({chain['max_rss_mb']:.0f} → {chain['max_rss_mb'] * (1 + rss):.0f} MiB)",
                abs(rss) <= 0.2,
            )
        )
    complete = sizes[label].get("chain_complete")
    if complete:
        seconds = statistics.median(run["wall"] for run in complete)
        out.append(
            Target("`law run` of a complete chain", "< 3 s", f"{seconds:.2f} s", seconds < 3.0, "all 4 datasets")
        )
    if results.get("setup_sh"):
        seconds = statistics.median(run["wall"] for run in results["setup_sh"])
        out.append(Target("`source setup.sh`, warm", "< 2 s", f"{seconds:.2f} s", seconds < 2.0))
    return out


def _main_table(results: Mapping[str, Any]) -> str:
    label = format_count(results["settings"]["events"])
    runs = results["sizes"][label]
    stats = {item: summary(item_runs) for item, item_runs in runs.items() if item != "chain_complete"}
    rows = []
    for item, label_text in LABELS.items():
        if item not in stats:
            continue
        s = stats[item]
        ref = REFERENCES[item]
        ratios = [f"{s['rate'] / stats[ref]['rate']:.2f}x {ref}"] if ref in stats else []
        if item.startswith("chain") and "raw" in stats:
            ratios.append(f"{s['rate'] / stats['raw']['rate']:.2f}x raw")
        row = _rate_row(label_text, s, ", ".join(ratios) or "—")
        if PEER in stats:
            row.insert(5, _ahead(item, s["rate"], stats[PEER]["rate"]))
        rows.append(row)
    header = ["measurement", "events/s", "wall s (min-max)", "CPU s", "ratio (events/s)", "peak RSS MiB", "noise"]
    if PEER in stats:
        header.insert(5, f"vs {PEER} peer (events/s)")
    return _table(header, rows)


def _ahead(item: str, rate: float, peer_rate: float) -> str:
    """Which of a measurement and the peer is ahead, with their ratio of events/s."""
    if item == PEER:
        return "—"
    ratio = rate / peer_rate
    winner = item if ratio >= 1.0 else PEER
    return f"{ratio:.2f}x: **{winner}** ahead"


def _checks_text(results: Mapping[str, Any]) -> str:
    """The output checks at the main size: which sources wrote the same events and columns."""
    label = format_count(results["settings"]["events"])
    checks = results.get("checks", {}).get(label, {})
    lines = []
    for pair, check in checks.get("columns", {}).items():
        source, reference = pair.split("_vs_")
        inexact = check["inexact"]
        values = (
            "every value bit-identical"
            if not inexact
            else f"{check['columns'] - len(inexact)} columns bit-identical, {len(inexact)} within float rounding "
            f"(largest relative difference {check['max_rel_diff']:.1g}, `{check['worst_column']}`)"
        )
        lines.append(
            f"- `{source}` vs `{reference}`: the same {check['events']:,} selected events (run, luminosityBlock, "
            f"event) and {check['columns']} columns, {values}"
        )
    if not lines:
        return "*No two sources of reduced events were measured in this run, so their outputs were not compared.*"
    return "\n".join(lines)


def _rate_row(label: str, s: Mapping[str, Any], ratio: str) -> list[str]:
    """A table row of a rate measurement: label, events/s, wall time, CPU time, ratio, peak RSS and noise."""
    return [
        label,
        _fmt_rate(s["rate"]),
        _fmt_time(s),
        f"{s['cpu']:.1f}",
        ratio,
        f"{s['max_rss_mb']:.0f}",
        f"±{s['spread'] / 2:.0%}",
    ]


def _ml_table(results: Mapping[str, Any]) -> str:
    ml = results.get("ml")
    if not ml:
        return "*The ML measurements were skipped in this run (`--skip-ml`).*"
    rows = []
    rates = _training_rates(ml)
    plain = rates.get("train_plain")
    for key, text in (
        ("train_plain", "plain `keras.fit`"),
        ("train_cf", "`cf.MLTraining` fold 0, `deterministic=false` (as plain `keras.fit`)"),
        ("train_cf_deterministic", "`cf.MLTraining` fold 0, default: TensorFlow's op determinism"),
    ):
        if key not in rates:
            continue
        r = rates[key]
        ratio = (
            "—"
            if key == "train_plain" or not plain
            else f"{r['fit'] / plain['fit']:.2f}x ({r['wall_rate'] / plain['wall_rate']:.2f}x)"
        )
        rows.append(
            [
                text,
                f"{_fmt_rate(r['fit'])} ({_fmt_rate(r['wall_rate'])})",
                f"{r['fit_seconds']:.1f} / {r['wall']:.1f}",
                ratio,
                f"{r['max_rss_mb']:.0f}",
                f"±{r['spread'] / 2:.0%}",
            ]
        )
    header = [
        "training",
        "samples/s: load + fit (whole process)",
        "s: load + fit / process",
        "ratio",
        "peak RSS MiB",
        "noise",
    ]
    table = _table(header, rows)
    rows = []
    plain_eval = summary(ml["predict_plain"]) if ml.get("predict_plain") else None
    for key, text in (
        ("predict_plain", "plain Keras `model.predict`"),
        ("eval_onnx", "`cf.MLEvaluation`, ONNX (base environment, no sandbox)"),
        ("eval_keras", "`cf.MLEvaluation`, Keras (TF sandbox, entered once for all datasets)"),
        ("eval_keras_in_sandbox", "`cf.MLEvaluation`, Keras (`law run` inside the TF sandbox)"),
    ):
        if not ml.get(key):
            continue
        s = summary(ml[key])
        ratio = "—" if key == "predict_plain" or plain_eval is None else f"{s['rate'] / plain_eval['rate']:.2f}x"
        rows.append(_rate_row(text, s, ratio))
    header = ["evaluation", "events/s", "wall s (min-max)", "CPU s", "ratio", "peak RSS MiB", "noise"]
    return table + "\n\n" + _table(header, rows)


def _scaling_table(results: Mapping[str, Any]) -> str:
    settings = results["settings"]
    sizes = [n for n in [settings["events"], *settings["scaling"]] if format_count(n) in results["sizes"]]
    if len(sizes) < 2:
        return "*No scaling sizes in this run.*"
    rows = []
    for item in ("raw", "baseline", "chain", "chain_nothread", "chain_w2"):
        measured = [(n, results["sizes"][format_count(n)].get(item)) for n in sizes]
        measured = [(n, runs) for n, runs in measured if runs]
        if len(measured) < 2 or measured[0][0] != sizes[0]:
            continue
        base = summary(measured[0][1])
        for n, runs in measured:
            s = summary(runs)
            first = n == sizes[0]
            rows.append(
                [
                    LABELS[item] if first else "",
                    format_count(n),
                    _fmt_time(s),
                    _fmt_rate(s["rate"]),
                    "—" if first else f"{s['wall'] / base['wall']:.1f}x (events {n / sizes[0]:.0f}x)",
                    f"{s['max_rss_mb']:.0f}",
                    "—" if first else f"{s['max_rss_mb'] / base['max_rss_mb'] - 1:+.0%}",
                ]
            )
    header = ["measurement", "events", "wall s", "events/s", "time growth", "peak RSS MiB", "RSS growth"]
    return _table(header, rows)


#: What each task of the profile reads and writes, and the label of each fused pass.
PROFILE_ROWS = {
    "CalibrateEvents": "ROOT: 4 branches; writes the calibrated jets",
    "SelectEvents": "ROOT: 19 branches, plus the calibrated jets; writes the masks and the statistics",
    "ReduceEvents": "ROOT: 35 branches, plus the calibrated jets and the masks; writes the reduced events",
    "ProduceColumns": "the reduced events; writes the produced columns",
    "PrepareMLEvents": "the reduced events and the produced columns; writes the ML inputs per fold",
}
PROFILE_FUSED = {
    "ReduceEvents": (
        "fused `cf.ReduceEvents` (calibration, selection, reduction)",
        "ROOT once; writes the calibrated jets, the masks, the statistics, the reduced events",
    ),
    "PrepareMLEvents": (
        "fused `cf.PrepareMLEvents` (production, ML inputs)",
        "the reduced events once; writes the produced columns and the ML inputs",
    ),
}


def _profile_table(profile: Mapping[str, Any] | None) -> str:
    """Seconds per file of each chain task and of the two fused passes (``bench.profile``)."""
    if not profile:
        return "*The chain was not profiled in this run (no `chain` among `--items`).*"
    rows = [[f"`{name}`", f"{profile['tasks'][name]['wall']:.2f}", text] for name, text in PROFILE_ROWS.items()]
    total = sum(task["wall"] for task in profile["tasks"].values())
    rows.append(["**total, one task after the other**", f"**{total:.2f}**", ""])
    rows += [[label, f"{profile['fused'][name]['wall']:.2f}", text] for name, (label, text) in PROFILE_FUSED.items()]
    fused = sum(task["wall"] for task in profile["fused"].values())
    rows.append(["**total, as a fresh chain runs them**", f"**{fused:.2f}**", ""])
    return _table(["task", "s per file", "what it reads and writes"], rows)


def _profile_file(profile: Mapping[str, Any] | None) -> str:
    if not profile:
        return NOT_MEASURED
    return f"`{profile['dataset']}` file {profile['branch']}: {format_count(profile['file_events'])} events"


def _machine(results: Mapping[str, Any]) -> str:
    m = results["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    load_start = ", ".join(f"{v:.1f}" for v in results["load_start"])
    load_end = ", ".join(f"{v:.1f}" for v in results.get("load_end", results["load_start"]))
    return (
        f"- **Date**: {results['date']}; commit `{m['commit']}`; the bench took {results.get('duration_s', 0) / 60:.0f} min\n"
        f"- **Machine**: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['os']}; Python {m['python']}; {packages}\n"
        f"- **Load average** (1, 5, 15 min) at the start: {load_start}; at the end: {load_end} "
        "(other users of the machine; see *noise*)\n"
        f"- **Command**: `{results['settings']['command']}`"
    )


class _Numbers(dict[str, str]):
    """The page's numbers by name; a name the run did not measure reads as ``NOT_MEASURED``."""

    def __missing__(self, key: str) -> str:
        return NOT_MEASURED


#: The short names of the main table's lines in ``page_numbers``.
_SHORT = {
    "chain": "chain",
    "baseline": "script",
    "chain_nothread": "nothread",
    "chain_w2": "w2",
    "coffea": "coffea",
    "raw": "raw",
}
#: The pairs of lines whose events/s ratio the text quotes (``<ours>_vs_<theirs>``).
_RATIOS = (
    ("chain", "baseline"),
    ("chain", "raw"),
    ("baseline", "raw"),
    ("chain", "coffea"),
    ("baseline", "coffea"),
    ("chain_nothread", "coffea"),
    ("chain_w2", "chain"),
    ("chain_w2", "chain_nothread"),
)


def _ratio(value: float) -> str:
    """A ratio as the text of the page writes it, with a multiplication sign."""
    return f"{value:.2f}\N{MULTIPLICATION SIGN}"


def _times(runs_by_item: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, dict[str, float]]:
    return {item: summary(runs) for item, runs in runs_by_item.items() if item != "chain_complete" and runs}


def _chain_numbers(at: Mapping[str, Mapping[str, float]], suffix: str) -> dict[str, str]:
    """Wall and CPU times, ratios and the two-worker bound of the chain lines at one size."""
    numbers = {}
    for item, s in at.items():
        name = _SHORT.get(item, item)
        numbers[f"{name}_wall{suffix}"] = f"{s['wall']:.1f} s"
        numbers[f"{name}_wall_range{suffix}"] = f"{s['wall_min']:.1f}\N{EN DASH}{s['wall_max']:.1f} s"
        numbers[f"{name}_cpu{suffix}"] = f"{s['cpu']:.1f} s"
    for ours, theirs in _RATIOS:
        if ours in at and theirs in at:
            numbers[f"{_SHORT[ours]}_vs_{_SHORT[theirs]}{suffix}"] = _ratio(at[ours]["rate"] / at[theirs]["rate"])
    if "chain" in at:
        numbers[f"chain_cores{suffix}"] = f"{at['chain']['cpu'] / at['chain']['wall']:.2f}"
    if "chain" in at and "chain_w2" in at:
        # two workers on two cores need at least half their CPU time
        numbers[f"w2_bound{suffix}"] = _ratio(at["chain"]["wall"] / (at["chain_w2"]["cpu"] / 2))
    return numbers


def _ml_numbers(ml: Mapping[str, Any]) -> dict[str, str]:
    numbers = {}
    if ml.get("predict_plain"):
        plain = summary(ml["predict_plain"])["rate"]
        for item, name in (("eval_keras", "keras"), ("eval_keras_in_sandbox", "keras_inside"), ("eval_onnx", "onnx")):
            if ml.get(item):
                numbers[f"{name}_vs_plain"] = _ratio(summary(ml[item])["rate"] / plain)
    rates = _training_rates(ml)
    if "train_plain" in rates:
        plain_rates = rates["train_plain"]
        if "train_cf" in rates:
            numbers["training_vs_plain"] = _ratio(rates["train_cf"]["fit"] / plain_rates["fit"])
            numbers["training_whole_vs_plain"] = _ratio(rates["train_cf"]["wall_rate"] / plain_rates["wall_rate"])
        if "train_cf_deterministic" in rates:
            numbers["training_det_vs_plain"] = _ratio(rates["train_cf_deterministic"]["fit"] / plain_rates["fit"])
    return numbers


def page_numbers(results: Mapping[str, Any]) -> _Numbers:
    """The run's numbers that the page's text quotes, by the names its templates use.

    Chain lines at the main size: ``<line>_wall``, ``<line>_wall_range``, ``<line>_cpu`` (lines: chain, script,
    nothread, w2, coffea, raw), ``<ours>_vs_<theirs>`` (events/s ratios), ``chain_cores`` and ``w2_bound`` (the
    most that two workers can gain over one with the CPU time they took); the same with ``_large`` at the largest
    scaling size; ``w2_vs_nothread_by_size``; ``size`` and ``large``; the ML ratios ``keras_vs_plain``,
    ``keras_inside_vs_plain``, ``onnx_vs_plain``, ``training_vs_plain``, ``training_det_vs_plain`` and
    ``training_whole_vs_plain``.
    """
    settings = results["settings"]
    sizes = results.get("sizes", {})
    label = format_count(settings["events"])
    numbers = _Numbers(size=label)
    labels = [format_count(n) for n in [settings["events"], *sorted(settings.get("scaling", []))]]
    times = {size: _times(sizes[size]) for size in dict.fromkeys(labels) if sizes.get(size)}
    numbers.update(_chain_numbers(times.get(label, {}), ""))
    if len(times) > 1:
        large = list(times)[-1]
        numbers["large"] = large
        numbers.update(_chain_numbers(times[large], "_large"))
    by_size = []
    for size, at in times.items():
        if "chain_w2" in at and "chain_nothread" in at:
            by_size.append(f"{_ratio(at['chain_w2']['rate'] / at['chain_nothread']['rate'])} at {size}")
    if by_size:
        numbers["w2_vs_nothread_by_size"] = ", ".join(by_size)
    numbers.update(_ml_numbers(results.get("ml", {})))
    return numbers


def _notes(template: Path) -> dict[str, tuple[str, str]]:
    """The notes of ``target_notes.md.in``: group -> (title, text), the text as one line."""
    text = re.sub(r"<!--.*?-->", "", template.read_text(), flags=re.DOTALL)
    notes = {}
    for section in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        heading, _, body = section.partition("\n")
        group, _, title = heading.partition(":")
        notes[group.strip()] = (title.strip(), " ".join(body.split()))
    return notes


def target_notes(tgts: Sequence[Target], numbers: Mapping[str, str], template: Path = NOTES_TEMPLATE) -> str:
    """The notes on what limits each group of targets, under whether the run met them (groups without a note: none)."""
    notes = _notes(template)
    met: dict[str, bool] = {}
    for target in tgts:
        if target.group in notes and target.met is not None:
            met[target.group] = met.get(target.group, True) and target.met
    parts = []
    for heading, wanted in (("Not met in this run", False), ("Met in this run", True)):
        items = []
        for group, title_text in notes.items():
            if met.get(group) is wanted:
                title, text = title_text
                line = f"- **{title}**: {Template(text).substitute(numbers)}"
                items.append(textwrap.fill(line, width=WIDTH, subsequent_indent="  ", break_on_hyphens=False))
        if items:
            parts.append(f"### {heading}\n\n" + "\n".join(items))
    return "\n\n".join(parts) if parts else "*No target with a note was measured in this run.*"


def render(results: Mapping[str, Any], template: Path = TEMPLATE) -> str:
    """The performance page for a results dict (as ``python -m bench`` writes it to results.json)."""
    settings = results["settings"]
    label = format_count(settings["events"])
    # an ML-only run (--items none) measured nothing at the main size
    results = {**results, "sizes": {label: {}, **results.get("sizes", {})}}
    tgts = targets(results)
    numbers = page_numbers(results)
    values = {
        **numbers,
        "machine": _machine(results),
        "events": label,
        "reps": str(settings["reps"]),
        "ml_reps": str(settings.get("ml_reps", settings["reps"])),  # results of runs before --ml-reps: --reps
        "chunk_size": f"{settings['chunk_size']:,}",
        "basket_size": f"{settings['basket_size']:,}" if settings.get("basket_size") else "one basket per branch",
        "epochs": str(settings["epochs"]) if settings.get("epochs") else "—",
        "main_table": _main_table(results),
        "checks": _checks_text(results),
        "ml_table": _ml_table(results),
        "scaling_table": _scaling_table(results),
        "targets_table": _table(["target", "goal", "measured", "status", "note"], [t.row() for t in tgts]),
        "n_met": str(sum(1 for t in tgts if t.met)),
        "n_targets": str(len(tgts)),
        "target_notes": target_notes(tgts, numbers),
        "profile_table": _profile_table(results.get("profile")),
        "profile_file": _profile_file(results.get("profile")),
        "profile_repeat": str(results.get("profile", {}).get("repeat", NOT_MEASURED)),
    }
    return Template(template.read_text()).substitute(_Numbers(values))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results_json")
    parser.add_argument("output")
    args = parser.parse_args(argv)
    Path(args.output).write_text(render(json.loads(Path(args.results_json).read_text())))


if __name__ == "__main__":
    main()
