"""The analysis' inference model: a fit of the reference classifier's HH score with a tt control region.

``law run cf.PyhfLimit --version v1 --inference-model test_inference`` trains (if needed) and evaluates the
``dnn`` classifier, histograms every dataset with the ``jec`` calibrator (nominal, ``jec_up``, ``jec_down``),
writes the datacards and computes the expected limit on the HH signal strength.

Every class attribute can be changed for one run, e.g. ``--inference-model-settings signal_scale=100`` or
``sr_variable=test_model.score_hh`` (the guide's small model instead of the reference one).
"""

from __future__ import annotations

from cf.inference import InferenceModel, inference_model, lnn_effect

__all__ = ["test_inference"]


@inference_model(
    # the jec calibrator implements the jec_up / jec_down shifts of the "jec" shape parameter; with the
    # config's default (skip_jecunc) the shifted histograms would equal nominal and the task refuses to run
    calibrators=("jec",),
    sr_category="sr",
    sr_variable="dnn.score_hh",
    # merged bins keep enough MC events in each bin (and few MC-statistics parameters in the fit)
    sr_bin_edges=(0.0, 0.2, 0.4, 0.6, 0.7, 0.8, 0.9, 1.0),
    cr_category="cr_tt",
    cr_variable="ht",
    cr_bin_edges=(0.0, 200.0, 240.0, 280.0, 320.0, 360.0, 420.0, 500.0, 1000.0),
    signal_process="hh_ggf_bbtautau",
    asimov=False,
)
def test_inference(self: InferenceModel) -> None:
    """HH -> bbtautau: the ``dnn`` HH score in the signal region and HT in the tt control region.

    Processes HH (signal), tt and dy; the luminosity uncertainty of the config (lnN on all processes), the tt
    cross-section uncertainty (lnN, from the config process), the jet energy scale (shape, shift source
    ``jec``) and the MC statistical uncertainties. With ``asimov=True`` the observation of both categories is
    the sum of the expected backgrounds instead of the data.
    """
    config_inst = self.config_inst
    data = {"data_from_processes": True} if self.asimov else {}
    self.add_category(
        "sr",
        config_category=self.sr_category,
        config_variable=self.sr_variable,
        bin_edges=self.sr_bin_edges,
        **data,
    )
    self.add_category(
        "cr_tt",
        config_category=self.cr_category,
        config_variable=self.cr_variable,
        bin_edges=self.cr_bin_edges,
        **data,
    )

    self.add_process("HH", config_process=self.signal_process, is_signal=True)
    self.add_process("tt", config_process="tt")
    self.add_process("dy", config_process="dy")

    lumi = lnn_effect(config_inst.x.luminosity) if config_inst is not None else 1.023
    self.add_parameter("lumi_13TeV_2017", type="lnN", effect=lumi)
    tt_xsec = lnn_effect(config_inst.get_process("tt").get_xsec(13)) if config_inst is not None else (0.948, 1.045)
    self.add_parameter("tt_xsec", type="lnN", processes="tt", effect=tt_xsec)
    self.add_parameter("jec", type="shape", config_shift_source="jec")

    self.add_parameter_group("theory", ["tt_xsec"])
    self.add_parameter_group("experimental", ["lumi_13TeV_2017", "jec"])
