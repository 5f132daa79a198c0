"""Tests of the embedded sample generator: determinism, event identity, file layout and physics content."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from sample import create_file, draw_counts, generate_events, write_nanoaod

N_EVENTS = 20_000


#: The processes of the non-resonant analysis (the resonant signals have a test of their own).
NON_RESONANT = ("hh_ggf_bbtautau", "tt_sl", "tt_dl", "dy_lep_m50")


@pytest.fixture(scope="module")
def mc_events() -> dict[str, ak.Array]:
    """20k MC events of each process."""
    return {name: generate_events({name: N_EVENTS}, seed=11, file_index=0, is_data=False) for name in NON_RESONANT}


def _invariant_mass(first: ak.Array, second: ak.Array) -> np.ndarray:
    """Invariant mass of two objects with pt, eta, phi and mass fields."""
    p4 = []
    for obj in (first, second):
        pt, eta, phi, mass = (ak.to_numpy(obj[name]).astype(np.float64) for name in ("pt", "eta", "phi", "mass"))
        p4.append(np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), np.hypot(pt * np.cosh(eta), mass)]))
    total = p4[0] + p4[1]
    return np.sqrt(np.maximum(total[3] ** 2 - np.sum(total[:3] ** 2, axis=0), 0.0))


def _mode(values: np.ndarray, low: float, high: float, bins: int) -> float:
    """Centre of the most populated histogram bin."""
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    return float(0.5 * (edges[counts.argmax()] + edges[counts.argmax() + 1]))


def test_same_inputs_give_identical_events() -> None:
    first = generate_events({"tt_sl": 500}, seed=3, file_index=1, is_data=False)
    second = generate_events({"tt_sl": 500}, seed=3, file_index=1, is_data=False)
    assert ak.array_equal(first, second)


def test_other_file_index_or_seed_gives_other_events() -> None:
    reference = generate_events({"dy_lep_m50": 500}, seed=3, file_index=0, is_data=False)
    other_file = generate_events({"dy_lep_m50": 500}, seed=3, file_index=1, is_data=False)
    other_seed = generate_events({"dy_lep_m50": 500}, seed=4, file_index=0, is_data=False)
    for other in (other_file, other_seed):
        assert not np.array_equal(ak.to_numpy(reference.MET.pt), ak.to_numpy(other.MET.pt))


def test_mc_event_identity_is_unique_within_a_dataset() -> None:
    files = [generate_events({"hh_ggf_bbtautau": 1200}, seed=1, file_index=index, is_data=False) for index in (0, 1)]
    events = np.concatenate([ak.to_numpy(f.event) for f in files])
    assert events.dtype == np.uint64
    assert len(np.unique(events)) == 2400
    assert np.all(ak.to_numpy(files[0].run) == 1)
    np.testing.assert_array_equal(ak.to_numpy(files[1].event[:2]), [10**8 + 1, 10**8 + 2])
    np.testing.assert_array_equal(np.unique(ak.to_numpy(files[1].luminosityBlock)), [1001, 1002, 1003])


def test_mc_event_counts_are_exact() -> None:
    events = generate_events({"tt_dl": 123.9, "dy_lep_m50": 7}, seed=1, file_index=0, is_data=False)
    assert len(events) == 130


def test_data_mixes_poisson_counts_without_generator_information() -> None:
    processes = {"tt_sl": 300.0, "dy_lep_m50": 700.0}
    events = generate_events(processes, seed=5, file_index=2, is_data=True)
    assert len(events) == sum(draw_counts(processes, seed=5, file_index=2).values())
    assert "genWeight" not in events.fields
    assert "hadronFlavour" not in events.Jet.fields
    assert np.all(ak.to_numpy(events.run) == 297052)
    assert len(np.unique(ak.to_numpy(events.event))) == len(events)
    # shuffled: the b-tag rich tt events are spread over the file, not in one block
    n_btag = ak.to_numpy(ak.sum(events.Jet.btagDeepFlavB > 0.3, axis=1))
    halves = np.array_split(n_btag, 2)
    assert abs(halves[0].mean() - halves[1].mean()) < 0.15


def test_data_differs_from_mc_with_the_same_seed() -> None:
    mc = generate_events({"tt_sl": 100}, seed=5, file_index=0, is_data=False)
    data = generate_events({"tt_sl": 100}, seed=5, file_index=0, is_data=True)
    assert not np.array_equal(ak.to_numpy(mc.MET.pt[:50]), ak.to_numpy(data.MET.pt[:50]))


def test_draw_counts_is_deterministic_and_poisson_like() -> None:
    processes = {"tt_sl": 50.0, "dy_lep_m50": 2000.0}
    assert draw_counts(processes, 9, 4) == draw_counts(processes, 9, 4)
    counts = np.array([draw_counts(processes, 9, index)["tt_sl"] for index in range(2000)])
    assert abs(counts.mean() - 50.0) < 1.0
    assert 0.8 < counts.var() / counts.mean() < 1.2
    assert len(np.unique(counts)) > 20


def test_unknown_process_raises_with_its_name_and_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"ttbar_fancy.*tt_sl"):
        generate_events({"ttbar_fancy": 10}, seed=1, file_index=0, is_data=False)
    with pytest.raises(ValueError, match="ttbar_fancy"):
        draw_counts({"ttbar_fancy": 10.0}, seed=1, file_index=0)


def test_negative_counts_raise() -> None:
    with pytest.raises(ValueError, match="negative"):
        generate_events({"tt_sl": -1}, seed=1, file_index=0, is_data=False)
    with pytest.raises(ValueError, match="negative"):
        draw_counts({"tt_sl": -0.5}, seed=1, file_index=0)


def test_written_file_has_nanoaod_layout(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "mc_0.root"
    create_file(str(path), 0, {"hh_ggf_bbtautau": 300}, seed=2)
    assert [p.name for p in path.parent.iterdir()] == ["mc_0.root"]
    tree = uproot.open(path)["Events"]
    assert tree.num_entries == 300
    expected = {
        "run": np.uint32,
        "luminosityBlock": np.uint32,
        "event": np.uint64,
        "genWeight": np.float32,
        "nJet": np.int32,
        "Jet_pt": np.float32,
        "Jet_btagDeepFlavB": np.float32,
        "Jet_jetId": np.int32,
        "Jet_hadronFlavour": np.int32,
        "nElectron": np.int32,
        "Electron_charge": np.int32,
        "Electron_pdgId": np.int32,
        "Electron_mvaFall17V2Iso_WP90": np.bool_,
        "Electron_pfRelIso03_all": np.float32,
        "Muon_tightId": np.bool_,
        "Muon_pfRelIso04_all": np.float32,
        "nTau": np.int32,
        "Tau_decayMode": np.int32,
        "Tau_idDeepTau2017v2p1VSjet": np.uint8,
        "Tau_idDeepTau2017v2p1VSe": np.uint8,
        "Tau_idDeepTau2017v2p1VSmu": np.uint8,
        "MET_pt": np.float32,
        "MET_phi": np.float32,
        "PV_npvs": np.int32,
    }
    arrays = tree.arrays(list(expected))
    for name, dtype in expected.items():
        assert ak.to_numpy(ak.flatten(arrays[name], axis=None)).dtype == dtype, name
    keys = set(tree.keys())
    assert {"Muon_pt", "Tau_charge", "Electron_eta", "Jet_mass"} <= keys
    assert {key for key in keys if key.startswith("n")} == {"nJet", "nElectron", "nMuon", "nTau"}
    np.testing.assert_array_equal(arrays["nJet"], ak.num(arrays["Jet_pt"]))


def test_data_file_has_no_generator_branches(tmp_path: Path) -> None:
    path = tmp_path / "data_0.root"
    create_file(str(path), 0, {"dy_lep_m50": 200.0}, seed=2, is_data=True)
    keys = set(uproot.open(path)["Events"].keys())
    assert "Jet_pt" in keys
    assert not {"genWeight", "Jet_hadronFlavour"} & keys


def test_empty_file_can_be_written(tmp_path: Path) -> None:
    path = tmp_path / "empty.root"
    create_file(str(path), 0, {"tt_dl": 0}, seed=2)
    assert uproot.open(path)["Events"].num_entries == 0


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = generate_events({"tt_sl": 50}, seed=1, file_index=0, is_data=False)

    def broken_mktree(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(uproot.writing.writable.WritableDirectory, "mktree", broken_mktree)
    with pytest.raises(RuntimeError, match="disk full"):
        write_nanoaod(tmp_path / "out.root", events)
    assert list(tmp_path.iterdir()) == []


def test_rewrite_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "out.root"
    write_nanoaod(path, generate_events({"tt_sl": 10}, seed=1, file_index=0, is_data=False))
    write_nanoaod(path, generate_events({"tt_sl": 20}, seed=1, file_index=0, is_data=False))
    assert uproot.open(path)["Events"].num_entries == 20
    assert list(tmp_path.iterdir()) == [path]


def test_collections_are_pt_sorted_and_above_thresholds(mc_events: dict[str, ak.Array]) -> None:
    events = mc_events["tt_sl"]
    for name, pt_min in (("Jet", 15.0), ("Electron", 5.0), ("Muon", 5.0), ("Tau", 15.0)):
        pt = events[name].pt
        assert ak.all(pt[:, 1:] <= pt[:, :-1]), name
        assert ak.min(pt) >= pt_min, name


def test_hh_bb_mass_peaks_near_the_higgs(mc_events: dict[str, ak.Array]) -> None:
    jets = mc_events["hh_ggf_bbtautau"].Jet
    jets = jets[ak.num(jets) >= 2]
    jets = jets[ak.argsort(jets.btagDeepFlavB, ascending=False)]
    mass = _invariant_mass(jets[:, 0], jets[:, 1])
    assert 100.0 < np.median(mass) < 135.0
    assert 100.0 < _mode(mass, 0.0, 300.0, 60) < 135.0


def test_hh_has_genuine_hadronic_taus(mc_events: dict[str, ak.Array]) -> None:
    def fraction_with_tight_tau(events: ak.Array) -> float:
        return float(np.mean(ak.to_numpy(ak.any(events.Tau.idDeepTau2017v2p1VSjet >= 63, axis=1))))

    assert fraction_with_tight_tau(mc_events["hh_ggf_bbtautau"]) > 0.5
    assert fraction_with_tight_tau(mc_events["hh_ggf_bbtautau"]) > 2 * fraction_with_tight_tau(mc_events["dy_lep_m50"])


def test_dy_dilepton_mass_peaks_at_the_z(mc_events: dict[str, ak.Array]) -> None:
    events = mc_events["dy_lep_m50"]
    masses = []
    for name in ("Electron", "Muon"):
        leptons = events[name][ak.num(events[name]) >= 2]
        masses.append(_invariant_mass(leptons[:, 0], leptons[:, 1]))
    mass = np.concatenate(masses)
    assert len(mass) > 0.3 * N_EVENTS
    assert 86.0 < _mode(mass, 50.0, 130.0, 40) < 96.0
    assert 86.0 < np.median(mass) < 96.0


def test_tt_sl_has_many_jets_and_b_tags(mc_events: dict[str, ak.Array]) -> None:
    jets = mc_events["tt_sl"].Jet
    assert np.median(ak.to_numpy(ak.num(jets))) >= 4
    n_btag_tt = np.mean(ak.to_numpy(ak.sum(jets.btagDeepFlavB > 0.3033, axis=1)))
    n_btag_dy = np.mean(ak.to_numpy(ak.sum(mc_events["dy_lep_m50"].Jet.btagDeepFlavB > 0.3033, axis=1)))
    assert n_btag_tt > 1.3
    assert n_btag_dy < 0.1


def test_neutrinos_give_missing_transverse_momentum(mc_events: dict[str, ak.Array]) -> None:
    median_met = {name: np.median(ak.to_numpy(events.MET.pt)) for name, events in mc_events.items()}
    assert median_met["dy_lep_m50"] < 25.0
    assert median_met["tt_dl"] > 2 * median_met["dy_lep_m50"]
    assert median_met["hh_ggf_bbtautau"] > 2 * median_met["dy_lep_m50"]


def test_negative_weight_fractions(mc_events: dict[str, ak.Array]) -> None:
    fractions = {name: np.mean(ak.to_numpy(events.genWeight) < 0) for name, events in mc_events.items()}
    for name, fraction in fractions.items():
        assert 0.0 < fraction < 0.1, name
    assert fractions["tt_sl"] < fractions["dy_lep_m50"]
    assert mc_events["tt_sl"].genWeight.type.content == ak.types.NumpyType("float32")


def test_pileup_vertices(mc_events: dict[str, ak.Array]) -> None:
    npvs = ak.to_numpy(mc_events["tt_dl"].PV.npvs)
    assert abs(npvs.mean() - 30.0) < 0.3
    assert abs(npvs.var() / npvs.mean() - 1.0) < 0.1


def test_generate_keeps_the_names_that_configs_and_bench_import() -> None:
    # the configs name sample.generate:create_file; bench/sample.py writes with generate.nanoaod_branches & co.
    from sample import generate

    for name in ("create_file", "draw_counts", "generate_events", "write_nanoaod", "nanoaod_branches"):
        assert callable(getattr(generate, name)), name
    resonant = {f"x_hh_bbtautau_m{mass}" for mass in (300, 400, 500, 700, 1000)}
    assert set(generate.PROCESS_GENERATORS) == {*NON_RESONANT, *resonant}
    assert generate.EVENT_TREE_NAME == "Events"
    assert isinstance(generate.COMPRESSION, uproot.compression.ZSTD)


def test_the_resonant_signal_grows_harder_with_the_mass_of_x() -> None:
    """The visible bb mass stays near m_H while the b jets' momenta scale with m_X / 2 (two-body decay of X)."""
    medians = {}
    for mass in (300, 1000):
        events = generate_events({f"x_hh_bbtautau_m{mass}": 2000}, seed=11, file_index=0, is_data=False)
        jets = events.Jet[events.Jet.hadronFlavour == 5]
        jets = jets[ak.num(jets) >= 2]
        visible_mass = _invariant_mass(jets[:, 0], jets[:, 1])
        # neutrinos of semileptonic b decays and the jet response keep the visible mass a little below m_H
        assert 90.0 < np.median(visible_mass) < 130.0, mass
        medians[mass] = np.median(ak.to_numpy(jets.pt[:, 0]))
    assert medians[1000] > 2.5 * medians[300]
