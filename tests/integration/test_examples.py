"""Every example runs, and says what its header says it says."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_honest_vs_liar_table():
    proc = subprocess.run(
        [sys.executable, "examples/honest_vs_liar.py"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    rows = {int(line.split()[0]): line.split() for line in proc.stdout.splitlines()[2:]}
    assert rows[1][3] == "56.2%" and rows[6][3] == "100.0%"
