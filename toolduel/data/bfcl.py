"""BFCL's single-turn python AST categories, read from the installed ``bfcl-eval`` package or a folder.

Each category is two JSON-lines files: ``BFCL_v<N>_<category>.json`` (id, question, function)
and ``possible_answer/BFCL_v<N>_<category>.json`` (id, ground_truth). The irrelevance
categories have no possible answers: their gold is "no call".

A category named with ``+distractors`` (``multiple+distractors``) is the same samples, each
tool list grown by up to :data:`DISTRACTORS_PER_SAMPLE` functions of the category's other
records, placed among its own (the tool-list attack surface's held-out set for BFCL). A
distractor that might serve the request is left out: one sharing a name, a description, or a
word of a gold function's name beyond the common verbs (``get``, ``find``, ``calculate``, ...).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import random
import re
from pathlib import Path

from toolduel.referee.tool_list import check_tool_edit, described_purpose
from toolduel.schema import GoldCall, Sample, SchemaError, Tool

BFCL_AST_CATEGORIES = (
    "simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance",
    "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple", "live_irrelevance",
)
_ALIASES = {"simple": "simple_python", "python": "simple_python"}
DISTRACTORS, DISTRACTORS_PER_SAMPLE = "+distractors", 3
# Words of function names that say little about what a function serves.
_COMMON_NAME_WORDS = frozenset({"get", "set", "find", "calculate", "calc", "compute", "search", "check", "create",
                                "list", "info", "data", "details", "the", "and", "for", "new", "update", "fetch"})


class DataError(ValueError):
    """A data spec, file or record that cannot be read; the message names it."""


def bfcl_data_dir() -> Path:
    """The data folder of the installed ``bfcl_eval`` package (found without importing it)."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("BFCL data needs the bfcl-eval package: pip install --no-deps bfcl-eval "
                        "(or pass a folder holding BFCL_v*_<category>.json files)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def resolve_categories(names: str | list[str]) -> list[str]:
    """``"simple,multiple"`` or ``"all"`` -> BFCL category names, checked."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise DataError(f"no BFCL category named; choose from: all, {', '.join(BFCL_AST_CATEGORIES)}")
    resolved: list[str] = []
    for name in names:
        if name == "all":
            resolved.extend(BFCL_AST_CATEGORIES)
            continue
        base, variant = (name[:-len(DISTRACTORS)], DISTRACTORS) if name.endswith(DISTRACTORS) else (name, "")
        base = _ALIASES.get(base, base)
        if base not in BFCL_AST_CATEGORIES:
            raise DataError(f"unknown BFCL category {base!r}; choose from: all, {', '.join(BFCL_AST_CATEGORIES)} "
                            f"(each with {DISTRACTORS} for more tools from its other records)")
        if variant and "irrelevance" in base:
            raise DataError(f"{name}: an irrelevance request has no gold function, so no distractor can be told "
                            "from a tool that serves it")
        resolved.append(base + variant)
    return list(dict.fromkeys(resolved))


def _category_file(folder: Path, category: str) -> Path | None:
    """The newest ``BFCL_v<N>_<category>.json`` in ``folder`` (v4 today, v5 tomorrow)."""
    pattern = re.compile(rf"BFCL_v(\d+)_{re.escape(category)}\.json")
    found = [(int(m.group(1)), p) for p in folder.glob("BFCL_v*_*.json") if (m := pattern.fullmatch(p.name))]
    return max(found)[1] if found else None


def _read_json_lines(path: Path) -> list[dict]:
    records = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: not valid JSON ({err.msg})") from None
    return records


def _to_sample(question: dict, answer: dict | None, category: str, where: str) -> Sample:
    try:
        tools = [Tool.from_bfcl(f) for f in question["function"]]
        # single-turn categories hold one turn; a system message may precede the user's
        messages = [m for turn in question["question"] for m in turn]
        gold = [GoldCall.from_bfcl(g) for g in answer["ground_truth"]] if answer else []
    except (KeyError, TypeError, SchemaError) as err:
        raise DataError(f"{where}: {err}") from None
    return Sample(id=question["id"], tools=tools, messages=messages, gold=gold,
                  category=category, meta={"source": "bfcl"})


def load_bfcl(categories: str | list[str] = "all", root: str | Path | None = None,
              limit: int | None = None) -> list[Sample]:
    """Samples of the named categories; ``limit`` caps each category."""
    folder = Path(root) if root else bfcl_data_dir()
    samples: list[Sample] = []
    for category in resolve_categories(categories):
        category, _, variant = category.partition("+")
        question_file = _category_file(folder, category)
        if question_file is None:
            raise DataError(f"no BFCL file for category {category!r} in {folder}")
        answers: dict[str, dict] = {}
        if "irrelevance" not in category:
            answer_file = folder / "possible_answer" / question_file.name
            if not answer_file.exists():
                raise DataError(f"{answer_file}: missing (possible answers of {category!r})")
            answers = {a.get("id"): a for a in _read_json_lines(answer_file)}
        questions = _read_json_lines(question_file)
        read = []
        for number, question in enumerate(questions[:limit], start=1):
            where = f"{question_file}:{number}"
            answer = answers.get(question.get("id")) if answers else None
            if answers and answer is None:
                raise DataError(f"{where}: no possible answer with id {question.get('id')!r}")
            read.append(_to_sample(question, answer, category, where))
        if variant:
            pool = [_to_sample(q, None, category, f"{question_file}:{n}") for n, q in enumerate(questions, start=1)]
            read = [with_distractors(sample, pool) for sample in read]
        samples.extend(read)
    return samples


def _name_words(name: str) -> set[str]:
    words = re.findall(r"[a-z]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", name).lower())
    return {w for w in words if len(w) >= 3} - _COMMON_NAME_WORDS


def with_distractors(sample: Sample, pool: list[Sample]) -> Sample:
    """``sample`` with up to :data:`DISTRACTORS_PER_SAMPLE` tools of ``pool``'s other samples among
    its own (the same draw for the same sample), none that might serve its request (see the
    module docstring), the gold calls unchanged; its category gets ``+distractors``."""
    rng = random.Random(f"distractors:{sample.id}")
    gold_tools = [t for t in sample.tools if t.name in {g.name for g in sample.gold}]
    taken_names = {t.name for t in sample.tools}
    close_words = set().union(*(_name_words(t.name) for t in gold_tools))
    close_purposes = {described_purpose(t) for t in gold_tools}
    candidates = [t for other in pool if other.id != sample.id for t in other.tools]
    rng.shuffle(candidates)
    tools = list(sample.tools)
    for tool in candidates:
        if len(tools) - len(sample.tools) == DISTRACTORS_PER_SAMPLE:
            break
        if (tool.name in taken_names or _name_words(tool.name) & close_words
                or described_purpose(tool) in close_purposes):
            continue
        taken_names.add(tool.name)
        tools.insert(rng.randrange(len(tools) + 1), tool)
    if check_tool_edit(sample.tools, sample.gold, tools, sample.gold):  # never: the rules above keep the oracle
        raise DataError(f"{sample.id}: distractors broke its gold calls")
    return dataclasses.replace(sample, tools=tools, category=sample.category + DISTRACTORS,
                               meta={**sample.meta, "tool_move": "distractors"})
