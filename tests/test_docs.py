"""Tests of the documentation in ``docs/``: what it shows is what the code is and what the tests run.

* Every ``literalinclude`` resolves (through Sphinx's own reader) to a non-empty range; a range of a ``.py`` file
  parses as Python and consists of exactly the definition(s) it names: a ``:pyobject:`` is that object, and a
  ``:start-at:`` / ``:end-at:`` range holds whole statements and at most one whole function or class, so that it
  cannot spill into the next method.
* The machine learning chapter has no typed Python block, has a section for every item of its outline (in order),
  and every shell command it shows is one that ``tests/test_ml_chain.py`` runs, with the same parameters. The
  commands are read from the test module's calls of ``law_run``, ``law_outputs`` and ``evaluation_files`` by
  running those helpers with a recorder in place of ``law``.
* Every listing is readable: no line of a code block or of an included range (as rendered) of any page or of the
  README is wider than 100 characters.
* The README starts with the guide's commands (the same as the ML chapter's) and the test command; the outputs
  that the getting-started page and the ML chapter show are recorded by the tests that run the commands
  (``tests/doc_outputs.py``), and every listing of commands on those pages is followed by its output.
* The API reference documents every module of ``cf``, the task overview every task and its parameters.
* (slow) ``sphinx-build -W --keep-going`` builds the site without a warning.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from markdown_it import MarkdownIt
from myst_parser.parsers.directives import parse_directive_text
from sphinx.directives.code import LiteralInclude, LiteralIncludeReader

from tests.conftest import DocsBuild
from tests.doc_outputs import (
    OUTPUTS,
    README,
    WIDTH,
    check_transcript,
    readme_blocks,
    readme_law_commands,
    shell_commands,
)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
ML_CHAPTER = DOCS / "user_guide" / "machine_learning.md"
GETTING_STARTED = DOCS / "user_guide" / "getting_started.md"
TASK_OVERVIEW = DOCS / "user_guide" / "task_overview.md"
EXAMPLES = DOCS / "user_guide" / "examples"
ML_CHAIN_TESTS = ROOT / "tests" / "test_ml_chain.py"

#: The outline of the machine learning chapter: one heading (a regular expression) per item, in this order.
ML_CHAPTER_SECTIONS = (
    r"two-step procedure",
    r"Step 1: defining the model class",
    r"`sandbox`",
    r"`datasets`",
    r"`uses`",
    r"`produces`",
    r"`output`",
    r"`open_model`",
    r"`train`",
    r"`evaluate`",
    r"Step 2: .*`derive`",
    r"`ml_modules` and `inference_modules`",
    r"Training and evaluating",
    r"Optional functions",
    r"`training_calibrators`",
    r"`training_selector`",
    r"`training_producers`",
    r"`training_configs`",
    r"`evaluation_producers`",
    r"`setup`",
    r"`--ml-model-settings`",
    r"`cf\.PlotMLResults`",
    r"ONNX",
)
#: Languages of fenced blocks that show shell commands.
SHELL_LANGUAGES = frozenset({"bash", "sh", "shell", "console", "zsh"})
PYTHON_LANGUAGES = frozenset({"python", "py", "python3", "pycon", "ipython", "ipython3"})
#: Directives whose content is markdown that may hold further directives.
NESTING_DIRECTIVES = frozenset({"note", "tip", "hint", "important", "warning", "caution", "attention", "admonition"})
#: Modules of cf that are not documented in the API reference, with the reason.
UNDOCUMENTED_MODULES = {
    "cf.create_analysis": "belongs to the template only (a fork does not get it); documented in the template guide",
}
#: Parameters of the batch workflows, documented on the batch systems page rather than in the task overview.
WORKFLOW_PARAMETER_MODULES = ("cf.tasks.remote",)


# markdown parsing


@dataclass(frozen=True)
class Fence:
    """A fenced block of a page: a code block (``info`` is its language) or a directive (``{name} argument``)."""

    page: Path
    line: int
    info: str
    content: str

    @property
    def directive(self) -> str | None:
        match = re.match(r"^\{([\w-]+)\}", self.info)
        return match.group(1) if match else None

    @property
    def argument(self) -> str:
        return re.sub(r"^\{[\w-]+\}", "", self.info).strip()

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


_markdown = MarkdownIt("commonmark")


def parse_fences(page: Path, text: str | None = None, line_offset: int = 0) -> Iterator[Fence]:
    """The fenced blocks of a page, including those nested in admonitions."""
    text = page.read_text() if text is None else text
    for token in _markdown.parse(text):
        if token.type != "fence":
            continue
        fence = Fence(page, line_offset + (token.map[0] + 1 if token.map else 0), token.info.strip(), token.content)
        yield fence
        if fence.directive in NESTING_DIRECTIVES:
            yield from parse_fences(page, fence.content, fence.line)


def headings(page: Path) -> list[str]:
    tokens = _markdown.parse(page.read_text())
    return [tokens[i + 1].content for i, token in enumerate(tokens) if token.type == "heading_open"]


def doc_pages() -> list[Path]:
    build = DOCS / "_build"
    return sorted(p for p in DOCS.rglob("*.md") if build not in p.parents and EXAMPLES not in p.parents)


# literalinclude


@dataclass(frozen=True)
class Include:
    """A ``literalinclude`` directive and the lines it includes."""

    fence: Fence
    path: Path
    options: dict[str, Any]

    def read(self) -> tuple[str, int, int]:
        """The included text and its first and last line in the file, as Sphinx's reader computes them."""
        options = {**self.options, "lineno-match": True}
        reader = LiteralIncludeReader(self.path, options, SimpleNamespace(source_encoding="utf-8-sig"))  # type: ignore[arg-type]
        text, n_lines = reader.read()
        return text, reader.lineno_start, reader.lineno_start + n_lines - 1

    def __str__(self) -> str:
        return f"{self.fence.where} ({self.path.relative_to(ROOT)} {self.options})"


