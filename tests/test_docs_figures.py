"""The pictures of the docs (``docs/_ext/cf_figures.py``): made from real outputs at every build, never stale.

* Every picture has a ``{figure}`` on the results page, under the command that makes it (the page shows the
  extension's commands verbatim).
* The task graph's layout: implied arrows are left out, each family sits below everything it needs.
* (slow) The session's docs build (fixture ``docs_build``, pictures from the session's stores), made after a stale
  file and a stale copy of a picture were put into the generated folder: every picture in the built site is a
  valid PNG of a sensible size written during this build and shown on a page, nothing had to be run, and the stale
  file is gone.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from docs._ext.cf_figures import FIGURES_DIR, RUNS, TASK_GRAPH
from tests.conftest import PNG_MAGIC, STALE_FIGURE, DocsBuild
from tests.test_docs import parse_fences

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FIGURES = DOCS / FIGURES_DIR
RESULTS_PAGE = DOCS / "user_guide" / "results.md"
#: Every picture the extension makes.
FIGURE_NAMES = sorted([TASK_GRAPH, *(name for run in RUNS for name in run.figures)])
#: The smallest and largest width or height of a picture, in pixels.
PIXELS = (400, 4000)


# the results page


def results_figures() -> list[str]:
    return [Path(fence.argument).name for fence in parse_fences(RESULTS_PAGE) if fence.directive == "figure"]


def test_every_picture_has_a_figure_on_the_results_page() -> None:
    assert sorted(results_figures()) == FIGURE_NAMES


def test_the_results_page_shows_each_command_after_its_first_picture() -> None:
    figures: list[str] = []
    # each command line of a shell listing, with the pictures above it
    shown: dict[str, list[str]] = {}
    for fence in parse_fences(RESULTS_PAGE):
        if fence.directive == "figure":
            figures.append(Path(fence.argument).name)
        elif fence.info == "shell":
            # a long command continues over several lines
            for line in fence.content.replace("\\\n", " ").splitlines():
                shown.setdefault(" ".join(line.split()), list(figures))
    for run in RUNS:
        assert run.command in shown, f"the results page does not show '{run.command}'"
        first = min(run.figures, key=figures.index)
        assert first in shown[run.command], f"'{run.command}' comes before its picture {first}"


# the task graph


def test_the_task_graph_leaves_out_implied_arrows_and_layers_the_families() -> None:
    from docs._ext.cf_task_graph import layers, reduced_edges

    edges = frozenset({("a", "b"), ("b", "c"), ("a", "c"), ("c", "d"), ("a", "d"), ("e", "d")})
    reduced = reduced_edges(edges)
    assert reduced == {("a", "b"), ("b", "c"), ("c", "d"), ("e", "d")}
    assert layers("abcde", reduced) == {"a": 0, "b": 1, "c": 2, "d": 3, "e": 0}


# the build (the session's one docs build, fixture ``docs_build``)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG file (from its IHDR chunk); fails the test when it is none."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC, f"{path} is not a PNG file"
    assert head[12:16] == b"IHDR", f"{path} has no PNG header chunk"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def pages_showing(html: Path, name: str) -> list[str]:
    image = re.compile(rf'<img[^>]+src="(?:\.\./)*_images/{re.escape(name)}"')
    return sorted(str(page.relative_to(html)) for page in html.rglob("*.html") if image.search(page.read_text()))


@pytest.mark.slow
@pytest.mark.sandbox
@pytest.mark.parametrize("name", FIGURE_NAMES)
def test_every_picture_is_a_new_png_shown_on_a_page(docs_build: DocsBuild, name: str) -> None:
    path = docs_build.html / "_images" / name
    assert path.is_file(), f"the built site has no {name}"
    assert all(PIXELS[0] <= pixels <= PIXELS[1] for pixels in png_size(path)), png_size(path)
    # the extension writes the figures during the build; Sphinx keeps their time when it copies them
    assert path.stat().st_mtime >= docs_build.start - 1, f"{name} was not written by this build"
    assert "user_guide/results.html" in pages_showing(docs_build.html, name)


@pytest.mark.slow
@pytest.mark.sandbox
def test_the_build_took_every_picture_from_the_stores_and_removed_the_stale_file(docs_build: DocsBuild) -> None:
    assert "cf_figures: running" not in docs_build.output, "the build ran a command whose outputs the stores lack"
    assert "cf_figures: figures from" in docs_build.output
    assert not (FIGURES / STALE_FIGURE).exists()
    assert not (docs_build.html / "_images" / STALE_FIGURE).exists()
    assert "inference.html" in pages_showing(docs_build.html, "limits.png")
