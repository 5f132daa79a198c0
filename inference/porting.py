"""Inference model of the HH -> bbtautau example, written as a columnflow analysis writes it.

Every config dependent name in config_data, parameters selected by patterns, transformations and
groups.
"""

from __future__ import annotations

from cf.inference import ParameterTransformation, ParameterType, inference_model


@inference_model
def porting_inference(self):

    #
    # categories: HT in the signal region and in the tt control region
    #

    for name in ["sr", "cr_tt"]:
        self.add_category(
            name,
            config_data={
                config_inst.name: self.category_config_spec(
                    category=name,
                    variable="ht",
                )
                for config_inst in self.config_insts
            },
            # pseudo data: the summed backgrounds (the data events are at another luminosity)
            data_from_processes=["tt", "dy"],
            mc_stats=10,
            empty_bin_value=0.0,
        )

    #
    # processes
    #

    processes = [
        ("HH", "hh_ggf_bbtautau", True),
        ("tt", "tt", False),
        ("dy", "dy", False),
    ]
    for name, config_process, is_signal in processes:
        config_data = {}
        for config_inst in self.config_insts:
            config_data[config_inst.name] = self.process_config_spec(process=config_process)
        self.add_process(name, is_signal=is_signal, config_data=config_data)

    #
    # parameters
    #

    self.add_parameter_group("experiment")
    self.add_parameter_group("theory")

    # luminosity, per uncertainty source of each config
    for config_inst in self.config_insts:
        lumi = config_inst.x.luminosity
        for unc_name in lumi.uncertainties:
            self.add_parameter(
                unc_name,
                type=ParameterType.rate_gauss,
                effect=lumi.get(names=unc_name, direction=("down", "up"), factor=True),
                transformations=[ParameterTransformation.symmetrize],
                group="experiment",
            )

    # backgrounds: a free tt normalization, a dy cross section uncertainty
    self.add_parameter("tt_norm", process="tt", type=ParameterType.rate_unconstrained, effect=1.0)
    self.add_parameter(
        "dy_xsec",
        process="dy",
        type=ParameterType.rate_gauss,
        effect=1.1,
        group="theory",
    )

    # a renormalization scale uncertainty, turned from a rate effect into shapes of all but the
    # signal
    self.add_parameter(
        "QCDscale",
        process="!HH",
        type=ParameterType.shape,
        transformations=[ParameterTransformation.effect_from_rate],
        effect=(0.9, 1.15),
    )
    self.add_parameter_to_group("QCD*", "theory")

    self.cleanup()
