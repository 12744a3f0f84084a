"""A simulated user (K2 report §3.1.1, user simulation; tau2-bench style) behind the LLM interface.

The user model gets a persona, a goal, what it knows and does not know, and how to behave; it sees the
dialogue from the user's side (the agent's words as the other party, tool traffic hidden) and ends the
conversation by writing a stop token.
"""

from __future__ import annotations

from collections.abc import Sequence

from openk2.chat import Message
from openk2.gym.records import UserScenario
from openk2.llm import LLM, SamplingParams, chat_request

STOP_TOKENS = ("###STOP###", "###TRANSFER###", "###OUT-OF-SCOPE###")
USER_SAMPLING = SamplingParams(temperature=0.0, max_tokens=200)


def user_system_prompt(scenario: UserScenario) -> str:
    parts = [
        "You are a customer talking to a customer-service agent. Play this user; never act as the agent.",
        f"Your goal: {scenario.goal}",
    ]
    if scenario.persona:
        parts.append(f"Your persona: {scenario.persona}")
    if scenario.known_info:
        parts.append(f"What you know (say it only when asked): {scenario.known_info}")
    if scenario.unknown_info:
        parts.append(f"What you do not know: {scenario.unknown_info}")
    if scenario.instructions:
        parts.append(f"How to behave: {scenario.instructions}")
    parts.append(
        "Write one short message at a time. When your goal is met or cannot be met, end with ###STOP###; "
        "if you are transferred to a human, write ###TRANSFER###."
    )
    return "\n\n".join(parts)


class UserSimulator:
    def __init__(self, llm: LLM, scenario: UserScenario, sampling: SamplingParams = USER_SAMPLING) -> None:
        self.llm = llm
        self.system = user_system_prompt(scenario)
        self.sampling = sampling

    async def reply(self, dialogue: Sequence[Message]) -> tuple[Message, bool]:
        """The user's next message and whether it ends the conversation."""
        flipped = [Message(role="system", content=self.system)]
        for message in dialogue:
            if message.role == "assistant" and message.text:
                flipped.append(Message(role="user", content=message.text))
            elif message.role == "user":
                flipped.append(Message(role="assistant", content=message.text))
        if flipped[-1].role != "user":  # the user opens the conversation
            flipped.append(Message(role="user", content="Hi! How can I help you today?"))
        completion = await self.llm.achat(chat_request(flipped, sampling=self.sampling))
        text = completion.message.text.strip()
        return Message(role="user", content=text), any(token in text for token in STOP_TOKENS)
