"""Small synthetic run folders for the report tests, written the way ``toolduel run`` writes them.

``write_run`` lays out a run folder per :mod:`toolduel.run_files` (round 0 plus ``rounds``
duel rounds, held-out sets, a pool with phrasing tags, harvest records with rejection reasons,
after-defence answers, eval results per round); ``write_eval_folder`` lays out the output of
``toolduel eval``. Verdicts come from the real parser and checker, results records from
``score_generation``, summaries from ``summarize``: only the model outputs are made up. Both
return what they wrote, so tests compare the report with the files' numbers.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from toolduel.calls_text import format_calls
from toolduel.checker import check_sample
from toolduel.evaluate import score_generation, summarize
from toolduel.models.base import Generation
from toolduel.parsing import parse_calls
from toolduel.referee.validity import check_query
from toolduel.run_files import METRICS, POOL, append_jsonl, round_dir, write_json_atomic
from toolduel.schema import Call, GoldCall, Sample, Tool
from toolduel.world.lexicon import world_lexicon


def _tool(name: str, description: str, **params: str) -> Tool:
    """``params``: name -> type; a trailing ``?`` marks an optional one."""
    properties = {p: ({"type": "array", "items": {"type": "string"}} if t == "array" else {"type": t.rstrip("?")})
                  for p, t in params.items()}
    required = [p for p, t in params.items() if not t.endswith("?")]
    return Tool(name, description, {"type": "object", "properties": properties, "required": required})


TOOLS = {tool.name: tool for tool in (
    _tool("get_weather_forecast", "Daily forecast", city="string", days="integer", unit="string?"),
    _tool("convert_length", "Convert a length", value="number", from_unit="string", to_unit="string"),
    _tool("book_hotel", "Book a hotel room", city="string", check_in="string", nights="integer", guests="integer"),
    _tool("add_numbers", "Add two numbers", a="number", b="number"),
    _tool("send_group_message", "Message a group", recipients="array", message="string"),
    _tool("get_air_quality", "Air quality index", city="string"),
)}

# A request: intent, alternative intent, the tools offered, and its arguments as
# (name, value, phrase with {v}, the value written indirectly or None). No arguments: no tool fits.
REQUESTS = [
    ("Get the weather forecast", "What will the skies do", ["get_weather_forecast", "get_air_quality"],
     [("city", "Paris", "for {v}", None), ("days", 5, "for {v} days", "five")]),
    ("Convert the length", "How long is", ["convert_length", "add_numbers"],
     [("value", 12.0, "of {v}", "a dozen"), ("from_unit", "km", "from {v}", "kilometers"),
      ("to_unit", "mi", "to {v}", "miles")]),
    ("Reserve a hotel room", "Find me a bed", ["book_hotel", "get_weather_forecast", "get_air_quality"],
     [("city", "Denver", "in {v}", None), ("check_in", "2025-09-25", "from {v}", "September 25th, 2025"),
      ("nights", 3, "for {v} nights", "three"), ("guests", 2, "for {v} guests", "a couple of")]),
    ("Add", "What do I get when I combine", ["add_numbers", "convert_length"],
     [("a", 41.5, "{v}", None), ("b", 7, "and {v}", "seven")]),
    ("Message the group", "Let the group know", ["send_group_message", "add_numbers"],
     [("recipients", ["Liam", "Sam"], "to {v}", None), ("message", "see you at noon", "saying {v}", None)]),
    ("Play some jazz in the kitchen", "Put on jazz in the kitchen", ["get_air_quality", "add_numbers"], []),
]
PHRASINGS = ("plain", "paraphrase", "indirect_values", "reordered", "distractor_numbers", "chatty", "noisy", "terse")
# how often an attack seeded with each phrasing beats the round-1 FC model
ATTACK_ODDS = {"plain": 0.2, "paraphrase": 0.4, "indirect_values": 0.8, "reordered": 0.5,
               "distractor_numbers": 0.9, "chatty": 0.3, "noisy": 0.5, "terse": 0.4}
ERROR_KINDS = ("wrong_function", "missing_argument", "wrong_value", "wrong_type", "unexpected_argument",
               "wrong_count", "did_not_call", "unparseable")
# named as the game names them; an eval folder is the name with ":" as "_" (bfcl_simple_python)
HELDOUT_SETS = ("plain", "hard", "no_call", "bfcl:simple_python", "bfcl:irrelevance")
HARD_KINDS = ("indirect_values", "distractor_numbers", "reordered")
BFCL_CATEGORIES = ("simple_python", "multiple", "irrelevance")
BASE_ACCURACY = {"plain": 0.85, "hard": 0.4, "no_call": 0.6, "bfcl:simple_python": 0.55, "bfcl:irrelevance": 0.5,
                 "bfcl:all": 0.55}


def _value_text(value) -> str:
    if isinstance(value, list):
        return " and ".join(value)
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def phrase(request, phrasing: str) -> str:
    """The request written in one of the world's phrasings (a rough imitation of it)."""
    intent, other_intent, _, arguments = request
    literal = [p.format(v=_value_text(v)) for _, v, p, _ in arguments]
    indirect = [p.format(v=alt or _value_text(v)) for _, v, p, alt in arguments]
    plain = " ".join([intent, *literal]) + "."
    return {
        "plain": plain,
        "paraphrase": " ".join([other_intent, *literal]) + "?",
        "indirect_values": " ".join([intent, *indirect]) + ".",
        "reordered": _capitalized(", ".join([*literal[::-1], intent.lower()])) + ".",
        "distractor_numbers": f"I already asked 3 times in 24 hours: {plain[0].lower()}{plain[1:]}",
        "chatty": f"Hi there! Could you please {plain[0].lower()}{plain[1:-1]}? Thanks so much!",
        "noisy": plain.replace("the ", "teh ").replace("e ", "E "),
        "terse": " ".join([intent.split()[-1], *(_value_text(v) for _, v, _, _ in arguments)]),
    }[phrasing]


