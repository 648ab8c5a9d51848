"""The documents tell the truth about the repository.

- The settings table in ``docs/configuration.md`` names every setting the service reads, and
  nothing else.
- Every repository path and every dotted module of ours named in a document, a comment or a
  docstring exists. A path is a token that starts with one of the repository's top-level
  folders (``worker/run/task.py``, ``tests/chaos``); a dotted reference is one of our packages
  in backticks or in a docstring (``service.store.jobs.JobStore.apply``: the longest prefix that is
  a module, then a name that module defines or one of its classes' members). Placeholders (``{id}``, ``<name>``,
  ``*``) match any one path segment, a name cut short (``docs/seeds/002_…``) stands for the
  paths it begins, and a path git ignores is an output location and passes. ``docs/seeds/``
  holds other systems' documents, copied verbatim, and is not checked. Documents and Python
  files (comments and docstrings only) are two cases, each listing every broken reference as
  ``file:line: reference``.
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize
from collections.abc import Iterator
from functools import cache
from pathlib import PurePosixPath

import pytest

from service.settings import Settings
from tests.conftest import REPO_ROOT

CONFIGURATION = "docs/configuration.md"


def test_every_setting_has_a_row_in_the_configuration_table():
    manual = (REPO_ROOT / CONFIGURATION).read_text()
    rows = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", manual, re.MULTILINE))

    settings = {name.upper() for name in Settings.model_fields}

    assert settings - rows == set(), f"settings missing from the table in {CONFIGURATION}"
    assert rows - settings == set(), f"rows in {CONFIGURATION} for settings that do not exist"


# What is scanned: tracked text files by suffix or by name; Python files only in their
# comments and docstrings (their code is checked by running it).
TEXT_SUFFIXES = {".py", ".md", ".toml", ".yml", ".yaml", ".template", ".conf", ".sh", ".js",
                 ".css", ".html"}  # fmt: skip
TEXT_NAMES = {"Makefile", "Dockerfile", "run"}
SKIPPED = ("docs/seeds/",)
# Tokens that look like our paths and are not: the Dockerfile's parser directive names an image.
NOT_PATHS = {"docker/dockerfile"}
# Our importable packages, for dotted references.
PACKAGES = ("service", "worker", "indexes", "devstack", "tests", "bench")
# A final segment that makes a dotted token a file name (``worker.py``), not a module path.
FILE_EXTENSIONS = {"py", "md", "txt", "toml", "yml", "yaml", "json", "js", "css", "html", "conf",
                   "sh", "png", "webp", "jpg", "pdf", "lock", "template", "cfg", "ini", "log"}  # fmt: skip

PATH_CHARS = r"[A-Za-z0-9_.\-/{}<>*]"
PLACEHOLDER = re.compile(r"\{[^/{}]*\}|<[^/<>]*>|\*+")
DOTTED = re.compile(r"(?<![\w./-])(?:" + "|".join(PACKAGES) + r")(?:\.[A-Za-z_]\w*)+")
BACKTICKED = re.compile(r"`+([^`\n]+)`+")


@cache
def repository_files() -> frozenset[str]:
    """Tracked files and untracked ones git does not ignore (a new file counts before its add)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    return frozenset(name for name in listed.split("\0") if name and (REPO_ROOT / name).exists())


@cache
def repository_folders() -> frozenset[str]:
    return frozenset(
        str(parent)
        for name in repository_files()
        for parent in PurePosixPath(name).parents
        if str(parent) != "."
    )


@cache
def top_level_folders() -> tuple[str, ...]:
    return tuple(sorted(name for name in repository_folders() if "/" not in name))


@cache
def path_pattern() -> re.Pattern[str]:
    folders = "|".join(re.escape(name) for name in top_level_folders())
    # Not inside a longer path or a URL (``https://host/docs/...``, ``arq/worker.py``).
    return re.compile(rf"(?<![\w./~-])(?:{folders})/{PATH_CHARS}*")


def git_ignores(path: str) -> bool:
    return (
        subprocess.run(
            ["git", "check-ignore", "-q", "--no-index", path], cwd=REPO_ROOT, check=False
        ).returncode
        == 0
    )


