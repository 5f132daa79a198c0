"""The analysis object that law.cfg points the framework to: ``analysis_template.config.analysis.analysis_template``.

Importing this module builds the processes, the campaign with its datasets and all configs; it reads no files.
"""

from __future__ import annotations

import order as od

from analysis_template.config import campaigns, objects
from analysis_template.config.configs import add_config

__all__ = ["analysis_template"]

analysis_template = od.Analysis(name="analysis_template", id=1)

# the luminosity of each config is a small slice of its year, matching the embedded pseudo-data
add_config(
    analysis_template,
    campaigns.campaign_run2_2017_nano_uhh_v11,
    config_name="run2_2017_nano_uhh_v11_limited",
    config_id=1,
    objects=objects.NANO_V9_2017,
)
add_config(
    analysis_template,
    campaigns.campaign_run2_2018_nano_v6,
    config_name="run2_2018_nano_v6_limited",
    config_id=2,
    objects=objects.NANO_V6_2018,
)
add_config(
    analysis_template,
    campaigns.campaign_run2_2016_nano_v1,
    config_name="run2_2016_nano_v1_limited",
    config_id=3,
    objects=objects.NANO_V1_2016,
)
add_config(
    analysis_template,
    campaigns.campaign_run3_2022_preee_nano_v12,
    config_name="run3_2022_preee_nano_v12_limited",
    config_id=4,
    objects=objects.NANO_V12_2022,
)
add_config(
    analysis_template,
    campaigns.campaign_run3_2024_nano_v15,
    config_name="run3_2024_nano_v15_limited",
    config_id=5,
    objects=objects.NANO_V15_2024,
)
