"""Tool declarations in the TypeScript style the report uses for most training data (App. B).

    namespace functions {
    // Get the weather for a city.
    type get_weather = (_: {
      // City name.
      location: string,
      date?: string
    }) => any;
    }

JSON Schema maps to TypeScript as: string → string, number/integer → number, boolean → boolean,
array → T[], enum/const → union of literals, object → nested `{ ... }`, optional (not in
`required`) → `name?`.
"""

import json
from collections.abc import Sequence
from typing import Any

from openk2.chat.messages import ToolSpec

_PRIMITIVES = {
    "string": "string",
    "number": "number",
    "integer": "number",
    "boolean": "boolean",
    "null": "null",
}
_INDENT = "  "


def typescript_declaration(tools: Sequence[ToolSpec]) -> str:
    """The tools as one `namespace functions { ... }` block."""
    lines = ["namespace functions {"]
    for tool in tools:
        lines += _comment_lines(tool.function.description, indent="")
        lines.append(f"type {tool.function.name} = {_signature(tool.function.parameters or {})};")
    lines.append("}")
    return "\n".join(lines)


def _signature(parameters: dict[str, Any]) -> str:
    if not parameters.get("properties"):
        return "() => any"
    return f"(_: {_object_type(parameters, depth=0)}) => any"


def _comment_lines(description: str | None, indent: str) -> list[str]:
    if not description:
        return []
    return [f"{indent}// {line}".rstrip() for line in description.splitlines()]


def _property_name(name: str) -> str:
    # Names that are not identifiers are quoted, as TypeScript requires.
    return name if name.isidentifier() else json.dumps(name)


def _object_type(schema: dict[str, Any], depth: int) -> str:
    properties: dict[str, Any] = schema.get("properties") or {}
    if not properties:
        return "object"
    required = set(schema.get("required", []))
    inner = _INDENT * (depth + 1)
    members = []
    for name, property_schema in properties.items():
        optional = "" if name in required else "?"
        member_type = _type(property_schema, depth + 1)
        comment = _comment_lines(property_schema.get("description"), inner)
        members.append("\n".join([*comment, f"{inner}{_property_name(name)}{optional}: {member_type}"]))
    return "{\n" + ",\n".join(members) + "\n" + _INDENT * depth + "}"


def _type(schema: dict[str, Any], depth: int) -> str:
    if "enum" in schema:
        return " | ".join(json.dumps(value, ensure_ascii=False) for value in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"], ensure_ascii=False)
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            return " | ".join(_type(member, depth) for member in schema[combinator])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(_type({**schema, "type": member}, depth) for member in kind)
    if kind == "array":
        item = _type(schema.get("items") or {}, depth)
        return f"({item})[]" if " | " in item else f"{item}[]"
    if kind == "object":
        return _object_type(schema, depth)
    return _PRIMITIVES.get(str(kind), "any")
