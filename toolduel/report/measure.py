"""The numbers the report shows, derived from a loaded folder: plain data, no drawing.

A series is ``{label: {round: value}}``. Where ``metrics.jsonl`` holds a number it is used as
is; where it lacks one (an eval folder, a missing or broken metrics line) the number is computed
from the round's own files: eval summaries, pool and harvest records.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict

from toolduel.checker import KINDS
from toolduel.report.load import RunData

KIND_LABELS = {
    "wrong_function": "wrong function",
    "missing_argument": "missing required argument",
    "wrong_value": "wrong value",
    "wrong_type": "wrong type",
    "unexpected_argument": "unexpected argument",
    "wrong_count": "wrong count",
    "called_when_none_fits": "called when nothing fits",
    "did_not_call": "did not call",
    "unparseable": "unparseable output",
    "bad_sample": "sample cannot be judged",
}
ERROR_KINDS = tuple(kind for kind in KINDS if kind != "ok")
ATTACK_SUCCESS = "attack success after defence (fresh queries)"
ATTACK_SUCCESS_BEFORE = "attack success before defence (harvested queries)"
VALIDITY = "validity rate"
STILL_FAILING = "pool queries still failed after the defence trained on them"


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


def _metric(data: RunData, round_index: int) -> dict:
    return next((m for m in data.metrics if m["round"] == round_index), {})


def _summaries(data: RunData, round_index: int) -> dict[str, dict]:
    return {name: e.summary for name, e in data.evals.get(round_index, {}).items() if isinstance(e.summary, dict)}


def _rate(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def accuracy_by_set(data: RunData) -> dict[str, dict[int, float | None]]:
    """Accuracy per held-out set per round."""
    series: dict[str, dict[int, float | None]] = defaultdict(dict)
    for round_index in data.rounds:
        summaries = _summaries(data, round_index)
        from_metrics = _metric(data, round_index).get("accuracy", {})
        for name in sorted(set(from_metrics) | set(summaries)):
            series[name][round_index] = _number_or(from_metrics.get(name), summaries.get(name, {}).get("accuracy"))
    return {name: dict(sorted(points.items())) for name, points in sorted(series.items())}


def accuracy_by_category(data: RunData) -> dict[str, dict[int, float | None]]:
    """Accuracy per category (BFCL's, or a mixed set's) per round: in a run, of the sets of several
    categories, labelled ``set/category``; in an eval folder, every category."""
    series: dict[str, dict[int, float | None]] = defaultdict(dict)
    for round_index in data.rounds:
        for name, summary in _summaries(data, round_index).items():
            per_category = summary.get("per_category")
            if not isinstance(per_category, dict) or (data.kind == "run" and len(per_category) < 2):
                continue
            for category, counts in per_category.items():
                label = category if data.kind == "eval" else f"{name}/{category}"
                series[label][round_index] = _rate(counts.get("accuracy")) if isinstance(counts, dict) else None
    return {label: dict(sorted(points.items())) for label, points in sorted(series.items())}


def succeeded(record: dict) -> bool | None:
    """Whether a pool record's attack made the FC model fail (None: the record does not say)."""
    value = record.get("attack_success")
    return value if isinstance(value, bool) else None


def _mean(values: list) -> float | None:
    return sum(values) / len(values) if values else None


def _number_or(value, computed: float | None) -> float | None:
    """The metrics file's number where it holds one, else the number computed from the round's files."""
    return _rate(value) if _rate(value) is not None else _rate(computed)


def fresh_attack_success(records: list[dict]) -> float | None:
    """Attack success over fresh-attack records, as the duel measures it: the mean of ``1 - p_F``
    over the valid, answerable queries the FC model failed, every scored query counting."""
    def not_scored(record: dict) -> bool:
        reasons = record.get("reasons")
        return isinstance(reasons, list) and any(str(reason).startswith("not_scored") for reason in reasons)

    scored = [r for r in records if not not_scored(r)]
    failed = [1.0 - r["fc_success"] for r in scored if r.get("valid") is True and _rate(r.get("fc_success")) is not None
              and r["fc_success"] < 1.0 and r.get("solvable") is not False]
    return sum(failed) / len(scored) if scored else None


