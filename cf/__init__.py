"""cf: a columnar analysis framework on law and order, with k-fold machine learning built in.

Importing ``cf`` is cheap and has no side effects: tasks, registries and models are only loaded
when law or the user asks for them.
"""

from __future__ import annotations

__version__ = "0.1.0"
