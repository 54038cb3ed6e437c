"""Every ```python block of the README and docs/*.md runs as written, in a fresh interpreter in
an empty folder: the examples stay true. A block with a ``# doc-test: needs ...`` line needs
a dataset and is skipped; the slowest (a minute or so each) are marked ``slow``."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLOW = {("README.md", 3), ("thermo.md", 0), ("snn.md", 4)}  # 30-60 s each on 2 cores


def blocks():
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        found = re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
        for i, code in enumerate(found):
            marks = [pytest.mark.slow] if (path.name, i) in SLOW else []
            yield pytest.param(path.name, code, id=f"{path.name}:{i}", marks=marks)


@pytest.mark.parametrize(("page", "code"), list(blocks()))
def test_example_runs_as_written(page, code, tmp_path):
    need = re.search(r"# doc-test: (needs .*)", code)
    if need:
        pytest.skip(need.group(1))
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={"NEUROFABRIC_PROGRESS": "0", "PATH": "/usr/bin:/bin", "OMP_WAIT_POLICY": "PASSIVE"},
    )
    assert run.returncode == 0, f"{page}: the example fails:\n{run.stderr[-3000:]}"


def test_every_page_has_examples_found():
    ids = [p.id for p in blocks()]
    assert len(ids) >= 15 and any(i.startswith("README.md") for i in ids)
