"""Tool edits the query model writes: a small grammar after its request, read by a parser.

On the tool surface the query model's move is a request *and* an edit of the tool list it is
answered against. It writes the request, then a line ``Tool edits:`` and one edit per line:

- ``rename FUNCTION to NAME``: a function under another name (the gold calls renamed with it);
- ``rename FUNCTION.PARAMETER to NAME``: a parameter under another name (its old name kept as
  its description, and in the function's description, so that a template that shows no
  parameter descriptions still says which is which);
- ``describe FUNCTION as TEXT``: another description, of the same meaning;
- ``add FUNCTION``: a look-alike from the seed's candidates (``meta["tool_candidates"]``, shown
  in the query model's prompt), which cannot serve the request;
- ``move FUNCTION to first`` / ``move FUNCTION to last``: the tool's place in the list.

:func:`split_completion` parts the request from its edits; :func:`apply_edits` applies them to
a tool list and its gold calls, as data (nothing the model writes is ever executed), or says in
an :class:`EditError` why it cannot. :func:`written_edit_reasons` is the referee's check of what
was written: readable, naming what the list has, names that do not borrow another tool's or
parameter's words, descriptions that still name the function's intent (where the lexicon knows
it); the oracle itself (the gold calls the one right answer) is then
:func:`~toolduel.referee.tool_list.check_tool_edit`'s.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

from toolduel.prompts import EDITS_HEADER
from toolduel.referee.roles import ROLE_MARKERS
from toolduel.referee.tool_list import PARAMETER_NOTES
from toolduel.schema import GoldCall, Tool

MAX_EDITS = 8
EDIT_TOKENS = 64  # what the edits may add to the longest completion of the query model
MAX_DESCRIPTION_CHARS = 200
_HEADER = re.compile(rf"^\s*{re.escape(EDITS_HEADER[:-1])}\s*:\s*", re.I | re.M)
_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
_FORMS = {
    "rename": re.compile(rf"rename\s+({_NAME})(?:\.({_NAME}))?\s+to\s+({_NAME})", re.I),
    "describe": re.compile(rf"describe\s+({_NAME})\s+as\s+(.+)", re.I),
    "add": re.compile(rf"add\s+({_NAME})", re.I),
    "move": re.compile(rf"move\s+({_NAME})\s+to\s+(first|last)", re.I),
}


@dataclass(frozen=True)
class Edit:
    """One edit as written: its verb, the function (and parameter) it acts on, and its argument
    (a new name, a description, ``first``/``last``)."""

    verb: str
    function: str
    parameter: str | None = None
    argument: str | None = None


class EditError(ValueError):
    """An edit that cannot be read or applied; ``reason`` is its rejection type."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def split_completion(text: str) -> tuple[str, list[str]]:
    """The request a completion writes and its edit lines (none without a ``Tool edits:`` line;
    ``;`` also parts edits)."""
    match = _HEADER.search(text)
    if match is None:
        return text.strip(), []
    edits = [piece.strip() for line in text[match.end():].splitlines() for piece in line.split(";")]
    return text[:match.start()].strip(), [edit for edit in edits if edit]


def parse_edit(line: str) -> Edit:
    """One edit line; an :class:`EditError` (``tool_edit_unreadable``) for anything else."""
    text = line.strip().strip(".").strip()
    for verb, form in _FORMS.items():
        match = form.fullmatch(text)
        if match is None:
            continue
        if verb == "rename":
            return Edit(verb, match[1], match[2], match[3])
        if verb == "describe":
            return Edit(verb, match[1], argument=match[2].strip().strip("\"'"))
        return Edit(verb, match[1], argument=match[2].lower() if verb == "move" else None)
    raise EditError("tool_edit_unreadable", f"{line.strip()[:80]!r} is not an edit (rename, describe, add, move)")