def make_sample(request, query: str, sample_id: str, phrasing: str, category: str | None = None) -> Sample:
    _, _, tool_names, arguments = request
    gold = [GoldCall(tool_names[0], {name: [value] for name, value, _, _ in arguments})] if arguments else []
    return Sample(sample_id, [TOOLS[name] for name in tool_names], [{"role": "user", "content": query}], gold,
                  category=category or ("one_call" if gold else "no_call"), meta={"phrasing": phrasing})


def fc_output(sample: Sample, kind: str) -> str:
    """An FC model's raw text whose verdict on ``sample`` has the error ``kind`` ("ok": right)."""
    if not sample.gold:
        if kind == "ok":
            return "None of these tools can play music, sorry."
        return format_calls([Call(sample.tools[0].name, {"city": "Paris"})])
    calls = [gold.canonical_call() for gold in sample.gold]
    first = calls[0]
    name, value = next(iter(first.arguments.items()))
    if kind == "wrong_function":
        first.name = sample.tools[1].name
    elif kind == "missing_argument":
        del first.arguments[name]
    elif kind == "wrong_value":
        first.arguments[name] = value[:1] if isinstance(value, list) else (
            value + "ville" if isinstance(value, str) else value + 7)
    elif kind == "wrong_type":
        first.arguments[name] = 42 if isinstance(value, (str, list)) else str(value)
    elif kind == "unexpected_argument":
        first.arguments["priority"] = "high"
    elif kind == "wrong_count":
        calls.append(Call(first.name, dict(first.arguments)))
    elif kind == "did_not_call":
        return "Sure, I can help with that. Anything else?"
    elif kind == "unparseable":
        return '<tool_call>\n{"name": "%s", "arguments": {"%s": </tool_call>' % (first.name, name)
    return format_calls(calls)


def verdict_of(sample: Sample, text: str) -> dict:
    return check_sample(sample, parse_calls(text)).to_dict()


def _failure_kind(rng: random.Random, sample: Sample) -> str:
    return "called_when_none_fits" if not sample.gold else rng.choice(ERROR_KINDS)


def _invalid_query(rng: random.Random, request, query: str) -> str:
    """A harvested query the validity gate rejects: a value dropped, a function name leaked, or too short."""
    _, _, tool_names, arguments = request
    choice = rng.choice(["ungrounded", "leak", "length"] if arguments else ["leak", "length"])
    if choice == "ungrounded":
        return query.replace(_value_text(arguments[-1][1]), "some")
    if choice == "leak":
        return f"{query} Use {tool_names[0]} for it."
    return "ok"


