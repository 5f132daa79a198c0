"""Tests of the NanoAOD-version layouts of the embedded sample: branch sets, unchanged physics, consistent IDs."""

from __future__ import annotations

import datetime
import types
import uuid
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import uproot.writing._cascade
import uproot.writing._cascadetree
import uproot.writing.writable

from sample import LAYOUTS, apply_layout, create_file, generate_events, write_nanoaod

PROCESSES = {"hh_ggf_bbtautau": 150, "tt_sl": 150}
SEED, FILE_INDEX = 5, 1
DEEPTAU_V9 = {f"Tau_idDeepTau2017v2p1VS{target}" for target in ("jet", "e", "mu")}
DEEPTAU_RUN3 = {f"Tau_idDeepTau2018v2p5VS{target}" for target in ("jet", "e", "mu")}
FRACTIONS = {f"Jet_{name}" for name in ("neHEF", "neEmEF", "chHEF", "chEmEF", "muEF")}
PUPPI_MET = {"PuppiMET_pt", "PuppiMET_phi"}
# (removed, added) branches relative to nano_v9
TRIGGERS_2016 = {"HLT_IsoMu24", "HLT_Ele27_WPTight_Gsf", "HLT_DoubleMediumIsoPFTau35_Trk1_eta2p1_Reg"}
TRIGGERS_2018 = {"HLT_IsoMu24", "HLT_Ele32_WPTight_Gsf", "HLT_DoubleMediumChargedIsoPFTauHPS35_Trk1_eta2p1_Reg"}
TRIGGERS_RUN3 = {"HLT_IsoMu24", "HLT_Ele30_WPTight_Gsf", "HLT_DoubleMediumDeepTauPFTauHPS35_L2NN_eta2p1"}
BRANCH_CHANGES: dict[str, tuple[set[str], set[str]]] = {
    "nano_v9": (set(), set()),
    "nano_v6": (set(), {*TRIGGERS_2018}),
    "nano_v1": (
        {"Electron_mvaFall17V2Iso_WP90", *DEEPTAU_V9},
        {"Electron_mvaSpring16GP_WP90", "Tau_idMVAoldDM", "Tau_idAntiEle", "Tau_idAntiMu", *TRIGGERS_2016},
    ),
    "nano_v12": (
        {"Electron_mvaFall17V2Iso_WP90", *DEEPTAU_V9},
        {"Electron_mvaIso_WP90", *DEEPTAU_RUN3, *PUPPI_MET, *FRACTIONS, *TRIGGERS_RUN3},
    ),
    "nano_v15": (
        {"Electron_mvaFall17V2Iso_WP90", *DEEPTAU_V9, "Jet_jetId", "MET_pt", "MET_phi"},
        {
            "Electron_mvaIso_WP90",
            *DEEPTAU_RUN3,
            *PUPPI_MET,
            *FRACTIONS,
            "PFMET_pt",
            "PFMET_phi",
            "Jet_chMultiplicity",
            "Jet_neMultiplicity",
            "Jet_btagUParTAK4B",
            *TRIGGERS_RUN3,
        },
    ),
}
# branches renamed without a change of values: layout branch -> v9 branch
RENAMED = {
    "Electron_mvaSpring16GP_WP90": "Electron_mvaFall17V2Iso_WP90",
    "Electron_mvaIso_WP90": "Electron_mvaFall17V2Iso_WP90",
    "PFMET_pt": "MET_pt",
    "PFMET_phi": "MET_phi",
    "PuppiMET_pt": "MET_pt",
    "PuppiMET_phi": "MET_phi",
    "Jet_btagUParTAK4B": "Jet_btagDeepFlavB",
}
# eta probes, one per region of the Run 3 jet ID
REGION_ETAS = (0.0, -2.65, 2.85, -3.5, 4.6)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ak.Array]:
    """All branches of a small MC file written in each layout."""
    directory = tmp_path_factory.mktemp("layouts")
    arrays = {}
    for layout in LAYOUTS:
        path = directory / f"{layout}.root"
        create_file(str(path), FILE_INDEX, PROCESSES, SEED, layout=layout)
        arrays[layout] = uproot.open(path)["Events"].arrays()
    return arrays


