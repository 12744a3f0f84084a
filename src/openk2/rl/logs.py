"""The run's append-only records besides the metrics: rollouts, critic judgements, critic training data.

    rollouts.jsonl         one `GroupRecord` per complete group (rank r of a torchrun: rollouts.rank{r}.jsonl)
    critic_data.jsonl      closed-loop preference records, ids `i{iteration}/{group}/{better}>{worse}`
                           (`openk2 sft` reads them as a `preference` source)

Each line is written and fsync'd before the step it feeds, so a SIGKILL leaves at most a torn last line
(dropped on reopening). A run resumed from the checkpoint of iteration m keeps the rollouts of iterations up
to m + 1 (those of m + 1 are trained on again instead of being sampled again: none is lost) and the critic
records up to m (the critic judges iteration m + 1 again).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from openk2.io import atomic_write_text
from openk2.rl.rollouts import GroupRecord
from openk2.sft.preference import PreferenceRecord
from openk2.train.world import World

CRITIC_DATA = "critic_data.jsonl"


def _append(path: Path, lines: list[str]) -> None:
    """Whole lines, flushed and fsync'd: a kill leaves the file as it was or with a torn last line."""
    with path.open("ab") as file:
        file.write("".join(line + "\n" for line in lines).encode("utf-8"))
        file.flush()
        os.fsync(file.fileno())


def _complete_lines(path: Path) -> list[str]:
    """The file's lines up to the last newline (a torn last line is a kill's, and dropped)."""
    if not path.exists():
        return []
    content = path.read_text(encoding="utf-8")
    return content[: content.rfind("\n") + 1].split("\n")[:-1]


class RunLogs:
    def __init__(self, run_dir: Path, world: World, resumed_iteration: int) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        name = f"rollouts.rank{world.rank}.jsonl" if world.is_distributed else "rollouts.jsonl"
        self.rollouts = run_dir / name
        self.critic_data = run_dir / CRITIC_DATA
        self.world = world
        kept, self._reusable = [], {}
        for line in _complete_lines(self.rollouts):
            iteration = json.loads(line)["iteration"]
            if iteration <= resumed_iteration + 1:
                kept.append(line)
            if iteration == resumed_iteration + 1:
                record = GroupRecord.model_validate_json(line)
                self._reusable[record.group_id] = record
        atomic_write_text(self.rollouts, "".join(line + "\n" for line in kept))
        if world.is_main:
            preferences = [
                line
                for line in _complete_lines(self.critic_data)
                if iteration_of(json.loads(line)["id"]) <= resumed_iteration
            ]
            atomic_write_text(self.critic_data, "".join(line + "\n" for line in preferences))

    def reusable(self, iteration: int) -> dict[str, GroupRecord]:
        """Complete groups of `iteration` logged before a restart (only the first resumed iteration)."""
        found = {group: record for group, record in self._reusable.items() if record.iteration == iteration}
        self._reusable = {}
        return found

    def append_group(self, record: GroupRecord) -> None:
        _append(self.rollouts, [record.model_dump_json(exclude_none=True)])

    def append_preferences(self, records: list[PreferenceRecord]) -> None:
        if records:
            _append(self.critic_data, [record.model_dump_json(exclude_none=True) for record in records])

    def preferences_before(self, iteration: int, limit: int) -> list[PreferenceRecord]:
        """The newest `limit` preference records of iterations before `iteration`."""
        records = [PreferenceRecord.model_validate_json(line) for line in _complete_lines(self.critic_data)]
        return [r for r in records if r.id is not None and iteration_of(r.id) < iteration][-limit:]


def preference_id(iteration: int, group_id: str, better: int, worse: int) -> str:
    return f"i{iteration}/{group_id}/{better}>{worse}"


def iteration_of(record_id: str) -> int:
    return int(record_id.split("/", 1)[0].removeprefix("i"))
