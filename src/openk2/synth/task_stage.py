"""Stage 2 of Fig. 8 (K2 report §3.1.1): agents, and rubric-based tasks from simple to complex.

Each task is a gym `Task` (env "synth", kind "tool_use"): the agent's system prompt and the user's
opening request as messages, the agent's tools, a user scenario (persona, goal, what the user knows and
tells only when asked), for stateful tools an initial state and an expected final state, and an explicit
rubric of `RubricItem`s:

    tool_pattern   the expected tool-use pattern (the calls, in order from level 2)     checked by code
    final_state    the expected final state, as JSON-pointer paths and values            checked by code
    well_formed    every reply parsed; every call names a declared tool with valid args  checked by code
    success_i      the task's success criteria                                          the LLM judge
    checkpoint_i   evaluation checkpoints along the way                                 the LLM judge

Levels: 1 needs one call, 2 two calls of two tools, 3 three calls where a read precedes a change. The
tool pattern is drawn from the agent's tools by level (seeded); the generator writes the scenario, the
criteria, the checkpoints and the state around it, under a JSON Schema that names the agent's entities.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from openk2.chat import Message
from openk2.gym.records import RubricItem, Task, UserScenario
from openk2.llm import SamplingParams
from openk2.synth.agents import AgentPlan, sample_agents, system_prompt
from openk2.synth.models import RoleLLM, ask_structured, structured_reply
from openk2.synth.progress import StageProgress
from openk2.synth.recipe import SynthRecipe
from openk2.synth.repository import seed_of
from openk2.synth.tools import ToolRecord

ENV_NAME = "synth"
TASK_SYSTEM = (
    "You write realistic tasks for testing AI assistants that use tools. A task is what a user asks, "
    "who the user is, what they know, how success is judged and the data the tools work on. Answer with "
    "one JSON object."
)
USER_INSTRUCTIONS = (
    "Ask for what you need in your own words. Give what you know only when the assistant asks for it. "
    "When the assistant has done what you asked, or cannot do it, end with ###STOP###."
)
SCALAR = {"type": ["string", "integer", "number", "boolean"]}


def task_format(entities: list[str]) -> dict[str, Any]:
    """The generator's JSON for one task; paths of the state are constrained to the agent's entities."""
    text = {"type": "string", "minLength": 3, "maxLength": 120}
    short = {"type": "string", "minLength": 3, "maxLength": 60}
    properties: dict[str, Any] = {
        "user_request": text,
        "persona": short,
        "goal": short,
        "known_info": short,
        "success_criteria": {"type": "array", "minItems": 1, "maxItems": 2, "items": short},
        "checkpoints": {"type": "array", "minItems": 1, "maxItems": 2, "items": short},
    }
    if entities:
        alternatives = "|".join(entities)
        record_id = {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,24}$"}
        properties["initial_records"] = {
            "type": "array",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "entity": {"enum": entities},
                    "id": record_id,
                    "fields": {"type": "object", "additionalProperties": SCALAR, "maxProperties": 4},
                },
                "required": ["entity", "id", "fields"],
                "additionalProperties": False,
            },
        }
        properties["expected_final_state"] = {
            "type": "array",
            "minItems": 1,
            "maxItems": 2,
            "items": {
                "type": "object",
                "properties": {
                    "path": {
                        "type": "string",
                        "pattern": rf"^/({alternatives})/[A-Za-z0-9_-]{{1,24}}(/[a-z0-9_]{{1,30}})?$",
                    },
                    "value": {"type": ["string", "integer", "number", "boolean", "null"]},
                },
                "required": ["path", "value"],
                "additionalProperties": False,
            },
        }
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def tool_pattern(plan: AgentPlan, tools: dict[str, ToolRecord], level: int, rng: random.Random) -> list[str]:
    """The calls a task of `level` expects, drawn from the agent's tools."""
    names = list(plan.tools)
    if level == 1 or len(names) == 1:
        return [rng.choice(names)]
    if level == 2:
        return rng.sample(names, 2)
    reads = [name for name in names if tools[name].effect in (None, "read")]
    changes = [name for name in names if tools[name].stateful]
    first = rng.choice(reads or names)
    second = rng.choice([name for name in names if name != first])
    last = rng.choice([name for name in changes if name not in (first, second)] or names)
    return [first, second, last]


def task_prompt(
    plan: AgentPlan, tools: dict[str, ToolRecord], pattern: list[str], level: int, entities: list[str]
) -> str:
    lines = [f"The assistant works in {plan.category.replace('_', ' ')} and has these tools:"]
    for name in plan.tools:
        tool = tools[name]
        fields = ", ".join(tool.parameters.get("properties", {}))
        semantics = f" [{tool.semantics.effect} {tool.semantics.entity}]".rstrip() if tool.semantics else ""
        lines.append(f"- {name}({fields}): {tool.description}{semantics}")
    steps = " then ".join(pattern)
    lines.append(
        f"Write a level-{level} task (1 simple, 3 complex) that the assistant solves by calling {steps}."
    )
    if entities:
        lines.append(
            f"Give the records the tools start from (entities: {', '.join(entities)}) and the values that "
            "must hold afterwards as paths /entity/id/field (null: the record is gone)."
        )
    return "\n".join(lines)


