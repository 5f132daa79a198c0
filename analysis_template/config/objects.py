"""Physics-object definitions per NanoAOD version and era: which branch holds which ID, and its working point.

Everything that differs between NanoAOD versions and eras lives here, and a config carries one
:class:`ObjectDefinitions` as ``config.x.objects``. The calibrators, the selector and the producers read their column
names and thresholds from it, and their ``uses`` follow (``cf.functions.ConfigColumns``), so the chain reads exactly
what exists in the config's NanoAOD version.

Sources of the differences (branch names checked against real files of each version):

* Electron MVA ID: ``mvaSpring16GP_WP90`` (NanoAOD v1, 2016), ``mvaFall17V2Iso_WP90`` (v5 - v11, Run 2 UL),
  ``mvaIso_WP90`` (v12 and later, Run 3; the Run 3 retraining under a version-free name).
* Hadronic tau ID: the MVA isolation ``idMVAoldDM`` with ``idAntiEle`` / ``idAntiMu`` as bitmasks (v1),
  DeepTau ``2017v2p1`` as cumulative bitmasks (v6 - v11; bit ``2**k`` for the k-th working point from VVVLoose),
  DeepTau ``2018v2p5`` as working-point levels (v12 and later: 1 = VVVLoose ... 8 = VVTight; vs mu 1 = VLoose ... 4
  = Tight).
* Jet ID (CMS JME, tight): bit 2 of ``Jet_jetId`` in Run 2; in NanoAOD v12 ``Jet_jetId`` is wrong for
  2.7 < |eta| < 3.0 and |eta| > 3.0 and JME's fix adds ``neHEF < 0.99`` resp. ``neEmEF < 0.4``; NanoAOD v15 no longer
  stores ``Jet_jetId`` and JME's recipe computes it from the jet energy fractions and multiplicities (the criteria
  of the AK4 PUPPI tight ID for 13.6 TeV, as in CMSSW's ``PFJetIDSelectionFunctor`` and JME's ``jetid.json``).
* b tagging: DeepJet (``btagDeepFlavB``) medium working points of BTV per era (2016 legacy 0.3093, 2017 UL 0.3040,
  2018 pre-UL 0.2770, 2022 preEE 0.3086); for 2024 BTV calibrates UParT (``btagUParTAK4B``, medium 0.1272).
* MET: the type-1 PF MET ``MET`` in Run 2; Run 3 analyses use ``PuppiMET``; NanoAOD v15 renamed the PF MET to ``PFMET``.
* Triggers: the isolated single-muon, single-electron and di-tau paths of each era's menu (2016: ``IsoMu24``,
  ``Ele27_WPTight_Gsf``, ``DoubleMediumIsoPFTau35``; 2018: ``IsoMu24``, ``Ele32_WPTight_Gsf``,
  ``DoubleMediumChargedIsoPFTauHPS35``; Run 3: ``IsoMu24``, ``Ele30_WPTight_Gsf``, ``DoubleMediumDeepTauPFTauHPS35``).
  The user guide's config lists none: its embedded sample carries no trigger bits, so its selection (and every
  number of the guide) is the one without a trigger requirement.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import awkward as ak
import numpy as np

from cf.columnar_util import FlatObjects

__all__ = [
    "BTagWorkingPoint",
    "IdCut",
    "JetId",
    "ObjectDefinitions",
    "NANO_V1_2016",
    "NANO_V6_2018",
    "NANO_V9_2017",
    "NANO_V12_2022",
    "NANO_V15_2024",
]


@dataclass(frozen=True)
class IdCut:
    """One identification requirement on a column of a collection.

    Attributes:
        column: The field of the collection (``mvaIso_WP90``, ``idDeepTau2018v2p5VSjet``).
        encoding: ``"flag"``: a boolean column; ``"bitmask"``: passed if ``column & value``; ``"level"``: passed if
            ``column >= value`` (working points stored as their index).
        value: The bit or level of the working point (unused for flags).
    """

    column: str
    encoding: Literal["flag", "bitmask", "level"] = "flag"
    value: int = 0

    def passes(self, objects: ak.Array | FlatObjects) -> ak.Array | np.ndarray:
        """The mask of the objects passing the requirement (jagged, or flat for :class:`FlatObjects`)."""
        values = objects[self.column]
        if self.encoding == "flag":
            return values != 0
        if self.encoding == "bitmask":
            return (values & self.value) != 0
        return values >= self.value


#: Run 3 AK4 PUPPI tight jet ID per |eta| region (upper edge): (max neHEF, max neEmEF, min multiplicity,
#: min chHEF, min chMultiplicity, min neMultiplicity); None where a criterion does not apply.
RUN3_TIGHT_JET_ID: tuple[tuple[float, tuple[float | None, ...]], ...] = (
    (2.6, (0.99, 0.9, 2, 0.01, 1, None)),
    (2.7, (0.90, 0.99, None, None, None, None)),
    (3.0, (0.99, None, None, None, None, None)),
    (np.inf, (None, 0.4, None, None, None, 2)),
)


@dataclass(frozen=True)
class JetId:
    """How the tight jet ID is obtained.

    Attributes:
        recipe: ``"bits"``: bit 2 of ``jetId`` (Run 2); ``"nano_v12_fix"``: the bit plus JME's correction of the
            forward regions (NanoAOD v12 - v14); ``"from_fractions"``: computed from the energy fractions and
            multiplicities (NanoAOD v15, which stores no ``jetId``).
    """

    recipe: Literal["bits", "nano_v12_fix", "from_fractions"] = "bits"

    def columns(self) -> set[str]:
        """The jet fields the recipe reads."""
        if self.recipe == "bits":
            return {"jetId"}
        if self.recipe == "nano_v12_fix":
            return {"jetId", "neHEF", "neEmEF"}
        return {"neHEF", "neEmEF", "chHEF", "chMultiplicity", "neMultiplicity"}

    def tight(self, jets: ak.Array | FlatObjects) -> ak.Array | np.ndarray:
        """The mask of the jets passing the tight ID (jagged, or flat for :class:`FlatObjects`)."""
        if self.recipe == "bits":
            return (jets.jetId & 2) != 0
        abs_eta = abs(jets.eta)
        if self.recipe == "nano_v12_fix":
            forward = np.where(abs_eta <= 3.0, jets.neHEF < 0.99, jets.neEmEF < 0.4)
            return ((jets.jetId & 2) != 0) & ((abs_eta <= 2.7) | forward)
        return _tight_from_fractions(jets, abs_eta)


def _tight_from_fractions(jets: ak.Array | FlatObjects, abs_eta: Any) -> Any:
    """JME's Run 3 tight jet ID from the stored energy fractions and multiplicities, region by region."""
    multiplicity = jets.chMultiplicity + jets.neMultiplicity
    passed = np.zeros_like(abs_eta, dtype=bool)
    lower = 0.0
    for upper, (ne_hef, ne_em_ef, n_min, ch_hef, ch_mult, ne_mult) in RUN3_TIGHT_JET_ID:
        cuts = (abs_eta <= upper) if lower == 0.0 else (abs_eta > lower) & (abs_eta <= upper)
        if ne_hef is not None:
            cuts = cuts & (jets.neHEF < ne_hef)
        if ne_em_ef is not None:
            cuts = cuts & (jets.neEmEF < ne_em_ef)
        if n_min is not None:
            cuts = cuts & (multiplicity >= n_min)
        if ch_hef is not None:
            cuts = cuts & (jets.chHEF > ch_hef)
        if ch_mult is not None:
            cuts = cuts & (jets.chMultiplicity >= ch_mult)
        if ne_mult is not None:
            cuts = cuts & (jets.neMultiplicity >= ne_mult)
        passed = passed | cuts
        lower = upper
    return passed


