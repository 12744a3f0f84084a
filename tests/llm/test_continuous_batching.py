"""Continuous batching: the same tokens as one-at-a-time decoding, requests joining and leaving mid-flight.

The reference is the model's own `generate` (openk2.model.generate: one prompt, a fresh latent cache,
no scheduler), a different code path from the engine's rows. Progress is counted in decoding steps,
never in seconds.
"""

import asyncio

import torch

from openk2.chat.tokens import IM_END
from openk2.llm import SamplingParams, chat_request
from tests.llm.checkpoints import WEATHER_TOOL, scripted_tokenizer

PROMPTS = [
    "Hi",
    "What is the weather in Paris? Use the tool.",
    "Weather?",
    "You are Kimi, an AI assistant created by Moonshot AI. What is the weather in Rome today and tomorrow?",
    "Use the tool.",
    "Sunny, 18C.",
]
BUDGETS = [3, 17, 9, 30, 1, 12]
IM_END_ID = scripted_tokenizer().token_to_id(IM_END)


def greedy(text: str, budget: int, endless: bool = False):
    """Greedy decoding of one user turn; `endless` forbids the end-of-turn token (the reply runs its budget)."""
    bias = ((IM_END_ID, -100.0),) if endless else ()
    return chat_request(
        [{"role": "user", "content": text}],
        sampling=SamplingParams(temperature=0, max_tokens=budget, return_tokens=True, logit_bias=bias),
    )


def one_at_a_time(engine, request) -> list[int]:
    """The engine's prompt decoded alone by `K2ForCausalLM.generate`, cut after the end-of-turn token."""
    prompt = engine.prompt_ids(request)
    output = engine.model.generate(torch.tensor([prompt]), request.sampling.max_tokens, temperature=0.0)
    generated = output[0, len(prompt) :].tolist()
    ends = [position for position, token in enumerate(generated) if token in engine.end_ids]
    return generated[: ends[0] + 1] if ends else generated


def test_continuous_batching_equals_one_at_a_time_greedy_decoding(untrained_engine):
    requests = [greedy(text, budget) for text, budget in zip(PROMPTS, BUDGETS, strict=True)]
    batched = untrained_engine.chat_batch(requests)
    assert [reply.tokens.token_ids for reply in batched] == [
        one_at_a_time(untrained_engine, r) for r in requests
    ]
    assert (
        len({tuple(reply.tokens.token_ids) for reply in batched}) > 3
    )  # the prompts lead to different replies
    assert untrained_engine.scheduler.stats.batch_sizes  # rows did share decoding steps
    assert max(untrained_engine.scheduler.stats.batch_sizes) > 1


def test_requests_joining_a_running_batch_get_the_same_tokens(untrained_engine):
    """Requests arrive while others decode: each joins at a step boundary, rows of other lengths around it."""

    async def staggered() -> list[list[int]]:
        async def one(position: int) -> list[int]:
            await asyncio.sleep(0.002 * position)
            reply = await untrained_engine.achat(greedy(PROMPTS[position], BUDGETS[position] + 20))
            return reply.tokens.token_ids

        return await asyncio.gather(*(one(position) for position in range(len(PROMPTS))))

    replies = asyncio.run(staggered())
    assert replies == [
        one_at_a_time(untrained_engine, greedy(t, b + 20)) for t, b in zip(PROMPTS, BUDGETS, strict=True)
    ]


def test_a_short_request_behind_a_long_one_finishes_in_about_its_own_steps(untrained_engine):
    scheduler = untrained_engine.scheduler

    async def race() -> tuple[int, int, int]:
        long_stream = untrained_engine.astream(greedy(PROMPTS[3], 400, endless=True))
        await anext(long_stream)  # the long request is decoding
        short_started = scheduler.stats.steps
        short = await untrained_engine.achat(greedy(PROMPTS[0], 6))
        short_steps = scheduler.stats.steps - short_started
        long_tokens = 0
        async for delta in long_stream:
            long_tokens += len(delta.token_ids)
        return short_steps, short.usage.completion_tokens, long_tokens

    short_steps, short_tokens, long_tokens = asyncio.run(race())
    assert short_tokens == 6 and long_tokens == 400 - 1  # the first token came with the first delta
    # joins at the next step boundary and leaves when done: its own tokens plus a step or two
    assert short_steps <= short_tokens + 2


