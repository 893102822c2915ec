import json

import pytest

from toolduel.data import DataError, load_samples
from toolduel.data.bfcl import (
    BFCL_AST_CATEGORIES,
    bfcl_data_dir,
    load_bfcl,
    resolve_categories,
)
from toolduel.schema import OPTIONAL


def _bfcl_installed() -> bool:
    try:
        bfcl_data_dir()
        return True
    except DataError:
        return False


needs_bfcl = pytest.mark.skipif(not _bfcl_installed(), reason="bfcl-eval not installed")

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "required": ["city"],
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "default": "celsius"}}}}}


@needs_bfcl
def test_bfcl_category_counts_and_gold():
    simple = load_bfcl("simple_python")
    assert len(simple) == 400
    first = simple[0]
    assert first.id == "simple_python_0"
    assert first.tools[0].name == "calculate_triangle_area"
    assert first.gold[0].arguments == {"base": [10], "height": [5], "unit": ["units", ""]}
    assert first.messages == [{"role": "user", "content":
                               "Find the area of a triangle with a base of 10 units and height of 5 units."}]
    irrelevance = load_bfcl("irrelevance", limit=5)
    assert len(irrelevance) == 5 and all(s.gold == [] for s in irrelevance)  # no tool fits


@needs_bfcl
@pytest.mark.parametrize("category", ["multiple", "parallel_multiple"])
def test_a_distractors_variant_adds_tools_that_cannot_serve_the_request(category):
    from toolduel.checker import check_sample
    from toolduel.data.bfcl import _name_words
    from toolduel.referee.tool_list import check_tool_edit, described_purpose

    base, grown = load_bfcl(category), load_bfcl(f"{category}+distractors")
    assert [s.id for s in grown] == [s.id for s in base] and {s.category for s in grown} == {f"{category}+distractors"}
    assert load_bfcl(f"{category}+distractors", limit=7) == grown[:7]  # the same draw, whatever the limit
    for before, after in zip(base, grown):
        assert after.messages == before.messages and after.gold == before.gold
        kept = [t for t in after.tools if t in before.tools]
        added = [t for t in after.tools if t not in before.tools]
        assert kept == before.tools and 1 <= len(added) <= 3 and len({t.name for t in after.tools}) == len(after.tools)
        gold_tools = [t for t in before.tools if t.name in {g.name for g in before.gold}]
        for tool in added:  # nothing added could serve the request: no shared name word, no shared description
            assert not any(_name_words(tool.name) & _name_words(g.name) for g in gold_tools), (after.id, tool.name)
            assert described_purpose(tool) not in {described_purpose(g) for g in gold_tools}
        assert check_tool_edit(before.tools, before.gold, after.tools, after.gold) == []
        answer = [g.canonical_call() for g in after.gold]  # judged as it was without the distractors
        assert check_sample(after, answer).valid == check_sample(before, answer).valid
    assert sum(after.tools[-1] not in before.tools for before, after in zip(base, grown)) > 20  # not all at the end


def test_a_distractors_variant_of_an_irrelevance_set_is_refused():
    with pytest.raises(DataError, match="no gold function"):
        resolve_categories("irrelevance+distractors")
    with pytest.raises(DataError, match="unknown BFCL category 'multiples'.*\\+distractors"):
        resolve_categories("multiples+distractors")


@needs_bfcl
def test_bfcl_all_reads_every_python_category_with_limit():
    samples = load_samples("bfcl:all", limit=2).samples
    assert [s.category for s in samples] == [c for c in BFCL_AST_CATEGORIES for _ in range(2)]
    live = [s for s in samples if s.category == "live_simple"]
    assert all(s.messages[-1]["role"] == "user" for s in live)


def test_bfcl_from_a_folder(tmp_path):
    (tmp_path / "possible_answer").mkdir()
    question = {"id": "simple_python_0", "question": [[{"role": "user", "content": "hi"}]],
                "function": [{"name": "f", "parameters": {"type": "dict", "properties": {}, "required": []}}]}
    (tmp_path / "BFCL_v4_simple_python.json").write_text(json.dumps(question) + "\n")
    (tmp_path / "possible_answer" / "BFCL_v4_simple_python.json").write_text(
        json.dumps({"id": "simple_python_0", "ground_truth": [{"f": {}}]}) + "\n")
    samples = load_samples("bfcl:simple", bfcl_root=tmp_path).samples
    assert [(s.id, s.gold[0].name) for s in samples] == [("simple_python_0", "f")]
    with pytest.raises(DataError, match="no BFCL file for category 'multiple'"):
        load_samples("bfcl:multiple", bfcl_root=tmp_path)


