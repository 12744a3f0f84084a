"""An LLM judge behind the LLM interface: a verdict from a fixed set of labels, or an error.

Every model call goes through `openk2.llm`, so the judge is the embedded teacher, an OpenK2 checkpoint
or an endpoint alike. A reply without any of the labels is asked again (another seed); when no attempt
gives one, the judge raises instead of guessing — the reward component then carries the error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from openk2.chat import Message
from openk2.llm import LLM, SamplingParams, chat_request

JUDGE_SAMPLING = SamplingParams(temperature=0.0, max_tokens=64)


class JudgeError(RuntimeError):
    """The judge gave no usable verdict."""


@dataclass(frozen=True)
class Judgement:
    label: str
    reply: str


class Judge:
    def __init__(self, llm: LLM, sampling: SamplingParams = JUDGE_SAMPLING, attempts: int = 2) -> None:
        self.llm = llm
        self.sampling = sampling
        self.attempts = attempts

    async def verdict(self, system: str, prompt: str, labels: tuple[str, ...]) -> Judgement:
        """The first of `labels` (whole words, any case) in the judge's reply."""
        pattern = re.compile(rf"\b({'|'.join(re.escape(label) for label in labels)})\b", re.IGNORECASE)
        messages = [Message(role="system", content=system), Message(role="user", content=prompt)]
        replies = []
        for attempt in range(self.attempts):
            sampling = self.sampling
            if attempt:  # greedy decoding would repeat itself: sample the retry
                sampling = sampling.model_copy(update={"temperature": 0.7, "seed": attempt})
            completion = await self.llm.achat(chat_request(messages, sampling=sampling))
            found = pattern.search(completion.message.text)
            if found:
                return Judgement(found.group(1).upper(), completion.message.text)
            replies.append(completion.message.text)
        raise JudgeError(f"{self.llm.model_name} answered none of {labels}: {replies[-1][:200]!r}")