def test_leaving_the_stream_cancels_the_generation_within_a_step(untrained_engine):
    scheduler = untrained_engine.scheduler

    async def leave_early() -> int:
        stream = untrained_engine.astream(greedy(PROMPTS[1], 500, endless=True))
        async for _ in stream:
            if scheduler.stats.generated_tokens > 0 and scheduler.running:
                break
        await stream.aclose()  # what a disconnected client's request does
        left_at = scheduler.stats.steps
        while scheduler.running:
            await asyncio.sleep(0.001)
        return scheduler.stats.steps - left_at

    cancelled_before = scheduler.stats.cancelled
    assert asyncio.run(leave_early()) <= 2
    assert scheduler.stats.cancelled == cancelled_before + 1


def test_a_seeded_sample_does_not_depend_on_its_batch_neighbours(untrained_engine):
    seeded = chat_request(
        [{"role": "user", "content": PROMPTS[1]}],
        sampling=SamplingParams(temperature=1.0, max_tokens=20, seed=11),
    )
    alone = untrained_engine.chat_batch([seeded])[0].message.content
    neighbours = [greedy(text, 15) for text in PROMPTS]
    together = untrained_engine.chat_batch([*neighbours[:3], seeded, *neighbours[3:]])[3].message.content
    assert together == alone


def test_every_request_keeps_its_own_stop_strings_and_budget(scripted_engine):
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    stopped, budgeted, named = scripted_engine.chat_batch(
        [
            chat_request(question, sampling=SamplingParams(temperature=0, stop=(",",))),
            chat_request(question, sampling=SamplingParams(temperature=0, max_tokens=2)),
            chat_request(
                question,
                [WEATHER_TOOL],
                SamplingParams(temperature=0),
                {"type": "function", "function": {"name": "get_weather"}},
            ),
        ]
    )
    assert (stopped.message.content, stopped.finish_reason) == ("Sunny", "stop")
    assert (budgeted.finish_reason, budgeted.usage.completion_tokens) == ("length", 2)
    assert named.finish_reason == "tool_calls"


def test_static_batching_runs_each_batch_to_its_longest_request(tmp_path):
    """The baseline: a batch forms, every row is computed until the longest ends, then the next batch forms."""
    import threading

    from openk2.llm.k2_engine import K2Engine
    from tests.llm.checkpoints import write_untrained_checkpoint

    engine = K2Engine.from_checkpoint(write_untrained_checkpoint(tmp_path), policy="static", max_batch_size=2)
    release = threading.Event()
    # the worker waits inside an exclusive task until all four requests have queued
    holder = threading.Thread(target=engine.scheduler.run_between_batches, args=(release.wait,))
    try:
        holder.start()

        async def run() -> list[int]:
            budgets = [8, 3, 8, 3]
            pending = [
                asyncio.create_task(engine.achat(greedy(text, budget, endless=True)))
                for text, budget in zip(PROMPTS[:4], budgets, strict=True)
            ]
            while engine.scheduler.waiting < 4:
                await asyncio.sleep(0.001)
            release.set()
            return [reply.usage.completion_tokens for reply in await asyncio.gather(*pending)]

        assert asyncio.run(run()) == [8, 3, 8, 3]
        # two batches of two rows, each 7 decoding steps long (the first token comes from the prefill)
        assert engine.scheduler.stats.batch_sizes == {2: 14}
    finally:
        release.set()
        holder.join()
        engine.close()
