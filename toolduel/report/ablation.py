"""The report of an ablation (the JSON ``benchmarks/ablation.py`` writes): per regime, each arm's
held-out accuracy with its spread over seeds, and the attack yield of the query models. The JSON
of ``benchmarks/game.py`` goes to :mod:`toolduel.report.game`.

    toolduel report ablation.json            # -> ablation-report/report.html, ablation.png, ablation_yield.png

The JSON is read defensively: a regime or arm with missing numbers is drawn without them and
named in the problems list; a file that is no ablation is one clear error.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from matplotlib.figure import Figure

from toolduel.config import ConfigError, read_file_text
from toolduel.report import Report, ReportError
from toolduel.report import page as html
from toolduel.report.figures import SIZE, _legend_outside, png_bytes
from toolduel.run_files import write_text_atomic

REGIMES = {"sparse": "FC model warm-started on every kind and most combinations; perturbed: the composed set",
           "plain": "FC model warm-started on plain queries",
           "augmented": "FC model warm-started with some perturbation kinds, the others held back"}
ARMS = ("none", "untargeted", "selected", "adversarial")
ARM_COLORS = {"none": "#7f7f7f", "untargeted": "#1f77b4", "selected": "#ff7f0e", "adversarial": "#d62728"}
METRICS = {"perturbed": "perturbed (all kinds)", "held_back": "held back (kinds or combinations)", "plain": "plain", "bfcl": "BFCL"}
YIELDS = {"warm": "warm query model", "rl": "RL-trained", "rl_with_attack": "RL-trained, attack's answers counted"}


def read_ablation(path: Path) -> dict:
    """The ablation JSON; :class:`ReportError` when it cannot be read or holds no regime."""
    try:
        report = json.loads(read_file_text(path, "ablation JSON", max_bytes=64_000_000))
    except ConfigError as error:
        raise ReportError(str(error)) from None
    except (json.JSONDecodeError, RecursionError) as error:
        raise ReportError(f"{path}: not a readable JSON file ({error})") from None
    from toolduel.report.game import is_game

    if not is_game(report) and not (isinstance(report, dict) and any(isinstance(report.get(r), dict) for r in REGIMES)):
        raise ReportError(f"{path}: no ablation in it (expected a regime {' or '.join(REGIMES)} at the top, "
                          "as benchmarks/ablation.py writes, or the arms duel and untargeted of benchmarks/game.py)")
    return report


def _stat(entry, problems: list[str], where: str) -> tuple[float, float, list[float]]:
    """(mean, std, values) of a summary ``{"mean", "std", "values"}``; NaN where it is missing."""
    if entry is None:
        return math.nan, math.nan, []
    try:
        values = [float(v) for v in entry.get("values", [])]
        return float(entry["mean"]), float(entry.get("std", 0.0)), values
    except (AttributeError, KeyError, TypeError, ValueError):
        problems.append(f"{where}: not a summary with mean, std and values; left out")
        return math.nan, math.nan, []


def _bars(ax, groups: list[str], series: dict[str, list[tuple[float, float, list[float]]]]) -> None:
    """Grouped bars (mean) with the spread (one std) and every seed's value as a dot."""
    width = 0.8 / max(1, len(series))
    for position, (name, stats) in enumerate(series.items()):
        offsets = [g + (position - (len(series) - 1) / 2) * width for g in range(len(groups))]
        means = [s[0] for s in stats]
        ax.bar(offsets, means, width, yerr=[s[1] for s in stats], capsize=3, label=name,
               color=ARM_COLORS.get(name, "#9467bd"), alpha=0.85)
        for x, (_, _, values) in zip(offsets, stats):
            ax.scatter([x] * len(values), values, s=10, color="black", zorder=3)
    ax.set_xticks(range(len(groups)), groups, fontsize=9)


def accuracy_figure(report: dict, problems: list[str]) -> Figure | None:
    """One panel per regime: per held-out set, one bar per arm (mean over seeds, spread, seeds)."""
    regimes = [r for r in REGIMES if isinstance(report.get(r), dict) and report[r].get("arms")]
    if not regimes:
        return None
    figure = Figure(figsize=(SIZE[0], SIZE[1] * len(regimes)), layout="constrained")
    axes = figure.subplots(len(regimes), 1, squeeze=False)[:, 0]
    figure.suptitle("Held-out accuracy after one defence, per arm (bars: mean over seeds; dots: seeds)",
                    fontsize=13, fontweight="bold")
    for ax, regime in zip(axes, regimes):
        arms = report[regime]["arms"]
        metrics = [m for m in METRICS if any(isinstance(arms[a], dict) and arms[a].get(m) for a in arms)]
        series = {arm: [_stat(arms[arm].get(m), problems, f"{regime}.{arm}.{m}") for m in metrics]
                  for arm in ARMS if isinstance(arms.get(arm), dict)}
        _bars(ax, [METRICS[m] for m in metrics], series)
        start = report[regime].get("start") if isinstance(report[regime].get("start"), dict) else {}
        for x, metric in enumerate(metrics):
            if isinstance(start.get(metric), (int, float)):
                ax.hlines(start[metric], x - 0.45, x + 0.45, colors="black", linestyles="dashed",
                          label="before the defence" if x == 0 else None)
        seeds = max((len(s[0][2]) for s in series.values()), default=0)
        ax.set_title(f"{regime}: {REGIMES[regime]} ({seeds} seed{'s' if seeds != 1 else ''})", fontsize=10)
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.05)
        _legend_outside(ax, title="arm")
    return figure


