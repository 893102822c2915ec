"""What the two players are shown and how they answer.

- Tools: a chat template that takes ``tools=`` renders them itself, in the format the model
  was trained on. For a template that does not, :func:`with_tools_in_system` puts them into
  the system message instead, with an instruction that asks for Hermes-style ``<tool_call>``
  blocks, the format :mod:`toolduel.parsing` reads.
- The FC model's answer (:func:`fc_target`): the gold calls in ``<tool_call>`` blocks, or
  :data:`NO_CALL_REPLY` when no tool fits.
- The query model's prompt (:func:`query_model_messages`): the gold calls, a seed query and
  an optional style; it answers with one user request (:func:`sample_queries`), and, asked for a
  tool move, the edits of the tool list after it (:mod:`toolduel.referee.tool_grammar`).
- Training rows: a conversation and its tools (:func:`fc_example`, :func:`fc_conversation`),
  the tools as JSON in a ``tools`` column.
- :class:`ChatRenderer`: the one rendering of a conversation and its tools into text, used to
  prompt a model (both generation backends) and to train it (:meth:`ChatRenderer.encode`), so
  that a model is trained on exactly the prompts it is later asked.
"""

from __future__ import annotations

import json
import re
from typing import Any

from toolduel.calls_text import format_calls
from toolduel.chat_templates import check_template
from toolduel.schema import Call, Sample, Tool

TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
NO_CALL_REPLY = "None of the available tools can help with that."
QUERY_SYSTEM = "Write one user request that needs exactly the calls below, and nothing else."
STYLE_KEY = "query_style"  # a seed's meta: the style its query is asked in (toolduel.specs)
# The tool edits the query model may write after its request (toolduel.referee.tool_grammar)
EDITS_HEADER = "Tool edits:"
EDIT_MOVE_KEY = "edit_move"  # a seed's meta: the tool move the query model is asked to write
TOOL_CANDIDATES_KEY = "tool_candidates"  # a seed's meta: the tools an edit may add (OpenAI form)
EDITS_INSTRUCTION = (f"Then write the line \"{EDITS_HEADER}\" and, one a line, the edits that make the tool move: "
                     "rename FUNCTION to NAME, rename FUNCTION.PARAMETER to NAME, describe FUNCTION as TEXT, "
                     "add FUNCTION (one it can add), move FUNCTION to first, move FUNCTION to last.")

FC_TOOLS_INSTRUCTION = """\
You can call the following tools. Each is described as a JSON object:
<tools>
{tools_json}
</tools>

If a tool fits the request, answer only with one {open}...{close} block per call, each holding \
a JSON object with the function name and its arguments:
{open}
{{"name": "<function-name>", "arguments": {{"<parameter>": <value>}}}}
{close}
Use only the tools listed above and the parameters they declare. If no tool fits, answer in \
plain words and call nothing."""


TOOL_PROMPT_MODES = ("auto", "template", "system")


def render_tools_instruction(tools: list[Tool]) -> str:
    """The system-prompt block that lists ``tools`` (as OpenAI JSON, one per line) and says how
    to call them. Empty when there are no tools."""
    if not tools:
        return ""
    listed = "\n".join(json.dumps(tool.to_openai(), ensure_ascii=False) for tool in tools)
    return FC_TOOLS_INSTRUCTION.format(tools_json=listed, open=TOOL_CALL_OPEN, close=TOOL_CALL_CLOSE)


def with_tools_in_system(conversation: list[dict], tools: list[Tool]) -> list[dict]:
    """A copy of ``conversation`` whose system message (added when missing) ends with the tools
    instruction. The caller's messages are not modified."""
    instruction = render_tools_instruction(tools)
    messages = [dict(message) for message in conversation]
    if not instruction:
        return messages
    if messages and messages[0].get("role") == "system":
        existing = messages[0].get("content") or ""
        messages[0]["content"] = f"{existing}\n\n{instruction}" if existing else instruction
    else:
        messages.insert(0, {"role": "system", "content": instruction})
    return messages


