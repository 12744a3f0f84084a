"""The `tasks` data kind: procedural SFT sets from gym task files, to warm a small model up before RL.

A gym task with a single reference answer keeps it in `task.verification["answer"]`; the task's messages
followed by that answer as the assistant's reply are one SFT conversation. The gym's generators write such
files (one `Task` per line), so SFT reads every environment that has reference answers the same way and
never generates tasks itself.
"""

from __future__ import annotations

import json

from openk2.chat import Message
from openk2.gym import Task

ANSWER_KEY = "answer"


def reference_answer(task: Task) -> str | None:
    """The task's single reference answer as text (JSON for a non-string value); None when it has none."""
    if ANSWER_KEY not in task.verification:
        return None
    answer = task.verification[ANSWER_KEY]
    return answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)


def answer_conversation(task: Task, answer: str) -> list[Message]:
    """The task's prompt, then its answer as the assistant's reply."""
    return [*task.messages, Message(role="assistant", content=answer)]
