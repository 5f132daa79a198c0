"""The analysis' ML models; the modules are listed in law.cfg ``ml_modules``."""
