"""`openk2 eval compare A B ...`: result files side by side, differences against the first column."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from openk2.eval.report import INTERVALS, column_labels, render_html, table_rows
from openk2.eval.results import EvalResults, read_results
from openk2.io import atomic_write_text


def run_name(path: Path) -> str:
    """The run directory's name, for a results.json or the directory itself."""
    return path.name if path.is_dir() else path.resolve().parent.name


def comparison_table(
    runs: Sequence[EvalResults], names: Sequence[str] | None = None, all_metrics: bool = False
) -> Table:
    """Table 3's layout in the terminal; from the second column on, each cell shows (± vs the first)."""
    table = Table(title="OpenK2 evaluation (K2 report Table 3 layout, scores in %)", show_lines=False)
    table.add_column("Benchmark")
    table.add_column("Metric", style="dim")
    for label in column_labels(runs, names):
        table.add_column(label, justify="right")
    area = None
    for row in table_rows(runs, all_metrics):
        if row.area != area:
            area = row.area
            table.add_section()
            table.add_row(f"[bold]{area}[/bold]", "", *[""] * len(runs))
        baseline = row.cells[0]
        cells = [
            "—" if cell is None else cell.text(baseline if index > 0 else None)
            for index, cell in enumerate(row.cells)
        ]
        table.add_row(row.benchmark, row.metric, *cells)
    return table


def compare(
    paths: Sequence[Path], html: Path | None = None, all_metrics: bool = False, console: Console | None = None
) -> None:
    runs = [read_results(path) for path in paths]
    names = [run_name(path) for path in paths]
    console = console or Console()
    console.print(comparison_table(runs, names, all_metrics))
    console.print(INTERVALS, style="dim", highlight=False)
    if html is not None:
        atomic_write_text(html, render_html(runs, names, all_metrics))
        console.print(f"{html}: the same table as a page")
