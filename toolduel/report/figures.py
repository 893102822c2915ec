"""The report's figures: each function takes the plain data of :mod:`toolduel.report.measure` and
returns a matplotlib ``Figure`` (or None when there is nothing to draw), so tests can read the
plotted values back from its artists.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state, nothing to close) and
written by the Agg renderer; each has a fixed size, a title, axis labels and a legend.
"""

from __future__ import annotations

import io
import math

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from toolduel.report.measure import ERROR_KINDS, kind_label, kinds_present

SIZE = (10, 4.4)  # inches; at DPI this is 1100 x 484 pixels
DPI = 110
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd")
KIND_COLORS = dict(zip(ERROR_KINDS, _PALETTE))
ROUND_LABEL = "round (0: before any defence)"


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _figure(title: str, columns: int = 1) -> tuple[Figure, list]:
    figure = Figure(figsize=SIZE, layout="constrained")
    axes = figure.subplots(1, columns, squeeze=False)[0].tolist()
    figure.suptitle(title, fontsize=13, fontweight="bold")
    return figure, axes


def _legend_outside(ax, title: str | None = None) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, title=title, title_fontsize=9,
              frameon=False)


def _value(value) -> float:
    return math.nan if value is None else float(value)


def rate_figure(series: dict[str, dict[int, float | None]], title: str, ylabel: str,
                xlabel: str = ROUND_LABEL) -> Figure | None:
    """One line per label over rounds (a missing value leaves a gap); with a single round,
    one horizontal bar per label instead."""
    rounds = sorted({r for points in series.values() for r in points})
    if not rounds:
        return None
    figure, (ax,) = _figure(title)
    if len(rounds) == 1:
        labels = list(series)[::-1]  # top to bottom in the series' order
        values = [_value(series[label].get(rounds[0])) for label in labels]
        ax.barh(labels, values, color="#1f77b4")
        for position, value in enumerate(values):
            if not math.isnan(value):
                ax.annotate(f"{value:.0%}", (value, position), xytext=(4, 0), textcoords="offset points",
                            va="center", fontsize=9)
        ax.set_xlim(0, 1.08)
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel(ylabel)
        ax.set_ylabel("")
        return figure  # one series: the title says what it is, no legend needed
    for index, (label, points) in enumerate(series.items()):
        ax.plot(rounds, [_value(points.get(r)) for r in rounds], marker="o", label=label,
                color=_PALETTE[index % len(_PALETTE)], linestyle="-" if index < 10 else "--")
    ax.set_xticks(rounds)
    ax.set_ylim(-0.03, 1.03)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    return figure


def steps_figure(series: dict[str, dict[str, dict[int, float]]], title: str) -> Figure | None:
    """One panel per quantity, one line per round over the attack's GRPO steps."""
    if not series:
        return None
    figure, axes = _figure(title, columns=len(series))
    rounds = sorted({name for lines in series.values() for name in lines})
    for ax, (label, lines) in zip(axes, series.items()):
        for name, points in lines.items():
            steps = sorted(points)
            ax.plot(steps, [points[s] for s in steps], marker=".", label=name,
                    color=_PALETTE[rounds.index(name) % len(_PALETTE)])
        ax.set_title(label, fontsize=10, wrap=True)
        ax.set_ylim(-0.03, 1.03)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("GRPO step")
        ax.grid(alpha=0.3)
    _legend_outside(axes[-1], title="attack of")
    return figure


def _stacked(ax, counts: dict[int, dict[str, int]], order: list[str], labels: dict[str, str],
             colors: dict[str, str]) -> None:
    rounds = sorted(counts)
    bottoms = [0] * len(rounds)
    for name in order:
        heights = [counts[r].get(name, 0) for r in rounds]
        if any(heights):
            ax.bar([str(r) for r in rounds], heights, bottom=bottoms, label=labels.get(name, name),
                   color=colors.get(name, "#999999"), edgecolor="white", linewidth=0.5)
            bottoms = [b + h for b, h in zip(bottoms, heights)]
    ax.set_xlabel("round")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def error_kinds_figure(heldout: dict[int, dict[str, int]], attacks: dict[int, dict[str, int]]) -> Figure | None:
    """Stacked bars of error kinds per round: on the held-out sets (summed) and among the
    successful attacks of each round's harvest; one panel per source that has counts."""
    panels = [("held-out sets, all summed", heldout, "wrong answers"),
              ("successful attacks (harvest)", attacks, "attacks")]
    panels = [p for p in panels if any(any(kinds.values()) for kinds in p[1].values())]
    if not panels:
        return None
    order = kinds_present(heldout, attacks)
    if len(panels) == 1 and len(panels[0][1]) == 1:
        return _kind_counts_figure(next(iter(panels[0][1].values())), order, panels[0][2])
    figure, axes = _figure("Error kinds per round", columns=len(panels))
    labels = {kind: kind_label(kind) for kind in order}
    for ax, (title, counts, ylabel) in zip(axes, panels):
        _stacked(ax, counts, order, labels, KIND_COLORS)
        ax.set_title(title, fontsize=11)
        ax.set_ylabel(ylabel)
    # one legend for both panels, in the checker's order
    handles = {h.get_label(): h for ax in axes for h in ax.get_legend_handles_labels()[0]}
    ordered = [handles[labels[k]] for k in order if labels[k] in handles]
    figure.legend(ordered, [h.get_label() for h in ordered], loc="outside right upper", fontsize=9,
                  title="error kind", title_fontsize=9, frameon=False)
    return figure


