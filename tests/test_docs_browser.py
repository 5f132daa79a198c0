"""The built docs in a real browser: headless Chromium (Debian's package) opens every page.

A page fails on an image that does not load, an empty code block, or a code box wider than its box (a reader
would have to scroll sideways). The ML, inference and getting-started pages must show pictures. CI installs
Chromium (bin/cf_test); elsewhere the test is skipped without it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import DocsBuild

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

ROOT = Path(__file__).resolve().parent.parent
#: Pages that must show at least one picture.
PAGES_WITH_PICTURES = ("user_guide/machine_learning.html", "inference.html", "user_guide/getting_started.html")
#: Generated pages without content of their own.
SKIPPED_PAGES = {"genindex.html", "search.html", "py-modindex.html"}


def require_chromium() -> None:
    if shutil.which("chromium") and shutil.which("chromedriver"):
        return
    message = "Chromium is not installed (Debian: apt-get install chromium chromium-driver)"
    if os.environ.get("CI", "").lower() not in {"", "0", "false", "no"}:
        pytest.fail(f"{message}; bin/cf_test installs it in CI")
    pytest.skip(message)


@pytest.fixture(scope="module")
def built_docs(docs_build: DocsBuild) -> Path:
    """The session's docs build (pictures from this session's outputs); skipped without Chromium."""
    require_chromium()
    return docs_build.html


def browse(build: Path, pages: list[str], env: dict[str, str]) -> list[dict[str, object]]:
    """The findings of tests/browser/check_pages.py (run in the venv_docs_browser sandbox) per page."""
    script = f'source sandboxes/venv_docs_browser.sh && python tests/browser/check_pages.py "{build}" "$@"'
    result = subprocess.run(
        ["bash", "-c", script, "check_pages", *pages],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    findings = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(findings) == len(pages), (result.stdout + result.stderr)[-5000:]
    return findings


def test_every_page_renders_its_images_and_code_boxes_in_a_browser(built_docs: Path, docs_env: dict[str, str]) -> None:
    pages = sorted(
        str(path.relative_to(built_docs))
        for path in built_docs.rglob("*.html")
        if path.name not in SKIPPED_PAGES and "_modules" not in path.parts
    )
    findings = {
        Path(finding["page"]).relative_to(built_docs).as_posix(): finding
        for finding in browse(built_docs, pages, docs_env)
    }
    broken = {page: f["broken_images"] for page, f in findings.items() if f["broken_images"]}
    empty = {page: f["empty_code_boxes"] for page, f in findings.items() if f["empty_code_boxes"]}
    overflowing = {page: f["overflowing_code_boxes"] for page, f in findings.items() if f["overflowing_code_boxes"]}
    assert not broken, f"images that do not load: {broken}"
    assert not empty, f"empty code blocks: {empty}"
    assert not overflowing, f"code boxes wider than the page (their longest line): {overflowing}"
    for page in PAGES_WITH_PICTURES:
        assert findings[page]["images"], f"{page} shows no picture"
    assert sum(f["code_boxes"] for f in findings.values()) > 50  # the check saw the listings
