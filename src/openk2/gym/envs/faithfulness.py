"""`faithfulness`: a sentence-level judge in the style of FACTS Grounding (K2 report §3.2.1, Faithfulness).

The agent answers a question about a context document. Each sentence of the reply goes to an LLM judge
with the context: SUPPORTED, UNSUPPORTED (a factual claim the context does not back) or NO_CLAIM. The
reward is 1 when no sentence is unsupported and at least one claim is made.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from openk2.chat import Message
from openk2.gym.environment import Environment, EnvSettings, Source, sample_split
from openk2.gym.envs.answer_env import last_reply
from openk2.gym.envs.data_files import gym_data
from openk2.gym.judge import Judge, JudgeError
from openk2.gym.records import Reward, RewardComponent, Split, Task
from openk2.gym.verifiers import unparsed
from openk2.llm import LLM, ModelUnavailable

SENTENCE = re.compile(r"(?<=[.!?])\s+")
JUDGE_SYSTEM = (
    "You check one sentence of an answer against a context document. Reply SUPPORTED if the context states "
    "what the sentence claims, UNSUPPORTED if the sentence makes a factual claim the context does not back, "
    "or NO_CLAIM if the sentence makes no factual claim. Reply with one of the three words."
)
LABELS = ("SUPPORTED", "UNSUPPORTED", "NO_CLAIM")


def reply_sentences(reply: str) -> list[str]:
    return [sentence.strip() for sentence in SENTENCE.split(reply.strip()) if sentence.strip()]


class FaithfulnessSettings(EnvSettings):
    judge: LLM | None = None  # labels each sentence; required to score


class FaithfulnessEnv(Environment):
    name = "faithfulness"
    kind = "faithfulness"
    summary = "answer from a context document; every sentence judged supported or not"
    sources = (Source("documents", "OpenK2 context documents (16, written for the gym)", "Apache-2.0"),)
    Settings = FaithfulnessSettings
    settings: FaithfulnessSettings

    def tasks(self, split: Split, n: int | None = None, seed: int = 0) -> list[Task]:
        documents = gym_data("faithfulness_documents.jsonl", ("id", "context", "question"))
        return [
            Task(
                id=f"faithfulness/{row['id']}",
                env=self.name,
                kind="faithfulness",
                split=split,
                messages=[
                    Message(
                        role="system",
                        content="Answer using only the context document. Do not add outside facts.",
                    ),
                    Message(
                        role="user", content=f"Context:\n{row['context']}\n\nQuestion: {row['question']}"
                    ),
                ],
                verification={"context": row["context"]},
                metadata={"source": "documents"},
            )
            for row in sample_split(documents, lambda row: row["id"], split, n, seed)
        ]

    async def score(self, task: Task, messages: Sequence[Message]) -> Reward:
        sentences = reply_sentences(last_reply(messages) or "")
        if not sentences:
            return unparsed("faithful", "no reply")
        if self.settings.judge is None:
            return Reward.combine(
                [
                    RewardComponent(
                        name="faithful", error="faithfulness needs a judge: make('faithfulness', judge=llm)"
                    )
                ]
            )
        judge = Judge(self.settings.judge)
        labels = []
        try:
            for sentence in sentences:
                prompt = f"Context:\n{task.verification['context']}\n\nSentence: {sentence}"
                labels.append((await judge.verdict(JUDGE_SYSTEM, prompt, LABELS)).label)
        except (JudgeError, ModelUnavailable) as error:
            return Reward.combine([RewardComponent(name="faithful", error=str(error))])
        unsupported = [s for s, label in zip(sentences, labels, strict=True) if label == "UNSUPPORTED"]
        claims = sum(label == "SUPPORTED" for label in labels)
        faithful = not unsupported and claims > 0
        details = {"sentences": dict(zip(sentences, labels, strict=True)), "unsupported": unsupported}
        return Reward.combine(
            [RewardComponent(name="faithful", score=float(faithful), passed=faithful, details=details)]
        )
