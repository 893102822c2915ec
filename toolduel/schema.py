"""Tools, calls and samples: one internal form, with OpenAI and BFCL formats in and out.

Internally a tool's parameters are a JSON Schema object (the OpenAI ``tools`` form, which
chat templates and endpoints take as is). BFCL's own type names that JSON Schema lacks
(``float``, ``tuple``, ``any``, ``dict``) are mapped onto JSON Schema and remembered under
the ``x-bfcl-type`` key, so a BFCL tool survives the round trip and the checker sees the
exact types the official checker sees.

A gold call holds, for each argument, the list of acceptable values (BFCL's "possible
answers"); ``""`` in that list means the argument may be left out.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

BFCL_TYPE_KEY = "x-bfcl-type"

# BFCL type name -> JSON Schema type name (None: no JSON Schema type constrains it).
_BFCL_TO_JSON_TYPE = {
    "string": "string",
    "integer": "integer",
    "float": "number",
    "number": "number",
    "boolean": "boolean",
    "array": "array",
    "tuple": "array",
    "dict": "object",
    "object": "object",
    "any": None,
}
# JSON Schema type name -> BFCL type name, where no x-bfcl-type says otherwise.
_JSON_TO_BFCL_TYPE = {
    "string": "string",
    "integer": "integer",
    "number": "float",
    "boolean": "boolean",
    "array": "array",
    "object": "dict",
    "null": "any",
}

OPTIONAL = ""  # BFCL's marker, in a possible-answer list, for "may be left out"


class SchemaError(ValueError):
    """A tool, call or sample that cannot be read; the message says which and why."""


def _bfcl_schema_to_json(schema: Any, where: str) -> dict:
    if not isinstance(schema, dict):
        raise SchemaError(f"{where}: expected a schema object, got {type(schema).__name__}")
    out = {k: copy.deepcopy(v) for k, v in schema.items() if k not in ("type", "properties", "items")}
    bfcl_type = schema.get("type")
    if bfcl_type is not None:
        if not isinstance(bfcl_type, str) or bfcl_type not in _BFCL_TO_JSON_TYPE:
            raise SchemaError(f"{where}: unknown type {bfcl_type!r}")
        json_type = _BFCL_TO_JSON_TYPE[bfcl_type]
        if json_type is not None:
            out["type"] = json_type
        if _JSON_TO_BFCL_TYPE.get(json_type) != bfcl_type and bfcl_type not in ("object", "number"):
            out[BFCL_TYPE_KEY] = bfcl_type
    if "properties" in schema:
        props = schema["properties"]
        if not isinstance(props, dict):
            raise SchemaError(f"{where}: 'properties' must be an object")
        out["properties"] = {k: _bfcl_schema_to_json(v, f"{where}.{k}") for k, v in props.items()}
    if "items" in schema:
        out["items"] = _bfcl_schema_to_json(schema["items"], f"{where}[]")
    return out


def _json_schema_to_bfcl(schema: dict) -> dict:
    out = {k: copy.deepcopy(v) for k, v in schema.items()
           if k not in ("type", "properties", "items", BFCL_TYPE_KEY)}
    if BFCL_TYPE_KEY in schema:
        out["type"] = schema[BFCL_TYPE_KEY]
    elif "type" in schema:
        json_type = schema["type"]
        if isinstance(json_type, list):  # e.g. ["string", "null"]: BFCL has one type
            json_type = next((t for t in json_type if t != "null"), "null")
        out["type"] = _JSON_TO_BFCL_TYPE.get(json_type, "any")
    elif "properties" in schema:
        out["type"] = "dict"
    else:
        out["type"] = "any"
    if "properties" in schema:
        out["properties"] = {k: _json_schema_to_bfcl(v) for k, v in schema["properties"].items()}
    if "items" in schema and isinstance(schema["items"], dict):
        out["items"] = _json_schema_to_bfcl(schema["items"])
    return out


def strip_bfcl_keys(schema: Any) -> Any:
    """The JSON Schema without toolduel's ``x-bfcl-type`` marks (for prompts and endpoints)."""
    if isinstance(schema, dict):
        return {k: strip_bfcl_keys(v) for k, v in schema.items() if k != BFCL_TYPE_KEY}
    if isinstance(schema, list):
        return [strip_bfcl_keys(v) for v in schema]
    return schema


