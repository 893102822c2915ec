"""BFCL's single-turn python AST categories, read from the installed ``bfcl-eval`` package or a folder.

Each category is two JSON-lines files: ``BFCL_v<N>_<category>.json`` (id, question, function)
and ``possible_answer/BFCL_v<N>_<category>.json`` (id, ground_truth). The irrelevance
categories have no possible answers: their gold is "no call".
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from toolduel.schema import GoldCall, Sample, SchemaError, Tool

BFCL_AST_CATEGORIES = (
    "simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance",
    "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple", "live_irrelevance",
)
_ALIASES = {"simple": "simple_python", "python": "simple_python"}


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
        name = _ALIASES.get(name, name)
        if name not in BFCL_AST_CATEGORIES:
            raise DataError(f"unknown BFCL category {name!r}; choose from: all, {', '.join(BFCL_AST_CATEGORIES)}")
        resolved.append(name)
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
        question_file = _category_file(folder, category)
        if question_file is None:
            raise DataError(f"no BFCL file for category {category!r} in {folder}")
        answers: dict[str, dict] = {}
        if "irrelevance" not in category:
            answer_file = folder / "possible_answer" / question_file.name
            if not answer_file.exists():
                raise DataError(f"{answer_file}: missing (possible answers of {category!r})")
            answers = {a.get("id"): a for a in _read_json_lines(answer_file)}
        questions = _read_json_lines(question_file)[:limit]
        for number, question in enumerate(questions, start=1):
            where = f"{question_file}:{number}"
            answer = answers.get(question.get("id")) if answers else None
            if answers and answer is None:
                raise DataError(f"{where}: no possible answer with id {question.get('id')!r}")
            samples.append(_to_sample(question, answer, category, where))
    return samples
