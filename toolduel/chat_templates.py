"""Chat templates that render tools compactly, one line each, for small models (ChatML).

A 135M-parameter model (or a 1M-parameter test model) reads a 20-token signature far more
easily than 200 tokens of JSON Schema:
``name(city:str, days?:int=3, unit?:celsius|fahrenheit=celsius) description``. The FC template
renders the signatures; the query model's template leaves the tools out. Both use
ChatML's markers (``<|im_start|>role ... <|im_end|>``), write calls in ``<tool_call>`` blocks,
and mark assistant turns with ``{% generation %}``, so they fit ChatML models (SmolLM2, Qwen)
and the embedded world's tiny models. :func:`use_compact_template` gives a checkpoint's
tokenizer one of them, so that every consumer of the checkpoint (toolduel, a server applying
its chat template) renders the tools the way the model was trained to read them.

:func:`check_template` checks any chat template before toolduel renders with it (every
:class:`~toolduel.prompts.ChatRenderer`, so eval, the duel and ``toolduel serve``): a template
that loops or grows without end on a short conversation is refused in one line.
"""

from __future__ import annotations

from typing import Any

IM_START, IM_END = "<|im_start|>", "<|im_end|>"

# One macro renders a parameter schema as a short type: str, int, num, bool, a|b|c (enum),
# list[str]. ``tool`` may be OpenAI-shaped ({"type": "function", "function": {...}}) or bare.
COMPACT_TOOLS_TEMPLATE = """
{%- macro ptype(p) -%}
{%- if p.enum is defined -%}{{ p.enum | join('|') }}
{%- elif p.type == 'string' -%}str
{%- elif p.type == 'integer' -%}int
{%- elif p.type == 'number' -%}num
{%- elif p.type == 'boolean' -%}bool
{%- elif p.type == 'array' -%}list[{{ ptype(p['items']) if p['items'] is defined else 'any' }}]
{%- elif p.type == 'object' -%}obj
{%- else -%}any{%- endif -%}
{%- endmacro -%}
{%- set ns = namespace(start=0) -%}
{%- if messages and messages[0].role == 'system' -%}{%- set ns.start = 1 -%}{%- endif -%}
{%- if tools -%}
<|im_start|>system
{% if ns.start == 1 %}{{ messages[0].content }}
{% endif %}Tools:
{%- for tool in tools -%}
{%- set fn = tool.function if tool.function is defined else tool -%}
{%- set params = fn.parameters if fn.parameters is defined and fn.parameters else {} -%}
{%- set props = params.properties if params.properties is defined else {} -%}
{%- set req = params.required if params.required is defined else [] -%}
{{ '\n' ~ fn.name }}(
{%- for pname, p in props.items() -%}
{{ ', ' if not loop.first }}{{ pname }}{{ '' if pname in req else '?' }}:{{ ptype(p) }}
{%- if p.default is defined %}={{ p.default if p.default is string and ' ' not in p.default else p.default | tojson }}{% endif -%}
{%- endfor -%}
){{ ' ' ~ fn.description if fn.description else '' }}
{%- endfor %}<|im_end|>
{% elif ns.start == 1 -%}
<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif -%}
{%- for message in messages[ns.start:] -%}
{%- if message.role == 'assistant' -%}
<|im_start|>assistant
{% generation %}
{%- if message.content %}{{ message.content }}{% endif -%}
{%- if message.tool_calls is defined and message.tool_calls -%}
{%- for tc in message.tool_calls -%}
{%- set f = tc.function if tc.function is defined else tc -%}
{{ '\\n' if (loop.first and message.content) or not loop.first }}<tool_call>
{"name": {{ f.name | tojson }}, "arguments": {{ f.arguments if f.arguments is string else f.arguments | tojson }}}
</tool_call>
{%- endfor -%}
{%- endif -%}
<|im_end|>{% endgeneration %}
{% elif message.role == 'tool' -%}
<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else -%}
<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{% endif -%}
"""


def _without_tools(template: str) -> str:
    """``template`` with its tools section left out (a system message is still rendered)."""
    start = template.index("{%- if tools -%}")
    end = template.index("{% elif ns.start == 1 -%}", start)
    return (template[:start] + "{#- tools are not shown: the gold calls in the prompt name every function -#}\n"
            + "{%- if ns.start == 1 -%}" + template[end + len("{% elif ns.start == 1 -%}"):])