def _pool_round(rng: random.Random, run_dir: Path, round_index: int, size: int) -> tuple[list, list, list]:
    """One round's pool records, harvest records and after-defence records."""
    pool, harvest, after = [], [], []
    for number in range(size):
        request_index = rng.randrange(len(REQUESTS))
        request, phrasing = REQUESTS[request_index], rng.choice(PHRASINGS)
        query, seed_query = phrase(request, phrasing), phrase(request, "plain")
        record_id = f"r{round_index}-{number:03d}"
        sample = make_sample(request, query, record_id, phrasing)
        succeeded = rng.random() < ATTACK_ODDS[phrasing] * (1.2 - 0.2 * round_index)
        kind = _failure_kind(rng, sample) if succeeded else "ok"
        outputs = [fc_output(sample, kind), fc_output(sample, kind)]
        verdicts = [verdict_of(sample, text) for text in outputs]
        fc_success = sum(v["valid"] for v in verdicts) / len(verdicts)
        failing = next((v for v in verdicts if not v["valid"]), None)
        pool.append({
            "id": record_id, "round": round_index, "seed_id": f"seed-{request_index}-{phrasing}",
            "query_checkpoint": str(round_dir(run_dir, round_index) / "query_model"),
            "fc_checkpoint": str(round_dir(run_dir, round_index - 1) / "fc_model"),
            "query": query, "seed_query": seed_query, "phrasing": phrasing, "sample": sample.to_dict(),
            "fc_outputs": outputs, "verdicts": verdicts, "fc_success": fc_success,
            "attack_success": fc_success < 1.0,
            "error_type": failing and failing["error_type"], "kind": failing and failing["kind"]})
        harvest.append({"round": round_index, "seed_id": pool[-1]["seed_id"], "query": query, "valid": True,
                        "reasons": []})
        if rng.random() < 0.5 - 0.1 * round_index:  # the query model learns to keep its queries valid
            bad = _invalid_query(rng, request, query)
            harvest.append({"round": round_index, "seed_id": pool[-1]["seed_id"], "query": bad, "valid": False,
                            "reasons": check_query(bad, sample, world_lexicon()).reasons})
        fixed = not succeeded or rng.random() < 0.7
        after_text = fc_output(sample, "ok" if fixed else kind)
        after.append({"id": record_id, "round": round_index, "raw_output": after_text,
                      "verdict": verdict_of(sample, after_text)})
    return pool, harvest, after


def _fresh_attack(rng: random.Random, round_index: int, size: int = 10) -> list[dict]:
    """Fresh-attack records of one round: valid or not, p_F over 4 answers, answerable or not."""
    records = []
    for index in range(size):
        valid = rng.random() < 0.8
        fc_success = rng.choice([0.0, 0.25, 0.5, 1.0]) if valid else None
        records.append({"round": round_index, "index": index, "seed_id": f"fresh-{index}", "query": f"query {index}",
                        "valid": valid, "reasons": [] if valid else ["ungrounded: x"], "fc_success": fc_success,
                        "solvable": bool(fc_success), "sample": None})
    return records


def _heldout_sample(set_name: str, number: int) -> tuple[str, tuple, str | None]:
    """(category, request, phrasing) of a held-out set's ``number``-th sample: "hard" mixes
    perturbation kinds (its categories), "bfcl:all" mixes BFCL categories."""
    if set_name == "hard":
        kind = HARD_KINDS[number % len(HARD_KINDS)]
        return kind, REQUESTS[number % 5], kind
    if set_name == "no_call":
        return "no_call", REQUESTS[-1], "plain"
    if set_name.startswith("bfcl:"):
        category = BFCL_CATEGORIES[number % len(BFCL_CATEGORIES)] if set_name == "bfcl:all" else set_name[5:]
        return category, REQUESTS[-1] if category == "irrelevance" else REQUESTS[number % 5], None
    return set_name, REQUESTS[number % 5], set_name


def _heldout_results(rng: random.Random, round_index: int, set_name: str, size: int) -> list[dict]:
    """Results records of one held-out set, scored by the real checker; accuracy grows by round."""
    accuracy = BASE_ACCURACY[set_name] + 0.1 * round_index
    records = []
    for number in range(size):
        category, request, phrasing = _heldout_sample(set_name, number)
        sample = make_sample(request, phrase(request, phrasing or "plain"), f"{set_name}-{number}", phrasing, category)
        kind = "ok" if rng.random() < accuracy else _failure_kind(rng, sample)
        records.append(score_generation(sample, Generation(text=fc_output(sample, kind))))
    return records


def _write_eval(eval_dir: Path, results: list[dict], meta: dict) -> dict:
    summary = summarize(results) | meta
    append_jsonl(eval_dir / "results.jsonl", results)
    write_json_atomic(eval_dir / "summary.json", summary)
    return summary