def build_task(
    task_id: str,
    plan: AgentPlan,
    prompt: str,
    tools: dict[str, ToolRecord],
    pattern: list[str],
    level: int,
    value: dict[str, Any],
    generator: str,
) -> Task:
    rubric = [
        RubricItem(
            name="tool_pattern",
            description=f"calls {' then '.join(pattern)}" + (" in this order" if len(pattern) > 1 else ""),
        ),
        RubricItem(
            name="well_formed",
            kind="core",
            description="every reply is well-formed; every call names a declared tool with schema-valid arguments",
        ),
    ]
    rubric += [
        RubricItem(name=f"success_{i}", description=text)
        for i, text in enumerate(value["success_criteria"], 1)
    ]
    rubric += [
        RubricItem(name=f"checkpoint_{i}", description=text) for i, text in enumerate(value["checkpoints"], 1)
    ]
    initial_state: dict[str, Any] | None = None
    expected: list[dict[str, Any]] = []
    if "initial_records" in value:
        initial_state = {}
        for record in value["initial_records"]:
            initial_state.setdefault(record["entity"], {})[record["id"]] = record["fields"]
        expected = value["expected_final_state"]
        rubric.append(
            RubricItem(
                name="final_state",
                description="; ".join(f"{item['path']} = {item['value']!r}" for item in expected),
            )
        )
    return Task(
        id=task_id,
        env=ENV_NAME,
        kind="tool_use",
        messages=[
            Message(role="system", content=prompt),
            Message(role="user", content=value["user_request"]),
        ],
        tools=[tools[name].spec() for name in plan.tools],
        user=UserScenario(
            persona=value["persona"],
            goal=value["goal"],
            known_info=value["known_info"],
            instructions=USER_INSTRUCTIONS,
        ),
        initial_state=initial_state,
        verification={
            "expected_tools": pattern,
            "ordered": len(pattern) > 1,
            "expected_final_state": expected,
        },
        rubric=rubric,
        metadata={"agent": plan.id, "category": plan.category, "level": level, "generator": generator},
    )


async def synthesise_tasks(
    recipe: SynthRecipe, generator: RoleLLM, tool_list: list[ToolRecord], progress: bool
) -> tuple[list[dict[str, Any]], list[Task], list[dict[str, Any]]]:
    """(agents, tasks, rejects) in agent order, the same for the same seed whatever the concurrency."""
    section = recipe.tasks
    tools = {tool.name: tool for tool in tool_list}
    plans = sample_agents(tool_list, section, recipe.seed)
    gate = asyncio.Semaphore(recipe.concurrency)

    def sampling(tokens: int, *parts: str) -> SamplingParams:
        return SamplingParams(
            temperature=recipe.run.temperature,
            max_tokens=tokens,
            seed=seed_of(recipe.seed, *parts),
            repetition_penalty=section.repetition_penalty,
        )

    async def agent(
        plan: AgentPlan, bar: StageProgress
    ) -> tuple[dict[str, Any], list[Task], list[dict[str, Any]]]:
        async with gate:
            prompt = await system_prompt(generator, plan, tools, sampling(160, "agent", plan.id))
        record = {
            "id": plan.id,
            "category": plan.category,
            "tools": list(plan.tools),
            "system_prompt": prompt,
        }
        made: list[Task] = []
        rejected: list[dict[str, Any]] = []
        for index in range(section.tasks_per_agent):
            task_id = f"{plan.id}/task-{index}"
            level = section.levels[index % len(section.levels)]
            rng = random.Random(seed_of(recipe.seed, "pattern", task_id))
            pattern = tool_pattern(plan, tools, level, rng)
            if not prompt:
                rejected.append(
                    {"stage": "tasks", "id": task_id, "reason": "system_prompt: the generator wrote nothing"}
                )
                bar.finished("rejected")
                continue
            entities = sorted({tools[name].entity for name in pattern if tools[name].stateful})
            messages = [
                Message(role="system", content=TASK_SYSTEM),
                Message(role="user", content=task_prompt(plan, tools, pattern, level, entities)),
            ]
            async with gate:
                completion = await ask_structured(
                    generator, messages, task_format(entities), sampling(480, "task", task_id)
                )
            value, problem = structured_reply(completion)
            if value is not None:
                problem = _task_problem(value, entities)
            if value is None or problem is not None:
                rejected.append(
                    {"stage": "tasks", "id": task_id, "reason": problem, "reply": completion.message.text}
                )
                bar.finished("rejected")
                continue
            made.append(build_task(task_id, plan, prompt, tools, pattern, level, value, generator.model_name))
            bar.finished("accepted")
        return record, made, rejected

    with StageProgress("tasks", len(plans) * section.tasks_per_agent, "task drafts", progress) as bar:
        results = await asyncio.gather(*(agent(plan, bar) for plan in plans))
    agents = [record for record, _, _ in results]
    tasks = [task for _, made, _ in results for task in made]
    rejects = [reject for _, _, rejected in results for reject in rejected]
    return agents, tasks, rejects


def _task_problem(value: dict[str, Any], entities: list[str]) -> str | None:
    """What an endpoint without constrained decoding may get wrong; the field is named."""
    for key in task_format(entities)["required"]:
        if key not in value:
            return f"{key}: missing"
    for index, item in enumerate(value.get("expected_final_state", [])):
        parts = str(item.get("path", "")).split("/")
        if len(parts) < 3 or parts[1] not in entities:
            return f"expected_final_state[{index}].path: {item.get('path')!r} is not /entity/id[/field] of {entities}"
    return None
