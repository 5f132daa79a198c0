"""The order configuration of the analysis: processes, the campaign with its datasets, and the configs."""

from __future__ import annotations
