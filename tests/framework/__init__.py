"""The framework's own tests: ``cf`` alone, run on the minimal fixture analysis in ``fixture_analysis``."""
