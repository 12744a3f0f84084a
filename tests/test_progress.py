"""openk2.progress: plain periodic lines when the output is not a terminal, a bar when it is, and log lines
that are never wrapped mid-record in a log file."""

from __future__ import annotations

import io
import subprocess
import sys

from rich.console import Console

from openk2.progress import ProgressReport, log_console


def not_a_terminal() -> tuple[Console, io.StringIO]:
    output = io.StringIO()
    console = Console(file=output, width=80)
    console.soft_wrap = True  # what log_console sets when the output is not a terminal
    return console, output


def test_off_a_terminal_the_first_update_the_periodic_ones_and_the_last_are_plain_lines() -> None:
    console, output = not_a_terminal()
    with ProgressReport("rephrasing", 5, "documents", console, interval_s=3600) as report:
        for done in range(1, 6):
            report.update(done, f"{done} accepted")
    assert output.getvalue().splitlines() == [
        "rephrasing: 1/5 documents (20%) | 1 accepted | 0s elapsed, ~0s left",
        "rephrasing: 5/5 documents (100%) | 5 accepted | 0s elapsed",
    ]
    console, output = not_a_terminal()
    with ProgressReport("pre-training", 3, "steps", console, interval_s=0) as report:
        report.start_from(1)  # a resumed run
        report.update(2)
        report.update(3)
    assert [line.split(" |")[0] for line in output.getvalue().splitlines()] == [
        "pre-training: 2/3 steps (67%)",
        "pre-training: 3/3 steps (100%)",
    ]  # every update once the interval has passed, the last not repeated


def test_on_a_terminal_a_bar_is_drawn_and_no_plain_line_is_printed() -> None:
    output = io.StringIO()
    console = Console(file=output, force_terminal=True, width=80)
    with ProgressReport("rephrasing", 2, "documents", console, interval_s=0) as report:
        report.update(1, "1 accepted")
        report.update(2, "2 accepted")
    assert "rephrasing: " not in output.getvalue() and "2/2" in output.getvalue()


def test_a_long_log_record_stays_one_line_when_the_output_is_not_a_terminal() -> None:
    record = "step 7: " + " | ".join(f"field{index} {index * 1.5:.3f}" for index in range(20))
    code = (
        "from openk2.progress import log_console\n"
        f"log_console().print({record!r}, highlight=False, markup=False)\n"
        f"log_console(stderr=False).print({record!r})\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"COLUMNS": "80"}, check=True
    )
    assert len(record) > 160
    assert completed.stderr == record + "\n" and completed.stdout == record + "\n"
    assert not log_console(quiet=True).is_terminal  # pytest captures the output: not a terminal here either
