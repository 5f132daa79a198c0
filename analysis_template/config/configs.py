"""Builds an analysis config for a campaign: processes, datasets, object definitions, variables, shifts, categories."""

from __future__ import annotations

import order as od

from analysis_template.config import processes as procs
from analysis_template.config.objects import ObjectDefinitions
from cf.columnar_util import EMPTY_FLOAT

__all__ = ["add_config", "keep_columns"]


def keep_columns(objects: ObjectDefinitions) -> list[str]:
    """The columns kept by the event reduction, as routes into the NanoAOD event structure.

    ``MET`` is the calibrated MET that the calibrators write (from the config's ``objects.met``).

    Args:
        objects: The config's object definitions (name the b-tagging column).

    Returns:
        The routes, without duplicates.
    """
    jet_fields = ("pt", "eta", "phi", "mass", objects.btag.column, "hadronFlavour")
    return [
        "run",
        "luminosityBlock",
        "event",
        "genWeight",
        "Pileup.nTrueInt",
        "PV.npvs",
        "MET.pt",
        "MET.phi",
        *(f"Jet.{field}" for field in jet_fields),
        *(f"Electron.{field}" for field in ("pt", "eta", "phi", "mass", "charge", "pdgId")),
        *(f"Muon.{field}" for field in ("pt", "eta", "phi", "mass", "charge", "pdgId")),
        *(f"Tau.{field}" for field in ("pt", "eta", "phi", "mass", "charge", "decayMode")),
    ]


def add_config(
    analysis: od.Analysis,
    campaign: od.Campaign,
    config_name: str,
    config_id: int,
    objects: ObjectDefinitions,
    limit_dataset_files: int | None = None,
) -> od.Config:
    """Create a config for ``campaign`` and register it in ``analysis``.

    Args:
        analysis: The analysis the config belongs to.
        campaign: The campaign whose datasets the config uses; its ``x.luminosity`` becomes the
            config's, its ``x.pseudo_data_luminosity`` the config's ``x.data_luminosity``.
        config_name: Name of the config.
        config_id: Id of the config, unique within the analysis.
        objects: The object definitions of the campaign's NanoAOD version and era
            (``config.x.objects``).
        limit_dataset_files: If set, the maximum number of files per dataset. The nominal info of
            the campaign's datasets is shortened in place (keys, ``n_files`` and ``n_events``).

    Returns:
        The new config.
    """
    config = od.Config(name=config_name, id=config_id, campaign=campaign, analysis=analysis)

    top_processes = {procs.data, procs.hh_ggf_bbtautau, procs.tt, procs.dy}
    top_processes |= {_top_process(dataset.processes.get_first()) for dataset in campaign.datasets}
    for process in sorted(top_processes, key=lambda process: process.id):
        config.add_process(process)

    for dataset in campaign.datasets:
        if limit_dataset_files is not None:
            _limit_files(dataset, limit_dataset_files)
        config.add_dataset(dataset)

    config.x.luminosity = campaign.x.luminosity
    # the embedded pseudo-data is drawn at a small luminosity of its own: data/MC plots scale
    # the MC to it
    config.x.data_luminosity = campaign.x.pseudo_data_luminosity
    config.x.objects = objects
    _add_corrections(config)
    config.x.keep_columns = {"cf.ReduceEvents": keep_columns(objects)}
    config.x.default_calibrators = ("skip_jecunc",)
    config.x.default_selector = "default"
    config.x.default_producers = ("default",)
    # --ml-model may be left out (the guide's model); --ml-models classifiers stands for both
    # reference models
    config.x.default_ml_model = "test_model"
    config.x.ml_model_groups = {"classifiers": ("test_model", "dnn")}

    _add_shifts(config)
    _add_categories(config)
    _add_variables(config)
    return config


def _top_process(process: od.Process) -> od.Process:
    """The top-level parent of ``process`` (the process itself when it has none)."""
    while process.parent_processes:
        process = process.parent_processes.get_first()
    return process


def _limit_files(dataset: od.Dataset, n_files: int) -> None:
    """Keep only the first ``n_files`` files of the nominal info of ``dataset``.

    Args:
        dataset: The dataset to shorten.
        n_files: The maximum number of files, at least 1.

    Raises:
        ValueError: If ``n_files`` is smaller than 1.
    """
    if n_files < 1:
        raise ValueError(f"limit_dataset_files must be at least 1, got {n_files}")
    info = dataset.get_info("nominal")
    if not info.has_aux("n_events_per_file"):
        return
    counts = info.x.n_events_per_file[:n_files]
    info.keys = info.keys[:n_files]
    info.n_files = len(counts)
    info.n_events = sum(counts)
    info.x.n_events_per_file = counts


#: The template's correction files (correctionlib schema v2), built by ``analysis_template.corrections.build``;
#: a fork replaces them by the CMS POGs' files of its era (local paths or URLs, optionally with a sha256).
CORRECTION_FILES = {
    "jet_jerc": "$CF_BASE/analysis_template/corrections/jet_jerc.json",
    "pileup": "$CF_BASE/analysis_template/corrections/puWeights.json",
    "muon_sf": "$CF_BASE/analysis_template/corrections/muon_Z.json",
}


