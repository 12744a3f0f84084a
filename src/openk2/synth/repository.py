"""Stage 1 of Fig. 8 (K2 report §3.1.1): the tool repository, real and synthetic.

    real MCP tools (imported) ─┐
    categories ─> domains ─> base tools ─> evolved tools ─> valid schemas, unique names ─> near-duplicates
                                                                                              removed
Candidates are generated concurrently but accepted in tree order, so names and the outcome of the
near-duplicate filter do not depend on which reply came first. Near-duplicates are found by cosine
similarity of sentence embeddings (all-MiniLM-L6-v2) rather than MinHash: a generator that paraphrases
a tool ("switch on the lights" / "turn lights on") shares few shingles with it, and the same embeddings
draw the map.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from openk2.llm import SamplingParams
from openk2.synth.categories import category as category_named
from openk2.synth.embeddings import near_duplicates, tool_text
from openk2.synth.evolution import Candidate, generate_tool, propose_domains
from openk2.synth.models import RoleLLM
from openk2.synth.progress import StageProgress
from openk2.synth.recipe import SynthRecipe
from openk2.synth.tools import ToolRecord


@dataclass
class Repository:
    tools: list[ToolRecord] = field(default_factory=list)  # real first, then synthetic in tree order
    rejects: list[dict[str, Any]] = field(default_factory=list)
    domains: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # category -> domains
    notes: list[str] = field(default_factory=list)


def seed_of(seed: int, *parts: str) -> int:
    return int(hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).hexdigest()[:12], 16)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


async def synthesise_tools(
    recipe: SynthRecipe, generator: RoleLLM, real_tools: list[ToolRecord], embed: Any, progress: bool
) -> Repository:
    """Real tools plus the evolved synthetic ones; `embed(texts) -> unit vectors` for the dedup."""
    section = recipe.tools
    repository = Repository(tools=list(real_tools))
    gate = asyncio.Semaphore(recipe.concurrency)

    def sampling(*parts: str) -> SamplingParams:
        return SamplingParams(
            temperature=recipe.run.temperature,
            max_tokens=section.tool_tokens,
            seed=seed_of(recipe.seed, *parts),
        )

    async def domains_of(name: str, bar: StageProgress) -> list[tuple[str, str]]:
        category = category_named(name)
        if not section.model_domains:
            return [(domain, "seed") for domain in category.seed_domains[: section.domains_per_category]]
        async with gate:
            found, note = await propose_domains(
                generator, category, section.domains_per_category, sampling("domains", name)
            )
        if note:
            repository.notes.append(f"{name}: {note}; seed domains filled in")
        bar.finished("seed domains added" if note else "proposed")
        return found

    with StageProgress("domains", len(section.categories), "categories", progress) as bar:
        per_category = await asyncio.gather(*(domains_of(name, bar) for name in section.categories))
    round_candidates = []
    for name, domains in zip(section.categories, per_category, strict=True):
        repository.domains[name] = [{"domain": domain, "source": source} for domain, source in domains]
        round_candidates += [
            Candidate(f"{name}/{slug(domain)}", name, domain, "base") for domain, _ in domains
        ]

    taken = {tool.name for tool in repository.tools}
    synthetic: list[dict[str, Any]] = []
    for round_index in range(section.evolution_rounds + 1):
        siblings = {
            c.domain: [t["name"] for t in synthetic if t["domain"] == c.domain] for c in round_candidates
        }
        label = "tools" if round_index == 0 else f"tools, evolution round {round_index}"
        with StageProgress(label, len(round_candidates), "tools", progress) as bar:

            async def one(
                candidate: Candidate, known: list[str], bar: StageProgress = bar
            ) -> tuple[dict[str, Any] | None, str | None, str]:
                async with gate:
                    category = category_named(candidate.category)
                    outcome = await generate_tool(
                        generator, candidate, category, known, sampling("tool", candidate.id)
                    )
                # valid schemas so far; names are claimed in tree order once the round is in
                bar.finished("valid" if outcome[0] is not None else "invalid")
                return outcome

            results = await asyncio.gather(*(one(c, siblings[c.domain]) for c in round_candidates))
        accepted_now = []
        for candidate, (tool, reason, reply) in zip(round_candidates, results, strict=True):
            if tool is not None:
                reason = _claim_name(tool, candidate, taken)
            if tool is None or reason is not None:
                repository.rejects.append(_reject(candidate, reason or "", reply))
                continue
            synthetic.append(tool)
            accepted_now.append((candidate, tool))
        round_candidates = [c.child(tool, step) for c, tool in accepted_now for step in section.evolution]
    _remove_near_duplicates(repository, synthetic, embed, section.near_duplicate_threshold)
    return repository


def _claim_name(tool: dict[str, Any], candidate: Candidate, taken: set[str]) -> str | None:
    """Names are unique: a taken name is qualified by its domain; a name taken even so is a reject."""
    name = tool["name"]
    if name in taken:
        name = f"{slug(candidate.domain)}_{name}"[:64]
    if name in taken:
        return f"name: {tool['name']!r} is taken (also as {name!r})"
    tool["name"] = name
    taken.add(name)
    return None


def _reject(candidate: Candidate, reason: str, reply: str) -> dict[str, Any]:
    return {
        "stage": "tools",
        "id": candidate.id,
        "category": candidate.category,
        "domain": candidate.domain,
        "step": candidate.step,
        "reason": reason,
        "reply": reply,
    }


def _remove_near_duplicates(
    repository: Repository, synthetic: list[dict[str, Any]], embed: Any, threshold: float
) -> None:
    real = repository.tools
    texts = [tool_text(t.name, t.description, t.parameters) for t in real]
    texts += [tool_text(t["name"], t["description"], t["parameters"]) for t in synthetic]
    vectors = embed(texts)
    dropped = near_duplicates(vectors, threshold, protected=len(real))
    names = [t.name for t in real] + [t["name"] for t in synthetic]
    for offset, tool in enumerate(synthetic):
        index = len(real) + offset
        if index in dropped:
            other, cosine = dropped[index]
            repository.rejects.append(
                {
                    "stage": "tools",
                    "id": tool["provenance"]["candidate"],
                    "category": tool["category"],
                    "domain": tool["domain"],
                    "step": tool["provenance"]["step"],
                    "reason": f"near-duplicate of {names[other]!r} (cosine {cosine:.3f} >= {threshold})",
                    "tool": tool,
                }
            )
        else:
            repository.tools.append(ToolRecord.model_validate(tool))