def _jets(arrays: ak.Array) -> ak.Array:
    """The Jet_* branches zipped into jet records."""
    return ak.zip({name[4:]: arrays[name] for name in arrays.fields if name.startswith("Jet_")})


def _with_eta(jets: ak.Array, eta: float | None) -> ak.Array:
    """Absolute jet eta, or the given eta for every jet."""
    return abs(jets.eta) if eta is None else ak.full_like(jets.eta, abs(eta))


def run3_tight_jet_id(jets: ak.Array, eta: float | None = None) -> ak.Array:
    """CMS JME Run 3 AK4 PUPPI tight jet ID from energy fractions and multiplicities (as NanoAOD v15 users do)."""
    abs_eta = _with_eta(jets, eta)
    n_charged, n_neutral = (
        ak.values_astype(jets.chMultiplicity, np.int32),
        ak.values_astype(jets.neMultiplicity, np.int32),
    )
    central = (jets.neHEF < 0.99) & (jets.neEmEF < 0.9) & (n_charged + n_neutral > 1) & (jets.chHEF > 0.01)
    central = central & (n_charged > 0)
    transition = (jets.neHEF < 0.90) & (jets.neEmEF < 0.99)
    endcap = jets.neHEF < 0.99
    forward = (n_neutral >= 2) & (jets.neEmEF < 0.4)
    return ak.where(
        abs_eta <= 2.6,
        central,
        ak.where(abs_eta <= 2.7, transition, ak.where(abs_eta <= 3.0, endcap, forward)),
    )


def run3_tight_lepton_veto(jets: ak.Array, tight: ak.Array, eta: float | None = None) -> ak.Array:
    """Tight-lepton-veto jet ID: tight plus muon and charged-EM fraction cuts for |eta| <= 2.7."""
    veto = (jets.muEF < 0.8) & (jets.chEmEF < 0.8)
    return tight & ((_with_eta(jets, eta) > 2.7) | veto)


def v12_fixed_tight_jet_id(jets: ak.Array, eta: float | None = None) -> ak.Array:
    """The JME fix of the NanoAOD v12 tight jet ID in the forward region."""
    abs_eta = _with_eta(jets, eta)
    tight = (jets.jetId & 2) != 0
    endcap = (abs_eta > 2.7) & (abs_eta <= 3.0)
    return tight & (~endcap | (jets.neHEF < 0.99)) & ((abs_eta <= 3.0) | (jets.neEmEF < 0.4))


def _frozen_uproot(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes uproot's time stamps and UUIDs (and the temporary file name) fixed, so that files compare byte-wise."""

    class FrozenDatetime(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> FrozenDatetime:
            return cls(2024, 1, 1)

    frozen = types.SimpleNamespace(datetime=FrozenDatetime)
    for module in (uproot.writing._cascade, uproot.writing._cascadetree, uproot.writing.writable):
        monkeypatch.setattr(module, "datetime", frozen)
    monkeypatch.setitem(uproot.writing.writable.create.defaults, "uuid_function", lambda: uuid.UUID(int=1))
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=2))


@pytest.mark.parametrize("layout", list(BRANCH_CHANGES))
def test_branch_set_differs_from_v9_exactly_as_documented(files: dict[str, ak.Array], layout: str) -> None:
    removed, added = BRANCH_CHANGES[layout]
    v9, other = set(files["nano_v9"].fields), set(files[layout].fields)
    assert v9 - other == removed
    assert other - v9 == added


def test_layouts_cover_the_documented_versions() -> None:
    assert set(LAYOUTS) == set(BRANCH_CHANGES)


@pytest.mark.parametrize("is_data", [False, True])
def test_nano_v9_file_is_byte_identical_to_the_canonical_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, is_data: bool
) -> None:
    _frozen_uproot(monkeypatch)
    paths = [tmp_path / name / "f.root" for name in ("canonical", "default", "nano_v9")]
    write_nanoaod(paths[0], generate_events(PROCESSES, SEED, FILE_INDEX, is_data))
    create_file(str(paths[1]), FILE_INDEX, PROCESSES, SEED, is_data=is_data)
    create_file(str(paths[2]), FILE_INDEX, PROCESSES, SEED, is_data=is_data, layout="nano_v9")
    reference = paths[0].read_bytes()
    assert paths[1].read_bytes() == reference
    assert paths[2].read_bytes() == reference