def literal_includes(pages: list[Path]) -> list[Include]:
    includes = []
    for page in pages:
        for fence in parse_fences(page):
            if fence.directive != "literalinclude":
                continue
            result = parse_directive_text(LiteralInclude, fence.argument, fence.content)
            assert not result.warnings, f"{fence.where}: {result.warnings}"
            (argument,) = result.arguments
            # like Sphinx: relative to the page, or to the docs directory when it starts with "/"
            base = DOCS if argument.startswith("/") else page.parent
            path = (base / argument.lstrip("/")).resolve()
            includes.append(Include(fence, path, dict(result.options)))
    return includes


ALL_INCLUDES = literal_includes(doc_pages())


def _first_line(node: ast.stmt) -> int:
    decorators = getattr(node, "decorator_list", [])
    return min([node.lineno, *(d.lineno for d in decorators)])


def _statement_containers(tree: ast.Module) -> dict[ast.stmt, tuple[ast.AST, list[ast.stmt]]]:
    """Each statement's parent node and the statement list it belongs to."""
    containers: dict[ast.stmt, tuple[ast.AST, list[ast.stmt]]] = {}
    for parent in ast.walk(tree):
        for _, value in ast.iter_fields(parent):
            if isinstance(value, list) and value and all(isinstance(item, ast.stmt) for item in value):
                for item in value:
                    containers[item] = (parent, value)
    return containers


def _find_object(tree: ast.Module, dotted: str) -> ast.stmt:
    body: list[ast.stmt] = tree.body
    node: ast.stmt | None = None
    for name in dotted.split("."):
        candidates = [
            n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == name
        ]
        assert candidates, f"no definition '{dotted}'"
        node = candidates[-1]
        body = node.body
    assert node is not None
    return node


def _is_code(line: str) -> bool:
    return bool(line.strip()) and not line.strip().startswith("#")


DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def covered_statements(tree: ast.Module, lines: list[str], first: int, last: int) -> list[ast.stmt]:
    """The whole statements that the lines ``first ... last`` consist of (comment and blank lines aside).

    The range must start at the first line of a statement and end at the last line of a sibling of it, or, for a
    class, of a statement in its body (the head of a class: its first line and a prefix of its body).

    Raises:
        AssertionError: If the range starts or ends inside a statement.
    """
    code = [n for n in range(first, last + 1) if _is_code(lines[n - 1])]
    assert code, "the range holds no code"
    start, end = code[0], code[-1]
    containers = _statement_containers(tree)
    starts = [n for n in containers if _first_line(n) == start or n.lineno == start]
    ends = [n for n in containers if n.end_lineno == end]
    for s in starts:
        siblings = containers[s][1]
        for e in ends:
            if containers[e][1] is siblings and siblings.index(s) <= siblings.index(e):
                return siblings[siblings.index(s) : siblings.index(e) + 1]
            if isinstance(s, ast.ClassDef) and containers[e][1] is s.body:
                return s.body[: s.body.index(e) + 1]
    raise AssertionError(f"lines {start}-{end} do not start and end at the boundaries of whole statements")


@pytest.mark.parametrize("include", ALL_INCLUDES, ids=str)
def test_literalinclude_is_a_non_empty_range_of_whole_definitions(include: Include) -> None:
    assert include.path.is_file(), f"{include}: the file does not exist"
    text, first, last = include.read()
    assert text.strip(), f"{include}: the range is empty"
    if include.path.suffix != ".py":
        return
    try:
        ast.parse(textwrap.dedent(text))
    except SyntaxError as error:
        pytest.fail(f"{include}: the included lines do not parse as Python: {error}")
    source = include.path.read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    has_range = any(key in include.options for key in ("start-at", "start-after", "end-at", "end-before", "lines"))
    if "pyobject" in include.options:
        node = _find_object(tree, include.options["pyobject"])
        assert node.end_lineno is not None
        assert _first_line(node) <= first <= last <= node.end_lineno, f"{include}: the range leaves the object"
        if not has_range:
            # Sphinx includes the decorators of the object
            assert (first, last) == (_first_line(node), node.end_lineno), f"{include}: not exactly the object"
            return
    if not has_range and "pyobject" not in include.options:
        # a whole file (the porting guide shows complete modules): nothing can spill into a neighbour
        assert (first, last) == (1, len(lines)), f"{include}: not the whole file"
        return
    statements = covered_statements(tree, lines, first, last)
    definitions = [node for node in statements if isinstance(node, DEFINITIONS)]
    assert len(definitions) <= 1, (
        f"{include}: the range holds the definitions {[d.name for d in definitions]}; include one per directive "
        "(:pyobject:)"
    )
    if definitions:
        assert statements == definitions, (
            f"{include}: the range holds more than the definition of {definitions[0].name}"
        )


def test_every_page_was_searched_for_includes() -> None:
    # guards the parser: the ML chapter is built from includes
    assert sum(include.fence.page == ML_CHAPTER for include in ALL_INCLUDES) >= 20


# readable listings

#: Pages that still have lines wider than the code box, with the reason; their test fails (strictly) once fixed.
WIDE_PAGES: dict[str, str] = {}
#: Directives whose content is shown as a listing.
CODE_DIRECTIVES = frozenset({"code-block", "code", "sourcecode"})


def listed_lines(page: Path) -> Iterator[tuple[str, str]]:
    """(where, line) for every line a page lists: its code blocks and its included ranges, as rendered."""
    for fence in parse_fences(page):
        if fence.directive is None or fence.directive in CODE_DIRECTIVES:
            for offset, line in enumerate(fence.content.splitlines(), start=1):
                yield f"{fence.page.relative_to(ROOT)}:{fence.line + offset}", line
    for include in literal_includes([page]):
        text, first, _ = include.read()
        for offset, line in enumerate(text.splitlines()):
            yield f"{include} line {first + offset}", line


