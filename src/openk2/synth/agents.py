"""Agent diversification (K2 report §3.1.1): agents are a synthesised system prompt and a tool subset.

K2 builds "thousands of distinct agents", each with its own combination of tools from the repository.
Tool subsets are sampled under diversity constraints, deterministically for a seed:

- every agent has a home category, taken round-robin, so every category gets agents;
- its synthetic tools come from the home category, least-used tools first and spread over domains,
  so the repository is covered before any tool is used twice;
- a share of agents (`real_tool_share`) also gets one real tool, servers taken round-robin;
- no two agents have the same tool set.

The generator then writes each agent's system prompt from its tools.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from openk2.chat import Message
from openk2.llm import SamplingParams, chat_request
from openk2.synth.models import RoleLLM
from openk2.synth.recipe import TasksSection
from openk2.synth.tools import ToolRecord

PROMPT_SYSTEM = "You write system prompts for AI assistants that use tools. Write only the system prompt."


@dataclass(frozen=True)
class AgentPlan:
    id: str
    category: str
    tools: tuple[str, ...]


def sample_agents(tools: list[ToolRecord], section: TasksSection, seed: int) -> list[AgentPlan]:
    rng = random.Random(seed)
    synthetic: dict[str, list[ToolRecord]] = {}
    real: dict[str, list[ToolRecord]] = {}
    for tool in tools:
        if tool.agent_usable:
            (synthetic if tool.simulated else real).setdefault(tool.category, []).append(tool)
    if not synthetic:
        raise ValueError("tools.jsonl: no synthetic tools to build agents from")
    categories = sorted(synthetic)
    servers = sorted(real)
    used: Counter[str] = Counter()
    seen_sets: set[frozenset[str]] = set()
    agents = []
    real_agents = 0
    for index in range(section.agents):
        home = categories[index % len(categories)]
        fewest, most = section.tools_per_agent
        wanted = rng.randint(fewest, most)
        with_real = bool(servers) and real_agents < round(section.real_tool_share * (index + 1))
        chosen: list[ToolRecord] = []
        if with_real:
            server = servers[real_agents % len(servers)]
            chosen.append(_least_used(real[server], used, rng, chosen))
            real_agents += 1
        pool = synthetic[home]
        while len(chosen) < wanted and len(chosen) < len(pool) + with_real:
            chosen.append(_least_used(pool, used, rng, chosen))
        names = frozenset(tool.name for tool in chosen)
        if names in seen_sets:  # the same set again: swap in the next least-used tool when there is one
            spare = [tool for tool in pool if tool.name not in names]
            if not spare:
                continue
            chosen[-1] = _least_used(spare, used, rng, chosen)
            names = frozenset(tool.name for tool in chosen)
            if names in seen_sets:
                continue
        seen_sets.add(names)
        used.update(tool.name for tool in chosen)
        agents.append(AgentPlan(f"agent-{index:04d}", home, tuple(tool.name for tool in chosen)))
    return agents


def _least_used(
    pool: list[ToolRecord], used: Counter[str], rng: random.Random, chosen: list[ToolRecord]
) -> ToolRecord:
    """The least-used tool not chosen yet, preferring a domain the agent has no tool of; ties at random."""
    names = {tool.name for tool in chosen}
    domains = {tool.domain for tool in chosen}
    candidates = [tool for tool in pool if tool.name not in names]
    return min(candidates, key=lambda tool: (used[tool.name], tool.domain in domains, rng.random()))


async def system_prompt(
    llm: RoleLLM, plan: AgentPlan, tools: dict[str, ToolRecord], sampling: SamplingParams
) -> str:
    """The agent's system prompt, written by the generator from its tools."""
    listing = "\n".join(f"- {name}: {tools[name].description}" for name in plan.tools)
    prompt = (
        f"Write the system prompt of an AI assistant for {plan.category.replace('_', ' ')} that can use these "
        f"tools:\n{listing}\nSay who the assistant is, what it can do with the tools, and how it behaves: it "
        "asks for missing information, confirms before changing data, and reports results clearly."
    )
    messages = [Message(role="system", content=PROMPT_SYSTEM), Message(role="user", content=prompt)]
    completion = await llm.achat(chat_request(messages, sampling=sampling))
    return completion.message.text.strip()