@dataclass
class Tool:
    """A function the model may call. ``parameters`` is a JSON Schema object."""

    name: str
    description: str = ""
    parameters: dict = field(default_factory=lambda: {"type": "object", "properties": {}, "required": []})

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SchemaError(f"tool name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.description, str):
            raise SchemaError(f"tool {self.name!r}: 'description' must be text")
        if not isinstance(self.parameters, dict):
            raise SchemaError(f"tool {self.name!r}: 'parameters' must be an object")
        self.parameters.setdefault("type", "object")
        self.parameters.setdefault("properties", {})
        self.parameters.setdefault("required", [])
        properties, required = self.parameters["properties"], self.parameters["required"]
        if not isinstance(properties, dict) or not all(isinstance(p, dict) for p in properties.values()):
            raise SchemaError(f"tool {self.name!r}: 'properties' must be an object of parameter schemas")
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise SchemaError(f"tool {self.name!r}: 'required' must be a list of parameter names")

    @property
    def properties(self) -> dict[str, dict]:
        return self.parameters["properties"]

    @property
    def required(self) -> list[str]:
        return list(self.parameters.get("required", []))

    @classmethod
    def from_bfcl(cls, function: dict) -> "Tool":
        """Read one entry of a BFCL ``function`` list (``"type": "dict"``, ``float``, ...)."""
        if not isinstance(function, dict) or "name" not in function:
            raise SchemaError(f"BFCL function must be an object with a 'name', got {str(function)[:80]!r}")
        name = function["name"]
        params = _bfcl_schema_to_json(function.get("parameters", {"type": "dict", "properties": {}}), str(name))
        params["type"] = "object"
        params.pop(BFCL_TYPE_KEY, None)
        return cls(name=name, description=function.get("description", "") or "", parameters=params)

    @classmethod
    def from_openai(cls, tool: dict) -> "Tool":
        """Read an OpenAI tool: ``{"type": "function", "function": {...}}`` or the bare function."""
        if not isinstance(tool, dict):
            raise SchemaError(f"tool must be an object, got {type(tool).__name__}")
        function = tool.get("function", tool) if tool.get("type", "function") == "function" else None
        if not isinstance(function, dict) or "name" not in function:
            raise SchemaError(f"tool must name a function, got {str(tool)[:80]!r}")
        params = function.get("parameters") or {"type": "object", "properties": {}}
        if isinstance(params, dict) and params.get("type") == "dict":  # BFCL-style inside OpenAI wrapper
            return cls.from_bfcl({**function, "parameters": params})
        return cls(name=function["name"], description=function.get("description", "") or "",
                   parameters=copy.deepcopy(params))

    @classmethod
    def from_any(cls, tool: dict) -> "Tool":
        """OpenAI or BFCL form, told apart by the shape (``"type": "dict"`` is BFCL's)."""
        if isinstance(tool, dict) and "function" not in tool and isinstance(tool.get("parameters"), dict) \
                and tool["parameters"].get("type") == "dict":
            return cls.from_bfcl(tool)
        return cls.from_openai(tool)

    def to_openai(self) -> dict:
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": strip_bfcl_keys(self.parameters)}}

    def to_bfcl(self) -> dict:
        params = _json_schema_to_bfcl(self.parameters)
        params["type"] = "dict"
        params.setdefault("properties", {})
        params["required"] = list(self.parameters.get("required", []))
        return {"name": self.name, "description": self.description, "parameters": params}


@dataclass
class Call:
    """One function call: a name and its arguments."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def to_bfcl(self) -> dict:
        """BFCL's decoded form: ``{"name": {"arg": value}}``."""
        return {self.name: dict(self.arguments)}

    def to_openai(self, call_id: str = "call_0") -> dict:
        import json

        return {"id": call_id, "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)}}

    def to_dict(self) -> dict:
        return {"name": self.name, "arguments": self.arguments}


@dataclass
class GoldCall:
    """An expected call: for each argument, the list of acceptable values (``""``: may be omitted)."""

    name: str
    arguments: dict[str, list[Any]] = field(default_factory=dict)

    @classmethod
    def from_bfcl(cls, entry: dict) -> "GoldCall":
        """Read one ``ground_truth`` entry: ``{"name": {"arg": [v1, v2, ""]}}``."""
        if not isinstance(entry, dict) or len(entry) != 1:
            raise SchemaError(f"ground truth entry must be an object with one function, got {str(entry)[:80]!r}")
        (name, args), = entry.items()
        if not isinstance(args, dict) or not all(isinstance(v, list) for v in args.values()):
            raise SchemaError(f"ground truth for {name!r} must map each argument to a list of values")
        return cls(name=name, arguments=copy.deepcopy(args))

    @classmethod
    def from_call(cls, call: Call, tool: Tool | None = None) -> "GoldCall":
        """The gold for an exact call. With ``tool``, its optional parameters may be left out:
        one the call omits may also take its declared default, one the call gives its default
        may also be omitted."""
        arguments: dict[str, list[Any]] = {k: [v] for k, v in call.arguments.items()}
        if tool is None:
            return cls(name=call.name, arguments=arguments)
        required = set(tool.required)
        for param, spec in tool.properties.items():
            if param in required:
                continue
            has_default = isinstance(spec, dict) and "default" in spec
            if param not in arguments:
                arguments[param] = [OPTIONAL] + ([spec["default"]] if has_default else [])
            elif has_default and arguments[param] == [spec["default"]]:
                arguments[param].append(OPTIONAL)
        return cls(name=call.name, arguments=arguments)

    def canonical_call(self) -> Call:
        """The first acceptable value of every argument that must be given (or is given first)."""
        args = {k: v[0] for k, v in self.arguments.items() if v and v[0] != OPTIONAL}
        return Call(self.name, args)

    def to_bfcl(self) -> dict:
        return {self.name: copy.deepcopy(self.arguments)}


@dataclass
class Sample:
    """Tools + the conversation so far + the gold calls (empty: no tool fits)."""

    id: str
    tools: list[Tool]
    messages: list[dict]
    gold: list[GoldCall] = field(default_factory=list)
    category: str = "simple"  # BFCL category name, or how the sample was made
    meta: dict = field(default_factory=dict)  # provenance, phrasing tag, ...

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise SchemaError(f"sample id must be non-empty text, got {self.id!r}")
        if not isinstance(self.messages, list):
            raise SchemaError(f"sample {self.id!r}: 'messages' must be a list of messages")
        for message in self.messages:
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise SchemaError(f"sample {self.id!r}: each message must be an object with a 'role'")
            if not isinstance(message.get("content"), (str, type(None))):
                raise SchemaError(f"sample {self.id!r}: a message's 'content' must be text")
        if not isinstance(self.category, str):
            raise SchemaError(f"sample {self.id!r}: 'category' must be text, got {type(self.category).__name__}")
        if not isinstance(self.meta, dict):
            raise SchemaError(f"sample {self.id!r}: 'meta' must be an object, got {type(self.meta).__name__}")

    @property
    def query(self) -> str:
        """The last user message (the query the FC model answers)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                content = message.get("content")
                return content if isinstance(content, str) else str(content)
        return ""

    @property
    def check_category(self) -> str:
        """The BFCL rule set that judges this sample: count rules follow the gold."""
        if self.category in BFCL_PYTHON_CATEGORIES:
            return self.category
        if not self.gold:
            return "irrelevance"
        if len(self.gold) > 1:
            return "parallel_multiple" if len(self.tools) > 1 else "parallel"
        return "multiple" if len(self.tools) > 1 else "simple"

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "category": self.category,
            "tools": [t.to_openai() | ({"x-bfcl": t.to_bfcl()} if _needs_bfcl(t) else {}) for t in self.tools],
            "messages": self.messages,
            "gold": [g.to_bfcl() for g in self.gold],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, record: dict) -> "Sample":
        """Inverse of :meth:`to_dict`."""
        if not isinstance(record, dict):
            raise SchemaError(f"sample must be an object, got {type(record).__name__}")
        missing = [k for k in ("id", "tools", "messages") if k not in record]
        if missing:
            raise SchemaError(f"sample lacks {', '.join(missing)}")
        if not isinstance(record["tools"], list) or not isinstance(record.get("gold", []), list):
            raise SchemaError("'tools' and 'gold' must be lists")
        if not isinstance(record["messages"], list) or not record["messages"]:
            raise SchemaError("'messages' must be a non-empty list of messages")
        tools = [Tool.from_bfcl(t["x-bfcl"]) if isinstance(t, dict) and "x-bfcl" in t else Tool.from_any(t)
                 for t in record["tools"]]
        return cls(id=sample_id(record["id"]), tools=tools, messages=record["messages"],
                   gold=[GoldCall.from_bfcl(g) for g in record.get("gold", [])],
                   category=record.get("category", "simple"), meta=record.get("meta", {}))


def sample_id(value: Any) -> str:
    """A record's id as text: text or a whole number; anything else (null, a list) is no id."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise SchemaError(f"'id' must be text or a whole number, got {str(value)[:40]!r}")
    return str(value)


def _needs_bfcl(tool: Tool) -> bool:
    return BFCL_TYPE_KEY in repr(tool.parameters)


BFCL_PYTHON_CATEGORIES = (
    "simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance",
    "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple", "live_irrelevance",
)


def as_plain(obj: Any) -> Any:
    """Dataclasses to plain JSON-ready data."""
    return asdict(obj) if hasattr(obj, "__dataclass_fields__") else obj
