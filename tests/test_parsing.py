"""Model output -> calls: every format, round trips with format_calls, and hostile input."""

import ast
import builtins
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolduel.calls_text import format_calls
from toolduel.parsing import (
    MAX_DEPTH,
    MAX_TEXT_CHARS,
    ParseResult,
    parse_calls,
    parse_openai_tool_calls,
)
from toolduel.schema import Call

ERROR_KINDS = {"invalid_json", "unbalanced_tag", "invalid_python", "bad_call_shape", "too_large", "bad_input"}
FORMATS = {"json", "tool_call_tags", "python", "openai_tool_calls", "text"}
WEATHER = Call("get_weather", {"city": "Paris", "unit": "celsius"})


def assert_well_formed(result):
    """What every caller may rely on, whatever the input."""
    assert isinstance(result, ParseResult)
    assert result.format in FORMATS
    assert isinstance(result.calls, list)
    for call in result.calls:
        assert isinstance(call, Call) and isinstance(call.name, str) and call.name
        assert isinstance(call.arguments, dict) and all(isinstance(k, str) for k in call.arguments)
    if result.error is not None:
        assert result.calls == []  # an answer is either read whole or refused whole
        assert result.error_kind in ERROR_KINDS and result.error.startswith(result.error_kind + ": ")
    assert result.ok == (result.error is None)


def ok(calls, fmt):
    return ParseResult(calls=calls, error=None, format=fmt)


# ---------------------------------------------------------------- JSON

def test_json_single_object():
    text = '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}'
    assert parse_calls(text) == ok([WEATHER], "json")


def test_json_parameters_key_and_string_arguments():
    # Llama writes "parameters"; OpenAI-style output encodes arguments as a JSON string.
    text = '[{"name": "a", "parameters": {"x": 1}}, {"name": "b", "arguments": "{\\"y\\": [2, 3]}"}]'
    assert parse_calls(text) == ok([Call("a", {"x": 1}), Call("b", {"y": [2, 3]})], "json")


def test_json_openai_message_in_text():
    message = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_0", "type": "function", "function": {"name": "f", "arguments": '{"n": -1.5}'}}]}
    assert parse_calls(json.dumps(message)) == ok([Call("f", {"n": -1.5})], "json")


def test_json_bfcl_decoded_form():
    text = '[{"math.factorial": {"number": 5}}, {"g": {}}]'
    assert parse_calls(text) == ok([Call("math.factorial", {"number": 5}), Call("g", {})], "json")


def test_json_in_fence_with_prose_around():
    text = 'Here is the call:\n```json\n{"name": "f", "arguments": {"a": {"b": [null, true]}}}\n```\nDone.'
    assert parse_calls(text) == ok([Call("f", {"a": {"b": [None, True]}})], "json")


def test_json_inside_prose_and_json_lines():
    assert parse_calls('Sure! {"name": "f", "arguments": {"a": 1}} Hope this helps.') == \
        ok([Call("f", {"a": 1})], "json")
    # One object per line (several models do this): every one is a call.
    text = '{"name": "f", "arguments": {"a": 1}}\n{"name": "g", "arguments": {"b": 2}}'
    assert parse_calls(text) == ok([Call("f", {"a": 1}), Call("g", {"b": 2})], "json")
    many = "\n".join(f'{{"name": "f", "arguments": {{"i": {i}}}}}' for i in range(100))
    assert parse_calls(many).calls == [Call("f", {"i": i}) for i in range(100)]  # none dropped
    # Mistral's prefix is prose in front of a JSON list.
    assert parse_calls('[TOOL_CALLS] [{"name": "f", "arguments": {}}]') == ok([Call("f", {})], "json")


def test_json_that_is_not_a_call():
    assert parse_calls('The config is {"a": 1} and {"name": "Bob"}.') == ok([], "text")  # prose
    assert parse_calls("[]") == ok([], "json")  # an explicit empty list of calls
    assert parse_calls('{"a": 1, "b": 2}').error_kind == "bad_call_shape"  # the whole answer is JSON
    assert parse_calls('[{"name": "f", "arguments": [1]}]').error_kind == "bad_call_shape"
    assert parse_calls('{"name": "Bob", "age": 3}').error_kind == "bad_call_shape"  # stray key
    assert parse_calls('[{"name": "f", "arguments": {}}, 3]').error_kind == "bad_call_shape"
    assert parse_calls('{"name": "", "arguments": {}}').error_kind == "bad_call_shape"