# The query model's template: the same, without the tools. Its prompt carries the gold calls
# (names, arguments, values) and a seed query, which is all it needs to write a request; the
# tools were most of its prompt tokens (102 tokens without them, 199 with signatures), and its
# samples were as valid without them (docs/BENCHMARKS.md). The comment above keeps the word
# "tools" in the template, so that a renderer hands them to it (and it drops them) rather than
# writing them into the system message.
COMPACT_QUERY_TEMPLATE = _without_tools(COMPACT_TOOLS_TEMPLATE).strip() + "\n"


def compact_template(role: str) -> str:
    """The compact template for ``role``: ``fc`` (tool signatures) or ``query`` (no tools)."""
    if role not in ("fc", "query"):
        raise ValueError(f"role must be fc or query, got {role!r}")
    return COMPACT_TOOLS_TEMPLATE.strip() + "\n" if role == "fc" else COMPACT_QUERY_TEMPLATE


def use_compact_template(tokenizer: Any, role: str) -> None:
    """Give ``tokenizer`` the compact template of ``role``; a tokenizer without ChatML's markers
    cannot take it (its model would read markers it never saw)."""
    from toolduel.config import ConfigError

    vocabulary = tokenizer.get_vocab()
    if IM_START not in vocabulary or IM_END not in vocabulary:
        raise ConfigError(f"the compact tool template is ChatML; this tokenizer has no {IM_START} / {IM_END} "
                          "tokens: keep the model's own template (tool_template: model)")
    tokenizer.chat_template = compact_template(role)


# --- a template is checked before it is used ------------------------------------------------------

TEMPLATE_SECONDS = 10.0  # a short conversation renders in milliseconds
TEMPLATE_MEMORY = 2 << 30  # bytes the check may add to the process
TEMPLATE_OUTPUT = 10 << 20  # characters of a rendered short conversation
_PROBE = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the weather in Paris?"},
          {"role": "assistant", "content": "Sunny."}, {"role": "user", "content": "And in Rome?"}]
_checked: set[str] = set()


def _render_bounded(tokenizer: Any, template: str, connection: Any) -> None:
    """In the child: render the probe conversation under the memory bound; report what happened."""
    import resource

    with open("/proc/self/statm") as statm:  # the child starts as big as its parent
        size = int(statm.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (size + TEMPLATE_MEMORY, resource.getrlimit(resource.RLIMIT_AS)[1]))
    try:
        text = tokenizer.apply_chat_template(_PROBE, chat_template=template, tokenize=False, add_generation_prompt=True)
        outcome = "ok" if len(text) <= TEMPLATE_OUTPUT else f"it writes {len(text):,} characters for four short messages"
    except MemoryError:
        outcome = f"it takes more than {TEMPLATE_MEMORY >> 30} GB to render four short messages"
    except Exception:  # a template that cannot render this conversation fails where it is used, as before
        outcome = "ok"
    connection.send(outcome)


def check_template(tokenizer: Any, template: str | None = None) -> None:
    """A :class:`~toolduel.config.ConfigError` for a chat template that loops without end, or
    takes gigabytes, on a short conversation: it is rendered once per template and process, in a
    forked child bounded in time (:data:`TEMPLATE_SECONDS`) and memory (:data:`TEMPLATE_MEMORY`),
    which is killed when it overruns. Where the child cannot be made (no ``fork``), nothing is checked."""
    import hashlib
    import multiprocessing

    from toolduel.config import ConfigError

    template = template or getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str) or not template:
        return
    key = hashlib.sha256(template.encode("utf-8", "surrogatepass")).hexdigest()
    if key in _checked or "fork" not in multiprocessing.get_all_start_methods():
        return
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_render_bounded, args=(tokenizer, template, sender), daemon=True)
    child.start()
    sender.close()
    outcome = receiver.recv() if receiver.poll(TEMPLATE_SECONDS) else None
    if child.is_alive():
        child.kill()
    child.join()
    receiver.close()
    if outcome is None:
        outcome = f"it does not render four short messages within {TEMPLATE_SECONDS:g} s"
    if outcome != "ok":
        raise ConfigError(f"the chat template is refused: {outcome} (a template that loops or grows without end)")
    _checked.add(key)
