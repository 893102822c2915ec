"""BFCL's official checker and raw data, for the tests and benchmarks that hold ``toolduel.checker``
to BFCL's verdicts.

``official_verdict`` replays what BFCL's eval runner does with one decoded output: the
relevance rule for the (ir)relevance categories, else the format check and then
``ast_checker``. Entries are read raw from the installed ``bfcl_eval`` data (not through
``toolduel.schema``), so the comparison sees exactly what BFCL sees.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import types
from dataclasses import dataclass
from typing import Any

from toolduel.data.bfcl import _category_file, bfcl_data_dir

REFERENCE_MODEL_NAME = "toolduel-reference"  # any name: the stand-in registry knows them all
AST_CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "live_simple",
                  "live_multiple", "live_parallel", "live_parallel_multiple")
NO_GOLD_CATEGORIES = ("irrelevance", "live_irrelevance", "live_relevance")
_MODEL_CONFIG = "bfcl_eval.constants.model_config"


@dataclass(frozen=True)
class Entry:
    """One BFCL entry, raw: its function list and ground truth (empty where no call is wanted)."""

    id: str
    category: str
    functions: list
    ground_truth: list


class _NeverRenames:
    underscore_to_dot = False  # keep "." in function names, as a python-syntax model does


class _StandInRegistry(dict):
    """BFCL's model registry, reduced to what ``ast_checker`` reads from it."""

    def __missing__(self, model_name: str) -> _NeverRenames:
        return _NeverRenames()


def load_official_ast_checker() -> types.ModuleType:
    """BFCL's ``ast_checker`` module; raises ImportError when ``bfcl_eval`` is not installed.

    Its import pulls BFCL's model registry, which imports every provider's SDK (anthropic,
    openai, ...). A stand-in registry sits in ``sys.modules`` just for the import."""
    if importlib.util.find_spec("bfcl_eval") is None:
        raise ImportError("bfcl_eval is not installed: pip install --no-deps bfcl-eval")
    injected = _MODEL_CONFIG not in sys.modules
    if injected:
        stand_in = types.ModuleType(_MODEL_CONFIG)
        stand_in.MODEL_CONFIG_MAPPING = _StandInRegistry()
        sys.modules[_MODEL_CONFIG] = stand_in
    try:
        module = importlib.import_module("bfcl_eval.eval_checker.ast_eval.ast_checker")
    finally:
        if injected:
            del sys.modules[_MODEL_CONFIG]
    module.MODEL_CONFIG_MAPPING = _StandInRegistry()  # also where the real registry got there first
    return module


def official_verdict(ast_checker: types.ModuleType, functions: list, decoded: Any,
                     possible_answer: list, category: str) -> tuple[bool, str | None]:
    """(valid, error_type) as BFCL's eval runner reports them; raises where BFCL raises."""
    from bfcl_eval.constants.enums import Language
    from bfcl_eval.utils import is_empty_output, is_function_calling_format_output

    if "relevance" in category:  # _evaluate_single_relevance_entry, decoding having succeeded
        made_a_call = not is_empty_output(decoded)
        if "irrelevance" in category:
            return (True, None) if not made_a_call else (False, "irrelevance_error:decoder_success")
        return (True, None) if made_a_call else (False, "relevance_error:decoder_failed")
    if not is_function_calling_format_output(decoded):  # _evaluate_single_ast_entry
        return False, "ast_decoder:decoder_wrong_output_format"
    result = ast_checker.ast_checker(functions, decoded, possible_answer, Language.PYTHON,
                                     category, REFERENCE_MODEL_NAME)
    return (True, None) if result["valid"] else (False, result["error_type"])


def _json_lines(path) -> list[dict]:
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def load_entries(categories: tuple[str, ...] = AST_CATEGORIES + NO_GOLD_CATEGORIES) -> list[Entry]:
    """Every entry of the named categories, questions joined to ground truth by id."""
    folder = bfcl_data_dir()
    entries = []
    for category in categories:
        question_file = _category_file(folder, category)  # the newest BFCL_v<N>_<category>.json
        questions = _json_lines(question_file)
        answers = {}
        if category not in NO_GOLD_CATEGORIES:
            answers = {a["id"]: a["ground_truth"]
                       for a in _json_lines(folder / "possible_answer" / question_file.name)}
        for question in questions:
            if category in NO_GOLD_CATEGORIES or question["id"] in answers:
                entries.append(Entry(question["id"], category, question["function"],
                                     answers.get(question["id"], [])))
    return entries