def test_malformed_json():
    truncated = parse_calls('{"name": "f", "arguments": {"a": 1')
    assert truncated.error_kind == "invalid_json" and truncated.format == "json"
    assert parse_calls('Calling: {"name": "f", "arguments": {"a": ').error_kind == "invalid_json"
    assert parse_calls('{"name": "f", "arguments": {"a": NaN}}').error_kind == "invalid_json"  # not JSON
    assert parse_calls('{"name": "f", "arguments": {"a": 1e999}}').error_kind == "invalid_json"  # inf
    assert parse_calls('{"name": "f", "arguments": "{\\"a\\": "}').error_kind == "invalid_json"


# ---------------------------------------------------------------- <tool_call> tags

def test_tool_call_tags_with_think_and_prose():
    text = ("<think>The user wants weather; maybe <tool_call> twice?</think>\nLet me check.\n"
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>\n'
            '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>')
    assert parse_calls(text) == ok([WEATHER, Call("get_time", {})], "tool_call_tags")


def test_tool_call_tags_list_inside_one_block():
    text = '<tool_call>[{"name": "a", "arguments": {}}, {"b": {"x": 1}}]</tool_call>'
    assert parse_calls(text) == ok([Call("a", {}), Call("b", {"x": 1})], "tool_call_tags")


def test_unclosed_final_tag():
    # Generation stopped on the "</tool_call>" stop string: a complete block is kept.
    assert parse_calls('<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n') == \
        ok([Call("f", {"a": 1})], "tool_call_tags")
    # Cut off mid-JSON: the tag never closes, and that is what the error says.
    assert parse_calls('Sure. <tool_call>{"name": "f", "arguments": {"a": 1') == ParseResult(
        [], "unbalanced_tag: <tool_call> at offset 6 is never closed", "tool_call_tags")


def test_unbalanced_and_bad_tags():
    assert parse_calls('</tool_call>') == ParseResult(
        [], "unbalanced_tag: </tool_call> at offset 0 closes nothing", "tool_call_tags")
    nested = '<tool_call><tool_call>{"name": "f", "arguments": {}}</tool_call></tool_call>'
    assert parse_calls(nested).error_kind == "unbalanced_tag"
    assert parse_calls("<tool_call></tool_call>").error_kind == "invalid_json"  # empty block
    assert parse_calls("<tool_call>f(a=1)</tool_call>").error_kind == "invalid_json"  # JSON only in tags
    assert parse_calls('<tool_call>{"a": 1, "b": 2}</tool_call>').error_kind == "bad_call_shape"


def test_think_handling():
    # The chat template opened <think>: everything before the lone </think> is reasoning.
    assert parse_calls('f(a=1) looks right</think>[g(b=2)]') == ok([Call("g", {"b": 2})], "python")
    # Stopped while thinking: no call, even if the reasoning drafted one.
    assert parse_calls('<think>I will call [f(a=1)]') == ok([], "text")


# ---------------------------------------------------------------- python syntax

def test_python_calls():
    text = '[get_weather(city="Paris", unit="celsius"), math.factorial(number=5)]'
    assert parse_calls(text) == ok([WEATHER, Call("math.factorial", {"number": 5})], "python")
    assert parse_calls("  f(a=1)\n") == ok([Call("f", {"a": 1})], "python")  # bare call
    assert parse_calls("f()") == ok([Call("f", {})], "python")


def test_python_nested_values():
    text = "[f(a=-1, b=+2.5, c=(1, 'x'), d={'k': [None, True, False]}, e=[[-0.5]], s='it''s')]"
    expected = Call("f", {"a": -1, "b": 2.5, "c": [1, "x"], "d": {"k": [None, True, False]},
                          "e": [[-0.5]], "s": "its"})  # tuples become lists; 'it''s' concatenates
    assert parse_calls(text) == ok([expected], "python")


def test_python_in_fence():
    assert parse_calls("```python\n[f(a=1)]\n```") == ok([Call("f", {"a": 1})], "python")
    assert parse_calls("```tool_code\nf(a='x')\n```") == ok([Call("f", {"a": "x"})], "python")


def test_python_refuses_what_needs_evaluating():
    for value in ("x", "a.b", "g()", "1 + 2", "-x", "f'{x}'", "lambda: 1", "[i for i in y]",
                  "{1, 2}", "b'x'", "1j", "...", "not True", "{**d}", "[*a]", "1e999"):
        result = parse_calls(f"f(a={value})")
        assert result.error_kind == "invalid_python" and result.format == "python", value
    assert parse_calls("f(1, 2)").error_kind == "bad_call_shape"  # positional: no names to check
    assert parse_calls("f(**kw)").error_kind == "invalid_python"
    assert parse_calls("f(a=1)(b=2)").error_kind == "invalid_python"  # called object is a call
    assert parse_calls("f(a={1: 2})").error_kind == "invalid_python"  # JSON keys are strings
    assert parse_calls("[f(a=1), 2]").error_kind == "invalid_python"
    assert parse_calls("[f(a=1), g(b=").error_kind == "invalid_python"  # truncated


