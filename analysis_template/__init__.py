"""The analysis package a fork renames: config, calibrators, selectors, producers, embedded sample."""

from __future__ import annotations
