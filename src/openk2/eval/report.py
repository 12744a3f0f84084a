"""Results side by side in the layout of K2's Table 3: suites as rows grouped by area, models as columns.

`table_rows` lays out the cells once; `render_html` writes them as a standalone page (results.html,
`openk2 eval compare --html`) and `openk2 eval compare` prints them as a terminal table.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from openk2.eval.metrics import BOOTSTRAP_RESAMPLES, Score
from openk2.eval.results import EvalResults, SuiteResult
from openk2.eval.suites import AREAS, SUITES

INTERVALS = (
    "Brackets: 95% confidence intervals. Wilson score interval for a proportion of items with one sample "
    f"each; percentile bootstrap over tasks ({BOOTSTRAP_RESAMPLES} resamples) for Avg@k, pass@k, pass^k "
    "and instruction-level accuracy."
)


@dataclass
class Cell:
    value: float | None  # in [0, 1]
    low: float | None = None
    high: float | None = None
    n: int = 0
    errors: int = 0
    unsupported: str | None = None

    def text(self, baseline: Cell | None = None) -> str:
        """`42.1 (+3.2)` (the difference to a baseline column), the interval `[35.0, 49.3]` on a second line;
        or why there is no number."""
        if self.unsupported is not None:
            return "n/a"
        if self.value is None:
            return "—"
        text = f"{100 * self.value:.1f}"
        if baseline is not None and baseline.value is not None:
            text += f" ({100 * (self.value - baseline.value):+.1f})"
        if self.low is not None and self.high is not None:
            text += f"\n[{100 * self.low:.1f}, {100 * self.high:.1f}]"
        return text


@dataclass
class Row:
    area: str
    benchmark: str
    metric: str
    cells: list[Cell | None]  # None: the model was not run on this suite
    headline: bool = True  # False: a further metric of the suite above (`all_metrics`)

    @property
    def best(self) -> int | None:
        """The column with the single highest value, when there are several to compare."""
        values = [
            (cell.value, index) for index, cell in enumerate(self.cells) if cell and cell.value is not None
        ]
        if len(values) < 2:
            return None
        top = max(values)
        return top[1] if sum(value == top[0] for value, _ in values) == 1 else None


def _cell(result: SuiteResult, metric: str | None) -> Cell:
    """The cell of `metric` (None: the headline) of one suite's result."""
    score: Score | None = (
        result.headline if metric is None else next((s for s in result.scores if s.metric == metric), None)
    )
    interval = score.interval if score else None
    return Cell(
        value=score.value if score else None,
        low=interval.low if interval else None,
        high=interval.high if interval else None,
        n=score.n if score else 0,
        errors=result.errors,
        unsupported=result.unsupported,
    )


def table_rows(runs: Sequence[EvalResults], all_metrics: bool = False) -> list[Row]:
    """One row per suite any run measured, in Table 3's area order; with `all_metrics`, one more row per
    further metric (pass@k, loose accuracy, the answer format, ...) under its suite's headline."""
    by_run = [{suite.suite: suite for suite in run.suites} for run in runs]
    rows = []
    for name, suite in SUITES.items():
        results = [suites.get(name) for suites in by_run]
        present = [result for result in results if result is not None]
        if not present:
            continue
        labels = {result.metric for result in present}
        rows.append(
            Row(
                area=AREAS[suite.area],
                benchmark=present[0].benchmark,
                metric=labels.pop() if len(labels) == 1 else suite.metric.format(samples="k"),
                cells=[None if result is None else _cell(result, None) for result in results],
            )
        )
        if all_metrics:
            further = dict.fromkeys(score.metric for result in present for score in result.scores[1:])
            for metric in further:
                cells = [None if result is None else _cell(result, metric) for result in results]
                rows.append(Row(AREAS[suite.area], "", metric, cells, headline=False))
    return rows


