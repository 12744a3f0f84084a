"""Tool records: schema validation naming the JSON path, the generator's compact form, unique names,
and near-duplicate removal with the shipped sentence-embedding model."""

from __future__ import annotations

import numpy as np
import pytest

from openk2.synth.embeddings import SentenceEmbedder, near_duplicates, tool_text
from openk2.synth.evolution import Candidate, tool_fields
from openk2.synth.repository import _claim_name
from openk2.synth.tools import schema_problems

COMPACT = {
    "name": "set_thermostat",
    "description": "Set the target temperature of a room.",
    "parameters": [
        {"name": "room", "type": "string", "description": "the room", "required": True},
        {"name": "celsius", "type": "number", "description": "target", "required": True},
        {"name": "room", "type": "integer", "description": "again", "required": False},
    ],
    "returns": [{"name": "ok", "type": "boolean", "description": "whether it was set"}],
    "effect": "update",
    "entity": "thermostats",
    "behaviour": "changes the room's target temperature",
}


def test_an_invalid_json_schema_is_rejected_with_its_json_path():
    tool = {
        "parameters": {"type": "object", "properties": {"when": {"type": "datetime"}}},
        "returns": {"type": "object", "properties": {"items": {"type": "array", "items": {"minItems": -1}}}},
    }
    problems = schema_problems(tool)
    assert problems[0].startswith("parameters.properties.when.type: not a valid JSON Schema")
    assert problems[1].startswith("returns.properties.items.items.minItems: not a valid JSON Schema")


def test_required_names_must_be_declared_and_arguments_an_object():
    problems = schema_problems(
        {"parameters": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a", "b"]}}
    )
    assert problems == ["parameters.required: 'b' is not among the properties ['a']"]
    assert schema_problems({"parameters": {"type": "string"}}) == [
        "parameters.type: a tool's arguments are an object, got 'string'"
    ]


def test_the_compact_form_compiles_to_valid_json_schemas():
    tool, problems = tool_fields(COMPACT)
    assert problems == [] and schema_problems(tool) == []
    assert tool["parameters"] == {
        "type": "object",
        "properties": {
            "room": {"type": "string", "description": "the room"},
            "celsius": {"type": "number", "description": "target"},
        },
        "required": ["room", "celsius"],
        "additionalProperties": False,
    }
    assert tool["provenance"]["repairs"] == ["parameters[2]: repeated field 'room' dropped"]
    assert tool["semantics"] == {
        "effect": "update",
        "entity": "thermostats",
        "behaviour": COMPACT["behaviour"],
    }


def test_a_compact_tool_with_a_bad_name_or_missing_field_is_rejected():
    assert tool_fields({**COMPACT, "name": "Set Thermostat!"})[1] == [
        "name: 'Set Thermostat!' is not a snake_case name of 3 to 41 characters"
    ]
    assert tool_fields({key: value for key, value in COMPACT.items() if key != "returns"})[1] == [
        "returns: missing"
    ]


def test_names_are_unique_a_taken_name_is_qualified_by_its_domain_then_refused():
    taken = {"get_status"}
    candidate = Candidate("smart_home/locks", "smart_home", "door locks", "base")
    first = {"name": "get_status"}
    assert _claim_name(first, candidate, taken) is None and first["name"] == "door_locks_get_status"
    assert _claim_name({"name": "get_status"}, candidate, taken) == (
        "name: 'get_status' is taken (also as 'door_locks_get_status')"
    )


def test_near_duplicates_are_dropped_greedily_and_real_tools_are_kept():
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.6, 0.8], [0.99, 0.141], [0.0, 1.0]])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    dropped = near_duplicates(vectors, threshold=0.95, protected=2)
    assert set(dropped) == {3}  # item 1 repeats item 0 but is protected (a real tool)
    assert dropped[3][0] == 0 and dropped[3][1] == pytest.approx(0.99, abs=1e-3)


@pytest.mark.slow  # loading transformers and the model takes ~15 s here
def test_paraphrased_tools_are_near_duplicates_under_the_shipped_embedding_model():
    embed = SentenceEmbedder().encode
    texts = [
        tool_text("turn_on_lights", "Turn on the lights in a room.", {"properties": {"room": {}}}),
        tool_text("switch_lights_on", "Switch the lights of a room on.", {"properties": {"room": {}}}),
        tool_text(
            "buy_shares", "Place a market order to buy shares of a stock.", {"properties": {"ticker": {}}}
        ),
    ]
    vectors = embed(texts)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > 0.8 > 0.3 > similarity[0, 2]
    assert near_duplicates(vectors, threshold=0.8) == {1: (0, pytest.approx(float(similarity[0, 1])))}
