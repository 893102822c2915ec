"""A duel on both attack surfaces, end to end on the tiny models, and the benchmark that reads it
(benchmarks/tool_surface.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from toolduel.cli import app
from toolduel.run_files import read_jsonl
from toolduel.world.tool_edits import TOOL_MOVES, UNCHANGED

ROOT = Path(__file__).resolve().parents[1]


def test_a_duel_on_both_surfaces_and_what_the_benchmark_reads_from_it(tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TOOLDUEL_CACHE", str(tmp_path_factory.getbasetemp() / "toolduel-cache"))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "run", "--out", str(out), "--no-progress", "--rounds", "1", "--world-budget", "test", "--attack-steps", "1",
        "--attack-prompts-per-step", "2", "--num-generations", "2", "--harvest-seeds", "6", "--max-query-tokens", "12",
        "--fc-samples", "2", "--batch-size", "8", "--harvest-keep", "valid", "--attack-surface", "query,tools",
        "--heldout", "world:plain,tools", "--heldout-limit", "10"])
    assert result.exit_code == 0, result.output
    harvest = read_jsonl(out / "rounds/round_1/harvest.jsonl")
    # None: a move with nothing to act on (no argument to rename, no look-alike left)
    assert {r["tool_move"] for r in harvest} <= {None, UNCHANGED, *TOOL_MOVES} and any(r["tool_move"] for r in harvest)
    for record in read_jsonl(out / "pool.jsonl"):  # a pooled attack keeps the list it was answered against
        names = {t["function"]["name"] for t in record["sample"]["tools"]}
        assert {next(iter(g)) for g in record["sample"]["gold"]} <= names
        if record["tool_move"] == "masked_names":
            assert all(name.startswith("tool_") for name in names)

    report = tmp_path / "tool-surface.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks/tool_surface.py"), "--run", str(out), "--out",
                           str(report), "--bfcl", "multiple", "--bfcl-limit", "2", "--yield-seeds", "6"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(report.read_text())
    tools = found["heldout"]["tools"]
    assert set(tools["per_category"]) == set(TOOL_MOVES) and sum(c["n"] for c in tools["per_category"].values()) == 10
    assert tools["after_minus_before"]["items"] == 10
    low, high = tools["after_minus_before"]["ci95"]
    assert low <= tools["after"] - tools["before"] <= high
    assert found["bfcl"]["bfcl:multiple"]["after_minus_before"]["items"] == 2
    for label in ("warm", "rl"):
        per_move = found["yield"][label]["per_move"]
        assert sum(m["queries"] for m in per_move.values()) == 6 and set(per_move) <= {UNCHANGED, *TOOL_MOVES}
    rows = read_jsonl(out / "tool-surface/yield-warm.jsonl")
    assert [r["move"] for r in rows] == [r["move"] for r in read_jsonl(out / "tool-surface/yield-rl.jsonl")]
