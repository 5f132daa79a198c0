"""The analysis' inference model: a fit of the reference classifier's HH score with a tt control region.

``law run cf.PyhfLimit --version v1 --inference-model test_inference`` trains (if needed) and evaluates the
``dnn`` classifier, histograms every dataset with the ``jec`` calibrator (nominal, ``jec_up``, ``jec_down``),
writes the datacards and computes the expected limit on the HH signal strength at the config's luminosity, and
the "observed" one on a seeded Poisson toy of the expected backgrounds (the embedded pseudo-data events amount to
a small slice of the luminosity only).

Every setting can be changed for one run, e.g. ``--inference-model-settings signal_scale=100`` or
``sr_variable=test_model.score_hh`` (the guide's small model instead of the reference one). The model is
written in columnflow's config-keyed form: every config-dependent name sits in ``config_data``, keyed by the
config, so that the same model runs on several configs at once (``--configs``).
"""

from __future__ import annotations

from cf.inference import InferenceModel, ParameterType, inference_model, lnn_effect, setting

__all__ = ["test_inference"]


@inference_model(
    # the jec calibrator implements the jec_up / jec_down shifts of the "jec" shape parameter; with the
    # config's default (skip_jecunc) the shifted histograms would equal nominal and the task refuses to run
    calibrators=("jec",),
    sr_category=setting("sr", "the signal region's category"),
    sr_variable=setting("dnn.score_hh", "the variable fitted in the signal region"),
    # merged bins keep enough MC events in each bin (and few MC-statistics parameters in the fit)
    sr_bin_edges=setting((0.0, 0.2, 0.4, 0.6, 0.7, 0.8, 0.9, 1.0), "the signal region's bin edges"),
    cr_category=setting("cr_tt", "the tt control region's category"),
    cr_variable=setting("ht", "the variable fitted in the control region"),
    cr_bin_edges=setting(
        (0.0, 200.0, 240.0, 280.0, 320.0, 360.0, 420.0, 500.0, 1000.0), "the control region's bin edges"
    ),
    signal_process=setting("hh_ggf_bbtautau", "the config process of the signal"),
    signal_scale=setting(1.0, "factor on the signal yield", above=0.0),
    # the MC is normalised to the config's luminosity (41.5 fb^-1 in 2017), the embedded pseudo-data events to a
    # small slice of it (config.x.data_luminosity): the default observation is made from the MC histograms
    observation=setting(
        "toy",
        "the observed data: 'toy' (a Poisson toy of the expected backgrounds, seeded by toy_seed), 'asimov' (the "
        "expected backgrounds) or 'events' (the data datasets, only where they have the MC's luminosity)",
        choices=("toy", "asimov", "events"),
    ),
    toy_seed=setting(1, "the seed of the Poisson toy of observation=toy", minimum=0),
    weight_uncertainties=setting(True, "add the pileup and muon ID weight uncertainties"),
    mc_stats=setting(True, "add the MC statistical uncertainties (autoMCStats 10)"),
)
def test_inference(self: InferenceModel) -> None:
    """HH -> bbtautau: the ``dnn`` HH score in the signal region and HT in the tt control region.

    Processes HH (signal, times ``signal_scale``), tt and dy; the luminosity uncertainty of each config (lnN on
    all processes), the tt cross-section uncertainty (lnN, from the config process), the jet energy scale
    (shape, shift source ``jec``), the pileup and muon ID weights (shapes, shift sources ``pu`` and ``mu_id``;
    ``weight_uncertainties=False`` leaves them out) and the MC statistical uncertainties (``mc_stats=False`` leaves
    them out). The observation of both categories is a seeded Poisson toy of the expected backgrounds
    (``observation=toy``), their sum (``observation=asimov``: no observed limit) or the data datasets
    (``observation=events``).
    """
    configs = [config_inst.name for config_inst in self.config_insts]
    regions = (
        ("sr", self.sr_category, self.sr_variable, self.sr_bin_edges),
        ("cr_tt", self.cr_category, self.cr_variable, self.cr_bin_edges),
    )
    for name, category, variable, bin_edges in regions:
        self.add_category(
            name,
            config_data={config: {"category": category, "variable": variable} for config in configs},
            data_from_processes=None if self.observation == "events" else ["tt", "dy"],
            data_toy_seed=self.toy_seed if self.observation == "toy" else None,
            mc_stats=self.mc_stats,
            bin_edges=bin_edges,
            # bins without MC stay at zero; the pyhf fits keep every bin's total yield positive
            empty_bin_value=0.0,
        )

    processes = (("HH", self.signal_process, True), ("tt", "tt", False), ("dy", "dy", False))
    for name, process, is_signal in processes:
        self.add_process(
            name,
            is_signal=is_signal,
            config_data={config: {"process": process} for config in configs},
            # every datacard lists every process, also one without events in a category (rate 0)
            skip_if_empty=False,
        )
    self.scale_process(self.signal_scale, "HH")

    self.add_parameter_group("theory")
    self.add_parameter_group("experimental")
    for config_inst in self.config_insts:
        luminosity = config_inst.x.luminosity
        for source in luminosity.uncertainties:  # e.g. lumi_13TeV_2017
            self.add_parameter(
                source, type=ParameterType.rate_gauss, effect=lnn_effect(luminosity, [source]), group="experimental"
            )
    tt_xsec = self.config_inst.get_process("tt").get_xsec(self.config_inst.campaign.ecm)
    self.add_parameter(
        "tt_xsec", process="tt", type=ParameterType.rate_gauss, effect=lnn_effect(tt_xsec), group="theory"
    )
    shape_sources = ("jec", "pu", "mu_id") if self.weight_uncertainties else ("jec",)
    for source in shape_sources:
        self.add_parameter(
            source,
            type=ParameterType.shape,
            config_data={config: {"shift_source": source} for config in configs},
            group="experimental",
        )
