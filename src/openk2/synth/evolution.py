"""Synthetic tools by hierarchical domain evolution (K2 report §3.1.1, Fig. 8 stage 1 and Fig. 9).

    category (Fig. 9) ──widen──> application domains ──> a base tool per domain
                                                          └─ deepen / widen / specialise ─> evolved tools

The evolution steps follow WizardLM's Evol-Instruct: *deepen* (in depth: more parameters, constraints,
preconditions), *widen* (in breadth: a neighbouring need of the same domain) and *specialise* (a narrower
tool for one situation). Each round evolves every tool of the round before with every step.

The generator answers in a compact, constrained JSON form (name, description, parameter and return
fields with types, operational semantics); `tool_fields` compiles it into JSON Schemas, which
`schema_problems` then validates with `jsonschema` like any other tool's. The K2 report does not give
the format of its synthetic tools; a typed field list keeps a small model's output a schema at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from openk2.chat import Message
from openk2.llm import SamplingParams
from openk2.synth.categories import Category
from openk2.synth.models import RoleLLM, ask_structured, structured_reply, structured_request
from openk2.synth.tools import schema_problems

NAME = r"^[a-z][a-z0-9_]{2,40}$"
FIELD_TYPES = ["string", "integer", "number", "boolean"]


def _field_list(most: int, with_required: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "name": {"type": "string", "pattern": r"^[a-z][a-z0-9_]{1,30}$"},
        "type": {"enum": FIELD_TYPES},
        "description": {"type": "string", "minLength": 3, "maxLength": 40},
    }
    if with_required:
        properties["required"] = {"type": "boolean"}
    return {
        "type": "array",
        "minItems": 1,
        "maxItems": most,
        "items": {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        },
    }


# what the generator writes for one tool (response_format json_schema)
TOOL_FORMAT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": NAME},
        "description": {"type": "string", "minLength": 10, "maxLength": 100},
        "parameters": _field_list(2, with_required=True),
        "returns": _field_list(1, with_required=False),
        "effect": {"enum": ["read", "create", "update", "delete", "compute"]},
        "entity": {"type": "string", "pattern": r"^[a-z][a-z0-9_]{1,30}$"},
        "behaviour": {"type": "string", "minLength": 10, "maxLength": 100},
    },
    "required": ["name", "description", "parameters", "returns", "effect", "entity", "behaviour"],
    "additionalProperties": False,
}

SYSTEM = (
    "You design tools (functions) that AI agents call. A tool has a snake_case name, a one-sentence "
    "description, typed parameters, typed return fields, and operational semantics: whether it reads, "
    "creates, updates or deletes records of an entity (or only computes), and how it behaves. "
    "Answer with one JSON object."
)
STEPS = {
    "deepen": "Evolve this tool in depth: a more demanding version with an extra parameter or constraint "
    "(a filter, a limit, a precondition) and more precise behaviour. Give it a new name.",
    "widen": "Evolve in breadth: a different tool for the same domain that serves a neighbouring need "
    "which the existing tools do not cover.",
    "specialise": "Specialise this tool: a narrower tool derived from it for one particular situation "
    "in the domain, with its own name.",
}


@dataclass(frozen=True)
class Candidate:
    """One tool to generate: `id` encodes its place in the tree (category/domain/base>step>step)."""

    id: str
    category: str
    domain: str
    step: str  # "base" or an evolution step
    parent: dict[str, Any] | None = None  # the tool it evolves

    def child(self, tool: dict[str, Any], step: str) -> Candidate:
        return Candidate(f"{self.id}>{step}", self.category, self.domain, step, tool)


def domains_format(count: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "domains": {
                "type": "array",
                "minItems": count,
                "maxItems": count,
                "items": {"type": "string", "minLength": 3, "maxLength": 48},
            }
        },
        "required": ["domains"],
        "additionalProperties": False,
    }


async def propose_domains(
    llm: RoleLLM, category: Category, count: int, sampling: SamplingParams
) -> tuple[list[tuple[str, str]], str | None]:
    """`count` application domains of `category` as (domain, source) pairs, source "model" or "seed".

    The generator widens the category; its repeats or an unreadable reply are filled from the
    category's seed domains, and the second value says why (None when the model gave them all).
    """
    prompt = (
        f"Category: {category.name} ({category.description}).\nExamples of its application domains: "
        f"{'; '.join(category.seed_domains[:3])}.\nList {count} distinct application domains of this category "
        "(a few words each) in which an AI agent would use software tools."
    )
    messages = [Message(role="system", content=SYSTEM), Message(role="user", content=prompt)]
    completion = await llm.achat(structured_request(messages, domains_format(count), sampling))
    value, problem = structured_reply(completion)
    found: list[tuple[str, str]] = []
    for domain in (value or {}).get("domains", []):
        cleaned = " ".join(str(domain).split()).strip(" .").lower()
        if cleaned and cleaned not in {existing for existing, _ in found}:
            found.append((cleaned, "model"))
    note = problem
    if len(found) < count and problem is None:
        note = f"the generator gave {len(found)} distinct domains of {count}"
    for seed in category.seed_domains:
        if len(found) >= count:
            break
        if seed not in {existing for existing, _ in found}:
            found.append((seed, "seed"))
    return found[:count], note


def generation_messages(candidate: Candidate, category: Category, siblings: list[str]) -> list[Message]:
    lines = [
        f"Category: {category.name} ({category.description}).",
        f"Application domain: {candidate.domain}.",
    ]
    if siblings:
        lines.append(f"Tools this domain already has: {', '.join(siblings[:12])}.")
    if candidate.parent is None:
        lines.append("Write one new tool for this domain with a clear interface and operational semantics.")
    else:
        parent = candidate.parent
        fields = ", ".join(parent["parameters"].get("properties", {}))
        lines.append(f"Existing tool: {parent['name']}({fields}): {parent['description']}")
        lines.append(STEPS[candidate.step])
    return [Message(role="system", content=SYSTEM), Message(role="user", content="\n".join(lines))]


async def generate_tool(
    llm: RoleLLM, candidate: Candidate, category: Category, siblings: list[str], sampling: SamplingParams
) -> tuple[dict[str, Any] | None, str | None, str]:
    """(the tool's fields, None, reply) or (None, why it was rejected naming the field, reply)."""
    messages = generation_messages(candidate, category, siblings)
    completion = await ask_structured(llm, messages, TOOL_FORMAT, sampling)
    reply = completion.message.text
    value, problem = structured_reply(completion)
    if value is None:
        return None, f"reply: {problem}", reply
    tool, problems = tool_fields(value)
    if tool is None or problems:
        return None, "; ".join(problems), reply
    tool.update(
        category=candidate.category,
        domain=candidate.domain,
        origin="synthetic",
        provenance={
            **tool["provenance"],
            "candidate": candidate.id,
            "step": candidate.step,
            "parent": None if candidate.parent is None else candidate.parent["name"],
            "model": llm.model_name,
        },
    )
    return tool, None, reply


def tool_fields(value: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """The generator's compact tool compiled into ToolRecord fields with JSON Schemas, and its problems."""
    problems = []
    for key in TOOL_FORMAT["required"]:
        if key not in value:
            problems.append(f"{key}: missing")
    if problems:
        return None, problems
    name = str(value["name"])
    if not re.fullmatch(NAME, name):
        problems.append(f"name: {name!r} is not a snake_case name of 3 to 41 characters")
    repairs: list[str] = []
    parameters, parameter_problems = _object_schema(value["parameters"], "parameters", True, repairs)
    returns, return_problems = _object_schema(value["returns"], "returns", False, repairs)
    tool = {
        "name": name,
        "description": str(value["description"]).strip(),
        "parameters": parameters,
        "returns": returns,
        "semantics": {
            "effect": value["effect"],
            "entity": "" if value["effect"] == "compute" else str(value["entity"]),
            "behaviour": str(value["behaviour"]).strip(),
        },
        "provenance": {"repairs": repairs} if repairs else {},
    }
    problems += parameter_problems + return_problems
    if not problems:
        problems = schema_problems(tool)
    return tool, problems


def _object_schema(
    fields: Any, where: str, with_required: bool, repairs: list[str]
) -> tuple[dict[str, Any], list[str]]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    problems = []
    if not isinstance(fields, list):
        return {"type": "object", "properties": {}}, [f"{where}: expected a list of fields"]
    for index, entry in enumerate(fields):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            problems.append(f"{where}[{index}].name: missing")
            continue
        if name in properties:  # a JSON object holds one field per name: the first definition stands
            repairs.append(f"{where}[{index}]: repeated field {name!r} dropped")
            continue
        properties[name] = {"type": entry.get("type"), "description": entry.get("description", "")}
        if with_required and entry.get("required"):
            required.append(name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if with_required:
        schema["additionalProperties"] = False
    return schema, problems
