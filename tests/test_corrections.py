"""External files, correctionlib corrections, event weights and coffea behaviours.

* ``cf.BundleExternalFiles`` fetches the config's files from local paths, ``https://`` (a local HTTP server) and
  ``root://`` (a real XRootD server), verifies checksums and writes nothing on a bad one;
* the committed correction files are what ``analysis_template.corrections.build`` builds, in correctionlib's schema;
* the calibrators evaluate the JERC file: a changed value in the file changes the calibrated jets;
* the pileup and muon weights, and the histograms of the weight shifts;
* the coffea four-vector code gives the values of the hand-written code it replaced (1e-6).
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest

from analysis_template.config.analysis import analysis_template
from analysis_template.corrections import build
from cf.external import ExternalFile, external_file_paths, external_files, fetch_external_file, file_sha256
from cf.util import UserError
from tests.conftest import LawEnv, LawOutputs, LawRun
from tests.xrootd_server import XRootDServer

CONFIG = "run2_2017_nano_uhh_v11_limited"
CORRECTIONS = Path(build.FOLDER)


@pytest.fixture(scope="module")
def config_inst() -> Any:
    return analysis_template.get_config(CONFIG)


# the correction files


@pytest.mark.parametrize("name", sorted(build.build_files()))
def test_the_committed_correction_files_are_what_the_builder_builds(name: str) -> None:
    assert (CORRECTIONS / name).read_text() == build.dump(build.build_files()[name])


def test_the_jec_file_gives_the_formula_it_replaced() -> None:
    import correctionlib

    corrections = correctionlib.CorrectionSet.from_file(str(CORRECTIONS / "jet_jerc.json"))
    pt, eta = np.meshgrid(np.geomspace(5.0, 3000.0, 40), np.linspace(-4.7, 4.7, 30))
    pt, eta = pt.ravel(), eta.ravel()
    for jet_type in build.JET_TYPES:
        nominal = corrections[f"Template_V1_MC_L2L3Residual_{jet_type}"].evaluate(pt, eta)
        np.testing.assert_allclose(nominal, 1.0 + 0.03 * np.exp(-pt / 60.0) + 0.005 * np.abs(eta), rtol=1e-6)
        total = corrections[f"Template_V1_MC_Total_{jet_type}"].evaluate(pt, eta)
        np.testing.assert_allclose(total, 0.02 + 0.015 * np.abs(eta) / 2.5 + 1.0 / np.maximum(pt, 10.0), rtol=1e-6)


def test_pileup_weights_reweight_the_sample_profile_to_the_data_profile() -> None:
    edges = [float(i) for i in range(build.PILEUP_BINS + 1)]
    mc = np.asarray(build.pileup_profile(build.MC_MEAN_VERTICES, edges))
    assert mc.sum() == pytest.approx(1.0, abs=1e-6)
    weights = build.pileup_weights()
    # the weighted sample has the data profile: its mean number of interactions moves from ~31 to ~33
    centers = np.asarray(edges[:-1]) + 0.5
    for key, mean in (("nominal", 33.0), ("up", 33.0 * 1.046), ("down", 33.0 * 0.954)):
        reweighted = mc * np.asarray(weights[key])
        assert reweighted.sum() == pytest.approx(1.0, abs=1e-3)
        assert np.sum(centers * reweighted) / reweighted.sum() == pytest.approx(mean, rel=0.03)


# external files


def test_declarations_are_checked(config_inst: Any) -> None:
    declared = {f.name: f for f in external_files(config_inst)}
    assert set(declared) == {"jet_jerc", "pileup", "muon_sf"}
    assert declared["jet_jerc"].file_name == "jet_jerc.json"
    bad = [
        ({"x": {"url": "a.json", "md5": "0"}}, "unknown key(s) md5, allowed: url, sha256"),
        ({"x": {"url": "a.json", "sha256": "abc"}}, "sha256 must be 64 hexadecimal digits"),
        ({"x": "ftp://host/a.json"}, "unsupported URL 'ftp://host/a.json', allowed: local paths, https://"),
        ({"x": {"sha256": "0" * 64}}, "give a path or URL, or a mapping with 'url'"),
        ({"a-b": "a.json"}, "use letters, digits and '_' in the name"),
    ]

    class FakeConfig:
        name = "fake"

        def __init__(self, files: dict[str, Any]) -> None:
            self.files = files

        def x(self, key: str, default: Any) -> Any:
            return self.files

    for files, message in bad:
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
            external_files(FakeConfig(files))


def test_fetch_checks_the_checksum_and_leaves_nothing_on_a_mismatch(tmp_path: Path) -> None:
    source = CORRECTIONS / "muon_Z.json"
    checksum = file_sha256(str(source))
    destination = tmp_path / "muon_sf.json"
    assert fetch_external_file(ExternalFile("muon_sf", str(source), checksum), str(destination)) == checksum
    assert destination.read_bytes() == source.read_bytes()
    destination.unlink()
    wrong = ExternalFile("muon_sf", str(source), "0" * 64)
    with pytest.raises(UserError, match=f"has the sha256 {checksum}, but the config declares 0000"):
        fetch_external_file(wrong, str(destination))
    assert not destination.exists()
    with pytest.raises(UserError, match=r"external file not found: /nonexistent/x\.json"):
        fetch_external_file(ExternalFile("x", "/nonexistent/x.json"), str(destination))


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving a temporary folder: (base URL, folder)."""
    folder = tmp_path_factory.mktemp("http")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


