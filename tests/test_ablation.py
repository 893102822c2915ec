"""benchmarks/ablation.py on the tiny `test` world: every step's result is kept, a rerun continues
where the last one stopped (more seeds, a lost arm), and other settings are refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--world-budget", "test", "--regimes", "plain", "--arms", "none,untargeted,adversarial",
        "--harvest-seeds", "8", "--budget", "2", "--replay", "4", "--attack-steps", "1", "--perturbed-limit", "7",
        "--plain-limit", "2", "--bfcl", ""]


def _ablation(out: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks/ablation.py"), "--out", str(out), *FAST, *flags],
                          capture_output=True, text=True, timeout=600)


def test_an_ablation_continues_where_it_stopped(tmp_path):
    out = tmp_path / "ablation.json"
    first = _ablation(out, "--seeds", "1")
    assert first.returncode == 0, first.stderr[-2000:]
    work = tmp_path / "ablation.work" / "plain"
    results = {arm: work / f"seed0/arm-{arm}/result.json" for arm in ("none", "untargeted", "adversarial")}
    assert all(path.exists() for path in results.values())
    assert (work / "seed0/attack/done.json").exists() and (work / "seed0/rl_harvest/stats.json").exists()
    assert not (work / "seed0/arm-none/fc_model").exists()  # the arm's model is gone, its scores stay
    report = json.loads(out.read_text())
    assert {arm: len(v["perturbed"]["values"]) for arm, v in report["plain"]["arms"].items()} == \
        {"none": 1, "untargeted": 1, "adversarial": 1}
    assert set(report["plain"]["yield"]) == {"warm", "rl", "rl_with_attack"} and "start" in report["plain"]

    kept = {arm: path.stat().st_mtime_ns for arm, path in results.items()}
    results["untargeted"].unlink()  # as if the ablation had been stopped during that arm
    second = _ablation(out, "--seeds", "2")
    assert second.returncode == 0, second.stderr[-2000:]
    assert results["none"].stat().st_mtime_ns == kept["none"]  # done steps are not played again
    assert results["adversarial"].stat().st_mtime_ns == kept["adversarial"]
    assert results["untargeted"].exists()
    report = json.loads(out.read_text())
    assert all(v["seeds"] == [0, 1] for v in report["plain"]["arms"].values())

    other = _ablation(out, "--seeds", "2", "--budget", "3")
    assert other.returncode != 0 and "other settings (budget)" in other.stderr