def _page_param(page: Path) -> Any:
    name = str(page.relative_to(ROOT))
    marks = [pytest.mark.xfail(strict=True, reason=WIDE_PAGES[name])] if name in WIDE_PAGES else []
    return pytest.param(page, id=name, marks=marks)


@pytest.mark.parametrize("page", [_page_param(page) for page in [README, *doc_pages()]])
def test_every_listed_line_fits_the_code_box(page: Path) -> None:
    wide = [f"{where} ({len(line)} characters): {line}" for where, line in listed_lines(page) if len(line) > WIDTH]
    assert not wide, (
        f"lines wider than {WIDTH} characters (split commands with '\\' continuations, wrap the included code in "
        "its source or include a narrower range):\n" + "\n".join(wide)
    )


def test_the_width_check_sees_every_kind_of_listing() -> None:
    # guards the parser: README code blocks, blocks nested in admonitions and included ranges are all read
    readme = [where for where, _ in listed_lines(README)]
    assert any(where.startswith("README.md:") for where in readme)
    ml = [where for where, _ in listed_lines(ML_CHAPTER)]
    assert any("examples/outputs/" in where for where in ml)
    assert any("ml/test.py" in where for where in ml)


# the machine learning chapter


def test_ml_chapter_has_no_typed_python() -> None:
    for fence in parse_fences(ML_CHAPTER):
        language = fence.info.split()[0].lower() if fence.info else ""
        if fence.directive in {"code-block", "code", "sourcecode"}:
            language = fence.argument.split()[0].lower() if fence.argument else ""
        assert language not in PYTHON_LANGUAGES, f"{fence.where}: typed Python block; use a literalinclude"
        assert fence.directive != "eval-rst", f"{fence.where}: an eval-rst block could hide typed code"


def test_ml_chapter_has_a_section_for_every_item_in_order() -> None:
    titles = headings(ML_CHAPTER)
    position = -1
    for pattern in ML_CHAPTER_SECTIONS:
        found = [i for i, title in enumerate(titles) if re.search(pattern, title)]
        assert found, f"no section heading matches {pattern!r} in {ML_CHAPTER.name}; headings: {titles}"
        after = [i for i in found if i > position]
        assert after, f"the section {pattern!r} comes before the previous item of the outline"
        position = after[0]


def ml_chapter_commands() -> list[tuple[str, tuple[str, ...]]]:
    """(where, command) of every shell command the ML chapter shows: typed blocks and included listings."""
    shown = []
    for fence in parse_fences(ML_CHAPTER):
        language = fence.info.split()[0].lower() if fence.info and not fence.directive else ""
        if language in SHELL_LANGUAGES:
            shown += [(fence.where, command) for command in shell_commands(fence.content)]
    for include in ALL_INCLUDES:
        # listings of commands live in examples/; other shell files (sandbox setup files) are shown, not run
        if include.fence.page == ML_CHAPTER and EXAMPLES in include.path.parents and include.path.suffix == ".sh":
            shown += [(str(include), command) for command in shell_commands(include.read()[0])]
    return shown


class _RecordedEnv(SimpleNamespace):
    env: dict[str, str]


