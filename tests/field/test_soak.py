"""The soak run, short: a writer SIGKILLed again and again leaves exactly its last flush."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_short_soak_keeps_every_flush_and_flat_memory():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "field_soak.py"), "--minutes", "0.5"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    result = json.loads([x for x in proc.stdout.splitlines() if x.startswith("{")][-1])
    assert proc.returncode == 0 and result["failures"] == [], result["failures"]
    assert result["schema"] == 1 and result["benchmark"] == "field_soak"
    assert result["rounds_count"] >= 5 and result["exact_count"] >= 3
    assert result["writer_rss_growth_frac"] < 0.10 and result["parent_rss_growth_frac"] < 0.10