def tools_in_system_template(template: str) -> str:
    """``template`` (one that takes no tools) preceded by Jinja that does what
    :func:`with_tools_in_system` does: a server that renders its requests with it (``toolduel
    serve``) shows the model the prompt toolduel renders locally, tool for tool."""
    before, _, after = FC_TOOLS_INSTRUCTION.format(tools_json="\0", open=TOOL_CALL_OPEN,
                                                   close=TOOL_CALL_CLOSE).partition("\0")
    # a JSON string (ASCII, escaped) is a Jinja string literal of the same text
    return (
        "{%- if tools -%}\n"
        f"{{%- set tools_instruction = {json.dumps(before)} ~ (tools | map('tojson') | join('\\n')) ~ "
        f"{json.dumps(after)} -%}}\n"
        "{%- if messages and messages[0].role == 'system' and messages[0].content -%}\n"
        "{%- set messages = [{'role': 'system', 'content': messages[0].content ~ '\\n\\n' ~ tools_instruction}]"
        " + messages[1:] -%}\n"
        "{%- elif messages and messages[0].role == 'system' -%}\n"
        "{%- set messages = [{'role': 'system', 'content': tools_instruction}] + messages[1:] -%}\n"
        "{%- else -%}\n"
        "{%- set messages = [{'role': 'system', 'content': tools_instruction}] + messages -%}\n"
        "{%- endif -%}\n"
        "{%- endif -%}\n"
        + template
    )


class ChatRenderer:
    """A tokenizer's chat template with tools: the template renders them when it takes ``tools``
    (``tool_prompt="template"``, or ``"auto"`` when it mentions them); otherwise they are written
    into the system message (:func:`with_tools_in_system`). ``chat_template`` overrides the
    tokenizer's own (the tokenizer is left as it is)."""

    def __init__(self, tokenizer: Any, tool_prompt: str = "auto", chat_template: str | None = None):
        if tool_prompt not in TOOL_PROMPT_MODES:
            raise ValueError(f"tool_prompt must be one of {TOOL_PROMPT_MODES}, got {tool_prompt!r}")
        if chat_template is None and not tokenizer.chat_template:
            raise ValueError("the tokenizer has no chat template; pass chat_template='<jinja template>' "
                             "or use a chat/instruct checkpoint")
        check_template(tokenizer, chat_template)  # one that loops or grows without end is refused now
        self.tokenizer, self.chat_template = tokenizer, chat_template
        self.tools_in_template = self._template_mentions_tools() if tool_prompt == "auto" \
            else tool_prompt == "template"

    def render(self, messages: list[dict], tools: list[Tool], add_generation_prompt: bool = False) -> str:
        if self.tools_in_template:
            messages, openai_tools = list(messages), [tool.to_openai() for tool in tools] or None
        else:
            messages, openai_tools = with_tools_in_system(messages, tools), None
        return self.tokenizer.apply_chat_template(messages, tools=openai_tools, chat_template=self.chat_template,
                                                  add_generation_prompt=add_generation_prompt, tokenize=False)

    def prompt(self, conversation: list[dict], tools: list[Tool]) -> str:
        """The prompt text for one conversation, ending with the assistant header."""
        return self.render(conversation, tools, add_generation_prompt=True)

    def encode(self, messages: list[dict], tools: list[Tool]) -> dict:
        """``input_ids`` and ``assistant_masks`` of a conversation for training: the text before
        each assistant turn is the prompt :meth:`prompt` gives for the turns so far, tokenized on
        its own as a prompt is; each turn (up to its end-of-turn marker) is what the model writes
        after it, and is the only part the loss falls on."""
        text = self.render(messages, tools)
        pieces, position = [], 0
        for index, message in enumerate(messages):
            if message.get("role") != "assistant":
                continue
            before = self.render(messages[:index], tools, add_generation_prompt=True)
            through = self.render(messages[:index + 1], tools)
            if not (through.startswith(before) and text.startswith(through) and len(before) >= position):
                raise ValueError("the chat template renders a conversation's turns differently as it grows; "
                                 "such a template cannot be trained turn by turn")
            end = len(through.rstrip())  # the end-of-turn marker is learnt; the newline after it is not
            pieces += [(text[position:len(before)], 0), (text[len(before):end], 1)]
            position = end
        pieces.append((text[position:], 0))
        input_ids: list[int] = []
        masks: list[int] = []
        for piece, learnt in pieces:
            ids = self.tokenizer(piece, add_special_tokens=False)["input_ids"] if piece else []
            input_ids += ids
            masks += [learnt] * len(ids)
        return {"input_ids": input_ids, "assistant_masks": masks}

    def _template_mentions_tools(self) -> bool:
        try:  # a dict of named templates picks "tool_use" when tools are given
            template = self.tokenizer.get_chat_template(self.chat_template, tools=[{}])
        except ValueError:
            return False
        return re.search(r"\btools\b", template) is not None


