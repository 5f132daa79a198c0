"""A minimal analysis for the framework tests: one config, two tiny datasets, a few column functions.

``law.cfg`` next to this package names it; nothing here imports an analysis package of the template.
"""
