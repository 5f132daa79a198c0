"""The analysis' inference models (combine datacards, pyhf workspaces and limits); listed in law.cfg."""
