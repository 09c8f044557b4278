"""A fresh clone anywhere passes its own tests: nothing in the repository reads a file outside it.

The scan covers every tracked text file under src/, tests/ and .ci/ (and the build files beside them). It refuses
three ways of leaving the checkout: naming the folder that sits beside this project on its build machine, an
absolute path that is not a system location, and a relative path that climbs above the repository root.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED_DIRS = ("src/", "tests/", ".ci/", "bench/")
SCANNED_FILES = ("Makefile", "pyproject.toml", "Dockerfile", "docker-compose.yml", "config.example.toml")
# Vendored data is not code (tests/data/README.md says where it comes from); this file holds the forbidden
# patterns as samples for the tests below.
NOT_SCANNED = ("tests/data/", "tests/test_self_contained.py")

# Assembled from pieces so that this file does not match itself (or `git grep` for the words).
_SIBLING = re.compile(r"\.\./" + r"shared\b|\bshared/" + r"reference\b|/work/" + r"shared\b")
# Absolute filesystem paths in Python and shell: allowed only into the system's own directories.
_ABSOLUTE = re.compile(
    r"""(?:Path|open|PurePath|PurePosixPath)\(\s*["'](/[^"']*)["']|(?:^|[\s=])(/[A-Za-z][\w.-]*/[^\s"';]*)"""
)
SYSTEM_ROOTS = {"usr", "bin", "sbin", "etc", "dev", "proc", "sys", "tmp", "var", "lib", "run", "opt"}
_PARENTS = re.compile(r"__file__\)?(?:\.resolve\(\))?\.parents\[(\d+)\]")
_UP_FROM_ROOT = re.compile(r"\bROOT\.parent\b|\bROOT\s*/\s*[\"']\.\.")


def escapes(text: str, relative_path: str) -> list[str]:
    """What in `text` (the content of the file at `relative_path`) points outside the repository."""
    found = [f"names the sibling folder: {match.group(0)!r}" for match in _SIBLING.finditer(text)]
    if relative_path.endswith((".py", ".sh")) or relative_path.startswith(".ci/"):
        for match in _ABSOLUTE.finditer(text):
            path = match.group(1) or match.group(2)
            first = PurePosixPath(path).parts[1] if len(PurePosixPath(path).parts) > 1 else ""
            # URL paths of our own API ("/api/...", "/auth/...") appear in code as strings, never inside Path().
            if match.group(1) is not None and first not in SYSTEM_ROOTS:
                found.append(f"absolute path outside the system directories: {path!r}")
            elif match.group(2) is not None and first in {"work", "home", "root", "Users", "mnt", "srv"}:
                found.append(f"absolute path into a machine's own folders: {path!r}")
    depth = len(PurePosixPath(relative_path).parts)  # Path(__file__).parents[depth - 1] is the repository root
    for match in _PARENTS.finditer(text):
        if int(match.group(1)) >= depth:
            found.append(f"climbs above the repository root: {match.group(0)!r}")
    found += [f"climbs above the repository root: {match.group(0)!r}" for match in _UP_FROM_ROOT.finditer(text)]
    return found


def _tracked_files() -> list[str]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],  # noqa: S607 - git from PATH
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):  # an unpacked archive rather than a clone
        listed = [str(path.relative_to(ROOT)) for path in ROOT.rglob("*") if path.is_file()]
    return sorted(
        name
        for name in listed
        if (name.startswith(SCANNED_DIRS) or name in SCANNED_FILES)
        and not name.startswith(NOT_SCANNED)
        and (ROOT / name).is_file()
    )


def test_the_scan_sees_the_files_it_is_meant_to() -> None:
    files = _tracked_files()
    assert "tests/conftest.py" in files
    assert ".ci/run" in files
    assert "src/stepup_bff/app.py" in files
    assert not any(name.startswith("tests/data/") for name in files)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('REFERENCE = ROOT.parent / "shared" / "reference"', "tests/deploy/files.py"),
        ('OPENAPI = Path("/work/' + 'shared/reference/fusionauth-openapi.yaml")', "tests/dev_server/x.py"),
        ("# see " + "shared/" + "reference/fusionauth-contract.md", "src/stepup_bff/x.py"),
        ('spec = Path("/home/dev/openapi.yaml")', "tests/x.py"),
        ("cat /work/main/notes.txt", ".ci/run"),
        ("HERE = Path(__file__).resolve().parents[2]", "tests/x.py"),
        ('DOCS = ROOT / ".." / "docs"', "tests/x.py"),
    ],
)
def test_the_scan_catches_each_way_out(text: str, path: str) -> None:
    assert escapes(text, path), f"not caught: {text}"


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("ROOT = Path(__file__).resolve().parents[2]", "tests/deploy/files.py"),
        ('if Path("/usr/bin/chromium").is_file():', "tests/browser/conftest.py"),
        ('router.get("/api/session")', "src/stepup_bff/api/session.py"),
        ('OPENAPI = ROOT / "tests" / "data" / "fusionauth-openapi-1.69.0.yaml"', "tests/support/openapi.py"),
    ],
)
def test_the_scan_allows_what_stays_inside(text: str, path: str) -> None:
    assert not escapes(text, path)


def test_no_file_refers_to_a_path_outside_the_repository() -> None:
    problems = []
    for name in _tracked_files():
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # a binary file names no paths
        problems += [f"{name}: {problem}" for problem in escapes(text, name)]
    assert not problems, "\n".join(problems)
