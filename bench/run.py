"""The bench harness behind ``python -m bench``: prepare the samples, measure interleaved, write the report.

Per repetition every measurement of a size runs once, in alternating order (A B C D, then D C B A, ...), so
that load from other users of the machine hits all sides alike; each measurement is a fresh process (see
:mod:`bench.measure`) with a fresh output store. See bench/README.md for what each measurement is.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.check import EventFiles, chain_event_files, keep_files, script_event_files
from bench.common import (
    CONFIG,
    DATASETS,
    DEFAULT_BASKET_SIZE,
    ML_MODEL,
    SampleInfo,
    data_dir,
    format_count,
    ml_settings,
    parse_count,
    sample_scale,
)
from bench.measure import BenchError, Run, run_measured
from bench.profile import profile_store
from cf.io import TASK_PROCESSES_ENV

__all__ = ["main"]

#: Items measured at every size, and those only at the main size.
SCALING_ITEMS = ("raw", "baseline", "chain", "chain_nothread", "chain_w2")
MAIN_ITEMS = ("raw", "baseline", "chain", "chain_nothread", "chain_w2", "coffea")
ML_ITEMS = (
    "train",
    "eval_onnx",
    "eval_keras",
    "eval_keras_in_sandbox",
    "predict_plain",
)
#: The sandbox (cf_sandbox name) of the Keras evaluation of the dnn model (ONNX runs in the base environment).
KERAS_SANDBOX = "venv_ml_tf"
#: Relative tolerance of the weight sums when the baseline's ML inputs are compared with the chain's.
WEIGHT_RTOL = 1e-4


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Bench:
    """Paths, settings and the collected results of one bench run."""

    base: Path
    workdir: Path
    chunk_size: int
    reps: int
    epochs: int
    basket_size: int = DEFAULT_BASKET_SIZE
    #: Repetitions of the ML training and evaluation lines (more than the others: their noise per run is ±2-14%).
    ml_reps: int = 5
    results: dict[str, Any] = field(default_factory=dict)
    samples: dict[int, SampleInfo] = field(default_factory=dict)
    #: Per size and source, the reduced events of its first measurement (see :meth:`_check_columns`).
    kept_outputs: dict[str, dict[str, EventFiles]] = field(default_factory=dict)
    #: The coffea peer's filesets written in this run.
    filesets: set[str] = field(default_factory=set)

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    # environments

    def env(self, n_events: int, store: Path | None = None) -> dict[str, str]:
        """The environment of a measurement at one sample size: isolated CF_DATA, store and job directories."""
        env = dict(os.environ)
        env.update(
            {
                "CF_DATA": str(data_dir(self.workdir, n_events, self.basket_size)),
                "CF_SAMPLE_SCALE": repr(sample_scale(n_events)),
                "CF_JOB_BASE": str(self.workdir / "jobs"),
                "CF_STORE_LOCAL": str(store or self.workdir / "store_unused"),
            }
        )
        return env

    def measure(self, name: str, command: Sequence[str], env: dict[str, str], timeout: float = 3600.0) -> Run:
        run = run_measured(command, env, self.log_dir / f"{name}.log", cwd=str(self.base), timeout=timeout)
        _log(f"  {name}: {run.wall:.1f} s wall, {run.cpu:.1f} s CPU, {run.max_rss_mb:.0f} MiB, load {run.load:.1f}")
        return run

    def record(self, *keys: str) -> list[dict[str, Any]]:
        node = self.results
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        return node.setdefault(keys[-1], [])

    # samples

    def prepare_sample(self, n_events: int) -> SampleInfo:
        env = self.env(n_events)
        info_path = Path(env["CF_DATA"]) / "sample.json"
        Path(env["CF_DATA"]).mkdir(parents=True, exist_ok=True)
        _log(f"sample of {format_count(n_events)} events in {env['CF_DATA']}")
        command = [sys.executable, "-m", "bench.sample", str(info_path), "--basket-size", str(self.basket_size)]
        subprocess.run(command, env=env, cwd=self.base, check=True)
        sample = SampleInfo.load(info_path)
        self.samples[n_events] = sample
        return sample

    # the chain and its baselines

    def chain_command(self, workers: int = 1, version: str = "v1") -> list[str]:
        command = ["law", "run", "bench.tasks.BenchChain", "--version", version, "--chunk-size", str(self.chunk_size)]
        return [*command, "--workers", str(workers)] if workers > 1 else command

    def run_item(self, n_events: int, item: str, rep: int, keep_store: bool = False) -> None:
        """Measure one item at one size; the outputs of the chain and the scripts are checked against each other."""
        label = format_count(n_events)
        sample = self.samples[n_events]
        name = f"{label}_{item}_{rep}"
        if item == "raw":
            command = [sys.executable, "-m", "bench.raw_read", self._sample_json(n_events)]
            run = self.measure(name, [*command, "--chunk-size", str(self.chunk_size)], self.env(n_events))
        elif item in {"baseline", "coffea"}:
            run = self.run_script(n_events, item, name)
        elif item in {"chain", "chain_nothread", "chain_w2"}:
            store = self.workdir / f"store_{name}"
            shutil.rmtree(store, ignore_errors=True)
            env = self.env(n_events, store)
            if item == "chain_nothread":
                # as many task processes as cores: no parquet writing thread (cf.io.writes_in_background)
                env[TASK_PROCESSES_ENV] = str(len(os.sched_getaffinity(0)))
            run = self.measure(name, self.chain_command(workers=2 if item == "chain_w2" else 1), env)
            self._check_outputs(label, item, chain_stats(store))
            self._check_columns(label, item, chain_event_files(store, DATASETS))
            if item == "chain":
                # the same command again on the complete store: only the completeness checks
                complete = self.measure(f"{name}_complete", self.chain_command(), env)
                self.record("sizes", label, "chain_complete").append(complete.to_dict())
            if keep_store:
                self.results.setdefault("kept_store", str(store))
            else:
                shutil.rmtree(store, ignore_errors=True)
        else:
            raise ValueError(f"unknown item {item}")
        run.output.pop("stats", None)
        run.output.setdefault("events", sample.total_events)
        self.record("sizes", label, item).append(run.to_dict())

    def run_script(self, n_events: int, item: str, name: str) -> Run:
        """Measure a plain script (``baseline``: bench/baseline.py, ``coffea``: bench/coffea_peer.py) and check it."""
        label = format_count(n_events)
        out_dir = self.workdir / f"{item}_{name}"
        shutil.rmtree(out_dir, ignore_errors=True)
        if item == "coffea":
            command = [sys.executable, "-m", "bench.coffea_peer", self._fileset_json(n_events)]
        else:
            command = [sys.executable, "-m", "bench.baseline", self._sample_json(n_events)]
        command += [str(out_dir), "--chunk-size", str(self.chunk_size)]
        run = self.measure(name, command, self.env(n_events))
        self._check_outputs(label, item, run.output.get("stats", {}))
        self._check_columns(label, item, script_event_files(out_dir, DATASETS))
        shutil.rmtree(out_dir, ignore_errors=True)
        return run

    def _sample_json(self, n_events: int) -> str:
        return str(Path(self.env(n_events)["CF_DATA"]) / "sample.json")

    def _fileset_json(self, n_events: int) -> str:
        """The coffea peer's fileset of a sample (bench/fileset.py), written on first use (not timed)."""
        path = Path(self.env(n_events)["CF_DATA"]) / "coffea_fileset.json"
        if str(path) not in self.filesets:
            command = [sys.executable, "-m", "bench.fileset", self._sample_json(n_events), str(path)]
            subprocess.run(command, env=self.env(n_events), cwd=self.base, check=True)
            self.filesets.add(str(path))
        return str(path)

    def _check_outputs(self, label: str, source: str, stats: dict[str, dict[str, list[float]]]) -> None:
        """Compare the ML inputs (events and weight sums per dataset and fold) of the chain and the scripts."""
        checks = self.results.setdefault("checks", {}).setdefault(label, {})
        reference = checks.get("reference")
        if reference is None:
            checks["reference"] = {"source": source, "stats": stats}
            return
        for dataset in DATASETS:
            ours, theirs = stats[dataset], reference["stats"][dataset]
            same_counts = list(ours["n_events"]) == list(theirs["n_events"])
            same_weights = all(
                math.isclose(a, b, rel_tol=WEIGHT_RTOL, abs_tol=1e-9)
                for a, b in zip(ours["sum_weights"], theirs["sum_weights"], strict=True)
            )
            if not (same_counts and same_weights):
                raise BenchError(
                    f"{source} and {reference['source']} disagree on the ML inputs of {dataset} at {label}: "
                    f"{ours} vs {theirs}"
                )
        checks[f"{source}_agrees"] = True

    def _check_columns(self, label: str, source: str, files: EventFiles) -> None:
        """Compare the reduced events of a source with those of every source measured before it at this size.

        Only a source's first measurement at a size is compared and kept (hard links below the workdir, so that
        they outlive the store): same events (run, luminosityBlock, event), same columns, same values (floats
        within a few units of their last place, see bench/check.py).
        """
        kept = self.kept_outputs.setdefault(label, {})
        if source in kept:
            return
        empty = [dataset for dataset, per_file in files.items() if not per_file]
        if empty:
            raise BenchError(f"{source} wrote no reduced events of {', '.join(empty)} at {label}")
        checks = self.results.setdefault("checks", {}).setdefault(label, {}).setdefault("columns", {})
        directory = self.workdir / "checks" / label
        kept_files = keep_files(files, directory / source)
        (directory / f"{source}.json").write_text(json.dumps(kept_files))
        for reference in kept:
            agreement = compare_kept(directory, reference, source, self.base)
            checks[f"{source}_vs_{reference}"] = agreement
            _log(
                f"  {source} vs {reference}: {agreement['events']} events, {agreement['columns']} columns, "
                f"{'agree' if agreement['agrees'] else 'DISAGREE'} (max rel. diff {agreement['max_rel_diff']:.1g})"
            )
            if not agreement["agrees"]:
                problems = "; ".join(agreement["problems"][:10])
                raise BenchError(f"{source} and {reference} disagree at {label}: {problems}")
        kept[source] = kept_files

    # profile

    def run_profile(self, n_events: int) -> None:
        """Each chain task of one file on its own and the two fused passes, in one process (``bench.profile``).

        Not a line of the tables: the page's "Where the time goes" shows it. The profiling store is made anew.
        """
        shutil.rmtree(profile_store(data_dir(self.workdir, n_events, self.basket_size)), ignore_errors=True)
        out = self.workdir / "profile.json"
        command = [sys.executable, "-m", "bench.profile", "--events", str(n_events), "--workdir", str(self.workdir)]
        command += ["--basket-size", str(self.basket_size), "--chunk-size", str(self.chunk_size), "--json", str(out)]
        self.measure(f"{format_count(n_events)}_profile", command, dict(os.environ))
        self.results["profile"] = json.loads(out.read_text())

    # ML

    def ml_common(self) -> list[str]:
        return ["--version", "v1", "--config", CONFIG, "--ml-model", ML_MODEL]

    def run_ml(self, n_events: int, items: Sequence[str]) -> None:
        """Training (fold 0) and evaluation (all bench datasets) measurements, each against plain Keras."""
        label = format_count(n_events)
        store = Path(self.results.pop("kept_store", None) or self.workdir / f"store_{label}_ml")
        env = self.env(n_events, store)
        # on a fresh machine the first entry builds the sandbox's venv, which the first training would pay for
        _log("entering the TF sandbox once, which builds its venv where it is missing (not timed)")
        self.measure(f"{label}_ml_sandbox", ["cf_sandbox", KERAS_SANDBOX, "true"], env)
        _log(f"ML inputs in {store} (not timed)")
        inputs = ["law", "run", "bench.tasks.BenchTrainingInputs", "--version", "v1", "--ml-model-settings"]
        self.measure(f"{label}_ml_inputs", [*inputs, ml_settings(self.epochs)], env)
        if "train" in items:
            self.measure_training(label, store, env)
        evaluations = [item for item in items if item.startswith(("eval_", "predict_"))]
        if evaluations:
            self.measure_evaluation(label, store, env, evaluations)
        shutil.rmtree(store, ignore_errors=True)

    def measure_training(self, label: str, store: Path, env: dict[str, str]) -> None:
        """``cf.MLTraining`` of fold 0, both variants, against plain ``keras.fit`` on the same arrays."""
        settings = ml_settings(self.epochs)
        train = ["law", "run", "cf.MLTraining", *self.ml_common(), "--ml-model-settings"]
        # like plain keras.fit, without TensorFlow's op determinism; and the default, bit-identical re-training
        variants = {"train_cf": [f"{settings},deterministic=false"], "train_cf_deterministic": [settings]}
        plain_train = ["cf_sandbox", "venv_ml_tf", "python", "-m", "bench.train_plain", str(store)]
        plain_train += ["--epochs", str(self.epochs)]

        def cf_training(key: str, extra: list[str]) -> Callable[[int], None]:
            # each run trains fold 0 anew: every cf.MLTraining output is removed (the variants have other paths)
            def run_it(rep: int) -> None:
                shutil.rmtree(store / "analysis_template" / "cf.MLTraining", ignore_errors=True)
                run = self.measure(f"{label}_{key}_{rep}", [*train, *extra, "--branch", "0"], env)
                (metrics_path,) = glob.glob(
                    str(store / "**" / "cf.MLTraining" / "**" / "mlmodel_f0of*" / "metrics.json"), recursive=True
                )
                metrics = json.loads(Path(metrics_path).read_text())
                run.output = {
                    "n_fit": sum(metrics["n_events_fit"].values()),
                    "epochs": metrics["epochs_run"],
                    "load_fit_seconds": metrics["fit_seconds"],
                    "total_seconds": metrics["total_seconds"],
                }
                self.record("ml", key).append(run.to_dict())

            return run_it

        def plain_training(rep: int) -> None:
            run = self.measure(f"{label}_train_plain_{rep}", plain_train, env)
            self.record("ml", "train_plain").append(run.to_dict())

        steps = [*(cf_training(key, extra) for key, extra in variants.items()), plain_training]
        self.interleave(steps, reps=self.ml_reps)
        # the last variant trained may be deterministic=false (an even number of repetitions): its fold 0 would be
        # a second model of that fold next to the evaluation's, which are those of the default settings
        shutil.rmtree(store / "analysis_template" / "cf.MLTraining", ignore_errors=True)

    def measure_evaluation(self, label: str, store: Path, env: dict[str, str], evaluations: list[str]) -> None:
        """``cf.MLEvaluation`` of all bench datasets (ONNX, Keras) against plain ``model.predict``."""
        settings = ml_settings(self.epochs)
        _log("training the folds for the evaluation (not timed)")
        train = ["law", "run", "cf.MLTraining", *self.ml_common(), "--ml-model-settings", settings]
        self.measure(f"{label}_train_rest", train, env)
        evaluation = ["law", "run", "bench.tasks.BenchEvaluation", "--version", "v1"]
        predict = ["cf_sandbox", "venv_ml_tf", "python", "-m", "bench.predict_plain", str(store)]

        def cf_evaluation(key: str) -> Callable[[int], None]:
            # ONNX: no sandbox; Keras: each MLEvaluation workflow (dataset) enters the TF sandbox once, or,
            # "in_sandbox", law itself runs in it
            backend = key.split("_")[1]
            sandbox = ["cf_sandbox", KERAS_SANDBOX] if key.endswith("_in_sandbox") else []

            def run_it(rep: int) -> None:
                shutil.rmtree(store / "analysis_template" / "cf.MLEvaluation", ignore_errors=True)
                command = [*sandbox, *evaluation, "--ml-model-settings", f"{settings},evaluation_backend={backend}"]
                run = self.measure(f"{label}_{key}_{rep}", command, env)
                run.output = {"events": evaluation_rows(store)}
                self.record("ml", key).append(run.to_dict())

            return run_it

        def plain_predict(rep: int) -> None:
            out_dir = self.workdir / "predict_plain"
            shutil.rmtree(out_dir, ignore_errors=True)
            run = self.measure(f"{label}_predict_plain_{rep}", [*predict, str(out_dir)], env)
            shutil.rmtree(out_dir, ignore_errors=True)
            self.record("ml", "predict_plain").append(run.to_dict())

        steps = [plain_predict if key == "predict_plain" else cf_evaluation(key) for key in evaluations]
        self.interleave(steps, reps=self.ml_reps)

    def interleave(self, steps: Sequence[Callable[[int], None]], reps: int | None = None) -> None:
        """Run every step once per repetition, in alternating order (A B C, C B A, A B C, ...)."""
        for rep in range(self.reps if reps is None else reps):
            for step in steps if rep % 2 == 0 else list(reversed(steps)):
                step(rep)

    # setup.sh

    def measure_setup(self, reps: int = 3) -> None:
        """``source setup.sh`` in a fresh bash, warm (venvs built, law index fresh)."""
        env = {k: v for k, v in os.environ.items() if k not in {"CF_BASE", "LAW_HOME", "LAW_CONFIG_FILE"}}
        env.pop("VIRTUAL_ENV", None)
        command = ["bash", "-c", f"source {self.base / 'setup.sh'}"]
        self.measure("setup_warmup", command, env)
        for rep in range(reps):
            self.record("setup_sh").append(self.measure(f"setup_{rep}", command, env).to_dict())


