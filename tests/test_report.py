"""The weakness report: numbers in figures and tables are the run's numbers; broken files are
named, not fatal; the page is self-contained and renders in a real headless browser."""

from __future__ import annotations

import base64
import json
import math
import shutil
import socket
import subprocess
import sys
import threading
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import HARD_KINDS, HELDOUT_SETS, write_eval_folder, write_run

from toolduel.report import (
    build_report,
    compare_traits,
    load_folder,
    measure,
    query_traits,
    report_command,
)
from toolduel.report import figures as draw
from toolduel.report.build import FIGURES, ReportError

CHROMIUM = Path("/usr/bin/chromium")

# ---------------------------------------------------------------- reading the page back


class _Page(HTMLParser):
    """Tables by id (rows of cell texts), problem lines, and every src/href attribute."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.problems: list[str] = []
        self.links: list[str] = []
        self._table = self._row = self._cell = None
        self._in_problems = self._in_item = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [value for key, value in attrs.items() if key in ("src", "href") and value]
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", ""), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "section" and attrs.get("id") == "problems":
            self._in_problems = True
        elif tag == "li" and self._in_problems:
            self._in_item, self._item = True, []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "li" and self._in_item:
            self.problems.append("".join(self._item))
            self._in_item = False
        elif tag == "section":
            self._in_problems = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in_item:
            self._item.append(data)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _pct(value) -> str:
    return "-" if value is None else f"{value:.1%}"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished 3-round run (round 0 + 3) and its report, built once for the module."""
    folder = tmp_path_factory.mktemp("run")
    written = write_run(folder)
    report = build_report(folder)
    return {"folder": folder, "written": written, "report": report, "data": load_folder(folder),
            "metrics": _records(folder / "metrics.jsonl"), "pool": _records(folder / "pool.jsonl"),
            "page": _Page(report.html.read_text())}


# ---------------------------------------------------------------- traits: pure, inline cases

