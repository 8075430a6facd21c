"""benchmarks/input_pipeline.py runs end to end on a tiny folder (its logic, not its
timings: those belong in benchmarks/README.md)."""

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "input_pipeline.py"


def test_the_input_pipeline_benchmark_prints_its_table():
    args = [
        "--images",
        "200",
        "--batches",
        "2",
        "--rounds",
        "1",
        "--fit-steps",
        "2",
        "--workers",
        "0",
    ]  # fmt: skip (worker processes: tests/data/test_loader.py)
    done = subprocess.run([sys.executable, SCRIPT, *args, "--model", "small"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [
        line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line
    ]
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| image folder (PNG)", "| ArrayRecord",
                                                       "| in memory"]  # fmt: skip
    for row in rows[1:]:  # a positive rate for each source
        assert float(row.split(" | ")[1].replace(",", "")) > 0
    assert re.search(r"image folder / preloaded wall time \d+\.\d{3} \(median of 1", done.stdout)