@dataclass(frozen=True)
class BTagWorkingPoint:
    """A b-tagging discriminant of the ``Jet`` collection and its medium working point.

    Attributes:
        column: The jet field (``btagDeepFlavB``, ``btagUParTAK4B``).
        medium: The discriminant value above which a jet counts as b tagged.
    """

    column: str
    medium: float


@dataclass(frozen=True)
class ObjectDefinitions:
    """The object definitions of one NanoAOD version and era (``config.x.objects``).

    Attributes:
        nano_version: The NanoAOD version the definitions are written for (documentation and checks).
        electron_id: The electron ID requirement.
        muon_id: The muon ID requirement.
        tau_vs_jet: The hadronic tau ID against jets.
        tau_vs_e: The hadronic tau ID against electrons.
        tau_vs_mu: The hadronic tau ID against muons.
        jet_id: How the tight jet ID is obtained.
        btag: The b-tagging discriminant and working point.
        met: The collection of the missing transverse momentum that the calibrators start from.
        triggers: The HLT paths of which an event must have fired one (``HLT_IsoMu24``, ...); none: no requirement.
        muon_isolation: The muon isolation field (relative, cone 0.4) and its maximum.
    """

    nano_version: int
    electron_id: IdCut
    muon_id: IdCut
    tau_vs_jet: IdCut
    tau_vs_e: IdCut
    tau_vs_mu: IdCut
    jet_id: JetId
    btag: BTagWorkingPoint
    met: str
    triggers: tuple[str, ...] = ()
    muon_isolation: tuple[str, float] = ("pfRelIso04_all", 0.15)

    def selection_columns(self) -> set[str]:
        """The ID columns the selector reads."""
        return {
            f"Electron.{self.electron_id.column}",
            f"Muon.{self.muon_id.column}",
            f"Muon.{self.muon_isolation[0]}",
            *(f"Tau.{cut.column}" for cut in (self.tau_vs_jet, self.tau_vs_e, self.tau_vs_mu)),
            *(f"Jet.{field}" for field in self.jet_id.columns()),
            *self.trigger_columns(),
        }

    def trigger_columns(self) -> set[str]:
        """The trigger bits, as routes (the branch ``HLT_IsoMu24`` is the route ``HLT.IsoMu24``)."""
        return {f"HLT.{name.removeprefix('HLT_')}" for name in self.triggers}

    def btag_columns(self) -> set[str]:
        """The b-tagging column of the jets."""
        return {f"Jet.{self.btag.column}"}

    def met_columns(self) -> set[str]:
        """The MET columns the calibrators start from."""
        return {f"{self.met}.pt", f"{self.met}.phi"}


