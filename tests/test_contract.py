"""The framework-analysis contract: every entry the framework reads goes through ``cf.contract`` and is on the docs'
"Layout and contract" page; a wrong entry is one clear error."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cf.contract import CONFIG_ENTRIES, DATASET_ENTRIES, PROCESS_ENTRIES, config_entry, process_entry
from cf.util import UserError

ROOT = Path(__file__).resolve().parent.parent
#: The modules allowed to read auxiliary entries directly: the contract itself, and the config columns of
#: ``cf.functions.ConfigColumns``, whose entry names the analysis chooses for its own functions.
DIRECT_READERS = {"cf/contract.py", "cf/functions.py"}


def code_tokens(path: Path) -> list[str]:
    """The source of a module without strings and comments, as one token string per line."""
    kept = [
        token.string
        for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        if token.type not in {tokenize.STRING, tokenize.COMMENT}
    ]
    return kept


def test_the_framework_reads_auxiliary_entries_only_through_the_contract() -> None:
    offenders = []
    for path in sorted((ROOT / "cf").rglob("*.py")):
        relative = str(path.relative_to(ROOT))
        tokens = code_tokens(path)
        reads = [
            i for i in range(len(tokens) - 2) if tokens[i] == "." and tokens[i + 1] == "x" and tokens[i + 2] in "(."
        ]
        if reads and relative not in DIRECT_READERS:
            offenders.append(relative)
    assert not offenders, f"read config.x entries through cf.contract.config_entry: {offenders}"


def test_the_docs_page_lists_every_entry_with_its_type() -> None:
    page = (ROOT / "docs" / "contract.md").read_text()
    rows = {
        match.group(1): match.group(2)
        for match in re.finditer(r"^\| `(?:config|dataset|process)\.x\.(\w+)` \| ([^|]+) \|", page, flags=re.MULTILINE)
    }
    entries = {**CONFIG_ENTRIES, **DATASET_ENTRIES, **PROCESS_ENTRIES}
    assert set(rows) == set(entries)
    for name, entry in entries.items():
        assert rows[name].strip() == entry.type_text, name


class FakeConfig(SimpleNamespace):
    """An order-like object with auxiliary entries (``x(name, default)``)."""

    def x(self, name: str, default: Any = None) -> Any:
        return self.aux.get(name, default)

    def has_tag(self, tag: str) -> bool:
        return tag in self.tags


def test_entries_get_their_defaults_and_a_wrong_type_is_one_clear_error() -> None:
    config = FakeConfig(name="c", aux={"default_producers": ["a", "b"], "event_weights": {"w": "pu"}}, tags=())
    assert config_entry(config, "default_selector") == "default"
    assert config_entry(config, "default_producers") == ["a", "b"]
    with pytest.raises(UserError, match=r"config 'c': x.event_weights must be a dict of weight column -> tuple of "):
        config_entry(config, "event_weights")
    with pytest.raises(UserError, match=r"config 'c': x.luminosity must be a scinum.Number in pb\^-1, got None"):
        config_entry(config, "luminosity")
    process = FakeConfig(name="p", aux={"is_signal": "yes"}, tags=())
    with pytest.raises(UserError, match=r"process 'p': x\.is_signal must be a bool, got 'yes'"):
        process_entry(process, "is_signal")
