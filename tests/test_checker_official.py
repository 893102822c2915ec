"""toolduel.checker against BFCL's official checker: the same (valid, error_type) on every ground
truth of the python AST categories and on many seeded mutations of each, and on the irrelevance
categories under BFCL's runner rule. Where BFCL raises, ours must return an invalid verdict.

Run with ``-s`` to see the case counts.
"""

import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("bfcl_eval")

from bfcl_official import official_ast_checker  # noqa: E402

from toolduel.checker import INTERNAL_ERROR, KINDS, check, error_kind  # noqa: E402
from toolduel.testing.bfcl_mutations import mutated_outputs  # noqa: E402
from toolduel.testing.bfcl_reference import (  # noqa: E402
    AST_CATEGORIES,
    NO_GOLD_CATEGORIES,
    load_entries,
    official_verdict,
)

OUTPUTS_PER_ENTRY = 60  # 3 right answers + 57 mutations; about 140,000 cases, ~15 s on one core
OUTPUTS_PER_NO_GOLD_ENTRY = 12
SEED = 0


def compare(ast_checker, entries, outputs_per_entry):
    """(cases, disagreements, cases where BFCL raised); a disagreement is printable."""
    cases, disagreements, raised = 0, [], Counter()
    for entry in entries:
        for output in mutated_outputs(entry, outputs_per_entry, SEED):
            cases += 1
            ours = check(entry.functions, output, entry.ground_truth, entry.category)
            try:
                official = official_verdict(ast_checker, entry.functions, output, entry.ground_truth, entry.category)
            except Exception as error:  # BFCL raised: ours must still say invalid, on purpose
                raised[type(error).__name__] += 1
                if ours.valid or ours.error_type == INTERNAL_ERROR:
                    disagreements.append(f"{entry.id}: BFCL raised {type(error).__name__}, ours {ours} "
                                         f"on {output!r:.300}")
                continue
            if (ours.valid, ours.error_type) != official:
                disagreements.append(f"{entry.id}: BFCL {official}, ours {(ours.valid, ours.error_type)} "
                                     f"on {output!r:.300}")
    return cases, disagreements, raised


@pytest.mark.parametrize("category", AST_CATEGORIES)
def test_same_verdicts_on_ground_truth_and_mutations(category):
    entries = load_entries((category,))
    cases, disagreements, raised = compare(official_ast_checker(), entries, OUTPUTS_PER_ENTRY)
    print(f"{category}: {len(entries)} entries, {cases} cases, {len(disagreements)} disagreements, "
          f"BFCL raised on {sum(raised.values())} {dict(raised)}")
    assert cases == len(entries) * OUTPUTS_PER_ENTRY
    assert not disagreements, "\n".join(disagreements[:5])


@pytest.mark.parametrize("category", NO_GOLD_CATEGORIES)
def test_same_verdicts_where_no_call_is_wanted(category):
    entries = load_entries((category,))
    cases, disagreements, raised = compare(official_ast_checker(), entries, OUTPUTS_PER_NO_GOLD_ENTRY)
    print(f"{category}: {cases} cases, {len(disagreements)} disagreements")
    assert cases == len(entries) * OUTPUTS_PER_NO_GOLD_ENTRY
    assert not disagreements and not raised, "\n".join(disagreements[:5])


def test_right_answers_are_valid_for_both():
    # the first three outputs of an entry give each argument its first, a random, and its first
    # given possible answer
    ast_checker = official_ast_checker()
    entries = load_entries(AST_CATEGORIES)
    unsatisfiable = []
    for entry in entries:
        verdicts = []
        for answer in mutated_outputs(entry, 3, SEED):
            ours = check(entry.functions, answer, entry.ground_truth, entry.category)
            official = official_verdict(ast_checker, entry.functions, answer, entry.ground_truth, entry.category)
            assert (ours.valid, ours.error_type) == official, entry.id
            verdicts.append(ours.valid)
        if not any(verdicts):
            unsatisfiable.append(entry.id)
    print(f"{len(entries)} entries; no right answer passes for {unsatisfiable}")
    assert len(unsatisfiable) <= 5  # BFCL gold that omits a required argument, or lists one the schema lacks


def test_where_bfcl_raises_ours_is_invalid():
    ast_checker = official_ast_checker()
    list_of_dicts = {"name": "f", "parameters": {"type": "dict", "required": [], "properties": {
        "x": {"type": "array", "items": {"type": "dict"}}}}}
    floats = {"name": "f", "parameters": {"type": "dict", "required": [], "properties": {"x": {"type": "float"}}}}
    strings = {"name": "f", "parameters": {"type": "dict", "required": [], "properties": {"x": {"type": "string"}}}}
    cases = [  # (functions, output, gold, category, what BFCL raises)
        ([list_of_dicts], [{"f": {"x": ["a"]}}], [{"f": {"x": ["", [{"k": ["v"]}]]}}], "simple", AttributeError),
        ([floats], [{"f": {"x": 10**400}}], [{"f": {"x": [1.0]}}], "simple", OverflowError),
        ([strings], [{"f": {"x": 10**5000}}], [{"f": {"x": ["a"]}}], "simple", ValueError),  # repr of a huge int
        ([strings], [{"f": {"x": "a"}}], [{"g": {"x": ["a"]}}], "multiple", TypeError),  # gold names no function
        ([], [{"f": {}}], [{"f": {}}], "simple", IndexError),
    ]
    for functions, output, gold, category, bfcl_error in cases:
        with pytest.raises(bfcl_error):
            official_verdict(ast_checker, functions, output, gold, category)
        ours = check(functions, output, gold, category)
        assert not ours.valid and ours.error_type != INTERNAL_ERROR, (output, ours)


def test_every_bfcl_error_type_has_a_kind():
    ast_checker = official_ast_checker()
    source = Path(ast_checker.__file__).read_text()
    error_types = set(re.findall(r'"error_type"\]? ?[:=] ?"([^"]+)"', source))
    error_types.discard("simple_function_checker:unclear")  # only ever set on a valid result
    assert len(error_types) >= 15, error_types
    for error_type in sorted(error_types):
        assert error_kind(error_type) in set(KINDS) - {"ok", "bad_sample"}, error_type


WEATHER = {"name": "get_weather", "parameters": {"type": "dict", "required": ["city"], "properties": {
    "city": {"type": "string"}, "days": {"type": "integer"}, "scale": {"type": "float"},
    "tags": {"type": "array", "items": {"type": "string"}}, "options": {"type": "dict", "properties": {}}}}}
WEATHER_GOLD = [{"get_weather": {"city": ["New York", "NYC"], "days": [3, ""], "scale": [1.5, ""],
                                 "tags": [["a", "b"], ""], "options": [{"unit": ["c"], "lang": ["", "en"]}, ""]}}]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.sampled_from(
        ["New York", "new-york", "NYC", "a", "B", "c", "en", ""]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["unit", "lang", "x"]),
                                                                      children, max_size=3),
    max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(arguments=st.dictionaries(st.sampled_from(["city", "days", "scale", "tags", "options", "other"]),
                                 json_values, max_size=5))
def test_same_verdicts_on_random_arguments(arguments):
    output = [{"get_weather": arguments}]
    ours = check([WEATHER], output, WEATHER_GOLD, "simple_python")
    official = official_verdict(official_ast_checker(), [WEATHER], output, WEATHER_GOLD, "simple_python")
    assert (ours.valid, ours.error_type) == official