def path_exists(token: str, *, prefix: bool = False) -> bool:
    """A file or folder of the repository; a placeholder stands for one segment."""
    path = token.rstrip("/")
    everything = repository_files() | repository_folders()
    if PLACEHOLDER.search(path) or prefix:
        parts = [re.escape(part) for part in PLACEHOLDER.split(path)]
        pattern = re.compile("[^/]*".join(parts) + (".*" if prefix else ""))
        if any(pattern.fullmatch(name) for name in everything):
            return True
        # Nothing matches yet: fine only inside an output location (``tests/artifacts/*.png``).
        path = PLACEHOLDER.split(path)[0].rsplit("/", 1)[0]
        return git_ignores(f"{path}/")
    return path in everything or git_ignores(path) or git_ignores(f"{path}/")


@cache
def names_defined(module_file: str) -> frozenset[str]:
    """What a module defines at its top level (functions, classes, assignments, imports), and
    what its classes define (``Class.method``)."""
    tree = ast.parse((REPO_ROOT / module_file).read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(f"{node.name}.{member.name}")
                elif isinstance(member, ast.AnnAssign | ast.Assign):
                    targets = member.targets if isinstance(member, ast.Assign) else [member.target]
                    names.update(
                        f"{node.name}.{n.id}"
                        for t in targets
                        for n in ast.walk(t)
                        if isinstance(n, ast.Name)
                    )
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return frozenset(names)


def module_exists(reference: str) -> bool:
    """The longest prefix that is a module or package, then a name it defines (``apply``) or a
    class's member (``JobStore.apply``)."""
    parts = reference.split(".")
    files = repository_files()
    for end in range(len(parts), 0, -1):
        base = "/".join(parts[:end])
        module = next((f for f in (f"{base}.py", f"{base}/__init__.py") if f in files), None)
        if module is None:
            continue
        rest = parts[end:]
        return not rest or (len(rest) <= 2 and ".".join(rest) in names_defined(module))
    return False


def python_prose(text: str) -> Iterator[tuple[int, str, bool]]:
    """(line, text, is_docstring) for each comment and docstring of a Python file."""
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string, False
    for node in ast.walk(ast.parse(text)):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for statement in body:
            if (
                isinstance(statement, ast.Expr)
                and isinstance(statement.value, ast.Constant)
                and isinstance(statement.value.value, str)
            ):
                for offset, line in enumerate(statement.value.value.splitlines()):
                    yield statement.lineno + offset, line, True


def prose(name: str, text: str) -> Iterator[tuple[int, str, bool]]:
    if name.endswith(".py"):
        yield from python_prose(text)
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            yield number, line, False


def broken_references(name: str) -> Iterator[str]:
    text = (REPO_ROOT / name).read_text()
    paths = path_pattern()
    for number, line, is_docstring in prose(name, text):
        for match in paths.finditer(line):
            token = match.group().rstrip(".-")
            if token in NOT_PATHS:
                continue
            # ``docs/seeds/002_…``: a name cut short stands for the paths it begins.
            cut_short = match.group().endswith("...") or line[match.end() :].startswith("…")
            if not path_exists(token, prefix=cut_short):
                yield f"{name}:{number}: {token}"
        spans = [line] if is_docstring else BACKTICKED.findall(line)
        for span in spans:
            for match in DOTTED.finditer(span):
                reference = match.group()
                if reference.rsplit(".", 1)[1] in FILE_EXTENSIONS:
                    continue
                if not module_exists(reference):
                    yield f"{name}:{number}: {reference}"


def scanned_files(*, python: bool) -> list[str]:
    return sorted(
        name
        for name in repository_files()
        if not name.startswith(SKIPPED)
        and (PurePosixPath(name).suffix in TEXT_SUFFIXES or PurePosixPath(name).name in TEXT_NAMES)
        and name.endswith(".py") == python
    )


@pytest.mark.parametrize(
    "python", [False, True], ids=["documents", "python-comments-and-docstrings"]
)
def test_every_repository_reference_exists(python):
    broken = [ref for name in scanned_files(python=python) for ref in broken_references(name)]

    assert broken == [], "references to paths or modules that do not exist:\n" + "\n".join(broken)
