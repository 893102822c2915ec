import pytest

from toolduel.schema import OPTIONAL, Call, GoldCall, Sample, SchemaError, Tool

BFCL_FUNCTION = {
    "name": "math.hypot",
    "description": "Euclidean norm.",
    "parameters": {
        "type": "dict",
        "properties": {
            "x": {"type": "integer", "description": "x"},
            "scale": {"type": "float", "description": "a float"},
            "point": {"type": "tuple", "items": {"type": "integer"}},
            "extra": {"type": "any"},
            "opts": {"type": "dict", "properties": {"exact": {"type": "boolean"}}},
        },
        "required": ["x"],
    },
}


def test_bfcl_tool_becomes_json_schema_and_round_trips():
    tool = Tool.from_bfcl(BFCL_FUNCTION)
    props = tool.parameters["properties"]
    assert tool.parameters["type"] == "object"
    assert props["scale"] == {"type": "number", "description": "a float"}  # float is JSON Schema's number
    assert props["point"]["type"] == "array" and props["point"]["x-bfcl-type"] == "tuple"  # remembered
    assert "type" not in props["extra"] and props["extra"]["x-bfcl-type"] == "any"  # any: unconstrained
    assert props["opts"]["type"] == "object"
    assert tool.to_bfcl() == BFCL_FUNCTION  # nothing lost on the way back


def test_openai_form_hides_bfcl_marks():
    openai = Tool.from_bfcl(BFCL_FUNCTION).to_openai()
    assert openai["type"] == "function"
    assert "x-bfcl-type" not in repr(openai)  # chat templates and endpoints see plain JSON Schema


def test_openai_tool_reads_wrapped_and_bare_forms():
    function = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                       "required": ["city"]}}
    wrapped = Tool.from_openai({"type": "function", "function": function})
    bare = Tool.from_any(function)
    assert wrapped == bare
    assert wrapped.to_bfcl()["parameters"]["type"] == "dict"


@pytest.mark.parametrize("bad", [None, 3, {"description": "no name"}, {"name": ""}, {"type": "web_search"}])
def test_bad_tools_raise_schema_error(bad):
    with pytest.raises(SchemaError):
        Tool.from_any(bad)


def test_unknown_bfcl_type_is_named():
    with pytest.raises(SchemaError, match=r"f\.x: unknown type 'complex'"):
        Tool.from_bfcl({"name": "f", "parameters": {"type": "dict", "properties": {"x": {"type": "complex"}}}})


def test_gold_from_call_allows_leaving_out_optional_parameters():
    tool = Tool("book", parameters={"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string"},
        "nights": {"type": "integer", "default": 1},
        "note": {"type": "string"},
    }})
    gold = GoldCall.from_call(Call("book", {"city": "Oslo"}), tool)
    assert gold.arguments == {"city": ["Oslo"], "nights": [OPTIONAL, 1], "note": [OPTIONAL]}
    # a call that states the default may also omit it
    gold = GoldCall.from_call(Call("book", {"city": "Oslo", "nights": 1}), tool)
    assert gold.arguments["nights"] == [1, OPTIONAL]
    assert gold.canonical_call() == Call("book", {"city": "Oslo", "nights": 1})


def test_gold_from_bfcl_checks_shape():
    assert GoldCall.from_bfcl({"f": {"a": [1, ""]}}).arguments == {"a": [1, ""]}
    with pytest.raises(SchemaError):
        GoldCall.from_bfcl({"f": {"a": 1}})  # values must be lists of possible answers
    with pytest.raises(SchemaError):
        GoldCall.from_bfcl({"f": {}, "g": {}})  # one function per entry


def test_sample_round_trips_and_infers_check_category():
    tools = [Tool.from_bfcl(BFCL_FUNCTION), Tool("other")]
    sample = Sample(id="s1", tools=tools, messages=[{"role": "user", "content": "norm of 3"}],
                    gold=[GoldCall("math.hypot", {"x": [3]})], category="world-plain", meta={"phrasing": "plain"})
    again = Sample.from_dict(sample.to_dict())
    assert again == sample  # BFCL-only types survive JSONL
    assert sample.check_category == "multiple"  # one gold call, several tools
    assert Sample(id="n", tools=tools, messages=[], gold=[]).check_category == "irrelevance"
    two = [GoldCall("math.hypot", {"x": [1]}), GoldCall("other", {})]
    assert Sample(id="p", tools=tools, messages=[], gold=two).check_category == "parallel_multiple"
    assert Sample(id="b", tools=tools, messages=[], category="live_simple").check_category == "live_simple"
    assert sample.query == "norm of 3"