def test_dangerous_python_is_never_executed(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    def refuse(*args, **kwargs):
        raise AssertionError("the parser must not evaluate anything")
    for name in ("eval", "exec"):  # (ast.parse itself calls compile, which only builds a tree)
        monkeypatch.setattr(builtins, name, refuse)
    monkeypatch.setattr(ast, "literal_eval", refuse)
    for text in (f"f(a=__import__('os').system('touch {marker}'))",
                 f"[f(a=open('{marker}', 'w').write('x'))]",
                 f"__import__('os').system('touch {marker}')",
                 "f(a=(lambda: exit())())"):
        assert parse_calls(text).error_kind == "invalid_python"
    monkeypatch.undo()
    assert not marker.exists()


# ---------------------------------------------------------------- plain text

def test_plain_text_is_no_call():
    for text in ("I think (maybe) yes.", "The answer is 42.", "42", '"Paris"', "", "   \n",
                 "[1] Smith et al. (2020)", "I can't help with that :(", "Use f (the function) here.",
                 "(see f(x) below)", "f (x) = 2"):
        assert parse_calls(text) == ok([], "text"), text
    assert parse_calls(None) == ok([], "text")


def test_prose_that_starts_like_a_call_is_an_error():
    # Decision: an answer that opens with "name(" is read as python; prose rarely does.
    assert parse_calls("print(x) is how you print.").error_kind == "invalid_python"


# ---------------------------------------------------------------- OpenAI structured tool_calls

def test_structured_tool_calls_win_over_text():
    tool_calls = [WEATHER.to_openai("call_0"), {"function": {"name": "g", "arguments": {"x": 1}}}]
    result = parse_calls("[ignored(a=1)]", tool_calls=tool_calls)
    assert result == ok([WEATHER, Call("g", {"x": 1})], "openai_tool_calls")
    # An empty list means the endpoint found no call: the text is read instead.
    assert parse_calls("[f(a=1)]", tool_calls=[]) == ok([Call("f", {"a": 1})], "python")


def test_structured_tool_calls_wrong_shapes():
    assert parse_openai_tool_calls(None) == ok([], "openai_tool_calls")
    assert parse_openai_tool_calls([{"function": {"name": "f", "arguments": ""}}]) == \
        ok([Call("f", {})], "openai_tool_calls")  # some servers send "" for no arguments
    for bad, kind in [("not a list", "bad_call_shape"),
                      ({"function": {"name": "f"}}, "bad_call_shape"),  # a dict, not a list
                      ([{"name": "f", "arguments": "{}"}], "bad_call_shape"),  # no "function"
                      ([{"type": "code", "function": {"name": "f", "arguments": "{}"}}], "bad_call_shape"),
                      ([{"function": {"arguments": "{}"}}], "bad_call_shape"),  # no name
                      ([{"function": {"name": "f", "arguments": "[1, 2]"}}], "bad_call_shape"),
                      ([{"function": {"name": "f", "arguments": '{"a": "tru'}}], "invalid_json"),
                      ([None], "bad_call_shape"), (42, "bad_call_shape")]:
        result = parse_calls("text", tool_calls=bad)
        assert result.error_kind == kind and result.format == "openai_tool_calls", bad


# ---------------------------------------------------------------- input guards

def test_bytes_and_wrong_types():
    assert parse_calls(b'{"name": "f", "arguments": {"s": "caf\xc3\xa9"}}') == ok([Call("f", {"s": "café"})], "json")
    # Invalid UTF-8 is replaced, not raised: the JSON still reads, the bad byte becomes U+FFFD.
    assert parse_calls(b'{"name": "f", "arguments": {"s": "\xff"}}') == ok([Call("f", {"s": "\ufffd"})], "json")
    assert parse_calls(12).error == "bad_input: text must be str, bytes or None, got int"
    assert parse_calls(["f(a=1)"]).error_kind == "bad_input"


def test_size_and_depth_guards():
    huge = "x" * (MAX_TEXT_CHARS + 1)
    assert parse_calls(huge) == ParseResult([], f"too_large: {MAX_TEXT_CHARS + 1} characters, "
                                                f"limit {MAX_TEXT_CHARS}", "text")
    assert parse_calls(huge.encode()).error_kind == "too_large"
    assert parse_calls("[" * 100_000).error_kind == "too_large"  # json's recursion guard, caught
    assert parse_calls("{" * 100_000).error_kind == "invalid_json"
    assert parse_calls("f(a=" + "[" * 100_000).error_kind == "invalid_python"  # parser's nesting limit
    assert parse_calls("<tool_call>" * 50_000).error_kind == "unbalanced_tag"
    deep = '{"name": "f", "arguments": {"a": ' + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "}}"
    assert parse_calls(deep).error == f"too_large: arguments nested deeper than {MAX_DEPTH}"
    # Just under the limit, a long but flat answer still parses.
    long_value = "y" * (MAX_TEXT_CHARS - 100)
    assert parse_calls(f'f(a="{long_value}")').calls == [Call("f", {"a": long_value})]


# ---------------------------------------------------------------- format_calls

def test_format_calls_exact_text():
    calls = [WEATHER, Call("math.factorial", {"number": 5})]
    assert format_calls(calls) == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "math.factorial", "arguments": {"number": 5}}\n</tool_call>')
    assert format_calls(calls, "json") == (
        '[{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}, '
        '{"name": "math.factorial", "arguments": {"number": 5}}]')
    assert format_calls(calls, "python") == \
        '[get_weather(city="Paris", unit="celsius"), math.factorial(number=5)]'
    assert format_calls([], "tool_call_tags") == "" and format_calls([], "python") == "[]"


