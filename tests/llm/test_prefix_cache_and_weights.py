"""Prefix caching of the MLA latent cache across requests, and weight updates between batches (RL)."""

import asyncio

import torch

from openk2.llm import SamplingParams, chat_request
from openk2.llm.k2_engine import K2Engine
from openk2.llm.prefix_cache import PrefixCache
from openk2.llm.runner import PrefillItem
from tests.llm.checkpoints import write_untrained_checkpoint

GREEDY = SamplingParams(temperature=0, max_tokens=12, return_tokens=True)


def agent_turns(turns: int) -> list[list[dict[str, str]]]:
    """An agent loop's requests: each resends the whole conversation with one more exchange."""
    dialogue = [{"role": "user", "content": "Plan a trip to Paris and check the weather every day."}]
    requests = []
    for turn in range(turns):
        requests.append(list(dialogue))
        dialogue += [
            {"role": "assistant", "content": f"Day {turn}: checking the weather in Paris."},
            {"role": "user", "content": f"Sunny, {18 + turn}C. Continue."},
        ]
    return requests


def test_prefill_after_a_cached_prefix_matches_a_full_prefill(untrained_engine):
    """The runner's two prefill paths (from scratch; after cached latents) agree, within fp32 rounding."""
    runner = untrained_engine.runner
    ids = untrained_engine.prompt_ids(chat_request(agent_turns(3)[-1]))
    full_kv, full_logits = runner.prefill(ids, None, logits_for=5)
    split = len(ids) - 7
    head_kv, _ = runner.prefill(ids[:split], None, logits_for=1)
    kv, logits = runner.prefill(ids[split:], head_kv, logits_for=5)
    assert all(torch.equal(a[:split], b) for a, b in zip(full_kv, head_kv, strict=True))
    for cached, full in zip(kv, full_kv, strict=True):
        assert (cached - full).norm() <= 1e-4 * full.norm()
    assert (logits - full_logits).norm() <= 1e-4 * full_logits.norm()


def test_an_agent_loop_reuses_its_prefix_and_gets_the_same_replies(tmp_path):
    directory = write_untrained_checkpoint(tmp_path)
    cached = K2Engine.from_checkpoint(directory)
    uncached = K2Engine.from_checkpoint(directory, prefix_cache_tokens=0)
    try:
        for messages in agent_turns(5):
            with_cache = cached.chat(messages, sampling=GREEDY)
            without = uncached.chat(messages, sampling=GREEDY)
            assert with_cache.tokens.token_ids == without.tokens.token_ids
        stats = cached.prefix_cache.stats
        assert stats.hit_rate > 0.6  # each turn recomputes only its new messages
        assert cached.scheduler.stats.prefilled_tokens < 0.5 * uncached.scheduler.stats.prefilled_tokens
    finally:
        cached.close()
        uncached.close()


def test_the_prefix_cache_keeps_whole_blocks_and_evicts_the_least_recently_used():
    cache = PrefixCache(capacity_tokens=8, block_size=4)
    first = list(range(10))
    cache.insert(first, [torch.arange(10.0)[:, None]])
    cached, kv = cache.lookup(first)
    assert cached == 8 and torch.equal(kv[0][:, 0], torch.arange(8.0))
    assert cache.lookup(first[:8])[0] == 4  # at least one token is left to compute
    assert cache.lookup([0, 1, 2, 9, 4])[0] == 0  # a differing token breaks the chain
    cache.insert([20, 21, 22, 23], [torch.zeros(4, 1)])
    assert cache.lookup(first)[0] == 4  # the oldest block of `first` was evicted (LRU)


def test_weights_load_between_batches_without_dropping_queued_requests(tmp_path):
    old = write_untrained_checkpoint(tmp_path / "old", seed=0)
    new = write_untrained_checkpoint(tmp_path / "new", seed=1)
    engine = K2Engine.from_checkpoint(old, max_batch_size=2)
    reference = K2Engine.from_checkpoint(new)
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    try:
        before = engine.chat(question, sampling=GREEDY).tokens.token_ids

        async def update_while_busy() -> list[list[int]]:
            queued = [
                asyncio.create_task(engine.achat(chat_request(question, sampling=GREEDY))) for _ in range(5)
            ]
            await asyncio.sleep(0.01)  # requests are running and queued
            await asyncio.to_thread(engine.load_weights, str(new))
            later = await engine.achat(chat_request(question, sampling=GREEDY))
            return [reply.tokens.token_ids for reply in [*await asyncio.gather(*queued), later]]

        replies = asyncio.run(update_while_busy())
        expected_new = reference.chat(question, sampling=GREEDY).tokens.token_ids
        assert before != expected_new  # the two checkpoints do answer differently
        assert len(replies) == 6 and all(reply in (before, expected_new) for reply in replies)
        assert replies[-1] == expected_new
        assert engine.prefix_cache.cached_tokens < 200  # emptied at the update, refilled only since
    finally:
        engine.close()
        reference.close()


def test_prefilling_several_sequences_together_matches_prefilling_each_alone(untrained_engine):
    """Rows of different lengths, some after a cached prefix, in one padded forward (mask + positions)."""
    runner = untrained_engine.runner
    prompts = [untrained_engine.prompt_ids(chat_request(messages)) for messages in agent_turns(4)]
    items = []
    for number, ids in enumerate(prompts):
        cached = (len(ids) - 5) if number % 2 else 0  # rows 1 and 3 continue a cached prefix
        cached_kv = runner.prefill(ids[:cached], None, 1)[0] if cached else None
        items.append(PrefillItem(ids, cached, cached_kv, logits_for=3))
    together = runner._prefill_group(items)
    for item, (kv, logits) in zip(items, together, strict=True):
        alone_kv, alone_logits = runner.prefill(item.token_ids, None, logits_for=3)
        for part, alone in zip(kv, alone_kv, strict=True):
            assert (part - alone).norm() <= 1e-4 * alone.norm()
        assert (logits - alone_logits).norm() <= 1e-4 * alone_logits.norm()
