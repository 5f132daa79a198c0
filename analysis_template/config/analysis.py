"""The analysis object that law.cfg points the framework to: ``analysis_template.config.analysis.analysis_template``.

Importing this module builds the processes, the campaign with its datasets and all configs; it reads no files.
"""

from __future__ import annotations

import order as od

from analysis_template.config import config_run2_2017
from analysis_template.config.campaign_run2_2017_nano_uhh_v11 import campaign_run2_2017_nano_uhh_v11

__all__ = ["analysis_template"]

analysis_template = od.Analysis(name="analysis_template", id=1)

# the luminosity of this config is a small slice of 2017, matching the embedded pseudo-data
config_run2_2017.add_config(
    analysis_template,
    campaign_run2_2017_nano_uhh_v11,
    config_name="run2_2017_nano_uhh_v11_limited",
    config_id=1,
)