def compare_kept(directory: Path, reference: str, source: str, cwd: Path) -> dict[str, Any]:
    """``python -m bench.check`` on two kept outputs (``directory/NAME.json``); the agreement it prints.

    A subprocess, so that the harness's memory, which every later measured process inherits into its peak RSS,
    stays small.
    """
    paths = [str(directory / f"{name}.json") for name in (reference, source)]
    result = subprocess.run(
        [sys.executable, "-m", "bench.check", *paths], cwd=cwd, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def chain_stats(store: Path) -> dict[str, dict[str, list[float]]]:
    """Events and weight sums per fold of each dataset's PrepareMLEvents outputs in a store."""
    stats: dict[str, dict[str, list[float]]] = {}
    for dataset in DATASETS:
        pattern = str(store / "**" / "cf.PrepareMLEvents" / "**" / dataset / "**" / "stats_*.json")
        totals: dict[str, list[float]] = {}
        for path in sorted(glob.glob(pattern, recursive=True)):
            for key, values in json.loads(Path(path).read_text()).items():
                totals[key] = [a + b for a, b in zip(totals.get(key, [0] * len(values)), values, strict=True)]
        stats[dataset] = totals
    return stats


def evaluation_rows(store: Path) -> int:
    """The number of events that the MLEvaluation outputs in a store hold."""
    import pyarrow.parquet as pq

    paths = glob.glob(str(store / "**" / "cf.MLEvaluation" / "**" / "mlcolumns_*.parquet"), recursive=True)
    return sum(pq.ParquetFile(path).metadata.num_rows for path in paths)


def machine_info(base: Path) -> dict[str, Any]:
    """What the numbers were measured on."""
    import awkward
    import numpy
    import pyarrow
    import uproot

    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=base, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024**2, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": {
            "awkward": awkward.__version__,
            "uproot": uproot.__version__,
            "pyarrow": pyarrow.__version__,
            "numpy": numpy.__version__,
        },
        "commit": commit,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the chain, the ML training and the ML evaluation against hand-written scripts.",
    )
    parser.add_argument("--events", default="1M", help="events of the main sample, all four datasets (default 1M)")
    parser.add_argument(
        "--scaling",
        default="4M,8M",
        help="further sample sizes for the scaling of time and peak RSS ('none' to skip; default 4M,8M)",
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions at the main size (default 3)")
    parser.add_argument("--scaling-reps", type=int, default=2, help="repetitions at the scaling sizes (default 2)")
    parser.add_argument(
        "--ml-reps",
        type=int,
        default=5,
        help="repetitions of the ML training and evaluation lines (default 5: their noise per run is ±2-14%%)",
    )
    parser.add_argument(
        "--scaling-items",
        default=",".join(SCALING_ITEMS),
        help=f"what to measure at the scaling sizes (default and choices: {','.join(SCALING_ITEMS)})",
    )
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the training measurement (default 10)")
    parser.add_argument(
        "--items",
        default=",".join(MAIN_ITEMS),
        help=f"what to measure at the main size (default and choices: {','.join(MAIN_ITEMS)})",
    )
    parser.add_argument(
        "--ml-items",
        default=",".join(ML_ITEMS),
        help=f"ML measurements ('none' to skip; default and choices: {','.join(ML_ITEMS)})",
    )
    parser.add_argument("--skip-ml", action="store_true", help="the same as --ml-items none")
    parser.add_argument("--chunk-size", type=int, default=0, help="events per chunk (default: law.cfg's)")
    parser.add_argument(
        "--basket-size",
        type=int,
        default=DEFAULT_BASKET_SIZE,
        help=f"entries per ROOT basket of the samples (default {DEFAULT_BASKET_SIZE}; 0: the template's writer)",
    )
    parser.add_argument(
        "--workdir",
        default="/tmp/cf_bench",
        help="samples (kept and reused), stores and logs (default /tmp/cf_bench)",
    )
    parser.add_argument(
        "--output",
        default=None,
        help="the results page to write (default: docs/performance.md of the checkout; 'none' for no page)",
    )
    parser.add_argument("--results-json", default=None, help="also write the raw results here (default: in workdir)")
    args = parser.parse_args(argv)
    args.events = parse_count(args.events)
    args.scaling = [] if args.scaling.lower() in {"", "none"} else [parse_count(s) for s in args.scaling.split(",")]
    for option, choices in (("scaling_items", SCALING_ITEMS), ("items", MAIN_ITEMS), ("ml_items", ML_ITEMS)):
        value = getattr(args, option)
        items = [] if value.lower() == "none" else [item for item in value.split(",") if item]
        unknown = set(items) - set(choices)
        if unknown:
            parser.error(f"unknown --{option.replace('_', '-')} {sorted(unknown)}, choose from {','.join(choices)}")
        setattr(args, option, [item for item in choices if item in items])  # in the canonical order
    if args.skip_ml:
        args.ml_items = []
    if min(args.reps, args.scaling_reps, args.ml_reps, args.epochs) < 1:
        parser.error("--reps, --scaling-reps, --ml-reps and --epochs must be at least 1")
    return args


def measure_main_size(bench: Bench, args: argparse.Namespace) -> None:
    """Every item at the main size, interleaved; then the profile of one file's chain tasks."""
    label = format_count(args.events)
    _log(f"main size {label}: {', '.join(args.items)} x {args.reps}, interleaved")
    keep = bool(args.ml_items)
    steps = [
        (
            lambda rep, item=item: bench.run_item(
                args.events, item, rep, keep_store=keep and item == "chain" and rep == 0
            )
        )
        for item in args.items
    ]
    bench.interleave(steps)
    if "chain" in args.items:
        _log(f"profile of one file's chain tasks at {label} (its own times, not a line of the tables)")
        bench.run_profile(args.events)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base_env = os.environ.get("CF_BASE")
    if not base_env or shutil.which("law") is None:
        print("bench: run 'source setup.sh' first (CF_BASE and law are needed)", file=sys.stderr)
        return 2
    base = Path(base_env)
    from cf.analysis import analysis_setting
    from cf.io import DEFAULT_CHUNK_SIZE

    chunk_size = args.chunk_size or int(analysis_setting("chunk_size", DEFAULT_CHUNK_SIZE))
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(workdir / "logs", ignore_errors=True)
    shutil.rmtree(workdir / "checks", ignore_errors=True)
    bench = Bench(
        base=base,
        workdir=workdir,
        chunk_size=chunk_size,
        reps=args.reps,
        epochs=args.epochs,
        basket_size=args.basket_size,
        ml_reps=args.ml_reps,
    )
    started = time.time()
    bench.results.update(
        {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine_info(base),
            "settings": {
                "events": args.events,
                "scaling": args.scaling,
                "scaling_items": args.scaling_items,
                "reps": args.reps,
                "scaling_reps": args.scaling_reps,
                "ml_reps": args.ml_reps,
                "epochs": args.epochs if "train" in args.ml_items else None,
                "items": args.items,
                "ml_items": args.ml_items,
                "chunk_size": chunk_size,
                "basket_size": args.basket_size,
                "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
            },
            "load_start": list(os.getloadavg()),
        }
    )
    for n_events in [args.events, *args.scaling]:
        bench.prepare_sample(n_events)

    measure_main_size(bench, args)
    bench.measure_setup()
    label = format_count(args.events)
    if args.ml_items:
        if "kept_store" not in bench.results:
            _log("the chain for the ML measurements (not timed)")
            store = workdir / f"store_{label}_ml"
            shutil.rmtree(store, ignore_errors=True)
            bench.measure(f"{label}_ml_chain", bench.chain_command(), bench.env(args.events, store))
            bench.results["kept_store"] = str(store)
        bench.run_ml(args.events, args.ml_items)
    for n_events in args.scaling:
        _log(f"scaling size {format_count(n_events)}: {', '.join(args.scaling_items)} x {args.scaling_reps}")
        steps = [(lambda rep, item=item, n=n_events: bench.run_item(n, item, rep)) for item in args.scaling_items]
        bench.interleave(steps, reps=args.scaling_reps)
    shutil.rmtree(workdir / "checks", ignore_errors=True)
    bench.results["load_end"] = list(os.getloadavg())
    bench.results["duration_s"] = time.time() - started

    from bench.report import render

    results_json = Path(args.results_json) if args.results_json else workdir / "results.json"
    results_json.parent.mkdir(parents=True, exist_ok=True)
    results_json.write_text(json.dumps(bench.results, indent=2))
    page = render(bench.results)
    output = base / "docs" / "performance.md" if args.output is None else args.output
    if str(output).lower() != "none":
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(page)
        _log(f"wrote {output}")
    _log(f"results in {results_json}; took {bench.results['duration_s'] / 60:.1f} min")
    print(page.split("<!-- results -->")[1] if "<!-- results -->" in page else page)
    return 0
