"""Prompts for the FC model (and, later, the query model).

A chat template that takes ``tools=`` renders the tools itself, in the format the model was
trained on. For a template that does not, :func:`with_tools_in_system` puts them into the
system message instead, with an instruction that asks for Hermes-style ``<tool_call>``
blocks, the format :mod:`toolduel.parsing` reads.
"""

from __future__ import annotations

import json

from toolduel.schema import Tool

TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"

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


def render_tools_instruction(tools: list[Tool]) -> str:
    """The system-prompt block that lists ``tools`` (as OpenAI JSON, one per line) and says how
    to call them. Empty when there are no tools."""
    if not tools:
        return ""
    tools_json = "\n".join(json.dumps(tool.to_openai(), ensure_ascii=False) for tool in tools)
    return FC_TOOLS_INSTRUCTION.format(tools_json=tools_json, open=TOOL_CALL_OPEN, close=TOOL_CALL_CLOSE)


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