def attack_rates(data: RunData) -> dict[str, dict[int, float | None]]:
    """Per duel round: attack success against the FC model after the round's defence, on fresh
    queries (``attack_success_rate``), and before it, on the harvest's
    (``attack_success_rate_before_defence``, else the share of the round's pool records that beat
    the FC model), the validity rate, and the share of the round's successful attacks the defended
    FC model, trained on them, still gets wrong."""
    series: dict[str, dict[int, float | None]] = {ATTACK_SUCCESS_BEFORE: {}, ATTACK_SUCCESS: {}, VALIDITY: {},
                                                  STILL_FAILING: {}}
    for round_index in [r for r in data.rounds if r > 0]:
        metric = _metric(data, round_index)
        pool = [r for r in data.pool if r["round"] == round_index]
        outcomes = [succeeded(r) for r in pool if succeeded(r) is not None]
        valid = [bool(h["valid"]) for h in data.harvest.get(round_index, [])]
        after = {str(r["id"]): data.after_defence.get(str(r["id"]), {}).get("verdict") for r in pool}
        failing_after = {i: not v.get("valid") for i, v in after.items() if isinstance(v, dict)}
        series[ATTACK_SUCCESS_BEFORE][round_index] = _number_or(metric.get("attack_success_rate_before_defence"),
                                                                _mean(outcomes))
        # measured on fresh queries only: the pool's queries are what the defence trained on
        series[ATTACK_SUCCESS][round_index] = _number_or(metric.get("attack_success_rate"),
                                                         fresh_attack_success(data.fresh_attack.get(round_index, [])))
        series[VALIDITY][round_index] = _number_or(metric.get("validity_rate"), _mean(valid))
        series[STILL_FAILING][round_index] = _mean([failing_after[str(r["id"])] for r in pool
                                                    if succeeded(r) and str(r["id"]) in failing_after])
    return {label: points for label, points in series.items() if any(v is not None for v in points.values())}


# What the attack's log says of each GRPO step (toolduel.training.grpo), as the report labels it.
STEP_SERIES = {"attack_success_rate": "attack success", "validity_rate": "validity",
               "zero_signal_groups": "prompts paid alike (no signal)"}


def attack_step_series(data: RunData) -> dict[str, dict[str, dict[int, float]]]:
    """Per quantity of :data:`STEP_SERIES`: ``{"round N": {step: value}}`` from each round's
    attack log; a step without the quantity (a log from before it was written) is left out."""
    series: dict[str, dict[str, dict[int, float]]] = {label: {} for label in STEP_SERIES.values()}
    for round_index, steps in sorted(data.attack_steps.items()):
        for key, label in STEP_SERIES.items():
            points = {s["step"]: float(s[key]) for s in steps
                      if isinstance(s.get("step"), int) and _rate(s.get(key)) is not None}
            if points:
                series[label][f"round {round_index}"] = points
    return {label: rounds for label, rounds in series.items() if rounds}


def heldout_error_kinds(data: RunData) -> dict[int, dict[str, int]]:
    """Error kinds per round, summed over the held-out sets."""
    counts: dict[int, dict[str, int]] = {}
    for round_index in data.rounds:
        per_set = dict(_metric(data, round_index).get("error_kinds", {}))
        for name, summary in _summaries(data, round_index).items():
            per_set.setdefault(name, summary.get("error_kinds", {}))
        total: Counter = Counter()
        for kinds in per_set.values():
            if isinstance(kinds, dict):
                total.update({k: v for k, v in kinds.items() if isinstance(v, int) and not isinstance(v, bool)})
        if per_set:
            counts[round_index] = dict(total)
    return counts


def pool_error_kinds(data: RunData) -> dict[int, dict[str, int]]:
    """Error kinds of the successful attacks harvested in each round."""
    counts: dict[int, Counter] = defaultdict(Counter)
    for record in data.pool:  # every round of the pool has a bar, if an empty one
        counts[record["round"]].update([str(record.get("kind") or "unknown")] if succeeded(record) else [])
    return {r: dict(counts[r]) for r in sorted(counts)}


def kinds_present(*tables: dict[int, dict[str, int]]) -> list[str]:
    """The error kinds with a count anywhere, in the checker's order (unknown kinds last)."""
    seen = {kind for table in tables for kinds in table.values() for kind, n in kinds.items() if n}
    return [k for k in ERROR_KINDS if k in seen] + sorted(seen - set(ERROR_KINDS))