SAMPLE = {  # a sample dict as a pool record holds it (Sample.to_dict())
    "tools": [{"type": "function", "function": {"name": "convert_length", "parameters": {"type": "object",
               "properties": {"value": {"type": "number"}, "from_unit": {"type": "string"},
                              "to_unit": {"type": "string"}}}}},
              {"type": "function", "function": {"name": "add_numbers", "parameters": {"type": "object",
               "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}],
    "gold": [{"convert_length": {"value": [12.0], "from_unit": ["km", "kilometers"], "to_unit": ["mi"],
                                 "precision": [2, ""]}}],  # precision may be left out: not counted
}


def test_query_traits_plain_query_has_nothing_odd():
    traits = query_traits("Convert 12 km to mi.", SAMPLE)
    assert traits == {"words": 5.0, "tools": 2.0, "other_numbers": 0.0, "indirect_values": 0.0,
                      "values_out_of_order": 0.0}


def test_query_traits_counts_numbers_that_are_no_argument_value():
    # 3 and 24 are no gold value; 12 is (written "12" for the gold 12.0); "1,000" is one number
    assert query_traits("I asked 3 times in 24 hours: convert 12 km to mi.", SAMPLE)["other_numbers"] == 2
    assert query_traits("After 1,000 tries, convert 12 km to mi", SAMPLE)["other_numbers"] == 1
    # the digits inside a string value are that value, not extra numbers
    booking = {"tools": [], "gold": [{"book": {"check_in": ["2025-09-25"], "nights": [3]}}]}
    assert query_traits("Book from 2025-09-25 for 3 nights", booking)["other_numbers"] == 0
    assert query_traits("Book from September 25th, 2025 for 3 nights", booking)["other_numbers"] == 0


def test_query_traits_counts_values_not_written_literally():
    # "a dozen" for 12.0 and "miles" for "mi": two values not written as they are
    assert query_traits("Convert a dozen km to miles.", SAMPLE)["indirect_values"] == 2
    # any acceptable answer written literally is enough: "kilometers" is one of from_unit's
    assert query_traits("Convert 12 kilometers to mi.", SAMPLE)["indirect_values"] == 0
    # case and spacing aside; "12" inside "120" is not the value
    assert query_traits("CONVERT 120 KM TO MI", SAMPLE)["indirect_values"] == 1
    # a list value is literal when every element is; booleans have no surface form
    group = {"gold": [{"send": {"to": [["Liam", "Sam"]], "urgent": [True]}}]}
    assert query_traits("Tell Liam and Sam", group)["indirect_values"] == 0
    assert query_traits("Tell Liam and the others", group)["indirect_values"] == 1


def test_query_traits_sees_values_out_of_the_arguments_order():
    # the tool's order is value, from_unit, to_unit
    assert query_traits("To mi, from km, convert 12", SAMPLE)["values_out_of_order"] == 1
    assert query_traits("12 of them, from km to mi", SAMPLE)["values_out_of_order"] == 0
    # values not written literally have no place, so they cannot be out of order
    assert query_traits("To miles from km, a dozen", SAMPLE)["values_out_of_order"] == 0


def test_query_traits_never_raises_on_hostile_samples():
    for sample in ({}, {"gold": None, "tools": None}, {"gold": ["x", {"a": 1}, {"f": {"x": "notalist"}}]},
                   {"gold": 1.5, "tools": {"a": 1}}, {"tools": [{"function": {"parameters": [1]}}, {"function": 3}]},
                   {"gold": [{"f": {"x": [{"deep": [1, [2, None]]}], "y": [float("nan")]}}], "tools": [7, "x"]}):
        traits = query_traits("x " * 10_000 + "1 2 3", sample)
        assert traits["words"] == 10_003 and all(isinstance(v, float) for v in traits.values())


def test_compare_traits_means_differences_and_effect():
    def record(query, worked):
        return {"query": query, "attack_success": worked, "sample": SAMPLE}

    records = [record("Could you convert 12 km to mi now?", False),  # 8 and 10 words: no length effect
               record("Could you please convert 12 km to mi right now?", False),
               record("I asked 3 times: convert 12 km to mi.", True),
               record("Convert 12 km to mi, 5 or 6 times.", True),
               {"query": "no sample", "attack_success": True}, {"query": "undecided", "sample": SAMPLE}]
    table = compare_traits(records)
    numbers = table["other_numbers"]
    assert (numbers["worked"], numbers["failed"], numbers["difference"]) == (1.5, 0.0, 1.5)
    assert (numbers["n_worked"], numbers["n_failed"]) == (2, 2)  # records without a sample or outcome left out
    assert numbers["effect"] == pytest.approx(1.5 / math.sqrt(0.25))  # pooled variance (0.5 + 0) / 2
    assert table["tools"]["effect"] is None  # no spread: undefined, not infinite
    assert table["words"]["difference"] == 0 and table["words"]["effect"] == 0
    assert list(table)[0] == "other_numbers"  # sorted by effect size


# ---------------------------------------------------------------- figures hold the run's numbers


def _lines(figure) -> dict[str, list[float]]:
    return {line.get_label(): list(line.get_ydata()) for line in figure.axes[0].lines}


def _bars(ax) -> dict[str, list[float]]:
    return {container.get_label(): [bar.get_height() for bar in container] for container in ax.containers}


def _same(plotted, expected) -> bool:
    return len(plotted) == len(expected) and all(
        (e is None and math.isnan(p)) or p == pytest.approx(e) for p, e in zip(plotted, expected))


def test_accuracy_curves_are_metrics_accuracy(run):
    figure = draw.rate_figure(measure.accuracy_by_set(run["data"]), "t", "accuracy")
    plotted = _lines(figure)
    assert set(plotted) == set(HELDOUT_SETS)
    for name, values in plotted.items():
        assert _same(values, [m["accuracy"][name] for m in run["metrics"]]), name
    assert list(figure.axes[0].get_xticks()) == [0, 1, 2, 3]


def test_category_curves_are_eval_summaries(run):
    plotted = _lines(draw.rate_figure(measure.accuracy_by_category(run["data"]), "t", "accuracy"))
    summaries = [json.loads((run["folder"] / f"rounds/round_{r}/eval/hard/summary.json").read_text())
                 for r in range(4)]
    assert set(plotted) == {f"hard/{kind}" for kind in HARD_KINDS}  # only "hard" mixes categories
    for label, values in plotted.items():
        category = label.split("/")[1]
        assert _same(values, [s["per_category"][category]["accuracy"] for s in summaries]), label


def test_attack_rate_curves_are_metrics_rates(run):
    plotted = _lines(draw.rate_figure(measure.attack_rates(run["data"]), "t", "rate"))
    duel = [m for m in run["metrics"] if m["round"] > 0]
    assert _same(plotted[measure.ATTACK_SUCCESS], [m["attack_success_rate"] for m in duel])
    assert _same(plotted[measure.ATTACK_SUCCESS_BEFORE], [m["attack_success_rate_before_defence"] for m in duel])
    assert _same(plotted[measure.VALIDITY], [m["validity_rate"] for m in duel])
    after = {a["id"]: a for records in run["written"]["after_defence"].values() for a in records}
    still = []
    for r in (1, 2, 3):
        attacks = [p for p in run["pool"] if p["round"] == r and p["attack_success"]]
        still.append(sum(not after[p["id"]]["verdict"]["valid"] for p in attacks) / len(attacks))
    assert _same(plotted[measure.STILL_FAILING], still)


def test_attack_rates_fall_back_on_the_round_files(run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run["folder"], folder, ignore=shutil.ignore_patterns("report"))
    (folder / "metrics.jsonl").unlink()
    rates = measure.attack_rates(load_folder(folder))
    for m in run["metrics"][1:]:  # the fixture's metrics are what the files say
        assert rates[measure.ATTACK_SUCCESS][m["round"]] == pytest.approx(m["attack_success_rate"])
        before = m["attack_success_rate_before_defence"]
        assert rates[measure.ATTACK_SUCCESS_BEFORE][m["round"]] == pytest.approx(before)
        assert rates[measure.VALIDITY][m["round"]] == pytest.approx(m["validity_rate"])


def test_attack_step_curves_are_each_rounds_attack_log(run):
    figure = draw.steps_figure(measure.attack_step_series(run["data"]), "t")
    logs = run["written"]["attack_log"]
    panels = {ax.get_title(): {line.get_label(): list(line.get_ydata()) for line in ax.lines} for ax in figure.axes}
    for key, label in measure.STEP_SERIES.items():
        assert panels[label] == {f"round {r}": pytest.approx([s[key] for s in log]) for r, log in logs.items()}, label
    assert [list(line.get_xdata()) for line in figure.axes[0].lines] == [[1, 2, 3, 4]] * 3


def test_error_kind_bars_are_metrics_and_pool_counts(run):
    figure = draw.error_kinds_figure(measure.heldout_error_kinds(run["data"]), measure.pool_error_kinds(run["data"]))
    heldout, attacks = (_bars(ax) for ax in figure.axes)
    for kind in measure.ERROR_KINDS:
        expected = [sum(m["error_kinds"][s].get(kind, 0) for s in HELDOUT_SETS) for m in run["metrics"]]
        assert heldout.get(measure.kind_label(kind), [0] * 4) == expected, kind
        expected = [sum(p["kind"] == kind for p in run["pool"] if p["round"] == r and p["attack_success"])
                    for r in (1, 2, 3)]
        assert attacks.get(measure.kind_label(kind), [0] * 3) == expected, kind
    assert len(heldout) >= 8  # the fixture's FC model makes nearly every kind of error


def test_phrasing_bars_are_pool_success_rates(run):
    ax = draw.phrasing_figure(measure.phrasing_stats(run["pool"])).axes[0]
    tags = [label.get_text().split(" (n=")[0] for label in ax.get_xticklabels()]
    for container in ax.containers:
        r = int(container.get_label().split()[-1])
        for bar in container:
            tag = tags[round(bar.get_x() + bar.get_width() / 2)]  # a tag's bars sit within 0.4 of its tick
            attacks = [p["attack_success"] for p in run["pool"] if p["round"] == r and p["phrasing"] == tag]
            assert bar.get_height() == pytest.approx(sum(attacks) / len(attacks)), (tag, r)


def test_traits_bars_are_group_means(run):
    comparison = compare_traits(run["pool"])
    figure = draw.traits_figure(comparison)
    for ax, trait in zip(figure.axes, comparison):
        groups = {True: [], False: []}
        for p in run["pool"]:
            groups[p["attack_success"]].append(query_traits(p["query"], p["sample"])[trait])
        heights = [bar.get_height() for bar in ax.patches]
        means = [sum(groups[outcome]) / len(groups[outcome]) for outcome in (True, False)]
        assert heights == pytest.approx(means)
        assert ax.get_title() == trait.replace("_", " ")


def test_rejection_bars_are_harvest_counts(run):
    bars = _bars(draw.rejections_figure(measure.rejections(run["data"].harvest)[0]).axes[0])
    expected: dict[str, list[int]] = {}
    for r in (1, 2, 3):
        counts = Counter(reason for h in run["written"]["harvest"][r] if not h["valid"]
                         for reason in {x.split(":")[0] for x in h["reasons"]})
        for reason in counts | {k: 0 for k in expected}:
            expected.setdefault(reason, [0] * (r - 1)).append(counts.get(reason, 0))
    assert bars == expected and {"ungrounded", "leak", "length"} <= set(bars)


# ---------------------------------------------------------------- the page


def test_rounds_table_holds_metrics(run):
    rows = run["page"].tables["rounds"]
    header = rows[0]
    assert header == ["round", *(f"accuracy: {s}" for s in sorted(HELDOUT_SETS)), "attack success: before defence (harvest)",
                      "after defence (fresh queries)", "validity", "pool size", "seconds"]
    for row, metric in zip(rows[1:], run["metrics"], strict=True):
        cells = dict(zip(header, row))
        assert cells["round"] == str(metric["round"])
        assert all(cells[f"accuracy: {s}"] == _pct(metric["accuracy"][s]) for s in HELDOUT_SETS)
        assert cells["after defence (fresh queries)"] == _pct(metric["attack_success_rate"])
        assert cells["attack success: before defence (harvest)"] == _pct(metric.get("attack_success_rate_before_defence"))
        assert cells["validity"] == _pct(metric["validity_rate"])
        assert cells["pool size"] == str(metric["pool_size"]) == str(sum(p["round"] <= metric["round"]
                                                                          for p in run["pool"]))


def test_phrasing_and_error_kind_tables_hold_pool_counts(run):
    pool = run["pool"]
    for tag, attacks, worked, rate, _ in run["page"].tables["phrasing"][1:]:
        outcomes = [p["attack_success"] for p in pool if p["phrasing"] == tag]
        assert (int(attacks), int(worked), rate) == (len(outcomes), sum(outcomes), _pct(sum(outcomes) / len(outcomes)))
    header, *rows = run["page"].tables["error-kinds"]
    for row in rows:
        kind = next(k for k in measure.ERROR_KINDS if measure.kind_label(k) == row[0])
        cells = dict(zip(header, row))
        assert cells["held-out r0"] == str(sum(run["metrics"][0]["error_kinds"][s].get(kind, 0) for s in HELDOUT_SETS))
        round_2 = [p for p in pool if p["round"] == 2 and p["attack_success"]]
        assert cells["attacks r2"] == str(sum(p["kind"] == kind for p in round_2))


def test_example_tables_show_pool_attacks_before_and_after_defence(run):
    attacks = [p for p in run["pool"] if p["attack_success"]]
    after = {a["id"]: a for records in run["written"]["after_defence"].values() for a in records}
    kinds = {p["kind"] for p in attacks}
    shown = {name.removeprefix("examples-") for name in run["page"].tables if name.startswith("examples-")}
    assert shown == kinds and len(kinds) >= 8
    for kind in kinds:
        header, *rows = run["page"].tables[f"examples-{kind}"]
        assert 1 <= len(rows) <= 3
        for row in rows:
            cells = dict(zip(header, row))
            record = next(p for p in attacks if p["query"] == cells["query"] and p["kind"] == kind
                          and p["fc_outputs"][0] == cells["FC output (attacked)"]
                          and after[p["id"]]["raw_output"] == cells["FC output after defence"])
            assert cells["FC output (attacked)"] == record["fc_outputs"][0]
            assert cells["verdict"].startswith(measure.kind_label(kind))
            assert cells["FC output after defence"] == after[record["id"]]["raw_output"]
            assert cells["verdict after defence"] == measure.format_verdict(after[record["id"]]["verdict"])


def test_page_is_self_contained_and_embeds_the_png_files(run):
    report, page = run["report"], run["page"]
    assert list(report.figures) == list(FIGURES)  # every figure, in the order of the page
    embedded = [base64.b64decode(link.split(",", 1)[1]) for link in page.links if link.startswith("data:image/png")]
    assert sorted(embedded) == sorted(path.read_bytes() for path in report.figures.values())
    assert all(not link.startswith(("http:", "https:", "//")) for link in page.links)
    text = report.html.read_text()
    assert "<script" not in text.lower() and "<link" not in text.lower() and "@import" not in text
    assert report.problems == [] and page.problems == []
    assert "3 duel round(s) after round 0; 60 pool records; last completed phase: 3:evaluate" in text


def test_eval_folder_gives_a_one_round_report(tmp_path):
    written = write_eval_folder(tmp_path / "eval")
    report = build_report(tmp_path / "eval", tmp_path / "out")
    page = _Page(report.html.read_text())
    assert report.problems == [] and set(report.figures) == {"accuracy_by_category", "error_kinds"}
    per_category = written["summary"]["per_category"]
    summary_rows = {row[0]: row[1:] for row in page.tables["summary"][1:]}
    for category, counts in per_category.items():
        assert summary_rows[category] == [str(counts["n"]), str(counts["correct"]), _pct(counts["accuracy"])]
    assert summary_rows["all"][2] == _pct(written["summary"]["accuracy"])
    # one round: one horizontal bar per category, its width the category's accuracy
    data = load_folder(tmp_path / "eval")
    ax = draw.rate_figure(measure.accuracy_by_category(data), "t", "accuracy").axes[0]
    widths = {label.get_text(): bar.get_width() for label, bar in zip(ax.get_yticklabels(), ax.patches)}
    assert widths == pytest.approx({c: counts["accuracy"] for c, counts in per_category.items()})
    kinds = Counter(r["verdict"]["kind"] for r in written["results"] if not r["valid"])
    assert kinds == written["summary"]["error_kinds"]
    ax = draw.error_kinds_figure(measure.heldout_error_kinds(data), {}).axes[0]
    widths = {label.get_text(): bar.get_width() for label, bar in zip(ax.get_yticklabels(), ax.patches)}
    assert widths == {measure.kind_label(k): n for k, n in kinds.items()}
    assert {row[0]: int(row[1]) for row in page.tables["error-kinds"][1:]} == widths
    assert {name.removeprefix("examples-") for name in page.tables if name.startswith("examples-")} == set(kinds)
    queries = {r["prompt"][-1]["content"] for r in written["results"] if not r["valid"]}
    assert all(row[1] in queries for name, table in page.tables.items() if name.startswith("examples-")
               for row in table[1:])


# ---------------------------------------------------------------- missing and corrupt files


def _damage(folder: Path, name: str) -> None:
    if name == "metrics line not JSON":
        lines = (folder / "metrics.jsonl").read_text().splitlines(keepends=True)
        lines[1] = '{"round": 1, "accuracy": {"plain": 0.5\n'
        (folder / "metrics.jsonl").write_text("".join(lines))
    elif name == "metrics accuracy not a number":
        lines = _records(folder / "metrics.jsonl")
        lines[2]["accuracy"]["plain"] = "high"
        (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    elif name == "pool missing":
        (folder / "pool.jsonl").unlink()
    elif name == "harvest cut off":
        path = folder / "rounds/round_2/harvest.jsonl"
        path.write_text(path.read_text()[:-25])
    elif name == "summary not JSON":
        (folder / "rounds/round_1/eval/plain/summary.json").write_text("{oops")
    elif name == "after-defence line a list":
        with (folder / "rounds/round_3/after_defence.jsonl").open("a") as handle:
            handle.write("[1, 2]\n")


DAMAGE = {  # what was done -> the one problem line it must give
    "metrics line not JSON": "metrics.jsonl: line 2: not valid JSON",
    "metrics accuracy not a number": "metrics.jsonl: round 2: accuracy of 'plain' is 'high'",
    "pool missing": "pool.jsonl: missing",
    "harvest cut off": "rounds/round_2/harvest.jsonl: line ",
    "summary not JSON": "rounds/round_1/eval/plain/summary.json: not valid JSON",
    "after-defence line a list": "rounds/round_3/after_defence.jsonl: line ",
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_broken_file_is_one_problem_line_naming_it(run, tmp_path, damage):
    folder = tmp_path / "run"
    shutil.copytree(run["folder"], folder, ignore=shutil.ignore_patterns("report"))
    _damage(folder, damage)
    problems = load_folder(folder).problems
    assert len(problems) == 1 and problems[0].startswith(DAMAGE[damage]), problems


def test_summary_recomputed_from_results_when_broken(run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run["folder"], folder, ignore=shutil.ignore_patterns("report"))
    (folder / "metrics.jsonl").unlink()
    _damage(folder, "summary not JSON")
    accuracy = measure.accuracy_by_set(load_folder(folder))  # from the eval folders, no metrics
    assert accuracy["plain"] == {m["round"]: m["accuracy"]["plain"] for m in run["metrics"]}


def test_an_eval_folder_is_named_as_in_metrics_without_its_summary(run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run["folder"], folder, ignore=shutil.ignore_patterns("report"))
    (folder / "rounds/round_1/eval/bfcl_simple_python/summary.json").unlink()
    (folder / "metrics.jsonl").write_text((run["folder"] / "metrics.jsonl").read_text().replace(
        '"round": 1,', '"round": 1, "accuracy_note": 0,', 1))
    data = load_folder(folder)
    assert data.problems == ["rounds/round_1/eval/bfcl_simple_python/summary.json: missing; recomputed from "
                             "results.jsonl"]
    assert set(data.evals[1]) == set(HELDOUT_SETS)  # not "bfcl_simple_python" beside "bfcl:simple_python"


def test_a_pool_without_tags_or_failed_attacks_still_reports_traits(tmp_path):
    write_run(tmp_path / "run", rounds=2, pool_per_round=12, heldout_size=4, phrasing_tags=False)
    pool = _records(tmp_path / "run/pool.jsonl")
    worked = [p for p in pool if p["attack_success"]]
    (tmp_path / "run/pool.jsonl").write_text("".join(json.dumps(p) + "\n" for p in worked))
    report = build_report(tmp_path / "run")
    page = _Page(report.html.read_text())
    assert report.problems == [] and "phrasing" not in report.figures and "phrasing" not in page.tables
    assert "carry no phrasing tag" in report.html.read_text()
    assert "Only one of the two groups" in report.html.read_text()
    means = {row[0]: row[2] for row in page.tables["traits"][1:]}
    assert means["words"] == f"{sum(len(p['query'].split()) for p in worked) / len(worked):.2f}"


def test_traits_compare_the_pool_with_valid_queries_that_did_not_fool(tmp_path):
    """A pool of successful attacks only (the default harvest): the harvest records, which carry
    each valid query's sample and outcome, give the queries that did not fool the FC model."""
    write_run(tmp_path / "run", rounds=2, pool_per_round=12, heldout_size=4)
    pool = _records(tmp_path / "run/pool.jsonl")
    for round_index in (1, 2):
        path = tmp_path / f"run/rounds/round_{round_index}/harvest.jsonl"
        mine = [p for p in pool if p["round"] == round_index]
        harvest = [h | ({"sample": mine[i]["sample"], "fc_success": mine[i]["fc_success"]} if h["valid"] else {})
                   for i, h in enumerate(h for h in _records(path) if h["valid"])]
        path.write_text("".join(json.dumps(h) + "\n" for h in harvest))
    (tmp_path / "run/pool.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pool if p["attack_success"]))
    data = load_folder(tmp_path / "run")
    groups = Counter(record["attack_success"] for record in measure.trait_records(data))
    assert groups == Counter(p["attack_success"] for p in pool) and groups[False] > 0
    page = _Page(build_report(tmp_path / "run").html.read_text())
    means = {row[0]: row[3] for row in page.tables["traits"][1:]}
    fooled_not = [p for p in pool if not p["attack_success"]]
    assert means["words"] == f"{sum(len(p['query'].split()) for p in fooled_not) / len(fooled_not):.2f}"


def test_report_of_a_damaged_run_lists_problems_and_draws_the_rest(run, tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(run["folder"], folder, ignore=shutil.ignore_patterns("report"))
    for damage in ("metrics line not JSON", "harvest cut off", "summary not JSON"):
        _damage(folder, damage)
    shutil.rmtree(folder / "rounds/round_3/eval")
    (folder / "rounds/round_1/harvest.jsonl").unlink()
    report = report_command(folder, None)
    page = _Page(report.html.read_text())
    assert page.problems == report.problems and len(report.problems) == 4
    assert any(p == "rounds/round_1/harvest.jsonl: missing" for p in report.problems)
    printed = capsys.readouterr().err.splitlines()
    assert [line.removeprefix("problem: ") for line in printed[:-1]] == report.problems  # one line each
    assert printed[-1].startswith(f"report: {report.html}")
    assert {"accuracy", "attack_rates", "error_kinds", "phrasing", "traits", "rejections"} <= set(report.figures)
    # round 1's metrics line is gone: its accuracy comes from its eval summaries
    rounds = {row[0]: row for row in page.tables["rounds"][1:]}
    assert rounds["1"][5] == _pct(run["metrics"][1]["accuracy"]["plain"])  # round, bfcl x2, hard, no_call, plain


@pytest.mark.parametrize("keep", [(), ("metrics.jsonl",), ("pool.jsonl",), ("pool.jsonl", "rounds"),
                                  ("config.yaml", "state.json", "rounds/round_0")])
def test_any_subset_of_files_renders(run, tmp_path, keep):
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copytree(run["report"].html.parent, folder / "report")  # an earlier report: its figures go or stay
    for name in keep:
        source = run["folder"] / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, folder / name)
    report = build_report(folder)
    assert report.html.exists() and _Page(report.html.read_text()).problems == report.problems
    assert all(p.split(":")[0] in ("metrics.jsonl", "pool.jsonl", str(folder)) or p.startswith("rounds/")
               for p in report.problems)
    assert keep or report.problems  # an empty folder says what it lacks
    assert sorted(p.name for p in report.html.parent.glob("*.png")) == sorted(f"{n}.png" for n in report.figures)


def test_hostile_pool_text_is_escaped_and_clipped(run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run["folder"], folder, ignore=shutil.ignore_patterns("report"))
    pool = _records(folder / "pool.jsonl")
    attack = next(p for p in pool if p["kind"] == "wrong_value")
    attack["query"] = '<script>alert(1)</script><img src="http://evil.example/x.png"> "&\u2028\x1c'
    attack["fc_outputs"] = ["x" * 100_000] * 2
    (folder / "pool.jsonl").write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pool))
    report = build_report(folder)
    text = report.html.read_text()
    assert "<script" not in text and "evil.example" not in " ".join(_Page(text).links)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "x" * 800 not in text
    assert report.problems == []


JUNK = (None, 7, "x", [], {}, [1, "a"], {"a": 1}, True, -1.5, [{"f": [1]}], {"a": {"b": [None]}})


def _scramble(value, rng, depth=0):
    """``value`` with one field somewhere (or itself) replaced by a value of another type."""
    if isinstance(value, dict) and value and depth < 3 and rng.random() < 0.7:
        key = rng.choice(list(value))
        value[key] = _scramble(value[key], rng, depth + 1) if rng.random() < 0.5 else rng.choice(JUNK)
        return value
    if isinstance(value, list) and value and depth < 3:
        index = rng.randrange(len(value))
        value[index] = _scramble(value[index], rng, depth + 1)
        return value
    return rng.choice(JUNK)


@pytest.mark.parametrize("seed", [0, 1])
def test_fields_of_the_wrong_type_anywhere_cost_only_their_records(run, tmp_path, seed):
    import random

    rng = random.Random(seed)
    folder = tmp_path / "run"
    shutil.copytree(run["folder"], folder, ignore=shutil.ignore_patterns("report"))
    for path in sorted(folder.rglob("*.jsonl")) + sorted(folder.rglob("summary.json")):
        if path.suffix == ".jsonl":
            lines = [_scramble(r, rng) if rng.random() < 0.4 else r for r in _records(path)]
            path.write_text("".join(json.dumps(r) + "\n" for r in lines))
        else:
            path.write_text(json.dumps(_scramble(json.loads(path.read_text()), rng)))
    report = build_report(folder)
    assert report.problems and not [p for p in report.problems if p.startswith("section")]
    assert all(p.split(":")[0] == "metrics.jsonl" or p.split(":")[0] == "pool.jsonl" or p.startswith("rounds/")
               for p in report.problems)
    assert {"accuracy", "error_kinds"} <= set(report.figures)


def test_importing_the_command_does_not_load_matplotlib():
    # the CLI imports report_command at start-up; drawing libraries load only for a report
    code = "import sys; from toolduel.report import report_command; print('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_missing_folder_is_an_error_and_exit_code_2(tmp_path):
    import typer
    from typer.testing import CliRunner

    with pytest.raises(ReportError, match="no such folder"):
        build_report(tmp_path / "nope")
    app = typer.Typer()
    app.command("report")(report_command)  # what the lead registers in toolduel/cli.py
    app.command("other")(lambda: None)  # (a second command, so that `report` is a subcommand)
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such folder" in result.output
    assert not (tmp_path / "nope").exists()
    write_eval_folder(tmp_path / "eval", size=6)
    result = CliRunner().invoke(app, ["report", str(tmp_path / "eval"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0 and (tmp_path / "out" / "report.html").exists(), result.output


# ---------------------------------------------------------------- a real headless browser


class _Proxy:
    """An HTTP proxy that records every request the browser makes through it and answers 502."""

    def __init__(self):
        self.requests: list[str] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(2)
                try:
                    self.requests.append(connection.recv(4096).decode("latin-1").split("\r\n")[0])
                    connection.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    def close(self):
        self.server.close()


# Chromium's own services (updates, sign-in, network time) still call home through the proxy
# whatever the flags; those hosts are the browser's, and the page names no host at all.
BROWSER_HOSTS = (".google.com", ".googleapis.com", ".gvt1.com")


def _page_requests(requests: list[str]) -> list[str]:
    def host(request: str) -> str:
        target = request.split()[1] if len(request.split()) > 1 else request
        return target.split("://")[-1].split("/")[0].split(":")[0]
    return [r for r in requests if not ("." + host(r)).endswith(BROWSER_HOSTS)]


def _screenshot(page: Path, shot: Path, proxy: _Proxy, height: int = 9000) -> None:
    subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--disable-background-networking", "--disable-component-update", "--no-first-run",
                    "--disable-sync", "--disable-extensions", "--force-color-profile=srgb",
                    f"--proxy-server=http://127.0.0.1:{proxy.port}", "--proxy-bypass-list=<-loopback>",
                    f"--user-data-dir={shot.parent / 'profile'}", f"--screenshot={shot}",
                    f"--window-size=1280,{height}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install -y chromium)")
def test_headless_chromium_renders_the_page_without_network(run, tmp_path):
    from PIL import Image

    proxy = _Proxy()
    try:
        # control: a page that does load from the network is caught by the proxy
        leaky = tmp_path / "leaky.html"
        leaky.write_text('<html><body><img src="http://example.com/x.png"></body></html>')
        _screenshot(leaky, tmp_path / "leaky.png", proxy, height=200)
        assert any("example.com" in request for request in _page_requests(proxy.requests)), proxy.requests
        proxy.requests.clear()
        shot = tmp_path / "report.png"
        _screenshot(run["report"].html, shot, proxy)
        assert _page_requests(proxy.requests) == []
    finally:
        proxy.close()
    screen = np.asarray(Image.open(shot).convert("L"), dtype=float)
    histogram = np.bincount(screen.astype(int).ravel(), minlength=256)
    assert 0.005 < histogram[:128].sum() / screen.size < 0.5  # text and figures, not a blank or black page
    assert np.count_nonzero(histogram) > 100  # anti-aliased text and coloured figures, not a flat fill
    left, tops = 0, []
    for name, path in run["report"].figures.items():  # each figure is on the page, pixel for pixel
        place = _shown_at(screen, np.asarray(Image.open(path).convert("L"), dtype=float), left)
        assert place is not None, name
        top, left = place
        tops.append(top)
    assert tops == sorted(tops)  # in the order the report lists them


def _shown_at(screen, picture, left_first: int = 0, tolerance: float = 2.0) -> tuple[int, int] | None:
    """Where ``picture`` appears unscaled in ``screen`` (grey levels), or None: rows are matched
    by their mean over the picture's width at each left edge, then the best block is compared."""
    height, width = picture.shape
    columns = np.concatenate([np.zeros((screen.shape[0], 1)), screen.cumsum(axis=1)], axis=1)
    profile = picture.mean(axis=1)
    lefts = range(screen.shape[1] - width + 1)
    for left in sorted(lefts, key=lambda x: abs(x - left_first)):
        rows = (columns[:, left + width] - columns[:, left]) / width
        distance = np.abs(np.lib.stride_tricks.sliding_window_view(rows, height) - profile).mean(axis=1)
        top = int(distance.argmin())
        block = screen[top:top + height, left:left + width]
        if distance[top] < tolerance and np.abs(block - picture).mean() < tolerance:
            return top, left
    return None


def test_styles_asked_rank_by_weaknesses_per_query_over_the_whole_harvest(tmp_path):
    """A harvest that asked for styles: the section counts every query asked (valid or not) per
    style, a weakness being valid, failed on some answer and answerable, the weakest first."""
    written = write_run(tmp_path / "run", rounds=2, pool_per_round=12, heldout_size=4)
    expected: dict[str, list[int]] = {}
    for round_index, records in written["harvest"].items():
        for index, record in enumerate(records):
            record["style"] = ("noisy+terse", "chatty", "reordered")[index % 3]
            record["tool_move"] = ("unchanged", "masked_names")[index % 2]
            record["solvable"] = index % 4 != 0
            record["fc_success"] = (0.25, 1.0, 0.5, 1.0, 0.75)[index % 5] if record["valid"] else None
            weak = record["valid"] and record["fc_success"] < 1.0 and record["solvable"]
            pair = expected.setdefault(record["style"], [0, 0])
            pair[0], pair[1] = pair[0] + 1, pair[1] + weak
        path = tmp_path / f"run/rounds/round_{round_index}/harvest.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = build_report(tmp_path / "run")
    rows = _Page(report.html.read_text()).tables["phrasing"]
    assert rows[0][:3] == ["style asked", "queries", "weaknesses"] and "phrasing" in report.figures
    assert {row[0]: [int(row[1]), int(row[2])] for row in rows[1:]} == expected
    rates = [w / n for n, w in (expected[row[0]] for row in rows[1:])]
    assert rates == sorted(rates, reverse=True) and any(w for _, w in expected.values())
    moves = _Page(report.html.read_text()).tables["tool-moves"]  # the tool surface's moves, counted alike
    assert sum(int(row[1]) for row in moves[1:]) == sum(n for n, _ in expected.values())
    assert {row[0] for row in moves[1:]} == {"unchanged", "masked_names"}


def test_the_report_opens_with_the_weakest_specs_and_their_attacks(tmp_path):
    """Before the round tables: each surface's specs ranked by weakness rate (by the low end of its
    Wilson interval), with attacks in the weakest that worked and their answers after defence."""
    from toolduel.report.findings import wilson

    written = write_run(tmp_path / "run", rounds=1, pool_per_round=12, heldout_size=4)
    records = written["harvest"][1]
    for index, record in enumerate(records):  # chatty: every valid query a weakness; terse: none
        record["style"] = "chatty" if index % 2 else "terse"
        record["tool_move"] = "masked_names"
        record["solvable"] = True
        record["fc_success"] = (0.5 if index % 2 else 1.0) if record["valid"] else None
    (tmp_path / "run/rounds/round_1/harvest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    pool = [r | {"phrasing": "chatty", "tool_move": "masked_names"} for r in written["pool"]]
    (tmp_path / "run/pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pool))

    text = build_report(tmp_path / "run").html.read_text()
    assert text.index('id="what-was-found"') < text.index('id="rounds"')
    page = _Page(text)
    rows = page.tables["findings"][1:]
    styles = [row for row in rows if row[0] == "query style"]
    assert [row[1] for row in styles] == ["chatty", "terse"] and rows[-1][:2] == ["tool move", "masked_names"]
    asked = sum(1 for r in records if r["style"] == "chatty")
    weak = sum(1 for r in records if r["style"] == "chatty" and r["valid"])
    low, high = wilson(weak, asked)
    assert styles[0][2:] == [str(asked), str(weak), f"{weak / asked:.1%} [{low:.1%}, {high:.1%}]"]
    shown = page.tables["findings-query-style-chatty"]
    worked = [r for r in pool if r["attack_success"]]
    assert shown[0][-1] == "verdict after defence" and 1 <= len(shown) - 1 <= 2
    assert {row[0] for row in shown[1:]} <= {r["query"] for r in worked}


def test_an_evaluation_report_opens_with_its_weakest_categories(tmp_path):
    write_eval_folder(tmp_path / "eval", size=40)
    page = _Page(build_report(tmp_path / "eval").html.read_text())
    rows = page.tables["findings"][1:]
    assert rows and rows[0][:1] == ["eval"]
    lows = [float(row[4].split("[")[1].split("%")[0]) for row in rows]
    assert lows == sorted(lows, reverse=True)


def test_an_attack_that_wrote_tool_edits_is_shown_with_them_and_its_traits_are_its_requests():
    from toolduel.report.load import RunData
    from toolduel.report.measure import pool_example, trait_records

    record = {"round": 1, "query": "Convert 12.5 km to mi", "tool_edits": ["rename convert_length to tool_7"]}
    assert pool_example(record, None)["query"] == "Convert 12.5 km to mi [tool edits: rename convert_length to tool_7]"
    assert pool_example(record | {"tool_edits": []}, None)["query"] == "Convert 12.5 km to mi"
    data = RunData(folder=Path("."))
    sample = {"messages": [{"role": "user", "content": "Convert 12.5 km to mi"}], "tools": [], "gold": []}
    data.harvest = {1: [{"query": "Convert 12.5 km to mi\nTool edits:\nrename convert_length to tool_7",
                         "valid": True, "sample": sample, "fc_success": 0.5}]}
    assert [r["query"] for r in trait_records(data)] == ["Convert 12.5 km to mi"]  # what the FC model read