def test_bfcl_corrupt_line_is_named(tmp_path):
    (tmp_path / "BFCL_v4_irrelevance.json").write_text('{"id": "irrelevance_0"\n')
    with pytest.raises(DataError, match=r"BFCL_v4_irrelevance\.json:1: not valid JSON"):
        load_bfcl("irrelevance", root=tmp_path)


def test_unknown_category_lists_the_valid_ones():
    with pytest.raises(DataError, match="unknown BFCL category 'exec_simple'.*simple_python"):
        resolve_categories("exec_simple")
    assert resolve_categories("simple,all")[0] == "simple_python"  # alias, then no duplicates
    assert len(resolve_categories("simple,all")) == len(BFCL_AST_CATEGORIES)


def _write_lines(path, lines):
    path.write_bytes(b"\n".join(line if isinstance(line, bytes) else json.dumps(line).encode() for line in lines))
    return path


def test_openai_jsonl_gold_comes_from_last_assistant_message(tmp_path):
    records = [
        {"id": "a", "tools": [WEATHER], "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "tool_calls": [{"type": "function", "function": {
                "name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]}]},
        {"tools": [WEATHER], "messages": [
            {"role": "user", "content": "Tell me a joke"},
            {"role": "assistant", "content": "Why did..."}]},  # no tool fits
    ]
    samples = load_samples(str(_write_lines(tmp_path / "d.jsonl", records))).samples
    assert samples[0].id == "a"
    assert samples[0].messages == [{"role": "user", "content": "Weather in Oslo?"}]
    assert samples[0].gold[0].arguments == {"city": ["Oslo"], "unit": [OPTIONAL, "celsius"]}
    assert samples[1].id == "d-2" and samples[1].gold == []  # default id: file stem and line


def test_xlam_and_toolduel_records(tmp_path):
    xlam = {"query": "Weather in Rome", "tools": json.dumps([WEATHER["function"]]),
            "answers": json.dumps([{"name": "get_weather", "arguments": {"city": "Rome"}}])}
    first = load_samples(str(_write_lines(tmp_path / "x.jsonl", [xlam]))).samples[0]
    again = load_samples(str(_write_lines(tmp_path / "t.jsonl", [first.to_dict()]))).samples[0]
    assert again == first
    assert first.query == "Weather in Rome"


@pytest.mark.parametrize("bad_line, reason", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe\x00", "not UTF-8"),
    (b"[1, 2]", "must be a JSON object"),
    (json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(), "no assistant message"),
    (json.dumps({"tools": [WEATHER], "messages": [{"role": "assistant", "tool_calls": [
        {"function": {"name": "get_time", "arguments": "{}"}}]}]}).encode(), "'get_time' is not among the tools"),
    (json.dumps({"tools": [WEATHER], "messages": [{"role": "assistant", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": "{\"city\": "}}]}]}).encode(), "not valid JSON"),
    (json.dumps({"something": "else"}).encode(), "unknown record format"),
    (b"[" * 100_000, "JSON"),  # deep nesting must not crash the loader
])
def test_bad_record_names_file_and_line_or_is_skipped(tmp_path, bad_line, reason):
    good = {"query": "Weather in Rome", "tools": [WEATHER],
            "answers": [{"name": "get_weather", "arguments": {"city": "Rome"}}]}
    path = _write_lines(tmp_path / "mixed.jsonl", [good, bad_line, good])
    with pytest.raises(DataError, match=rf"mixed\.jsonl:2: .*{reason}"):
        load_samples(str(path))
    report = load_samples(str(path), skip_bad=True)
    assert len(report.samples) == 2  # the good records on both sides are kept
    assert len(report.skipped) == 1 and "mixed.jsonl:2" in report.skipped[0]


def test_unknown_spec_and_bad_limit():
    with pytest.raises(DataError, match="neither bfcl"):
        load_samples("no/such/file.jsonl")
    with pytest.raises(DataError, match="limit must be at least 1"):
        load_samples("bfcl:simple", limit=0)