def commands_run_by_ml_chain_tests(monkeypatch: pytest.MonkeyPatch) -> set[tuple[str, ...]]:
    """The ``law run`` commands that tests/test_ml_chain.py runs with literal parameters.

    Each call of ``law_run``, ``law_outputs`` or ``evaluation_files`` whose parameters are module constants
    (``*TRAIN``) and string literals is replayed with the real helpers, ``law`` replaced by a recorder.
    """
    from tests import conftest

    chain = importlib.import_module("tests.test_ml_chain")
    recorded: list[tuple[str, ...]] = []

    def record(*args: str, env: Any, check: bool = True, timeout: float = 0.0) -> subprocess.CompletedProcess[str]:
        recorded.append(("law", "run", *args))
        return subprocess.CompletedProcess(["law", "run", *args], 0, "", "")

    monkeypatch.setattr(conftest, "run_law", record)
    env = _RecordedEnv(env={})
    # helper name -> (function, the arguments replacing its leading non-command parameters)
    helpers: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
        "law_run": (record, ()),
        "law_outputs": (conftest.print_outputs, ()),
        "evaluation_files": (chain.evaluation_files, (env, conftest.print_outputs)),
    }

    def literal(node: ast.expr) -> list[str] | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.Starred) and isinstance(node.value, ast.Name):
            value = getattr(chain, node.value.id, None)
            if isinstance(value, tuple) and all(isinstance(item, str) for item in value):
                return list(value)
        return None

    for node in ast.walk(ast.parse(ML_CHAIN_TESTS.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in helpers):
            continue
        function, leading = helpers[node.func.id]
        parts = [literal(arg) for arg in node.args[len(leading) :]]
        if any(part is None for part in parts):
            continue  # parameters computed at run time
        kwargs = {kw.arg: kw.value.value for kw in node.keywords if kw.arg and isinstance(kw.value, ast.Constant)}
        if any(kw.arg == "env" for kw in node.keywords):
            kwargs["env"] = {}  # the environment of the run does not change the command
        args = [item for part in parts for item in part or ()]
        accepted = inspect.signature(function).parameters
        function(*leading, *args, **{key: value for key, value in kwargs.items() if key in accepted})
    return set(recorded)


def test_every_ml_chapter_command_is_run_by_the_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    tested = commands_run_by_ml_chain_tests(monkeypatch)
    assert any("cf.MLTraining" in command for command in tested), "no training command found in the ML chain tests"
    shown = ml_chapter_commands()
    families = {command[2] for _, command in shown if command[:2] == ("law", "run")}
    assert {"cf.MLTraining", "cf.MLEvaluation"} <= families, "the chapter shows no training or evaluation command"
    for where, command in shown:
        assert command in tested, (
            f"{where}: '{shlex.join(command)}' is not a command of tests/test_ml_chain.py; the tested ones are:\n"
            + "\n".join(sorted(shlex.join(c) for c in tested))
        )


def test_readme_starts_with_the_guides_commands_and_the_test_command() -> None:
    from tests.conftest import TEST_MODEL_EVALUATE, TEST_MODEL_TRAIN

    text = README.read_text()
    assert text.startswith("# "), "the README starts with its title"
    assert text.split("```")[0].count("\n") == 2, "the README's first command must follow its title"
    first, second, *_ = readme_blocks(text)
    assert first.startswith("source setup.sh &&"), first
    # the getting-started page shows what these print: the ML chapter's commands, recorded by test_ml_chain.py
    assert readme_law_commands() == [
        ("law", "run", *TEST_MODEL_TRAIN),
        ("law", "run", *TEST_MODEL_EVALUATE),
        ("law", "run", *TEST_MODEL_EVALUATE, "--print-output", "0"),
    ]
    assert shell_commands(second) == [("bash", "bin/cf_test")]


def test_every_listing_of_commands_is_followed_by_its_output() -> None:
    # the ML chapter: each included listing of commands, then outputs/<listing>.txt
    includes = [include for include in ALL_INCLUDES if include.fence.page == ML_CHAPTER]
    for include, following in zip(includes, [*includes[1:], None], strict=True):
        if include.path.parent == EXAMPLES and include.path.suffix == ".sh":
            expected = OUTPUTS / f"{include.path.stem}.txt"
            assert following is not None, f"{include}: not followed by {expected}"
            assert following.path == expected, f"{include}: not followed by {expected}"
    # the getting-started page: the README's first command, and later what it prints
    includes = [include for include in ALL_INCLUDES if include.fence.page == GETTING_STARTED]
    command = [i for i, include in enumerate(includes) if include.read()[0].startswith("source setup.sh &&")]
    output = [i for i, include in enumerate(includes) if include.path == OUTPUTS / "getting_started.txt"]
    assert command, "the getting-started page does not include the README's first command"
    assert output, "the getting-started page does not show what the README's first command prints"
    assert command[0] < output[0], "the output of the README's first command comes before the command"


def test_every_recorded_output_is_shown() -> None:
    shown = {include.path for include in ALL_INCLUDES if include.path.parent == OUTPUTS}
    unused = sorted(path.name for path in set(OUTPUTS.glob("*.txt")) - shown)
    assert not unused, f"recorded outputs that no page includes: {unused}"


def run_example(name: str) -> subprocess.CompletedProcess[str]:
    """Run ``docs/user_guide/examples/<name>`` in the base environment; fails the test on a non-zero exit."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, str(EXAMPLES / name)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_ml_requires_example_prints_the_requirements_of_the_hook() -> None:
    check_transcript("ml_requires", [run_example("ml_requires.py")], {}, check_commands=False)


def test_ml_settings_example_runs() -> None:
    result = run_example("ml_settings.py")
    *described, path = result.stdout.splitlines()
    assert re.fullmatch(r"ml__test_model__[0-9a-f]{10}", path), result.stdout
    assert "epochs: an integer >= 1 (default 5) - training epochs" in described, result.stdout


# reference pages


def documented_modules() -> set[str]:
    modules = set()
    for page in doc_pages():
        for fence in parse_fences(page):
            if fence.directive == "eval-rst":
                modules |= set(re.findall(r"^\.\. automodule:: ([\w.]+)", fence.content, flags=re.MULTILINE))
            elif fence.directive == "automodule":
                modules.add(fence.argument)
    return modules


def cf_modules() -> set[str]:
    names = set()
    for path in (ROOT / "cf").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_api_reference_documents_every_module() -> None:
    missing = sorted(cf_modules() - documented_modules() - set(UNDOCUMENTED_MODULES))
    assert not missing, f"modules without an automodule in docs/api/: {missing}"


def task_parameters() -> dict[str, list[str]]:
    """``{task family: [its cf parameters as --flags]}`` for the tasks of the modules in law.cfg."""
    code = textwrap.dedent(
        """
        import importlib, inspect, json, sys, law
        families = {}
        for name in law.config.options("modules"):
            module = importlib.import_module(name)
            for cls in vars(module).values():
                if not (inspect.isclass(cls) and issubclass(cls, law.Task) and cls.__module__ == name):
                    continue
                if "run" not in vars(cls):
                    continue  # base classes and mixins
                flags = []
                for param_name, _ in cls.get_params():
                    owner = next(c for c in cls.__mro__ if param_name in vars(c))
                    if owner.__module__.startswith("cf.") and owner.__module__ not in sys.argv[1:]:
                        flags.append("--" + param_name.replace("_", "-"))
                families[cls.get_task_family()] = sorted(flags)
        print(json.dumps(families))
        """,
    )
    command = [sys.executable, "-c", code, *WORKFLOW_PARAMETER_MODULES]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_task_overview_describes_every_task_and_parameter() -> None:
    if not os.environ.get("LAW_CONFIG_FILE"):
        pytest.skip("LAW_CONFIG_FILE is not set: run the tests after 'source setup.sh'")
    text = TASK_OVERVIEW.read_text()
    titles = headings(TASK_OVERVIEW)
    for family, flags in task_parameters().items():
        assert any(f"`{family}`" in title for title in titles), f"no section for {family} in {TASK_OVERVIEW.name}"
        missing = [flag for flag in flags if f"`{flag}" not in text]
        assert not missing, f"{TASK_OVERVIEW.name} does not mention the parameter(s) {missing} of {family}"


# the build


@pytest.mark.slow
@pytest.mark.sandbox
def test_sphinx_build_has_no_warnings(docs_build: DocsBuild) -> None:
    # the pictures come from the session's stores (CF_DOCS_STORE), in which the other tests train the models
    assert "WARNING" not in docs_build.output, docs_build.output[-5000:]
    assert (docs_build.html / "user_guide" / "machine_learning.html").is_file()