def yield_figure(report: dict, problems: list[str]) -> Figure | None:
    """Valid failing queries per 1,000 FC answers, per query model and regime."""
    regimes = [r for r in REGIMES if isinstance(report.get(r), dict) and report[r].get("yield")]
    if not regimes:
        return None
    figure = Figure(figsize=SIZE, layout="constrained")
    ax = figure.subplots()
    figure.suptitle("Attack yield: valid queries that fooled the FC model per 1,000 of its answers",
                    fontsize=13, fontweight="bold")
    names = [name for name in YIELDS if any(report[r]["yield"].get(name) for r in regimes)]
    width = 0.8 / len(names)
    for position, name in enumerate(names):
        stats = [_stat(report[r]["yield"].get(name), problems, f"{r}.yield.{name}") for r in regimes]
        offsets = [g + (position - (len(names) - 1) / 2) * width for g in range(len(regimes))]
        ax.bar(offsets, [s[0] for s in stats], width, yerr=[s[1] for s in stats], capsize=3, label=YIELDS[name],
               color={"warm": "#1f77b4", "rl": "#d62728", "rl_with_attack": "#ff9896"}[name])
        for x, (_, _, values) in zip(offsets, stats):
            ax.scatter([x] * len(values), values, s=10, color="black", zorder=3)
    ax.set_xticks(range(len(regimes)), [f"regime: {r}" for r in regimes])
    ax.set_ylabel("per 1,000 answers")
    _legend_outside(ax, title="query model")
    return figure


def _cell(entry) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("mean"), (int, float)):
        return "-"
    return f"{entry['mean']:.3f} ± {entry.get('std', 0.0):.3f}"


def _paired_rows(section: dict, regime: str, problems: list[str]) -> list[list[str]]:
    """One row per paired comparison on the perturbed held-out set: the mean difference, its 95%
    interval, how many pairs, and what it says: a difference whose interval holds 0 is none."""
    rows = []
    comparisons = section.get("paired") if isinstance(section.get("paired"), dict) else {}
    for name, entry in comparisons.items():
        try:
            mean, (low, high) = float(entry["mean"]), (float(v) for v in entry["ci95"])
            per_seed = ", ".join(f"{float(v):+.3f}" for v in entry.get("per_seed", []))
        except (KeyError, TypeError, ValueError):
            problems.append(f"{regime}.paired.{name}: not a paired difference with mean and ci95; left out")
            continue
        reading = "no difference" if low <= 0 <= high else ("higher" if low > 0 else "lower")
        rows.append([name, f"{mean:+.3f}", f"[{low:+.3f}, {high:+.3f}]", str(entry.get("pairs", "-")),
                     per_seed or "-", reading])
    return rows


def report_folder(path: Path, out: str | Path | None) -> Path:
    """``out``, or ``<path without .json>-report`` beside the JSON, made a folder."""
    out = Path(out) if out is not None else path.with_name(f"{path.stem}-report")
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out} is a file, not a folder for the report; move it away, or pass --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def build_ablation_report(path: str | Path, out: str | Path | None = None) -> Report:
    """``report.html`` and the PNG figures of the ablation in ``path`` under ``out`` (default:
    ``<path without .json>-report`` beside it)."""
    path = Path(path)
    report = read_ablation(path)
    from toolduel.report.game import build_game_report, is_game

    if is_game(report):
        return build_game_report(path, report, out)
    out = report_folder(path, out)
    problems: list[str] = []
    body, figures = [], {}
    for name, draw, caption in (
            ("ablation", accuracy_figure, "Accuracy per arm on the held-out sets, spread over seeds"),
            ("ablation_yield", yield_figure, "Valid failing queries found per 1,000 FC answers")):
        figure = draw(report, problems)
        if figure is not None:
            png = png_bytes(figure)
            (out / f"{name}.png").write_bytes(png)
            figures[name] = out / f"{name}.png"
            body.append(html.figure(name, png, caption))
    for regime in REGIMES:
        section = report.get(regime)
        if not isinstance(section, dict):
            continue
        arms = section.get("arms") if isinstance(section.get("arms"), dict) else {}
        rows = [[arm, *(_cell(arms[arm].get(m)) for m in METRICS), str(arms[arm].get("added", "-")),
                 str(arms[arm].get("seeds", "-"))] for arm in ARMS if isinstance(arms.get(arm), dict)]
        yields = section.get("yield") if isinstance(section.get("yield"), dict) else {}
        paired = _paired_rows(section, regime, problems)
        body.append(html.section(f"Regime {regime}", html.paragraph(REGIMES[regime]),
                                 html.table(f"arms-{regime}", ["arm", *METRICS.values(), "added", "seeds"], rows),
                                 *([html.paragraph("Paired differences on the perturbed held-out set (the same "
                                                   "items and seeds in both arms):"),
                                    html.table(f"paired-{regime}", ["arm - arm", "difference", "95% interval",
                                                                    "pairs", "per seed", "reading"], paired)]
                                   if paired else []),
                                 html.table(f"yield-{regime}", ["query model", "per 1,000 answers"],
                                            [[YIELDS[k], _cell(v)] for k, v in yields.items() if k in YIELDS]),
                                 section_id=f"regime-{regime}"))
    return write_page(out, f"toolduel ablation: {path.name}", f"ablation file {path}", report, body, figures, problems)


def write_page(out: Path, title: str, meta: str, report: dict, body: list[str], figures: dict[str, Path],
               problems: list[str]) -> Report:
    """``out/report.html`` of a benchmark's JSON: the problems, ``body``, then its settings."""
    settings = json.dumps(report.get("settings", {}), indent=2, default=str)
    text = html.page(title, meta, [html.problems_section(problems), *body,
                                   html.section("Settings", f"<pre>{html.escape(settings)}</pre>", section_id="settings")])
    write_text_atomic(out / "report.html", text)
    return Report(html=out / "report.html", figures=figures, problems=problems)