@pytest.mark.parametrize("layout", ["nano_v1", "nano_v12", "nano_v15"])
def test_canonical_columns_are_equal_across_layouts(files: dict[str, ak.Array], layout: str) -> None:
    v9, other = files["nano_v9"], files[layout]
    common = [name for name in other.fields if name in v9.fields]
    assert {"Jet_pt", "Jet_eta", "Tau_phi", "Muon_tightId", "genWeight", "event"} <= set(common)
    for name in common:
        # only the jet ID changes its type (uint8 from v12 on, as in NanoAOD)
        assert ak.array_equal(other[name], v9[name], dtype_exact=name != "Jet_jetId"), name
    for name in set(other.fields) & set(RENAMED):
        assert ak.array_equal(other[name], v9[RENAMED[name]]), name


@pytest.mark.parametrize("layout", ["nano_v12", "nano_v15"])
def test_run3_tau_id_level_is_the_popcount_of_the_bitmask(files: dict[str, ak.Array], layout: str) -> None:
    for target, n_wp in (("jet", 8), ("e", 8), ("mu", 4)):
        bitmask = ak.flatten(files["nano_v9"][f"Tau_idDeepTau2017v2p1VS{target}"]).to_numpy()
        level = ak.flatten(files[layout][f"Tau_idDeepTau2018v2p5VS{target}"]).to_numpy()
        assert level.dtype == np.uint8
        np.testing.assert_array_equal(level, np.bitwise_count(bitmask))
        assert level.max() <= n_wp
        # cumulative: passing level k means passing the k-th bit of the old mask
        np.testing.assert_array_equal(level >= 3, (bitmask & 4) != 0)


@pytest.mark.parametrize("eta", [None, *REGION_ETAS])
def test_run3_recipe_on_v15_fractions_gives_back_the_v9_jet_id(files: dict[str, ak.Array], eta: float | None) -> None:
    jets, jet_id = _jets(files["nano_v15"]), files["nano_v9"]["Jet_jetId"]
    tight = run3_tight_jet_id(jets, eta)
    assert ak.array_equal(tight, (jet_id & 2) != 0)
    veto = run3_tight_lepton_veto(jets, tight, eta)
    central = _with_eta(jets, eta) <= 2.7
    assert ak.array_equal(veto[central], ((jet_id & 4) != 0)[central])
    assert 0 < ak.sum(~tight) < ak.sum(tight)


@pytest.mark.parametrize("eta", REGION_ETAS)
def test_energy_fractions_alone_fail_non_tight_jets_in_every_region(files: dict[str, ak.Array], eta: float) -> None:
    jets = _jets(files["nano_v15"])
    for name in ("chMultiplicity", "neMultiplicity"):
        jets = ak.with_field(jets, ak.full_like(jets[name], 10), name)
    assert ak.array_equal(run3_tight_jet_id(jets, eta), (files["nano_v9"]["Jet_jetId"] & 2) != 0)


def test_sample_has_tight_and_failing_jets_in_the_forward_region(files: dict[str, ak.Array]) -> None:
    jet_id, abs_eta = files["nano_v9"]["Jet_jetId"], abs(files["nano_v9"]["Jet_eta"])
    assert ak.sum((abs_eta > 3.0) & ((jet_id & 2) != 0)) > 0
    assert ak.sum((abs_eta > 3.0) & ((jet_id & 2) == 0)) > 0


@pytest.mark.parametrize("eta", [None, *REGION_ETAS])
def test_v12_fixed_jet_id_gives_back_the_v9_jet_id(files: dict[str, ak.Array], eta: float | None) -> None:
    assert ak.array_equal(
        v12_fixed_tight_jet_id(_jets(files["nano_v12"]), eta), (files["nano_v9"]["Jet_jetId"] & 2) != 0
    )


def test_v15_energy_fractions_equal_v12_and_are_physical(files: dict[str, ak.Array]) -> None:
    v12, v15 = files["nano_v12"], files["nano_v15"]
    for name in FRACTIONS:
        assert ak.array_equal(v15[name], v12[name]), name
        values = ak.flatten(v15[name]).to_numpy()
        assert values.dtype == np.float32
        assert np.all((values >= 0.0) & (values <= 1.0)), name
    tight = ak.flatten((v12["Jet_jetId"] & 2) != 0).to_numpy()
    total = sum(ak.flatten(v12[name]).to_numpy().astype(np.float64) for name in FRACTIONS)
    assert np.all(total[tight] <= 1.0 + 1e-6)


