"""What the report opens with: where the FC model is weakest, before any round table.

For a duel or an attack folder, each attack surface's specs (the style a query was asked in; the
move that edited the tool list) ranked by their weakness rate over every query asked (by the low
end of its 95% Wilson interval, so that one lucky query does not top the list), and a few of the
attacks that worked in each, with the FC model's answer when attacked and, in a duel, after the
defence. For an evaluation folder, its sets' categories
(for ``world:tools``, the moves; for ``world:hard``, the phrasing kinds) ranked by error rate,
with a few wrong answers each.
"""

from __future__ import annotations

import math

from toolduel.report.load import RunData
from toolduel.report.measure import format_gold, format_verdict, last_user_message, pool_example, style_stats, succeeded

# A spec field of harvest records -> (what the report calls that surface, the pool record's field).
SURFACES = {"style": ("query style", "phrasing"), "tool_move": ("tool move", "tool_move")}
SHOWN = 5  # weakest specs per surface
EXAMPLES = 2  # attacks shown per spec


def wilson(worked: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a rate ``worked / n`` (95% at the default ``z``)."""
    if n == 0:
        return 0.0, 1.0
    rate = worked / n
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _ranked(counts: dict[str, tuple[int, int]]) -> list[tuple[str, int, int]]:
    """``(spec, failures, n)`` by the low end of the failure rate's interval, then the rate: a spec
    asked once that failed once is not yet the weakest."""
    return sorted(((spec, worked, n) for spec, (worked, n) in counts.items() if n),
                  key=lambda row: (-wilson(row[1], row[2])[0], -row[1] / row[2], row[0]))


def weakest_specs(data: RunData) -> list[dict]:
    """Per attack surface the harvest asked specs of, its :data:`SHOWN` weakest specs: ``surface``,
    ``spec``, ``n`` queries, ``failed`` (weaknesses), ``rate``, ``low``/``high`` (95%), and
    ``examples`` (pool attacks in that spec that worked, as the report's example rows)."""
    found = []
    for field, (surface, pool_field) in SURFACES.items():
        stats = style_stats(data.harvest, field)
        counts = {spec: (entry["worked"], entry["n"]) for spec, entry in stats.items()}
        for spec, failed, n in _ranked(counts)[:SHOWN]:
            records = [r for r in data.pool if r.get(pool_field) == spec and succeeded(r)]
            records.sort(key=lambda r: (str(r.get("id")) not in data.after_defence, str(r.get("id"))))
            low, high = wilson(failed, n)
            found.append({"surface": surface, "spec": spec, "n": n, "failed": failed, "rate": failed / n,
                          "low": low, "high": high,
                          "examples": [pool_example(r, data.after_defence.get(str(r.get("id"))))
                                       for r in records[:EXAMPLES]]})
    return found


def weakest_categories(data: RunData) -> list[dict]:
    """For an evaluation folder, each set's categories ranked by error rate (as :func:`weakest_specs`
    gives them, ``surface`` the set), with a few wrong answers each."""
    found = []
    for name, evaluation in sorted(data.evals.get(0, {}).items()):
        counts: dict[str, list[int]] = {}
        wrong: dict[str, list[dict]] = {}
        for record in evaluation.results:
            verdict = record.get("verdict")
            if not isinstance(verdict, dict):
                continue
            category = str(record.get("category"))
            entry = counts.setdefault(category, [0, 0])
            entry[1] += 1
            if not verdict.get("valid"):
                entry[0] += 1
                wrong.setdefault(category, []).append(record)
        if len(counts) < 2:  # one category: the accuracy table already says it
            continue
        for category, failed, n in _ranked({c: (w, n) for c, (w, n) in counts.items()})[:SHOWN]:
            low, high = wilson(failed, n)
            examples = [{"query": last_user_message(r.get("prompt")), "gold": format_gold(r.get("gold")),
                         "before": str(r.get("raw_output", "-")), "verdict_before": format_verdict(r.get("verdict"))}
                        for r in wrong.get(category, [])[:EXAMPLES]]
            found.append({"surface": name, "spec": category, "n": n, "failed": failed, "rate": failed / n,
                          "low": low, "high": high, "examples": examples})
    return found