def test_fetch_over_http_and_a_missing_url_is_one_clear_error(http_server: tuple[str, Path], tmp_path: Path) -> None:
    base, folder = http_server
    shutil.copy(CORRECTIONS / "puWeights.json", folder / "pu.json")
    destination = tmp_path / "pileup.json"
    fetch_external_file(ExternalFile("pileup", f"{base}/pu.json"), str(destination))
    assert destination.read_bytes() == (CORRECTIONS / "puWeights.json").read_bytes()
    with pytest.raises(UserError, match=r"external file 'pileup': cannot fetch http://127.0.0.1:\d+/nope.json: .*404"):
        fetch_external_file(ExternalFile("pileup", f"{base}/nope.json"), str(tmp_path / "other.json"))
    assert not (tmp_path / "other.json").exists()


def test_fetch_over_xrootd(xrootd_server: XRootDServer, tmp_path: Path) -> None:
    xrootd_server.add_file(CORRECTIONS / "jet_jerc.json", "jerc.json")
    destination = tmp_path / "jet_jerc.json"
    fetch_external_file(ExternalFile("jet_jerc", xrootd_server.url("jerc.json")), str(destination))
    assert destination.read_bytes() == (CORRECTIONS / "jet_jerc.json").read_bytes()
    with pytest.raises(UserError, match="external file 'jet_jerc': cannot fetch root://"):
        fetch_external_file(ExternalFile("jet_jerc", xrootd_server.url("nope.json")), str(tmp_path / "x.json"))


def test_bundle_external_files_through_law_run(law_env: LawEnv, law_run: LawRun, law_outputs: LawOutputs) -> None:
    law_run("cf.BundleExternalFiles", "--config", CONFIG, env=law_env.env)
    (manifest_path,) = law_outputs("cf.BundleExternalFiles", "--config", CONFIG, env=law_env.env)
    manifest = json.loads(manifest_path.read_text())
    assert sorted(manifest["files"]) == ["jet_jerc", "muon_sf", "pileup"]
    for name, entry in manifest["files"].items():
        bundled = manifest_path.parent / entry["file"]
        assert entry["sha256"] == file_sha256(str(bundled))
        assert bundled.read_bytes() == (CORRECTIONS / Path(entry["source"]).name).read_bytes(), name
    # the folder is named by the declarations, not by a version
    assert manifest_path.parent.name.startswith("files__")
    assert not list(manifest_path.parent.glob(".*"))


