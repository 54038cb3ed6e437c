"""The life-long protocol of ``benchmarks/thermo_lifelong.py``, small: digits 0-4 then 5-9
(scikit-learn's digits, 3 s per MH run). It checks what makes the protocol a protocol: the
first phase knows no new class, fine-tuning on the new images forgets the old ones, training
on both keeps them, and MH learns the new classes from their images alone."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "thermo_lifelong.py"


def test_the_protocol_runs_and_separates_its_phases(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--mh-time", "3"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {}
    for line in proc.stdout.splitlines():
        if line.startswith('{"schema"'):
            r = json.loads(line)
            rows[r["variant"]] = (r["old_accuracy_pct"], r["new_accuracy_pct"])
    assert set(rows) == {
        "phase1",
        "adam-finetune",
        "adam-ewc",
        "adam-rehearsal",
        "mh",
        "mh-rehearsal",
        "adam-joint",
    }
    old, new = rows["phase1"]
    assert old > 85 and new < 5  # the first network knows only 0-4
    old, new = rows["adam-finetune"]
    assert old < 20 and new > 80  # learning 5-9 alone forgets 0-4
    old, new = rows["adam-joint"]
    assert old > 80 and new > 80  # the upper bound keeps both
    assert rows["mh"][1] > 50  # MH learns the new classes from their images alone
