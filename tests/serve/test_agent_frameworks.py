"""Real agent frameworks against `openk2 serve`: the OpenAI Agents SDK, LangChain and pydantic-ai.

Each sends what it sends to OpenAI (its own fields, structured-output schemas, tool definitions);
the random-weight model behind the server can only satisfy their parsers through the server's
grammar-constrained decoding. Nothing is mocked: real HTTP, the frameworks' own clients.
"""

import asyncio
from typing import Annotated, Literal

from pydantic import BaseModel, Field

QUESTION = "What is the weather in Paris?"


class Weather(BaseModel):
    city: Annotated[str, Field(max_length=8)]
    celsius: Annotated[int, Field(ge=-40, le=50)]
    sky: Literal["sunny", "cloudy", "rainy"]


def test_openai_agents_sdk_output_type(random_model):
    from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled
    from openai import AsyncOpenAI

    set_tracing_disabled(True)  # no trace export to OpenAI from a test
    client = AsyncOpenAI(base_url=random_model.server.base_url, api_key="EMPTY")
    model = OpenAIChatCompletionsModel(model=random_model.engine.model_name, openai_client=client)
    agent = Agent(name="forecaster", instructions="Report the weather.", model=model, output_type=Weather)
    result = asyncio.run(Runner.run(agent, QUESTION))
    assert isinstance(result.final_output, Weather)


def test_langchain_structured_output_and_single_tool_calls(random_model):
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        base_url=random_model.server.base_url,
        api_key="EMPTY",
        model=random_model.engine.model_name,
        temperature=1.0,
    )
    assert isinstance(chat.with_structured_output(Weather).invoke(QUESTION), Weather)

    @tool
    def get_weather(city: Annotated[str, Field(max_length=8)]) -> str:
        """The current weather of a city."""
        return f"sunny in {city}"

    @tool
    def get_time(zone: Literal["UTC", "CET"]) -> str:
        """The current time in a time zone."""
        return "12:00"

    bound = chat.bind_tools([get_weather, get_time], tool_choice="any", parallel_tool_calls=False)
    for _ in range(3):
        reply = bound.invoke(QUESTION)
        assert len(reply.tool_calls) == 1
        [call] = reply.tool_calls
        assert call["name"] in {"get_weather", "get_time"}
        (get_weather if call["name"] == "get_weather" else get_time).invoke(
            call["args"]
        )  # arguments validate


def test_pydantic_ai_native_output(random_model):
    from pydantic_ai import Agent, NativeOutput
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider = OpenAIProvider(base_url=random_model.server.base_url, api_key="EMPTY")
    agent = Agent(
        OpenAIChatModel(random_model.engine.model_name, provider=provider), output_type=NativeOutput(Weather)
    )
    assert isinstance(agent.run_sync(QUESTION).output, Weather)


def test_pydantic_ai_native_output_streamed(random_model):
    from pydantic_ai import Agent, NativeOutput
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider = OpenAIProvider(base_url=random_model.server.base_url, api_key="EMPTY")
    agent = Agent(
        OpenAIChatModel(random_model.engine.model_name, provider=provider), output_type=NativeOutput(Weather)
    )

    async def streamed() -> Weather:
        async with agent.run_stream(QUESTION) as run:
            return await run.get_output()

    assert isinstance(asyncio.run(streamed()), Weather)
