"""Progress of a synthesis stage through `openk2.progress`, with how many items ended each way as its detail."""

from __future__ import annotations

from openk2.progress import ProgressReport, log_console


class StageProgress(ProgressReport):
    """`total` items (tools, task drafts, episodes), `done` of them finished by an earlier, killed run."""

    def __init__(self, label: str, total: int, unit: str, enabled: bool, done: int = 0) -> None:
        super().__init__(label, total, unit, log_console(quiet=not enabled))
        self.counts: dict[str, int] = {}
        if done:
            self.start_from(done)

    def __enter__(self) -> StageProgress:
        super().__enter__()
        return self

    def finished(self, outcome: str) -> None:
        """One more item ended as `outcome` (`kept`, `rejected`, ...)."""
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        self.advance(1, ", ".join(f"{count} {name}" for name, count in sorted(self.counts.items())))