def test_a_config_without_external_files_is_one_clear_error(
    config_inst: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CF_STORE_LOCAL", str(tmp_path / "store"))
    monkeypatch.setitem(config_inst.aux, "external_files", {})
    with pytest.raises(UserError, match=f"config '{CONFIG}' declares no external files"):
        _bundle(tmp_path, config_inst, {})
    assert not [path for path in (tmp_path / "store").rglob("*") if path.is_file()]


# the calibrators evaluate the file


def _bundle(tmp_path: Path, config_inst: Any, files: dict[str, str]) -> Any:
    """Run cf.BundleExternalFiles in this process for the config with ``files`` declared; its output target."""
    from cf.tasks.external import BundleExternalFiles

    config_inst.aux["external_files"] = files
    task = BundleExternalFiles(config=config_inst.name)
    task.run()
    return task.output()


def _calibrated_jets(config_inst: Any, bundle: Any, events: ak.Array, shift: str = "nominal") -> ak.Array:
    from analysis_template.calibration.default import jec

    calibrator = jec(config_inst=config_inst, dataset_inst=config_inst.get_dataset("tt_sl_powheg"), shift=shift)
    calibrator.run_setup(task=None, reqs={}, inputs={"external_files": bundle}, reader_targets={})
    return calibrator(events)


def _events() -> ak.Array:
    jets = ak.Array(
        [[{"pt": 30.0, "eta": 0.5, "phi": 0.1, "mass": 5.0}, {"pt": 80.0, "eta": -2.0, "phi": 2.0, "mass": 9.0}], []]
    )
    return ak.zip({"Jet": jets, "MET": ak.zip({"pt": [50.0, 20.0], "phi": [0.3, -1.0]})}, depth_limit=1)


def test_a_changed_value_in_the_jerc_file_changes_the_calibrated_jets(
    config_inst: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CF_STORE_LOCAL", str(tmp_path / "store"))
    monkeypatch.setitem(config_inst.aux, "external_files", dict(config_inst.x.external_files))
    original = config_inst.x.external_files
    nominal = _calibrated_jets(config_inst, _bundle(tmp_path, config_inst, dict(original)), _events())
    pt = np.asarray([30.0, 80.0])
    expected = pt * (1.0 + 0.03 * np.exp(-pt / 60.0) + 0.005 * np.abs([0.5, -2.0]))
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(nominal.Jet.pt)), expected, rtol=1e-6)

    changed = tmp_path / "jet_jerc.json"
    changed.write_text((CORRECTIONS / "jet_jerc.json").read_text().replace("1+0.03*exp", "1+0.05*exp"))
    bundle = _bundle(tmp_path, config_inst, {**original, "jet_jerc": str(changed)})
    assert external_file_paths(bundle)["jet_jerc"] != str(changed)  # a copy in the store
    calibrated = _calibrated_jets(config_inst, bundle, _events())
    expected = pt * (1.0 + 0.05 * np.exp(-pt / 60.0) + 0.005 * np.abs([0.5, -2.0]))
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(calibrated.Jet.pt)), expected, rtol=1e-6)


