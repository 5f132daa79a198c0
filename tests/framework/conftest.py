"""Fixtures of the framework tests: the fixture analysis' law environment.

``fixture_env`` (session) is a :class:`~tests.conftest.LawEnv` (built from the suite's ``law_env``, so with an
isolated store and data directory) whose ``law`` subprocesses read ``tests/framework/law.cfg`` (``LAW_CONFIG_FILE``)
and keep their task index in a temporary ``LAW_HOME``; the fixture's sample files are written into its data
directory. Run ``law`` in it with the suite's ``law_run`` / ``law_outputs`` fixtures::

    def test_something(fixture_env: LawEnv, law_run: LawRun) -> None:
        law_run("cf.SelectEvents", "--version", "v1", env=fixture_env.env)
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import tail
from tests.framework.fixture_analysis.samples import write_samples

if TYPE_CHECKING:
    from tests.conftest import LawEnv

#: The law config of the fixture analysis.
LAW_CONFIG = Path(__file__).resolve().parent / "law.cfg"


def index_tasks(env: dict[str, str]) -> None:
    """Write law's task index of the fixture law.cfg (``law index``) into the environment's ``LAW_HOME``."""
    result = subprocess.run(["law", "index", "-q"], env=env, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        pytest.fail(f"'law index' failed for {LAW_CONFIG}:\n{tail(result.stdout + result.stderr)}")


@pytest.fixture(scope="session")
def fixture_env(law_env: LawEnv, tmp_path_factory: pytest.TempPathFactory) -> LawEnv:
    """An isolated law environment of the fixture analysis, with its sample files written and its tasks indexed."""
    root = tmp_path_factory.mktemp("fixture_analysis")
    isolated = law_env.with_paths(store=root / "store", data=root / "data")
    env = replace(isolated, env={**isolated.env, "LAW_CONFIG_FILE": str(LAW_CONFIG), "LAW_HOME": str(root / "law")})
    write_samples(env.data)
    index_tasks(env.env)
    return env