def column_labels(runs: Sequence[EvalResults], names: Sequence[str] | None = None) -> list[str]:
    """Each run's model name; `names` (e.g. the run directories) tell apart runs of the same model."""
    labels = [run.label for run in runs]
    if names is not None and len(set(labels)) < len(labels):
        labels = [f"{label} ({name})" for label, name in zip(labels, names, strict=True)]
    return labels


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #1d1d1f; }
h1 { font-size: 1.25rem; margin-bottom: 0.25rem; }
p.sub { color: #555; margin-top: 0; font-size: 0.9rem; }
p.note { color: #555; font-size: 0.8rem; max-width: 48rem; }
table.t3 { border-collapse: collapse; margin: 1rem 0; font-size: 0.92rem; }
table.t3 th, table.t3 td { padding: 0.35rem 0.8rem; border-bottom: 1px solid #e4e4e7; vertical-align: top; }
table.t3 thead th { border-bottom: 2px solid #1d1d1f; text-align: center; }
table.t3 thead th.left, table.t3 td.left { text-align: left; }
table.t3 td.num { text-align: center; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.t3 tr.area td { background: #f4f4f5; font-weight: 600; font-style: italic; }
td .ci { display: block; color: #71717a; font-size: 0.75rem; }
td .warn { display: block; color: #b45309; font-size: 0.75rem; }
th .who { display: block; font-weight: normal; color: #71717a; font-size: 0.75rem; }
td.metric { color: #52525b; white-space: nowrap; }
table.t3 tr.further td { font-size: 0.82rem; color: #52525b; border-bottom-style: dotted; }
table.t3 tr.further td.metric { padding-left: 1.6rem; }
section.details { font-size: 0.85rem; color: #3f3f46; max-width: 70rem; }
section.details h2 { font-size: 1rem; margin-top: 1.5rem; }
section.details code { background: #f4f4f5; padding: 0 0.2rem; }
section.details ul { padding-left: 1.2rem; }
"""


def _html_cell(cell: Cell | None, best: bool) -> str:
    if cell is None:
        return '<td class="num">—</td>'
    if cell.unsupported is not None:
        return f'<td class="num" title="{html.escape(cell.unsupported)}">n/a<span class="warn">not measurable</span></td>'
    if cell.value is None:
        return '<td class="num">—</td>'
    value = f"{100 * cell.value:.1f}"
    value = f"<b>{value}</b>" if best else value
    interval = ""
    if cell.low is not None and cell.high is not None:
        interval = f"[{100 * cell.low:.1f}, {100 * cell.high:.1f}] · n={cell.n}"
    warning = f'<span class="warn">{cell.errors} not scored</span>' if cell.errors else ""
    return f'<td class="num">{value}<span class="ci">{interval}</span>{warning}</td>'


def render_html(
    runs: Sequence[EvalResults], names: Sequence[str] | None = None, all_metrics: bool = False
) -> str:
    """A standalone page: the table, then per model its settings, every metric and the notes."""
    labels = column_labels(runs, names)
    head = "".join(
        f'<th>{html.escape(label)}<span class="who">{html.escape(run.model.backend)}</span></th>'
        for label, run in zip(labels, runs, strict=True)
    )
    body = []
    area = None
    for row in table_rows(runs, all_metrics):
        if row.area != area:
            area = row.area
            body.append(
                f'<tr class="area"><td class="left" colspan="{2 + len(runs)}">{html.escape(area)}</td></tr>'
            )
        best = row.best
        cells = "".join(_html_cell(cell, index == best) for index, cell in enumerate(row.cells))
        kind = "" if row.headline else ' class="further"'
        body.append(
            f'<tr{kind}><td class="left">{html.escape(row.benchmark)}</td>'
            f'<td class="left metric">{html.escape(row.metric)}</td>{cells}</tr>'
        )
    details = "".join(_html_details(label, run) for label, run in zip(labels, runs, strict=True))
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>OpenK2 evaluation</title><style>{STYLE}</style></head><body>\n"
        "<h1>OpenK2 evaluation</h1>\n"
        '<p class="sub">In the layout of K2 report Table 3; scores in %, best of each row in bold.</p>\n'
        f'<table class="t3"><thead><tr><th class="left">Benchmark</th><th class="left">Metric</th>{head}</tr>'
        f"</thead><tbody>\n{chr(10).join(body)}\n</tbody></table>\n"
        f'<p class="note">{html.escape(INTERVALS)}</p>\n{details}</body></html>\n'
    )


def _html_details(label: str, run: EvalResults) -> str:
    profile = run.profile
    lines = [
        f"<h2>{html.escape(label)}</h2>",
        f"<p>Model: <code>{html.escape(run.model.spec)}</code> ({run.model.backend}"
        + (f", context {run.model.context_length} tokens" if run.model.context_length else "")
        + f"). Profile <code>{html.escape(profile.name)}</code>: non-thinking, reply cap {profile.max_tokens} "
        f"tokens, temperature {profile.temperature:g} (tool use {profile.tool_temperature:g}, "
        f"sampled suites {profile.sampled_temperature:g}). Concurrency {run.concurrency}; written "
        f"{html.escape(run.created)}.</p><ul>",
    ]
    for suite in run.suites:
        settings = suite.settings
        metrics = ", ".join(
            f"{score.metric} {'—' if score.value is None else f'{100 * score.value:.1f}'}"
            for score in suite.scores
        )
        samples = f"{settings.samples} sample{'s' if settings.samples > 1 else ''}"
        facts = (
            f"split {settings.split}, {suite.tasks} tasks × {samples}, temperature {settings.temperature:g}, "
            f"max_tokens {settings.max_tokens}"
            + ("" if settings.tool_choice == "auto" else f", tool_choice {settings.tool_choice}")
            + ("" if suite.unsupported else f"; scored {suite.scored} of {suite.items} items")
        )
        extra = "".join(f"<br>{html.escape(note)}" for note in [*suite.notes, *suite.error_examples])
        verdict = f"not measurable: {suite.unsupported}" if suite.unsupported else metrics or "no scores"
        lines.append(
            f"<li><b>{html.escape(suite.suite)}</b>: {html.escape(verdict)}. "
            f"{html.escape(facts)}. Data: {html.escape(suite.source)}.{extra}</li>"
        )
    lines.append("</ul>")
    return '<section class="details">' + "".join(lines) + "</section>\n"
