"""benchmarks/tool_edits.py on the tiny `test` world: both arms rewrite the same seeds under the same
specs, and a rerun reads the arms it has instead of asking the models again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from toolduel import run_files as files

ROOT = Path(__file__).resolve().parents[1]


def _bench(out: Path, work: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks/tool_edits.py"), "--out", str(out), "--work-dir",
                           str(work), "--world-budget", "test", "--seeds", "12"], capture_output=True, text=True,
                          timeout=600)


def test_both_arms_meet_the_same_seeds_and_specs_and_a_rerun_reads_them(tmp_path):
    out, work = tmp_path / "edits.json", tmp_path / "work"
    first = _bench(out, work)
    assert first.returncode == 0, first.stderr[-2000:]
    drawn, written = (files.read_jsonl(work / f"{arm}.jsonl") for arm in ("drawn", "written"))
    assert len(drawn) == len(written) == 12
    assert [(r["move"], r["style"]) for r in drawn] == [(r["move"], r["style"]) for r in written]
    assert not any(r["edits"] for r in drawn)  # the drawn arm's moves are applied, never written
    report = json.loads(out.read_text())
    assert report["seeds"] == 12 and set(report["written"]["per_move"]) == {r["move"] for r in written}
    assert report["written"]["validity"] == sum(r["valid"] for r in written) / 12

    (work / "written.jsonl").write_text("".join(json.dumps(r | {"valid": True, "reasons": []}) + "\n" for r in written))
    again = _bench(out, work)  # the arms on disk are read, not asked again
    assert again.returncode == 0 and "loading" not in again.stderr.lower()
    assert json.loads(out.read_text())["written"]["validity"] == 1.0