def trait_records(data: RunData) -> list[dict]:
    """The valid queries whose traits the report compares, each with its sample and whether it
    fooled the FC model: every valid harvested (or, black-box, scored) query that carries its
    sample, so that queries that did not fool the FC model are there too; a round whose records
    carry no sample (a run folder from before they did) gives its pool records instead."""
    records = []
    for round_index in data.rounds:
        harvested = [h for h in data.harvest.get(round_index, []) if h.get("valid") is True
                     and isinstance(h.get("sample"), dict) and isinstance(h.get("fc_success"), (int, float))]
        if harvested:
            records += [{"query": last_user_message(h["sample"].get("messages")), "sample": h["sample"],
                         "attack_success": h["fc_success"] < 1.0} for h in harvested]
        else:
            records += [record for record in data.pool if record.get("round") == round_index]
    return records


def phrasing_stats(pool: list[dict]) -> dict[str, dict]:
    """Per seed phrasing tag: ``n`` attacks, ``worked`` successes, ``rate``, and ``by_round``
    {round: (worked, n)}; records without a tag are left out."""
    stats: dict[str, dict] = {}
    for record in pool:
        tag, outcome = record.get("phrasing"), succeeded(record)
        if not isinstance(tag, str) or not tag or outcome is None:
            continue
        entry = stats.setdefault(tag, {"n": 0, "worked": 0, "by_round": {}})
        worked, n = entry["by_round"].get(record["round"], (0, 0))
        entry["by_round"][record["round"]] = (worked + outcome, n + 1)
        entry["n"] += 1
        entry["worked"] += outcome
    for entry in stats.values():
        entry["rate"] = entry["worked"] / entry["n"]
        entry["by_round"] = dict(sorted(entry["by_round"].items()))
    return dict(sorted(stats.items(), key=lambda item: (-item[1]["rate"], item[0])))


def style_stats(harvest: dict[int, list[dict]], field: str = "style") -> dict[str, dict]:
    """Per style a harvested query was asked in (or per value of another spec ``field``, such as
    ``tool_move``), as :func:`phrasing_stats` gives them, over every query asked: ``worked`` counts
    the weaknesses (valid, failed on some answer and, where the record says so, answerable);
    records without a value are left out."""
    records = [{"round": round_index, "phrasing": record.get(field),
                "attack_success": record.get("valid") is True and _rate(record.get("fc_success")) is not None
                and record["fc_success"] < 1.0 and record.get("solvable") is not False}
               for round_index, records in harvest.items() for record in records]
    return phrasing_stats(records)


def rejection_reason(reason: str) -> str:
    """The rule of a validity reason: ``"ungrounded: book_hotel.nights=3"`` -> ``"ungrounded"``."""
    return str(reason).split(":", 1)[0].strip() or "unknown"


def rejections(harvest: dict[int, list[dict]]) -> tuple[dict[int, dict[str, int]], dict[str, dict]]:
    """Rejected harvested queries per round by reason (a query counts once per distinct reason),
    and one example per reason: ``{reason: {"query", "detail", "reasons"}}``."""
    counts: dict[int, dict[str, int]] = {}
    examples: dict[str, dict] = {}
    for round_index, records in sorted(harvest.items()):
        round_counts: Counter = Counter()
        for record in records:
            if record.get("valid"):
                continue
            reasons = record.get("reasons") if isinstance(record.get("reasons"), list) else []
            reasons = reasons or ["unknown: no reason recorded"]
            for reason in dict.fromkeys(rejection_reason(r) for r in reasons):
                round_counts[reason] += 1
            for reason in reasons:  # the example of a reason: a query rejected for the fewest reasons
                current = examples.get(rejection_reason(reason))
                if current is None or len(reasons) < current["reasons"]:
                    examples[rejection_reason(reason)] = {"query": str(record.get("query", "")),
                                                          "detail": str(reason), "reasons": len(reasons)}
        counts[round_index] = dict(round_counts)
    return counts, examples


def format_gold(gold) -> str:
    """Gold calls as ``name(arg=value, ...)``, the first acceptable value of each argument that
    must be given; a note for an empty gold (no tool fits)."""
    if not isinstance(gold, list):
        return "?"
    if not gold:
        return "(no call: no tool fits)"
    calls = []
    for call in gold:
        if not isinstance(call, dict) or len(call) != 1:
            calls.append(json.dumps(call, ensure_ascii=False))
            continue
        (name, arguments), = call.items()
        arguments = arguments if isinstance(arguments, dict) else {}
        shown = [f"{arg}={json.dumps(answers[0], ensure_ascii=False)}" for arg, answers in arguments.items()
                 if isinstance(answers, list) and answers and answers[0] != ""]
        calls.append(f"{name}({', '.join(shown)})")
    return "; ".join(calls)