def _kind_counts_figure(counts: dict[str, int], order: list[str], xlabel: str) -> Figure:
    """One round: a horizontal bar per error kind, in the checker's order from the top."""
    figure, (ax,) = _figure("Error kinds")
    shown = [kind for kind in order if counts.get(kind)][::-1]
    bars = ax.barh([kind_label(k) for k in shown], [counts[k] for k in shown],
                   color=[KIND_COLORS.get(k, "#999999") for k in shown])
    ax.bar_label(bars, padding=3, fontsize=9)
    ax.margins(x=0.08)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("error kind")
    return figure


def phrasing_figure(stats: dict[str, dict], title: str = "Attack success by the seed's phrasing tag",
                    xlabel: str = "seed phrasing tag (attacks in the pool)") -> Figure | None:
    """Attack success rate per phrasing tag (or style asked), one bar per round; n in the tick labels."""
    if not stats:
        return None
    rounds = sorted({r for entry in stats.values() for r in entry["by_round"]})
    figure, (ax,) = _figure(title)
    width = 0.8 / len(rounds)
    for index, round_index in enumerate(rounds):
        positions, rates = [], []
        for tag_index, entry in enumerate(stats.values()):
            if round_index in entry["by_round"]:
                worked, n = entry["by_round"][round_index]
                positions.append(tag_index - 0.4 + width * (index + 0.5))
                rates.append(worked / n)
        ax.bar(positions, rates, width=width, label=f"round {round_index}", color=_PALETTE[index % len(_PALETTE)])
    ax.set_xticks(range(len(stats)), [f"{tag} (n={entry['n']})" for tag, entry in stats.items()], fontsize=9,
                  rotation=20, ha="right", rotation_mode="anchor")
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("attack success rate")
    ax.grid(axis="y", alpha=0.3)
    _legend_outside(ax)
    return figure


def traits_figure(comparison: dict[str, dict]) -> Figure | None:
    """Mean of each trait among valid queries that fooled the FC model (``worked``) and that did
    not (``failed``), one panel per trait."""
    if not comparison or not any(row["n_worked"] or row["n_failed"] for row in comparison.values()):
        return None
    figure, axes = _figure("Traits of valid queries: fooled the FC model vs. did not (means)",
                           columns=len(comparison))
    for ax, (trait, row) in zip(axes, comparison.items()):
        values = [_value(row["worked"]), _value(row["failed"])]
        bars = ax.bar(["fooled", "not"], values, color=["#d62728", "#7f7f7f"])
        bars[0].set_label(f"fooled the FC model (n={row['n_worked']})")
        bars[1].set_label(f"did not fool it (n={row['n_failed']})")
        ax.set_title(trait.replace("_", " "), fontsize=10)
        ax.set_xlabel("query")
        ax.tick_params(labelsize=9)
        for bar, value in zip(bars, values):
            if not math.isnan(value):
                ax.annotate(f"{value:.2g}", (bar.get_x() + bar.get_width() / 2, value), xytext=(0, 2),
                            textcoords="offset points", ha="center", fontsize=9)
        ax.margins(y=0.15)
    axes[0].set_ylabel("mean over queries")
    first = next(iter(comparison.values()))
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=9,
                  frameon=False, title=f"{first['n_worked'] + first['n_failed']} valid queries")
    return figure


def rejections_figure(counts: dict[int, dict[str, int]]) -> Figure | None:
    """Stacked bars of rejected harvested queries per round, by the validity rule that failed."""
    if not any(any(reasons.values()) for reasons in counts.values()):
        return None
    order = sorted({reason for reasons in counts.values() for reason in reasons},
                   key=lambda reason: -sum(reasons.get(reason, 0) for reasons in counts.values()))
    figure, (ax,) = _figure("Validity rejections by reason")
    colors = {reason: _PALETTE[(index + 3) % len(_PALETTE)] for index, reason in enumerate(order)}
    _stacked(ax, counts, order, {}, colors)
    ax.set_ylabel("rejected queries")
    _legend_outside(ax, title="rule that failed")
    return figure
