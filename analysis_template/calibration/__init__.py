"""Calibration functions of the analysis (registered with cf.functions)."""