def renamed_tool(tool: Tool, name: str | None = None, params: dict[str, str] | None = None,
                 description: str | None = None) -> Tool:
    """``tool`` under another name, with parameters renamed (``params``: old -> new, each keeping
    its old name as its description, also noted in the tool's) or another description."""
    params = params or {}
    properties, said = {}, []
    for old, spec in tool.properties.items():
        spec = dict(spec)
        if old in params:
            spec["description"] = spec.get("description") or old.replace("_", " ")
            said.append(f"{params[old]}: {spec['description']}")
        properties[params.get(old, old)] = spec
    if description is not None:  # a new description keeps the notes of the parameters renamed before
        notes = PARAMETER_NOTES.search(tool.description)
        description = description.rstrip(".") + (notes.group() if notes else "")
    description = tool.description if description is None else description
    if said:
        joint = ", " if PARAMETER_NOTES.search(description) else ". Parameters: "
        description = f"{description.rstrip('.')}{joint}{', '.join(said)}."
    return Tool(name=name or tool.name, description=description,
                parameters={**tool.parameters, "properties": properties,
                            "required": [params.get(p, p) for p in tool.required]})


def renamed_gold(call: GoldCall, name: str | None = None, params: dict[str, str] | None = None) -> GoldCall:
    params = params or {}
    return GoldCall(name or call.name, {params.get(k, k): v for k, v in call.arguments.items()})


def apply_edits(tools: list[Tool], gold: list[GoldCall], edits: list[Edit],
                candidates: Collection[Tool] = ()) -> tuple[list[Tool], list[GoldCall]]:
    """``tools`` and ``gold`` with ``edits`` applied in order (each names a function by its name at
    that point); an :class:`EditError` for an edit that names what is not there."""
    if len(edits) > MAX_EDITS:
        raise EditError("tool_edit_unreadable", f"{len(edits)} edits, more than {MAX_EDITS}")
    tools, gold = list(tools), list(gold)
    offered = {tool.name: tool for tool in candidates}
    for edit in edits:
        names = [tool.name for tool in tools]
        if edit.verb == "add":
            if edit.function not in offered or edit.function in names:
                raise EditError("tool_edit_unknown", f"add {edit.function}: not a candidate of this request, "
                                                     f"or already listed")
            tools.append(offered[edit.function])
            continue
        if edit.function not in names:
            raise EditError("tool_edit_unknown", f"{edit.verb} {edit.function}: no such function in the list")
        index = names.index(edit.function)
        tool = tools[index]
        if edit.verb == "move":
            tools.pop(index)
            tools.insert(0 if edit.argument == "first" else len(tools), tool)
        elif edit.verb == "describe":
            if len(edit.argument) > MAX_DESCRIPTION_CHARS:
                raise EditError("tool_edit_unreadable", f"describe {edit.function}: longer than "
                                                        f"{MAX_DESCRIPTION_CHARS} characters")
            tools[index] = renamed_tool(tool, description=edit.argument)
        elif edit.parameter is None:
            tools[index] = renamed_tool(tool, name=edit.argument)
            gold = [renamed_gold(call, name=edit.argument) if call.name == edit.function else call for call in gold]
        else:
            if edit.parameter not in tool.properties:
                raise EditError("tool_edit_unknown", f"rename {edit.function}.{edit.parameter}: no such parameter")
            if edit.argument in tool.properties:
                raise EditError("tool_edit_duplicate", f"{edit.function} already has a parameter {edit.argument}")
            params = {edit.parameter: edit.argument}
            tools[index] = renamed_tool(tool, params=params)
            gold = [renamed_gold(call, params=params) if call.name == edit.function else call for call in gold]
    return tools, gold


def applied(tools: list[Tool], gold: list[GoldCall], lines: list[str],
            candidates: Collection[Tool] = ()) -> tuple[list[Tool], list[GoldCall]]:
    """``tools`` and ``gold`` with the edits written as ``lines``; as they were where an edit
    cannot be read or applied (the referee has refused such a query)."""
    try:
        return apply_edits(tools, gold, [parse_edit(line) for line in lines], candidates)
    except EditError:
        return list(tools), list(gold)