def _add_corrections(config: od.Config) -> None:
    """The external correction files, the correction names and the event weights of the histograms.

    ``event_weights`` maps each weight column of the produced events to the shift sources that vary it: a
    histogram of the shift ``pu_up`` reads ``pu_weight_up`` instead of ``pu_weight``.

    Args:
        config: The config to fill.
    """
    config.x.external_files = dict(CORRECTION_FILES)
    # the JERC names: <campaign>_MC_L2L3Residual_<jet type>, <campaign>_MC_Total_<jet type>; Run 3 uses PUPPI jets
    jet_type = "AK4PFPuppi" if config.campaign.ecm > 13.0 else "AK4PFchs"
    config.x.jec = {"campaign": "Template_V1", "jet_type": jet_type}
    config.x.pileup_weight_correction = "Template_goldenJSON"
    config.x.muon_sf_correction = "NUM_TightID_DEN_TrackerMuons"
    config.x.event_weights = {"normalization_weight": (), "pu_weight": ("pu",), "muon_weight": ("mu_id",)}


def _add_shifts(config: od.Config) -> None:
    """Add the nominal shift and the shifts of the jet energy correction, pileup and muon ID scale factors.

    ``jec`` changes the calibrated jets (the ``jec`` calibrator implements it); ``pu`` and ``mu_id`` change only
    the event weights of the histograms (``config.x.event_weights``).

    Args:
        config: The config to fill.
    """
    config.add_shift(name="nominal", id=0)
    for source_id, source in enumerate(("jec", "pu", "mu_id")):
        config.add_shift(name=f"{source}_up", id=2 * source_id + 1, type="shape")
        config.add_shift(name=f"{source}_down", id=2 * source_id + 2, type="shape")


def _add_categories(config: od.Config) -> None:
    """Add the analysis categories; producers decide the membership by category name.

    Args:
        config: The config to fill.
    """
    config.add_category(
        name="incl",
        id=1,
        label="inclusive",
        aux={"selection_doc": "all events passing the event selection"},
    )
    config.add_category(
        name="sr",
        id=2,
        label=r"$\geq$2 jets, $\geq$1 b, $\tau\tau$ pair",
        aux={
            "selection_doc": (
                "HH -> bb tautau like: at least two jets, at least one of them b-tagged, and two hadronic taus of "
                "opposite charge"
            ),
        },
    )
    config.add_category(
        name="cr_tt",
        id=3,
        label=r"1 lepton, $\geq$4 jets",
        aux={"selection_doc": "ttbar control region: exactly one electron or muon and at least four jets"},
    )
    config.add_category(
        name="cr_dy",
        id=4,
        label=r"2 OS SF leptons, $|m_{\ell\ell} - m_{Z}| < 15$ GeV",
        aux={
            "selection_doc": (
                "Drell-Yan control region: two electrons or two muons of opposite charge whose invariant mass lies "
                "within 15 GeV of the Z boson mass"
            ),
        },
    )


def _add_variables(config: od.Config) -> None:
    """Add the plotted variables, each evaluated from a column route on the event array.

    Object variables read a missing object (e.g. the second jet of a one-jet event) as ``EMPTY_FLOAT``.

    Args:
        config: The config to fill.
    """
    counts = (
        ("n_jet", 1, "Number of jets", 11),
        ("n_btag", 2, "Number of b-tagged jets", 6),
        ("n_electron", 3, "Number of electrons", 5),
        ("n_muon", 4, "Number of muons", 5),
        ("n_tau", 5, "Number of hadronic taus", 5),
    )
    for name, var_id, title, n_bins in counts:
        config.add_variable(
            name=name,
            id=var_id,
            expression=name,
            binning=(n_bins, -0.5, n_bins - 0.5),
            x_title=title,
            x_discrete=True,
        )

    continuous = (
        ("jet1_pt", 6, "Jet.pt[:,0]", (40, 0.0, 400.0), r"Leading jet $p_{T}$", "GeV"),
        ("jet1_eta", 7, "Jet.eta[:,0]", (50, -2.5, 2.5), r"Leading jet $\eta$", "1"),
        ("jet2_pt", 8, "Jet.pt[:,1]", (40, 0.0, 400.0), r"Subleading jet $p_{T}$", "GeV"),
        ("ht", 9, "ht", (50, 0.0, 1000.0), r"$H_{T}$", "GeV"),
        ("met_pt", 10, "MET.pt", (40, 0.0, 400.0), r"$p_{T}^{miss}$", "GeV"),
        ("m_bb", 11, "m_bb", (40, 0.0, 400.0), r"$m_{bb}$", "GeV"),
        ("m_ll", 12, "m_ll", (40, 0.0, 200.0), r"$m_{\ell\ell}$", "GeV"),
    )
    for name, var_id, expression, binning, title, unit in continuous:
        config.add_variable(
            name=name,
            id=var_id,
            expression=expression,
            binning=binning,
            x_title=title,
            unit=unit,
            null_value=EMPTY_FLOAT,
        )
