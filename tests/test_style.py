"""One formatting style and one set of contracts, checked on every `make test`."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE = [ROOT / "src", ROOT / "tests", ROOT / "benchmarks"]


def _python_files():
    for folder in CODE:
        yield from folder.rglob("*.py")


def _ruff(*args):
    if shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists():
        pytest.skip("ruff is not installed (make installs it with the dev extra)")
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, *map(str, CODE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_no_formatter_escapes():
    marker = re.compile(r"#\s*fmt:\s*(skip|off)")
    found = [
        f"{path.relative_to(ROOT)}:{k}"
        for path in _python_files()
        for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if marker.search(line) and path.name != "test_style.py"
    ]
    assert found == [], "let ruff format these lines: " + ", ".join(found)


def test_ruff_format_and_lint_are_clean():
    fmt = _ruff("format", "--check")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    lint = _ruff("check")
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_cli_commands_use_the_shared_error_handler():
    """Only cli/common.py turns library errors into exit 2; a command catching them itself is
    the copy-paste this replaced."""
    offenders = [
        path.name
        for path in (ROOT / "src" / "neurofabric" / "cli").glob("*.py")
        if path.name != "common.py" and "except NeurofabricError" in path.read_text("utf-8")
    ]
    assert offenders == []