def test_format_calls_escapes_tags_inside_strings():
    # A literal "</tool_call>" in a value would end the block early when read back.
    call = Call("f", {"s": "<think></tool_call>"})
    assert format_calls([call], "python") == '[f(s="\\u003cthink>\\u003c/tool_call>")]'
    for style in ("tool_call_tags", "json", "python"):
        assert parse_calls(format_calls([call], style)).calls == [call]


def test_format_calls_refuses_what_it_cannot_write():
    for calls, style in [([Call("f", {"a": float("nan")})], "json"),
                         ([Call("f", {"a": float("inf")})], "python"),
                         ([Call("get-weather", {})], "python"),  # not a Python name
                         ([Call("f", {"class": 1})], "python"),  # keyword
                         ([Call("f", {"a": {1, 2}})], "tool_call_tags"),  # a set is not JSON
                         ([Call("", {})], "json")]:
        with pytest.raises(ValueError):
            format_calls(calls, style)
    with pytest.raises(ValueError, match="unknown style"):
        format_calls([WEATHER], "xml")


# ---------------------------------------------------------------- properties

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12)
python_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
    lambda name: name not in {"None", "True", "False", "and", "or", "not", "in", "is", "if", "else", "for",
                              "def", "class", "return", "lambda", "while", "with", "as", "from", "import",
                              "try", "except", "finally", "raise", "pass", "break", "continue", "del",
                              "global", "nonlocal", "assert", "yield", "async", "await", "elif"})
calls_strategy = st.lists(st.builds(
    Call, st.lists(python_names, min_size=1, max_size=3).map(".".join),
    st.dictionaries(python_names, json_values, max_size=4)), max_size=3)


def same(a, b):
    """Equal with equal types all the way down (1 == 1.0 == True would hide a bug)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@settings(max_examples=200, deadline=None)
@given(calls=calls_strategy, style=st.sampled_from(["tool_call_tags", "json", "python"]))
def test_round_trip(calls, style):
    result = parse_calls(format_calls(calls, style))
    assert result.ok, result.error
    assert len(result.calls) == len(calls)
    for parsed, original in zip(result.calls, calls):
        assert parsed.name == original.name and same(parsed.arguments, original.arguments)


tricky_pieces = st.sampled_from([
    "<tool_call>", "</tool_call>", "<think>", "</think>", "```", "```json\n", "{", "}", "[", "]", "(", ")",
    '"name"', '"arguments"', '"parameters"', '"tool_calls"', '"function"', ":", ",", "=", "f(", "a.b(",
    "1", "-", "1e999", "NaN", "None", '"', "'", "\\", "\n", " ", "\x00", "\ud800", "__import__('os')",
    '{"name": "f", "arguments": {}}', "f(a=1)", "lambda: 0", "*", "**"])


@settings(max_examples=500, deadline=None)
@given(text=st.lists(tricky_pieces | st.text(max_size=5), max_size=30).map("".join))
def test_hostile_text_never_raises(text):
    assert_well_formed(parse_calls(text))


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200) | st.text().map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_arbitrary_bytes_never_raise(data):
    assert_well_formed(parse_calls(data))


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_arbitrary_json_never_raises(value):
    text = json.dumps(value)
    assert_well_formed(parse_calls(text))
    assert_well_formed(parse_calls(f"<tool_call>{text}</tool_call>"))
    assert_well_formed(parse_calls(None, tool_calls=value))
    assert_well_formed(parse_calls(None, tool_calls=[{"function": {"name": "f", "arguments": text}}]))
