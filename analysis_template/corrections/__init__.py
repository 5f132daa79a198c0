"""The correction files of the embedded sample, in correctionlib's schema v2 (the format of the CMS POGs)."""
