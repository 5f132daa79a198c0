"""Production functions of the analysis (registered with cf.functions)."""
