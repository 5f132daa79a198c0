"""The resonance search's inference model: the parametrized network's score at one mass of X -> HH -> bbtautau.

``law run cf.PlotLimitsVsMass --version v1 --inference-model resonant_inference --masses 300,500,1000`` computes
the limit at every mass (``mass=<m>``, one ``cf.PyhfLimit`` each) and plots it against the mass. One mass at a
time::

    law run cf.PyhfLimit --version v1 --inference-model resonant_inference --inference-model-settings mass=500

The signal is normalised to the reference cross section of the config (sigma x BR(X -> HH) = 1 pb, see
``analysis_template.config.processes``), so the limit on the signal strength ``r`` is the limit on
sigma(pp -> X) x BR(X -> HH) in pb. The numbers follow the config's luminosity.
"""

from __future__ import annotations

from analysis_template.config.processes import x_hh_bbtautau_masses
from cf.inference import InferenceModel, ParameterType, inference_model, lnn_effect, setting

__all__ = ["resonant_inference"]

#: The masses in GeV with a signal sample (``x_hh_bbtautau_m<mass>``).
MASSES = tuple(x_hh_bbtautau_masses)


@inference_model(
    poi_label=r"95% CL limit on $\sigma(pp \rightarrow X) \times B(X \rightarrow HH)$ [pb]",
    mass=setting(500, "the mass of X in GeV (signal process, score variable)", choices=MASSES),
    ml_model=setting("param_dnn", "the parametrized ML model whose score is fitted"),
    category=setting("sr", "the signal region's category"),
    # merged bins keep enough MC events in each bin (and few MC-statistics parameters in the fit)
    bin_edges=setting((0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0), "the bin edges of the score"),
    # as in test_inference: the MC is at the config's luminosity, the pseudo-data events
    # at a small slice of it
    observation=setting(
        "toy",
        "the observed data: 'toy' (a Poisson toy of the expected backgrounds, seeded by "
        "toy_seed), 'asimov' (the expected backgrounds) or 'events' (the data datasets, only "
        "where they have the MC's luminosity)",
        choices=("toy", "asimov", "events"),
    ),
    toy_seed=setting(1, "the seed of the Poisson toy of observation=toy", minimum=0),
)
def resonant_inference(self: InferenceModel) -> None:
    """X -> HH -> bbtautau at ``mass``: the ``param_dnn`` score at that mass in the signal region.

    Processes: the resonant signal of the mass (times the reference cross section), tt, Drell-Yan
    and the non-resonant HH (a background here). Parameters: the luminosity uncertainty of each
    config (lnN on all processes), the tt cross-section uncertainty (lnN) and the MC statistical
    uncertainties. The observation is a seeded Poisson toy of the expected backgrounds
    (``observation=toy``), their sum (``observation=asimov``: no observed limit) or the data
    datasets (``observation=events``).
    """
    configs = [config_inst.name for config_inst in self.config_insts]
    variable = f"{self.ml_model}.score_m{self.mass}"
    region = {"category": self.category, "variable": variable}
    self.add_category(
        "sr",
        config_data={config: dict(region) for config in configs},
        data_from_processes=None if self.observation == "events" else ["tt", "dy", "hh"],
        data_toy_seed=self.toy_seed if self.observation == "toy" else None,
        mc_stats=True,
        bin_edges=self.bin_edges,
        empty_bin_value=0.0,
    )
    processes = (
        ("X", f"x_hh_bbtautau_m{self.mass}", True),
        ("tt", "tt", False),
        ("dy", "dy", False),
        ("hh", "hh_ggf_bbtautau", False),
    )
    for name, process, is_signal in processes:
        self.add_process(
            name,
            is_signal=is_signal,
            config_data={config: {"process": process} for config in configs},
            skip_if_empty=False,
        )

    self.add_parameter_group("theory")
    self.add_parameter_group("experimental")
    for config_inst in self.config_insts:
        luminosity = config_inst.x.luminosity
        for source in luminosity.uncertainties:
            effect = lnn_effect(luminosity, [source])
            self.add_parameter(
                source,
                type=ParameterType.rate_gauss,
                effect=effect,
                group="experimental",
            )
    tt_xsec = self.config_inst.get_process("tt").get_xsec(self.config_inst.campaign.ecm)
    self.add_parameter(
        "tt_xsec",
        process="tt",
        type=ParameterType.rate_gauss,
        effect=lnn_effect(tt_xsec),
        group="theory",
    )
