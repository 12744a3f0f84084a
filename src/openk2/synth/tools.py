"""The tool repository's record (K2 report §3.1.1, Fig. 8 stage 1): one tool, real or synthetic.

A tool has a name, a description, a JSON Schema for its parameters and for its return value, and its
operational semantics: what it reads or changes in the world's state (`effect` on an `entity`
collection) and how it behaves, in words. Real tools come from MCP servers (or the gym's sandbox) and
carry their provenance (server, version); synthetic ones carry the category, domain and evolution step
that produced them. `tools.jsonl` holds one record a line.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from openk2.chat import ChatFormatError, ToolSpec
from openk2.chat.messages import TOOL_NAME_PATTERN
from openk2.llm.types import check_json_schema

Effect = Literal["read", "create", "update", "delete", "compute"]
Origin = Literal["synthetic", "mcp", "sandbox"]
STATEFUL_EFFECTS = ("create", "update", "delete")


class Semantics(BaseModel):
    """What a call does to the world the tool simulator keeps (a JSON state of entity collections)."""

    model_config = ConfigDict(extra="forbid")

    effect: Effect
    entity: str = ""  # the state collection it reads or changes ("" for a pure computation)
    behaviour: str = ""  # the operational semantics in words: preconditions, effects, errors


class ToolRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str = Field(min_length=1)
    parameters: dict[str, Any]  # JSON Schema of the arguments (an object schema)
    returns: dict[str, Any] | None = None  # JSON Schema of the result; None: the server does not say
    semantics: Semantics | None = None  # None for real tools: their server is the semantics
    category: str  # a Fig. 9 category (synthetic) or the server's name (real)
    domain: str | None = None
    origin: Origin
    provenance: dict[str, Any] = Field(default_factory=dict)  # server, version / parent, step, model
    agent_usable: bool = True  # real tools with effects outside an episode's reach are imported, not used

    def spec(self) -> ToolSpec:
        """The OpenAI `tools` entry the agent sees."""
        return ToolSpec.model_validate(
            {"function": {"name": self.name, "description": self.description, "parameters": self.parameters}}
        )

    @property
    def effect(self) -> Effect | None:
        return None if self.semantics is None else self.semantics.effect

    @property
    def entity(self) -> str:
        return "" if self.semantics is None else self.semantics.entity

    @property
    def stateful(self) -> bool:
        return self.semantics is not None and self.semantics.effect in STATEFUL_EFFECTS

    @property
    def simulated(self) -> bool:
        return self.origin == "synthetic"


def schema_problems(tool: dict[str, Any]) -> list[str]:
    """Why a tool's schemas are unusable, each naming the JSON path inside the tool (empty: usable).

    Both schemas must be valid JSON Schema (checked with `jsonschema`); parameters must describe an
    object, and every `required` name must be a declared property.
    """
    problems = []
    for field in ("parameters", "returns"):
        schema = tool.get(field)
        if schema is None and field == "returns":
            continue
        if not isinstance(schema, dict):
            problems.append(f"{field}: expected a JSON Schema object, got {type(schema).__name__}")
            continue
        try:
            check_json_schema(schema, field)
        except ChatFormatError as error:
            problems.append(str(error))
            continue
        problems += _required_problems(schema, field)
    parameters = tool.get("parameters")
    if isinstance(parameters, dict) and parameters.get("type", "object") != "object":
        problems.append(f"parameters.type: a tool's arguments are an object, got {parameters.get('type')!r}")
    return problems


def _required_problems(schema: dict[str, Any], path: str) -> list[str]:
    problems = []
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for name in schema.get("required") or []:
            if name not in properties:
                problems.append(f"{path}.required: {name!r} is not among the properties {sorted(properties)}")
        for name, child in properties.items():
            if isinstance(child, dict):
                problems += _required_problems(child, f"{path}.properties.{name}")
    items = schema.get("items")
    if isinstance(items, dict):
        problems += _required_problems(items, f"{path}.items")
    return problems
