"""The analysis functions on a real CMS NanoAOD v12 file (200 tt events from coffea's test samples).

The file comes from the coffea sdist on PyPI (``pip download``, ~30 MB, cached in ``$CF_DATA/testdata`` of the
real environment so that it is downloaded once). It is read through the cf I/O and run through the analysis'
calibration, selection, reduction and production in-process, with the real config.

Known differences between the embedded sample (NanoAOD v11 layout) and this file, which the tests pin down:

* ``Electron_mvaFall17V2Iso_WP90`` does not exist in v12; its successor is ``Electron_mvaIso_WP90``.
* This (skimmed) file has no ``Tau`` collection at all; a full v12 file has one, but with the DeepTau
  ``2018v2p5`` ids (``Tau_idDeepTau2018v2p5VSjet``, ...) instead of ``2017v2p1``.
* ``Jet_jetId`` and ``PV_npvs`` are ``uint8`` (``int32`` in the embedded sample); the bit logic works unchanged.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import awkward as ak
import numpy as np
import order as od
import pytest

# importing the modules registers the analysis' calibrators, selector and producers
from analysis_template.calibration import default as calibration
from analysis_template.config.analysis import analysis_template
from analysis_template.config.config_run2_2017 import KEEP_COLUMNS
from analysis_template.production import default as production
from analysis_template.selection import default as selection
from cf.columnar_util import filter_routes, set_ak_column
from cf.functions import ColumnContext, SelectionResult, calibrators, producers, selectors
from cf.io import MissingColumnError, RootSource, atomic_path, iter_event_chunks
from cf.tasks.reduction import apply_selection
from cf.tasks.selection import SelectEvents, selection_stats

pytestmark = [pytest.mark.network, pytest.mark.slow]

COFFEA = "coffea==2026.9.0"
SDIST = "coffea-2026.9.0.tar.gz"
MEMBER = "coffea-2026.9.0/tests/samples/nano_tt_v12.root"
N_EVENTS = 200
#: Messages of pip / urllib3 that mean the package registry cannot be reached (then the tests skip).
UNREACHABLE = (
    "Network is unreachable",
    "Temporary failure in name resolution",
    "Name or service not known",
    "NewConnectionError",
    "Failed to establish a new connection",
    "ConnectTimeoutError",
    "Connection refused",
    "ProxyError",
    "Max retries exceeded",
    "No route to host",
)
#: The replacements the analysis needs on v12 (see the module docstring); absent from this file.
V12_MISSING = {"Electron.mvaFall17V2Iso_WP90"}


def _download_sdist(cache: Path) -> Path:
    """The coffea sdist in ``cache``, downloaded with pip when missing; skips if PyPI is unreachable."""
    sdist = cache / SDIST
    if sdist.is_file():
        return sdist
    download_dir = cache / f".download-{os.getpid()}"
    command = [sys.executable, "-m", "pip", "download", COFFEA, "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "--retries", "2", "--timeout", "30", "-d", str(download_dir)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    downloaded = download_dir / SDIST
    if result.returncode != 0 or not downloaded.is_file():
        output = result.stdout + result.stderr
        if any(message in output for message in UNREACHABLE):
            pytest.skip(f"the package registry is unreachable, cannot download {COFFEA}: {output.strip()[-300:]}")
        pytest.fail(f"'{' '.join(command)}' failed ({result.returncode}):\n{output[-3000:]}")
    os.replace(downloaded, sdist)
    download_dir.rmdir()
    return sdist


@pytest.fixture(scope="module")
def nano_v12() -> Path:
    """``tests/samples/nano_tt_v12.root`` of the coffea sdist, cached in ``$CF_DATA/testdata``."""
    data = os.environ.get("CF_DATA")
    if not data:
        pytest.skip("CF_DATA is not set: run the tests after 'source setup.sh'")
    cache = Path(data) / "testdata"
    path = cache / "nano_tt_v12.root"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with tarfile.open(_download_sdist(cache)) as tar:
            member = tar.extractfile(MEMBER)
            assert member is not None, f"{MEMBER} is not a file in {SDIST}"
            with atomic_path(path) as tmp_path:
                Path(tmp_path).write_bytes(member.read())
    return path


@pytest.fixture(scope="module")
def source(nano_v12: Path) -> RootSource:
    return RootSource(str(nano_v12))


@pytest.fixture(scope="module")
def config() -> od.Config:
    return analysis_template.get_config("run2_2017_nano_uhh_v11_limited")


@pytest.fixture(scope="module")
def ctx(config: od.Config) -> ColumnContext:
    return ColumnContext(config, config.get_dataset("tt_sl_powheg"), "nominal")


def _missing(source: RootSource, columns: frozenset[str] | set[str] | list[str]) -> set[str]:
    return {column for column in columns if not filter_routes(source.routes(), [column])}


def _read_all(source: RootSource, uses: set[str]) -> ak.Array:
    """All events, read in chunks of 64 (so that the chunking is exercised on the real file too)."""
    chunks = [chunk for chunk, _, _ in iter_event_chunks([source], uses, chunk_size=64)]
    assert [len(c) for c in chunks] == [64, 64, 64, 8]
    return ak.concatenate(chunks)


def adapt_v12(events: ak.Array) -> ak.Array:
    """What the analysis needs on this file: the v12 electron MVA id under its v11 name, and an empty Tau
    collection (this skimmed file has none; a full v12 file would need its 2018v2p5 DeepTau ids mapped).
    """
    events = set_ak_column(events, "Electron.mvaFall17V2Iso_WP90", events.Electron.mvaIso_WP90)
    fields = dict.fromkeys(("pt", "eta", "phi", "mass"), np.float32)
    fields |= {f"idDeepTau2017v2p1VS{x}": np.uint8 for x in ("jet", "e", "mu")}
    taus = ak.zip({name: np.zeros(0, dtype) for name, dtype in fields.items()})
    return ak.with_field(events, ak.unflatten(taus, np.zeros(len(events), dtype=np.int64)), "Tau")


def test_file_layout(source: RootSource) -> None:
    routes = {str(route) for route in source.routes()}
    assert source.n_events == N_EVENTS
    assert {"Jet.pt", "Jet.jetId", "Electron.mvaIso_WP90", "Muon.tightId", "MET.pt", "genWeight", "event"} <= routes
    assert not [r for r in routes if r.startswith("Tau.")]
    # uproot-written per-branch counters (nJet_pt, ...) are hidden like nJet
    assert not [r for r in routes if r.split(".")[0] in {"nJet", "nElectron", "nMuon"}]
    jets = source.read(list(filter_routes(source.routes(), ["Jet.jetId"])), 0, 10).Jet
    assert str(jets.jetId.type.content.content) == "uint8"


def test_declared_uses_missing_in_v12(source: RootSource) -> None:
    """Exactly which declared columns the real file lacks: Tau.* and the v11 electron MVA id, nothing else."""
    for name in calibrators.names():
        assert _missing(source, calibrators.get(name).columns_used(is_data=False)) == set(), name
    selector_uses = selectors.get("default").columns_used(is_data=False)
    assert _missing(source, selector_uses) == {c for c in selector_uses if c.startswith("Tau.")} | V12_MISSING
    for name in ("features", "default"):
        producer_uses = producers.get(name).columns_used(is_data=False)
        assert _missing(source, producer_uses) == {c for c in producer_uses if c.startswith("Tau.")}
    assert _missing(source, producers.get("normalization_weight").columns_used(is_data=False)) == set()
    assert _missing(source, KEEP_COLUMNS) == {c for c in KEEP_COLUMNS if c.startswith("Tau.")}


def test_selector_on_v12_fails_naming_the_missing_column(source: RootSource, nano_v12: Path) -> None:
    uses = selectors.get("default").columns_used(is_data=False)
    first_missing = min(_missing(source, uses))
    assert first_missing == "Electron.mvaFall17V2Iso_WP90"
    message = rf"^column '{first_missing}' is declared in 'uses' but not found in {re.escape(str(nano_v12))}; available"
    with pytest.raises(MissingColumnError, match=message):
        next(iter_event_chunks([source], uses))
    with pytest.raises(MissingColumnError, match=r"column 'Tau\.pt' is declared in 'uses'"):
        next(iter_event_chunks([source], producers.get("features").uses))


def test_calibration_on_v12(source: RootSource, config: od.Config) -> None:
    uses = set(calibrators.get("jec").uses)
    events = _read_all(source, uses)
    assert len(events) == N_EVENTS
    results = {
        shift: calibration.jec(events, ColumnContext(config, config.get_dataset("tt_sl_powheg"), shift))
        for shift in ("nominal", "jec_up", "jec_down")
    }
    nominal = calibrators.get("skip_jecunc")(events, ColumnContext(config, config.get_dataset("tt_sl_powheg")))
    raw_pt = ak.to_numpy(ak.flatten(events.Jet.pt))
    assert ak.to_list(ak.num(nominal.Jet, axis=1)) == ak.to_list(ak.num(events.Jet, axis=1))
    assert np.array_equal(ak.to_numpy(ak.flatten(nominal.Jet.pt_raw)), raw_pt)
    assert np.all(ak.to_numpy(ak.flatten(nominal.Jet.pt)) > raw_pt)
    up, nom, down = (ak.to_numpy(ak.flatten(results[s].Jet.pt)) for s in ("jec_up", "nominal", "jec_down"))
    assert np.all(up > nom)
    assert np.all(nom > down)
    assert np.allclose(nom, ak.to_numpy(ak.flatten(nominal.Jet.pt)))
    met = ak.to_numpy(results["jec_up"].MET.pt)
    assert met.shape == (N_EVENTS,)
    assert np.all(np.isfinite(met))
    assert np.all(met >= 0)


def test_chain_on_v12_with_adaptation(source: RootSource, config: od.Config, ctx: ColumnContext) -> None:
    """Calibrate, select, reduce and produce in-process; the selector needs the v12 adaptation above."""
    select, produce = selectors.get("default"), producers.get("default")
    assert (select, produce) == (selection.default, production.default)
    needed = set(calibrators.get("skip_jecunc").uses) | {"genWeight", "event"}
    needed |= (select.columns_used(is_data=False) | produce.columns_used(is_data=False)) - _missing(
        source, select.columns_used(is_data=False) | produce.columns_used(is_data=False)
    )
    events = _read_all(source, needed)
    events = calibrators.get("skip_jecunc")(events, ctx)
    events, result = select(adapt_v12(events), ctx)
    assert isinstance(result, SelectionResult)
    stats = selection_stats(events, result.event, is_mc=True)
    assert stats["n_events"] == N_EVENTS
    assert 0 < stats["n_events_selected"] < N_EVENTS
    assert stats["sum_mc_weight"] == pytest.approx(float(np.sum(ak.to_numpy(events.genWeight), dtype=np.float64)))

    selection_columns = SelectEvents.selection_columns(events, result, sorted(select.produces))
    reduced = apply_selection(set_ak_column(events, "cf_selection", selection_columns.cf_selection))
    assert len(reduced) == stats["n_events_selected"]

    produced = produce(reduced, ColumnContext(ctx.config_inst, ctx.dataset_inst, "nominal", selection_stats=stats))
    n_selected = stats["n_events_selected"]
    for column in produce.produces:
        assert len(produced[column]) == n_selected, column
    assert ak.all(produced.n_jet >= 2)
    assert ak.all(produced.n_jet == ak.num(reduced.Jet, axis=1))
    assert ak.all(produced.ht >= 0.0)
    assert ak.all(produced.ht > 50.0)
    assert ak.all(produced.n_tau == 0)
    assert ak.all(ak.any(produced.category_ids == 1, axis=1))
    xsec = ctx.dataset_inst.processes.get_first().get_xsec(13).nominal
    expected = xsec * config.x.luminosity.nominal * stats["sum_mc_weight_selected"] / stats["sum_mc_weight"]
    weights = ak.to_numpy(produced.normalization_weight).astype(np.float64)
    assert np.all(np.isfinite(weights))
    assert weights.sum() == pytest.approx(expected, rel=1e-4)