# --- the FC model's answers -----------------------------------------------------------------


def _plain_number(value: Any) -> Any:
    """12.0 -> 12: the checker accepts an int for a float, and the query says "12"."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_plain_number(v) for v in value]
    return value


def calls_text(calls: list[Call]) -> str:
    return format_calls([Call(c.name, {k: _plain_number(v) for k, v in c.arguments.items()}) for c in calls])


def fc_target(sample: Sample) -> str:
    """What the FC model should answer: the gold calls, or a plain sentence when none fits."""
    if not sample.gold:
        return NO_CALL_REPLY
    return calls_text([gold.canonical_call() for gold in sample.gold])


def tools_json(tools: list[Tool]) -> str:
    """A tool list as the JSON text of a training row's ``tools`` column."""
    return json.dumps([tool.to_openai() for tool in tools])


def fc_example(sample: Sample) -> dict:
    """A training row: the sample's conversation answered with its gold calls (``tools`` as JSON)."""
    return {"messages": [*sample.messages, {"role": "assistant", "content": fc_target(sample)}],
            "tools": tools_json(sample.tools)}


def fc_conversation(samples: list[Sample]) -> dict:
    """One TRL conversational row: several (query, answer) turns over the first sample's tools.

    The tool list is most of a prompt's tokens; sharing it across turns lets one training
    sequence teach ``len(samples)`` answers for little more than the cost of one, which is
    what makes a 30k-answer warm start fit in minutes on a CPU. The first turn is exactly
    the single-turn prompt the model is evaluated on."""
    messages = []
    for sample in samples:
        messages += [{"role": "user", "content": sample.query},
                     {"role": "assistant", "content": fc_target(sample)}]
    return {"messages": messages, "tools": tools_json(samples[0].tools)}


# --- the query model's prompt --------------------------------------------------------------


def query_model_messages(sample: Sample, seed_query: str | None = None, style: str | None = None) -> list[dict]:
    """The query model's prompt for ``sample``: the gold calls, a seed query (default: the
    sample's own) and an optional style (default: the one the sample asks for,
    ``meta["query_style"]``, :mod:`toolduel.specs`); the sample's tools go through the chat
    template's ``tools=``, as for the FC model."""
    calls = [gold.canonical_call() for gold in sample.gold]
    style = style if style is not None else sample.meta.get(STYLE_KEY)
    lines = ["Calls:", calls_text(calls) if calls else "(none: no offered tool fits the request)",
             f"Seed: {seed_query if seed_query is not None else sample.query}"]
    if style:
        lines.append(f"Style: {style}")
    system, move = QUERY_SYSTEM, sample.meta.get(EDIT_MOVE_KEY)
    if move:  # the query model writes the tool edits too (toolduel.referee.tool_grammar)
        addable = [tool.get("function", tool).get("name") for tool in sample.meta.get(TOOL_CANDIDATES_KEY) or []
                   if isinstance(tool, dict)]
        system = f"{QUERY_SYSTEM} {EDITS_INSTRUCTION}"
        lines.append(f"Tool move: {move}")
        if addable:
            lines.append(f"Can add: {', '.join(str(name) for name in addable)}")
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]


def sample_queries(query_model: Any, seeds: list[Sample], generation: Any) -> list[str]:
    """One query per seed from ``query_model`` (a :class:`~toolduel.models.base.ChatModel`)."""
    answers = query_model.generate([query_model_messages(s) for s in seeds], [s.tools for s in seeds], generation)
    return [a.text.strip() for a in answers]