def _words(name: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", name)}


def _misleading(new_name: str, old_name: str, other_names: Collection[str]) -> str | None:
    """Why a rename of ``old_name`` to ``new_name`` borrows a word of ``other_names`` (the list's
    other tools and the look-alikes it may add, or the function's other parameters, as the seed
    named them) or a role word of a
    pair ("target", "origin") that the old name lacks, or None: ``send_email`` renamed
    ``search_flights`` would name another tool, ``from_unit`` renamed ``to_thing`` another parameter."""
    borrowed = sorted((_words(new_name) & set().union(ROLE_MARKERS, *map(_words, other_names))) - _words(old_name))
    if borrowed:
        return f"rename to {new_name} borrows {borrowed[0]!r} from another name of the list"
    return None


def _names(text: str, words: Collection[str]) -> bool:
    """Whether ``text`` says one of ``words`` (or its plural) as written: a description is read
    without the typo tolerance a noisy request gets ("take" is not "wake")."""
    said = set(re.findall(r"[a-z]+", text.lower()))
    return any(word in said or word + "s" in said for word in words)


def _off_meaning(edit: Edit, original: str, tool: Tool, tools: list[Tool], originals: dict[str, str],
                 intent_words: Callable[[str], Collection[str] | None]) -> str | None:
    """Why a new description may not keep the meaning of ``tool`` (the world's ``original``
    function), or None: it must name the function's intent, as a query must, and the intent of no
    other function of ``tools`` (listed, or one it may add) that its description did not name; the
    rules can check this only where the lexicon knows the intent words."""
    own = intent_words(original)
    if not own:
        return f"describe {edit.function}: its meaning cannot be checked (no intent words known)"
    if not _names(edit.argument, own):
        return f"describe {edit.function}: the description no longer names its intent"
    for other in tools:  # a word both intents share ("share": of a price, of a percentage) says neither
        words = intent_words(originals.get(other.name, other.name)) if other.name != tool.name else None
        words = set(words or ()) - set(own)
        if words and _names(edit.argument, words) and not _names(tool.description, words):
            return f"describe {edit.function}: the description names {other.name}'s intent"
    return None


class _SeedNames:
    """The names the seed gave the functions and parameters that edits have renamed."""

    def __init__(self, tools: Collection[Tool], candidates: Collection[Tool]):
        self.functions = {tool.name: tool.name for tool in [*tools, *candidates]}  # a name now -> the seed's
        self.parameters = {tool.name: {p: p for p in tool.properties} for tool in tools}  # by the seed's name
        self.candidates = [tool.name for tool in candidates]

    def function(self, name: str) -> str:
        return self.functions.get(name, name)

    def misleading(self, edit: Edit, tools: list[Tool]) -> str | None:
        original = self.function(edit.function)
        if edit.parameter is None:
            others = [self.function(t.name) for t in tools if t.name != edit.function] + self.candidates
            return _misleading(edit.argument, original, others)
        params = self.parameters.get(original, {})
        others = [old for now, old in params.items() if now != edit.parameter]
        return _misleading(edit.argument, params.get(edit.parameter, edit.parameter), others)

    def renamed(self, edit: Edit) -> None:
        original = self.function(edit.function)
        if edit.parameter is None:
            self.functions[edit.argument] = original
        else:
            params = self.parameters.setdefault(original, {})
            params[edit.argument] = params.pop(edit.parameter, edit.parameter)


def written_edit_reasons(tools: list[Tool], gold: list[GoldCall], lines: list[str], candidates: Collection[Tool],
                         intent_words: Callable[[str], Collection[str] | None]) -> tuple[list[str], list[Tool],
                                                                                         list[GoldCall]]:
    """The rejection reasons (``"type: detail"``) of the edits written as ``lines`` against ``tools``
    and ``gold``, and the list and gold calls they make; the first edit that fails ends the reading
    (the list and gold calls as the edits before it left them)."""
    if len(lines) > MAX_EDITS:
        return [f"tool_edit_unreadable: {len(lines)} edits, more than {MAX_EDITS}"], tools, gold
    names = _SeedNames(tools, candidates)
    for line in lines:
        try:
            edit = parse_edit(line)
            by_name = {tool.name: tool for tool in tools}
            if edit.verb == "rename" and (why := names.misleading(edit, tools)):
                return [f"tool_edit_misleading: {why}"], tools, gold
            listed_or_addable = [*tools, *(tool for tool in candidates if tool.name not in by_name)]
            if edit.verb == "describe" and edit.function in by_name and (why := _off_meaning(
                    edit, names.function(edit.function), by_name[edit.function], listed_or_addable,
                    names.functions, intent_words)):
                return [f"tool_edit_off_meaning: {why}"], tools, gold
            tools, gold = apply_edits(tools, gold, [edit], candidates)
            if edit.verb == "rename":
                names.renamed(edit)
        except EditError as error:
            return [str(error)], tools, gold
    return [], tools, gold
