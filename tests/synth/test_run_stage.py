"""Stage 3's running: episodes in flight never exceed `concurrency` (and do reach it), and progress is plain
lines when the output is not a terminal. Scripted models (tests/synth/scripted_world.py), not a model."""

from __future__ import annotations

import threading
import time

from tests.gym.scripted import ScriptedLLM
from tests.synth.scripted_world import world
from tests.synth.synth_recipe import play

ROLES = ("generator", "agent", "user", "tool_simulator", "judge")


class CountedAgent(ScriptedLLM):
    """The scripted world whose agent turns take a moment; counts how many are being answered at once."""

    def __init__(self) -> None:
        super().__init__(world())
        self.lock = threading.Lock()
        self.in_flight = self.peak = 0

    def chat_batch(self, requests):
        agent = any(request.messages[0].text.startswith("You are a careful") for request in requests)
        if not agent:
            return super().chat_batch(requests)
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(0.05)
            return super().chat_batch(requests)
        finally:
            with self.lock:
                self.in_flight -= 1


def test_episodes_in_flight_are_bounded_by_the_concurrency(tasks_ready, tmp_path):
    llm = CountedAgent()
    kept, rejects = play(tasks_ready, tmp_path, dict.fromkeys(ROLES, llm), concurrency=3)
    assert len(kept) + len(rejects) == 8
    assert llm.peak == 3  # 8 episodes, 3 at a time: never more, and the bound is used


def test_progress_is_plain_lines_when_not_a_terminal(tasks_ready, tmp_path, capsys):
    play(tasks_ready, tmp_path, dict.fromkeys(ROLES, ScriptedLLM(world())), progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("trajectories: 8/8 episodes (100%) | 8 kept | ")
    assert not any("\r" in line or "\x1b[" in line for line in lines)  # no redrawn bar, no colour codes
