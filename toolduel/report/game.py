"""The report of a game benchmark (the JSON ``benchmarks/game.py`` writes): each arm's held-out
accuracy round by round, and the duel minus untargeted augmentation on the same items per round.

    toolduel report game.json            # -> game-report/report.html, game.png

Read defensively, as the ablation's: a round or arm with missing numbers is drawn without them
and named in the problems list.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from toolduel.report import Report
from toolduel.report import page as html
from toolduel.report.ablation import ARM_COLORS, _cell, _paired_rows, report_folder, write_page
from toolduel.report.figures import SIZE, png_bytes

ARMS = {"duel": "the duel (attack, weaknesses harvested)", "untargeted": "untargeted augmentation (no attack)"}
COLORS = {"duel": ARM_COLORS["adversarial"], "untargeted": ARM_COLORS["untargeted"]}


def is_game(report: object) -> bool:
    return isinstance(report, dict) and isinstance(report.get("arms"), dict) and "duel" in report["arms"]


def _curves(values: dict, problems: list[str], arm: str) -> list[list[float]]:
    """Each seed's accuracy per round; a seed whose numbers cannot be read is left out."""
    curves = []
    for index, curve in enumerate(values.get("composed") or []):
        try:
            curves.append([float(v) for v in curve])
        except (TypeError, ValueError):
            problems.append(f"arms.{arm}.composed[{index}]: not a list of accuracies; left out")
    return curves


def game_figure(report: dict, problems: list[str]) -> Figure | None:
    """Left: accuracy on the composed set per round (seeds thin, their mean bold); right: duel
    minus untargeted per round with its 95% interval."""
    arms = {arm: _curves(report["arms"][arm], problems, arm) for arm in ARMS if isinstance(report["arms"].get(arm), dict)}
    if not any(arms.values()):
        return None
    figure = Figure(figsize=(SIZE[0], SIZE[1]), layout="constrained")
    left, right = figure.subplots(1, 2)
    figure.suptitle("Rounds of the duel against rounds of untargeted augmentation, same examples per round",
                    fontsize=13, fontweight="bold")
    for arm, curves in arms.items():
        for curve in curves:
            left.plot(range(len(curve)), curve, color=COLORS[arm], alpha=0.3, linewidth=1)
        rounds = max(map(len, curves), default=0)
        means = [sum(c[r] for c in curves if len(c) > r) / max(1, sum(len(c) > r for c in curves)) for r in range(rounds)]
        left.plot(range(rounds), means, color=COLORS[arm], linewidth=2.5, marker="o",
                  label=f"{ARMS[arm]} ({len(curves)} seed{'s' if len(curves) != 1 else ''})")
    left.set_xticks(range(max((len(c) for curves in arms.values() for c in curves), default=0)))
    left.set_xlabel("round (0: before any defence)")
    left.set_ylabel("accuracy on held-out composed queries")
    left.legend(loc="best", fontsize=8, title="arm (thin lines: seeds)", title_fontsize=8)
    paired = report.get("paired") if isinstance(report.get("paired"), dict) else {}
    points = []
    for name, entry in paired.items():
        try:
            points.append((int(name.removeprefix("round ")), float(entry["mean"]), *map(float, entry["ci95"])))
        except (AttributeError, KeyError, TypeError, ValueError):
            continue  # the table below names it
    if points:
        rounds, means, lows, highs = zip(*sorted(points))
        right.errorbar(rounds, means, yerr=[[m - lo for m, lo in zip(means, lows)], [hi - m for m, hi in zip(means, highs)]],
                       fmt="o-", color="black", capsize=4)
        right.axhline(0, color="grey", linestyle="dashed", linewidth=1)
        right.set_xticks(list(rounds))
    right.set_xlabel("round")
    right.set_ylabel("duel - untargeted (95% interval)")
    right.set_title("paired on the same items and seeds", fontsize=10)
    return figure


def build_game_report(path: Path, report: dict, out: str | Path | None = None) -> Report:
    """``report.html`` and ``game.png`` of the game benchmark ``report`` (read from ``path``)."""
    out = report_folder(path, out)
    problems: list[str] = []
    body, figures = [], {}
    figure = game_figure(report, problems)
    if figure is not None:
        png = png_bytes(figure)
        (out / "game.png").write_bytes(png)
        figures["game"] = out / "game.png"
        body.append(html.figure("game", png, "Held-out composed accuracy per round, and the paired difference"))
    rows = []
    for arm, label in ARMS.items():
        values = report["arms"].get(arm)
        if not isinstance(values, dict):
            continue
        final = values.get("final") if isinstance(values.get("final"), dict) else {}
        rows.append([label, *(_cell(final.get(m)) for m in ("composed", "plain", "bfcl")),
                     str(values.get("added", "-")), str(values.get("kept", "-")), str(values.get("seeds", "-"))])
    body.append(html.section("After the last round", html.table(
        "arms", ["arm", "composed", "plain", "BFCL", "added per round", "guard kept", "seeds"], rows)))
    paired = _paired_rows(report, "game", problems)
    if paired:
        body.append(html.section("Duel minus untargeted, round by round", html.paragraph(
            "On the same composed items and seeds; round 0 is the same FC model in both arms."),
            html.table("paired", ["round", "difference", "95% interval", "pairs", "per seed", "reading"], paired)))
    return write_page(out, f"toolduel game: {path.name}", f"game benchmark file {path}", report, body, figures,
                      problems)