# Run 2 UL (NanoAOD v9; the embedded sample's "uhh v11" is a v9-like custom NanoAOD), DeepJet 2017 UL medium
NANO_V9_2017 = ObjectDefinitions(
    nano_version=9,
    electron_id=IdCut("mvaFall17V2Iso_WP90"),
    muon_id=IdCut("tightId"),
    tau_vs_jet=IdCut("idDeepTau2017v2p1VSjet", "bitmask", 16),  # Medium
    tau_vs_e=IdCut("idDeepTau2017v2p1VSe", "bitmask", 2),  # VVLoose
    tau_vs_mu=IdCut("idDeepTau2017v2p1VSmu", "bitmask", 1),  # VLoose
    jet_id=JetId("bits"),
    btag=BTagWorkingPoint("btagDeepFlavB", 0.3040),
    met="MET",
)

# pre-UL 2018 NanoAOD v6 (102X): the branches of v9, the DeepJet 2018 medium working point, the 2018 triggers
NANO_V6_2018 = replace(
    NANO_V9_2017,
    nano_version=6,
    btag=BTagWorkingPoint("btagDeepFlavB", 0.2770),
    triggers=("HLT_IsoMu24", "HLT_Ele32_WPTight_Gsf", "HLT_DoubleMediumChargedIsoPFTauHPS35_Trk1_eta2p1_Reg"),
)

# 2016 NanoAOD v1 (80X): Spring16 electron MVA, MVA tau isolation with the anti-lepton discriminators
NANO_V1_2016 = ObjectDefinitions(
    nano_version=1,
    electron_id=IdCut("mvaSpring16GP_WP90"),
    muon_id=IdCut("tightId"),
    tau_vs_jet=IdCut("idMVAoldDM", "bitmask", 4),  # Medium
    tau_vs_e=IdCut("idAntiEle", "bitmask", 1),  # VLoose
    tau_vs_mu=IdCut("idAntiMu", "bitmask", 1),  # Loose
    jet_id=JetId("bits"),
    btag=BTagWorkingPoint("btagDeepFlavB", 0.3093),
    met="MET",
    triggers=("HLT_IsoMu24", "HLT_Ele27_WPTight_Gsf", "HLT_DoubleMediumIsoPFTau35_Trk1_eta2p1_Reg"),
)

# Run 3 2022 (preEE) NanoAOD v12: DeepTau 2018v2p5 levels, JME's jet ID fix, PUPPI MET
NANO_V12_2022 = ObjectDefinitions(
    nano_version=12,
    electron_id=IdCut("mvaIso_WP90"),
    muon_id=IdCut("tightId"),
    tau_vs_jet=IdCut("idDeepTau2018v2p5VSjet", "level", 5),  # Medium
    tau_vs_e=IdCut("idDeepTau2018v2p5VSe", "level", 2),  # VVLoose
    tau_vs_mu=IdCut("idDeepTau2018v2p5VSmu", "level", 1),  # VLoose
    jet_id=JetId("nano_v12_fix"),
    btag=BTagWorkingPoint("btagDeepFlavB", 0.3086),
    met="PuppiMET",
    triggers=(
        "HLT_IsoMu24",
        "HLT_Ele30_WPTight_Gsf",
        "HLT_DoubleMediumDeepTauPFTauHPS35_L2NN_eta2p1",
    ),
)

# Run 3 2024 NanoAOD v15: as v12, with the jet ID from the energy fractions and UParT b tagging
NANO_V15_2024 = replace(
    NANO_V12_2022,
    nano_version=15,
    jet_id=JetId("from_fractions"),
    btag=BTagWorkingPoint("btagUParTAK4B", 0.1272),
)
