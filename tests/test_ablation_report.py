"""`toolduel report ABLATION.json`: the ablation's figures show its numbers; bad files are one error."""

from __future__ import annotations

import json

import pytest
from matplotlib.collections import PathCollection
from typer.testing import CliRunner

from toolduel.cli import app
from toolduel.report import ReportError, build_report
from toolduel.report.ablation import ARMS, METRICS, accuracy_figure, yield_figure


def _summary(values):
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return {"mean": mean, "std": std, "values": values}


def _ablation() -> dict:
    arms = {arm: {metric: _summary([0.1 * (i + 1) + 0.01 * seed + 0.05 * (metric == "plain") for seed in range(3)])
                  for metric in METRICS} | {"added": [32, 32, 32], "seeds": [0, 1, 2]}
            for i, arm in enumerate(ARMS)}
    return {"plain": {"arms": arms, "start": {"perturbed": 0.5, "held_back": 0.45, "plain": 0.9, "bfcl": 0.3},
                      "yield": {"warm": _summary([150.0, 170.0, 160.0]), "rl": _summary([400.0, 380.0, 420.0])}},
            "settings": {"budget": 32}}


def test_the_accuracy_figure_draws_each_arms_mean_spread_and_seeds():
    report = _ablation()
    figure = accuracy_figure(report, problems := [])
    (ax,) = figure.axes
    bars = [patch for patch in ax.patches]
    assert len(bars) == len(ARMS) * len(METRICS)
    for position, arm in enumerate(ARMS):  # matplotlib adds each arm's bars together, in metric order
        heights = [bar.get_height() for bar in bars[position * len(METRICS):(position + 1) * len(METRICS)]]
        assert heights == pytest.approx([report["plain"]["arms"][arm][m]["mean"] for m in METRICS])
    dots = sorted(y for collection in ax.collections if isinstance(collection, PathCollection)  # the scatter
                  for _, y in collection.get_offsets())
    expected = sorted(v for arm in ARMS for m in METRICS for v in report["plain"]["arms"][arm][m]["values"])
    assert dots == pytest.approx(expected) and problems == []


def test_the_yield_figure_draws_both_query_models():
    figure = yield_figure(_ablation(), [])
    heights = [bar.get_height() for bar in figure.axes[0].patches]
    assert heights == pytest.approx([160.0, 400.0])


def test_report_of_an_ablation_json_writes_page_and_figures(tmp_path):
    path = tmp_path / "ablation.json"
    report = _ablation()
    report["plain"]["arms"]["selected"]["plain"] = {"mean": "high"}  # a damaged entry: drawn without it
    path.write_text(json.dumps(report))
    result = build_report(path)
    assert result.html == tmp_path / "ablation-report" / "report.html"
    assert set(result.figures) == {"ablation", "ablation_yield"} and all(p.exists() for p in result.figures.values())
    assert result.problems == ["plain.selected.plain: not a summary with mean, std and values; left out"]
    page = result.html.read_text()
    assert "0.410 ± 0.010" in page and "adversarial" in page  # the adversarial arm's perturbed mean ± std


def test_the_page_reads_each_paired_difference_by_its_interval(tmp_path):
    path = tmp_path / "ablation.json"
    report = _ablation()
    report["plain"]["paired"] = {
        "adversarial - untargeted": {"mean": 0.02, "ci95": [-0.01, 0.05], "pairs": 336, "per_seed": [0.03, 0.01]},
        "untargeted - none": {"mean": 0.06, "ci95": [0.02, 0.1], "pairs": 336, "per_seed": [0.05, 0.07]},
        "selected - untargeted": {"mean": -0.04, "ci95": [-0.07, -0.01], "pairs": 336, "per_seed": []},
        "adversarial - none": {"mean": 0.1}}  # damaged: no interval
    path.write_text(json.dumps(report))
    result = build_report(path)
    rows = result.html.read_text().split('id="paired-plain"')[1].split("</table>")[0].split("<tr>")[2:]
    readings = {row.split("<td>")[1].split("<")[0]: row.split("<td>")[-1].split("<")[0] for row in rows}
    assert readings == {"adversarial - untargeted": "no difference", "untargeted - none": "higher",
                        "selected - untargeted": "lower"}
    assert result.problems == ["plain.paired.adversarial - none: not a paired difference with mean and ci95; left out"]


@pytest.mark.parametrize("text", ["{not json", json.dumps({"arms": {}}), json.dumps([1, 2])])
def test_a_file_that_is_no_ablation_is_one_error(tmp_path, text):
    path = tmp_path / "odd.json"
    path.write_text(text)
    with pytest.raises(ReportError, match="odd.json"):
        build_report(path)
    done = CliRunner().invoke(app, ["report", str(path)])
    assert done.exit_code == 2 and "odd.json" in done.output  # SystemExit(2) with the line; a crash exits 1


def _game() -> dict:
    arms = {"duel": {"composed": [[0.5, 0.6, 0.7], [0.5, 0.62, 0.66]], "added": [[32, 30], [32, 32]],
                     "kept": [["defended"] * 2] * 2, "seeds": [0, 1],
                     "final": {"composed": _summary([0.7, 0.66]), "plain": _summary([0.8, 0.82]), "bfcl": None}},
            "untargeted": {"composed": [[0.5, 0.55, 0.6], [0.5, 0.57, 0.58]], "added": [[32, 32]] * 2,
                           "kept": [["defended"] * 2] * 2, "seeds": [0, 1],
                           "final": {"composed": _summary([0.6, 0.58]), "plain": _summary([0.84, 0.8]), "bfcl": None}}}
    paired = {"round 0": {"mean": 0.0, "ci95": [0.0, 0.0], "pairs": 624, "per_seed": [0.0, 0.0]},
              "round 1": {"mean": 0.05, "ci95": [0.01, 0.09], "pairs": 624, "per_seed": [0.05, 0.05]},
              "round 2": {"mean": 0.09, "ci95": [-0.01, 0.12], "pairs": 624, "per_seed": [0.1, 0.08]}}
    return {"settings": {"rounds": 2}, "arms": arms, "paired": paired}


def test_report_of_a_game_json_draws_each_arm_per_round_and_the_paired_difference(tmp_path):
    from toolduel.report.game import game_figure

    report = _game()
    left, right = game_figure(report, problems := []).axes
    means = {line.get_label().split(" (")[0]: list(line.get_ydata()) for line in left.lines if line.get_linewidth() > 2}
    assert means["the duel"] == pytest.approx([0.5, 0.61, 0.68])
    assert means["untargeted augmentation"] == pytest.approx([0.5, 0.56, 0.59])
    assert list(right.lines[0].get_ydata()) == pytest.approx([0.0, 0.05, 0.09]) and problems == []

    path = tmp_path / "game.json"
    path.write_text(json.dumps(report))
    result = build_report(path)
    assert result.html == tmp_path / "game-report" / "report.html" and set(result.figures) == {"game"}
    page = result.html.read_text()
    assert "[+0.010, +0.090]" in page and "higher" in page and "no difference" in page and result.problems == []