def test_jec_shifts_and_met_propagation_equal_the_hand_written_formulas(
    config_inst: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CF_STORE_LOCAL", str(tmp_path / "store"))
    monkeypatch.setitem(config_inst.aux, "external_files", dict(config_inst.x.external_files))
    bundle = _bundle(tmp_path, config_inst, dict(config_inst.x.external_files))
    events = _events()
    raw_pt, eta, phi = np.asarray([30.0, 80.0]), np.asarray([0.5, -2.0]), np.asarray([0.1, 2.0])
    scale = 1.0 + 0.03 * np.exp(-raw_pt / 60.0) + 0.005 * np.abs(eta)
    uncertainty = 0.02 + 0.015 * np.abs(eta) / 2.5 + 1.0 / np.maximum(raw_pt * scale, 10.0)
    for shift, sign in (("nominal", 0.0), ("jec_up", 1.0), ("jec_down", -1.0)):
        calibrated = _calibrated_jets(config_inst, bundle, events, shift)
        new_pt = raw_pt * scale * (1.0 + sign * uncertainty)
        np.testing.assert_allclose(ak.to_numpy(ak.flatten(calibrated.Jet.pt)), new_pt, rtol=1e-6)
        # the previous code: MET minus the jets' change in x and y
        met_x = 50.0 * np.cos(0.3) - np.sum((new_pt - raw_pt) * np.cos(phi))
        met_y = 50.0 * np.sin(0.3) - np.sum((new_pt - raw_pt) * np.sin(phi))
        assert float(calibrated.MET.pt[0]) == pytest.approx(np.hypot(met_x, met_y), rel=1e-6)
        assert float(calibrated.MET.phi[0]) == pytest.approx(np.arctan2(met_y, met_x), rel=1e-6)
        assert float(calibrated.MET.pt[1]) == pytest.approx(20.0, rel=1e-6)


# coffea behaviours


def test_coffea_delta_r_and_masses_equal_the_hand_written_arithmetic() -> None:
    from analysis_template.production.default import leading_pair_mass, same_flavour_pair_mass
    from cf.behaviour import attach_coffea_behavior, four_vectors, min_delta_r
    from cf.columnar_util import FlatObjects

    rng = np.random.default_rng(3)
    counts = rng.integers(0, 5, 300)
    n = int(counts.sum())

    def objects(mass: float) -> ak.Array:
        fields = {
            "pt": rng.uniform(20, 200, n),
            "eta": rng.uniform(-2.4, 2.4, n),
            "phi": rng.uniform(-np.pi, np.pi, n),
            "mass": np.full(n, mass),
            "charge": rng.choice([-1, 1], n),
        }
        return ak.unflatten(ak.zip(fields), counts)

    jets, muons = objects(10.0), objects(0.105658)
    events = attach_coffea_behavior(ak.zip({"Jet": jets, "Muon": muons, "Electron": objects(0.000511)}, depth_limit=1))
    # the previous ΔR: a cartesian product with phi wrapped into [-pi, pi)
    pairs = ak.cartesian({"a": jets, "b": muons}, axis=1, nested=True)
    delta_phi = (pairs.a.phi - pairs.b.phi + np.pi) % (2 * np.pi) - np.pi
    expected = ak.fill_none(ak.min(np.hypot(pairs.a.eta - pairs.b.eta, delta_phi), axis=2), np.inf)
    jet_vectors, muon_vectors = four_vectors(events.Jet, ("pt", "eta", "phi", "mass")), four_vectors(events.Muon)
    got = min_delta_r(events.Jet, events.Muon)
    np.testing.assert_allclose(got, ak.to_numpy(ak.flatten(expected)), rtol=1e-6)
    # exactly coffea's metric_table of the jagged four-vectors, which min_delta_r replaces for speed
    table = ak.fill_none(ak.min(jet_vectors.metric_table(muon_vectors), axis=2), np.inf)
    np.testing.assert_array_equal(got, ak.to_numpy(ak.flatten(table)))
    # single precision (as NanoAOD stores it) is compared in double precision, as four_vectors does
    jets32, muons32 = (ak.values_astype(array[["pt", "eta", "phi"]], np.float32) for array in (jets, muons))
    jets32_vectors = four_vectors(jets32, ("pt", "eta", "phi"))
    table32 = ak.fill_none(
        ak.min(jets32_vectors.metric_table(four_vectors(muons32, ("pt", "eta", "phi"))), axis=2), np.inf
    )
    np.testing.assert_array_equal(min_delta_r(jets32, muons32), ak.to_numpy(ak.flatten(table32)))
    # the selected muons given flat (FlatObjects.selected) are the jagged selected muons
    passing = ak.to_numpy(ak.flatten(muons32.pt)) > 80.0
    flat_selected = FlatObjects(muons32).selected(passing)
    jagged_selected = muons32[ak.unflatten(passing, counts)]
    np.testing.assert_array_equal(min_delta_r(FlatObjects(jets32), flat_selected), min_delta_r(jets32, jagged_selected))

    # the previous invariant mass: from px, py, pz and E of both objects
    def pair_mass(a: Any, b: Any) -> np.ndarray:
        px = a.pt * np.cos(a.phi) + b.pt * np.cos(b.phi)
        py = a.pt * np.sin(a.phi) + b.pt * np.sin(b.phi)
        pz = a.pt * np.sinh(a.eta) + b.pt * np.sinh(b.eta)
        energy = np.sqrt((a.pt * np.cosh(a.eta)) ** 2 + a.mass**2) + np.sqrt((b.pt * np.cosh(b.eta)) ** 2 + b.mass**2)
        return np.sqrt(np.maximum(energy**2 - px**2 - py**2 - pz**2, 0.0))

    has_pair = ak.to_numpy(counts >= 2)
    masses = leading_pair_mass(events.Jet)
    first, second = jets[has_pair][:, 0], jets[has_pair][:, 1]
    np.testing.assert_allclose(masses[has_pair], ak.to_numpy(pair_mass(first, second)), rtol=1e-6)
    assert np.all(masses[~has_pair] == -99999.0)
    # the two leading muons (where there are at least as many as electrons) or electrons, of opposite sign
    m_ll = same_flavour_pair_mass(events)
    n_electron, n_muon = ak.to_list(ak.num(events.Electron, axis=1)), ak.to_list(ak.num(events.Muon, axis=1))
    n_pairs = 0
    for i, event in enumerate(events):
        leptons = event.Muon if n_muon[i] >= n_electron[i] else event.Electron
        if len(leptons) >= 2 and leptons.charge[0] + leptons.charge[1] == 0:
            n_pairs += 1
            np.testing.assert_allclose(m_ll[i], pair_mass(leptons[0], leptons[1]), rtol=1e-6)
        else:
            assert m_ll[i] == -99999.0
    assert n_pairs > 10


def test_behaviours_are_not_written_to_parquet(tmp_path: Path) -> None:
    from cf.behaviour import attach_coffea_behavior
    from cf.io import ParquetWriter

    events = attach_coffea_behavior(_events())
    # jets without a charge are plain four-vectors (coffea's Jet type needs one)
    assert events.Jet.layout.content.parameter("__record__") == "PtEtaPhiMLorentzVector"
    path = tmp_path / "x.parquet"
    with ParquetWriter(str(path)) as writer:
        writer.write(events)
    back = ak.from_parquet(str(path))
    assert back.Jet.layout.content.parameter("__record__") is None
    assert not back.behavior
    assert ak.to_list(back.Jet.pt) == ak.to_list(_events().Jet.pt)


# grep: no hand-written four-vector arithmetic in the analysis code


def test_no_hand_written_four_vector_or_delta_r_arithmetic_in_the_analysis() -> None:
    """The analysis package uses coffea's four-vectors (the sample simulator lives apart, in ``sample/``)."""
    import re

    root = Path(__file__).resolve().parent.parent / "analysis_template"
    trigonometry = r"(cosh|sinh|hypot|arctan2|atan2|arccos|acos|cos|sin|tan)"
    pattern = re.compile(rf"\b(np|numpy|math)\.{trigonometry}\b|% \(2 \* np\.pi\)")
    paths = sorted(root.rglob("*.py"))
    assert len(paths) > 10
    for path in paths:
        assert not pattern.search(path.read_text()), f"{path} computes four-vectors by hand"