def write_run(run_dir: str | Path, rounds: int = 3, pool_per_round: int = 20, heldout_size: int = 12,
              seed: int = 0, phrasing_tags: bool = True) -> dict:
    """Write a finished run of ``rounds`` duel rounds after round 0; return what was written:
    ``metrics`` (list), ``pool`` (list), ``harvest``, ``after_defence``, ``results``, ``summaries``
    (each {round: ...}; the last two {round: {set: ...}}). Without ``phrasing_tags`` pool records
    hold ``"phrasing": None``, as when seeds carry no tag."""
    run_dir = Path(run_dir)
    rng = random.Random(seed)
    written = {"metrics": [], "pool": [], "harvest": {}, "after_defence": {}, "results": {}, "summaries": {},
               "attack_log": {}}
    (run_dir / "config.yaml").parent.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(f"# toolduel run --config configs/tiny.yaml\nrounds: {rounds}\nseed: {seed}\n")
    for round_index in range(rounds + 1):
        line = {"round": round_index, "attack_success_rate": None, "validity_rate": None, "pool_size": 0}
        if round_index > 0:
            pool, harvest, after = _pool_round(rng, run_dir, round_index, pool_per_round)
            pool = pool if phrasing_tags else [r | {"phrasing": None} for r in pool]
            append_jsonl(run_dir / POOL, pool)
            append_jsonl(round_dir(run_dir, round_index) / "harvest.jsonl", harvest)
            append_jsonl(round_dir(run_dir, round_index) / "after_defence.jsonl", after)
            fresh = _fresh_attack(rng, round_index)
            append_jsonl(round_dir(run_dir, round_index) / "fresh_attack.jsonl", fresh)
            log = [{"step": step, "queries": 16, "failed": 0, "validity_rate": rng.randint(8, 16) / 16,
                    "attack_success_rate": rng.randint(0, 16) / 16, "weakness_rate": 0.25, "unanswered_rate": 0.0,
                    "seconds": 20.5, "reward_mean": 0.2, "reward_std": 0.1,
                    "zero_signal_groups": rng.randint(0, 4) / 4} for step in range(1, 5)]
            append_jsonl(round_dir(run_dir, round_index) / "attack_log.jsonl", log)
            written["attack_log"][round_index] = log
            written["pool"] += pool
            written["harvest"][round_index], written["after_defence"][round_index] = harvest, after
            line |= {  # as the game: fresh queries against the defended FC model, and the harvest's before
                "attack_success_rate": sum(1 - r["fc_success"] for r in fresh if r["valid"] and r["solvable"]
                                           and r["fc_success"] < 1) / len(fresh),
                "attack_success_rate_before_defence": sum(r["attack_success"] for r in pool) / len(pool),
                "validity_rate": sum(h["valid"] for h in harvest) / len(harvest),
                "pool_size": len(written["pool"])}
        results, summaries = {}, {}
        for set_name in HELDOUT_SETS:
            results[set_name] = _heldout_results(rng, round_index, set_name, heldout_size)
            summaries[set_name] = _write_eval(round_dir(run_dir, round_index) / "eval" / set_name.replace(":", "_"),
                                              results[set_name], {"model": f"fc-round-{round_index}", "set": set_name})
        written["results"][round_index], written["summaries"][round_index] = results, summaries
        line |= {"accuracy": {s: summaries[s]["accuracy"] for s in HELDOUT_SETS},
                 "error_kinds": {s: summaries[s]["error_kinds"] for s in HELDOUT_SETS},
                 "error_types": {s: summaries[s]["error_types"] for s in HELDOUT_SETS},
                 "seconds": {"attack": 61.0 * (round_index > 0), "harvest": 9.5 * (round_index > 0),
                             "defend": 42.0 * (round_index > 0), "evaluate": 12.25}}
        append_jsonl(run_dir / METRICS, [line])
        written["metrics"].append(line)
    phases = ["0:players", "0:evaluate"] + [f"{r}:{phase}" for r in range(1, rounds + 1)
                                           for phase in ("attack", "harvest", "defend", "evaluate")]
    write_json_atomic(run_dir / "state.json", {"completed": phases, "fc_path": f"rounds/round_{rounds}/fc_model"})
    return written


def write_eval_folder(out_dir: str | Path, size: int = 30, seed: int = 0) -> dict:
    """Write what ``toolduel eval`` writes (config.yaml, results.jsonl, summary.json) for a mix of
    BFCL categories and perturbation kinds; return ``{"results": [...], "summary": {...}}``."""
    out_dir = Path(out_dir)
    rng = random.Random(seed)
    results = _heldout_results(rng, 0, "bfcl:all", size // 2) + _heldout_results(rng, 1, "hard", size - size // 2)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text("# toolduel eval\ndata: bfcl:simple_python,multiple,irrelevance\n")
    summary = _write_eval(out_dir, results, {"model": "fc-model", "data": "bfcl:simple_python,multiple,irrelevance"})
    return {"results": results, "summary": summary}


if __name__ == "__main__":  # write a run to look at: python tests/report_fixtures.py runs/synthetic
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/synthetic")
    print(json.dumps(write_run(target)["metrics"], indent=1)[:2000])