def test_v1_tau_ids_select_the_same_taus_as_deeptau(files: dict[str, ak.Array]) -> None:
    v1, v9 = files["nano_v1"], files["nano_v9"]
    pairs = (
        ("Tau_idMVAoldDM", 4, "Tau_idDeepTau2017v2p1VSjet", 16),
        ("Tau_idAntiEle", 1, "Tau_idDeepTau2017v2p1VSe", 2),
        ("Tau_idAntiMu", 1, "Tau_idDeepTau2017v2p1VSmu", 1),
        ("Tau_idAntiMu", 2, "Tau_idDeepTau2017v2p1VSmu", 8),
    )
    for old, old_bit, new, new_bit in pairs:
        selected = (v1[old] & old_bit) != 0
        assert ak.array_equal(selected, (v9[new] & new_bit) != 0), old
        assert ak.sum(selected) > 0, old
    assert ak.max(v1["Tau_idMVAoldDM"]) < 64
    assert ak.max(v1["Tau_idAntiEle"]) < 32
    assert ak.max(v1["Tau_idAntiMu"]) < 4


def test_layout_columns_are_deterministic_per_file() -> None:
    events = generate_events({"tt_sl": 100}, SEED, FILE_INDEX, is_data=False)
    first = apply_layout(events, "nano_v15", SEED, FILE_INDEX)
    assert ak.array_equal(first, apply_layout(events, "nano_v15", SEED, FILE_INDEX))
    other_file = apply_layout(events, "nano_v15", SEED, FILE_INDEX + 1)
    assert not ak.array_equal(first.Jet.neHEF, other_file.Jet.neHEF)
    # the canonical events are left untouched
    assert ak.array_equal(events, generate_events({"tt_sl": 100}, SEED, FILE_INDEX, is_data=False))


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_data_files_can_be_written_in_every_layout(tmp_path: Path, layout: str) -> None:
    path = tmp_path / "data.root"
    create_file(str(path), 0, {"dy_lep_m50": 100.0}, seed=2, is_data=True, layout=layout)
    keys = set(uproot.open(path)["Events"].keys())
    assert "Jet_pt" in keys
    assert not {"genWeight", "Jet_hadronFlavour"} & keys


def test_unknown_layout_raises_listing_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "out.root"
    with pytest.raises(ValueError, match=r"nano_v42.*nano_v1, nano_v6, nano_v9, nano_v12, nano_v15"):
        create_file(str(path), 0, {"tt_sl": 10}, seed=1, layout="nano_v42")
    assert not path.exists()
    events = generate_events({"tt_sl": 10}, seed=1, file_index=0, is_data=False)
    with pytest.raises(ValueError, match="known layouts"):
        apply_layout(events, "nano_v42", seed=1, file_index=0)


def test_trigger_bits_are_the_offline_objects_above_the_path_thresholds(files: dict[str, ak.Array]) -> None:
    """The emulated triggers fire exactly for events with the path's objects (an ideal trigger)."""
    v9, v12 = files["nano_v9"], files["nano_v12"]
    muon = (v9.Muon_pt > 24.0) & (abs(v9.Muon_eta) < 2.4) & (v9.Muon_pfRelIso04_all < 0.15)
    tau = (v9.Tau_pt > 35.0) & (abs(v9.Tau_eta) < 2.1) & ((v9.Tau_idDeepTau2017v2p1VSjet & 16) != 0)
    assert ak.to_list(v12.HLT_IsoMu24) == ak.to_list(ak.any(muon, axis=1))
    assert ak.to_list(v12.HLT_DoubleMediumDeepTauPFTauHPS35_L2NN_eta2p1) == ak.to_list(ak.sum(tau, axis=1) >= 2)
    electron = (v9.Electron_pt > 30.0) & (abs(v9.Electron_eta) < 2.1) & v9.Electron_mvaFall17V2Iso_WP90
    assert ak.to_list(v12.HLT_Ele30_WPTight_Gsf) == ak.to_list(ak.any(electron, axis=1))
    assert 0 < ak.sum(v12.HLT_IsoMu24) < len(v12)