def format_verdict(verdict) -> str:
    if not isinstance(verdict, dict):
        return "-"
    if verdict.get("valid"):
        return "correct"
    errors = verdict.get("errors")
    detail = f": {errors[0]}" if isinstance(errors, list) and errors else ""
    return f"{kind_label(str(verdict.get('kind')))} ({verdict.get('error_type')}){detail}"


def pool_examples(data: RunData, per_kind: int = 3) -> dict[str, list[dict]]:
    """For each error kind, a few successful attacks (spread over rounds, those with an
    after-defence answer first): query, gold, FC output and verdict before and after defence."""
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for record in data.pool:
        if succeeded(record):
            by_kind[str(record.get("kind") or "unknown")].append(record)
    examples = {}
    for kind in kinds_present({0: {k: len(v) for k, v in by_kind.items()}}):
        records = sorted(by_kind[kind], key=lambda r: (str(r["id"]) not in data.after_defence, str(r["id"])))
        examples[kind] = [pool_example(record, data.after_defence.get(str(record["id"])))
                          for record in _spread_over_rounds(records, per_kind)]
    return examples


def _spread_over_rounds(records: list[dict], count: int) -> list[dict]:
    """Up to ``count`` records, taking from each round in turn."""
    queues: dict[int, list[dict]] = defaultdict(list)
    for record in records:
        queues[record["round"]].append(record)
    chosen: list[dict] = []
    while len(chosen) < count and any(queues.values()):
        for round_index in sorted(queues):
            if queues[round_index] and len(chosen) < count:
                chosen.append(queues[round_index].pop(0))
    return chosen


def with_edits(record: dict) -> str:
    """A pool record's query, followed by the tool edits the query model wrote, where it wrote some."""
    edits = record.get("tool_edits")
    edits = [str(edit) for edit in edits] if isinstance(edits, list) else []
    return str(record["query"]) + (f" [tool edits: {'; '.join(edits)}]" if edits else "")


def pool_example(record: dict, after: dict | None) -> dict:
    outputs = record.get("fc_outputs") if isinstance(record.get("fc_outputs"), list) else []
    verdicts = record.get("verdicts") if isinstance(record.get("verdicts"), list) else []
    failing = next((i for i, v in enumerate(verdicts) if isinstance(v, dict) and not v.get("valid")), 0)
    sample = record.get("sample") if isinstance(record.get("sample"), dict) else {}
    return {
        "round": record["round"], "phrasing": record.get("phrasing") or "-", "query": with_edits(record),
        "gold": format_gold(sample.get("gold")),
        "before": str(outputs[failing]) if failing < len(outputs) else "-",
        "verdict_before": format_verdict(verdicts[failing] if failing < len(verdicts) else None),
        "after": str(after.get("raw_output", "-")) if after else "(no after-defence answer)",
        "verdict_after": format_verdict(after.get("verdict")) if after else "-",
    }


def last_user_message(prompt) -> str:
    for message in reversed(prompt if isinstance(prompt, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            return str(message.get("content", ""))
    return "-"


def result_examples(data: RunData, per_kind: int = 3) -> dict[str, list[dict]]:
    """For each error kind, a few wrong answers from the evaluations' results (last round first)."""
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for round_index in sorted(data.evals, reverse=True):
        for name, evaluation in data.evals[round_index].items():
            for record in evaluation.results:
                verdict = record.get("verdict")
                if isinstance(verdict, dict) and not verdict.get("valid"):
                    by_kind[str(verdict.get("kind"))].append(record | {"set": name, "round": round_index})
    examples = {}
    for kind in kinds_present({0: {k: len(v) for k, v in by_kind.items()}}):
        examples[kind] = [{
            "round": r["round"], "where": f"{r['set']} / {r.get('category')}",
            "query": last_user_message(r.get("prompt")), "gold": format_gold(r.get("gold")),
            "before": str(r.get("raw_output", "-")), "verdict_before": format_verdict(r.get("verdict")),
        } for r in by_kind[kind][:per_kind]]
    return examples
