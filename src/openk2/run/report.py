"""`runs/<name>/report.html`: the whole run on one page, built from what the stages wrote.

The stages' own plots (the PNGs their reports draw, embedded), the evaluation table across stages (drawn by
`openk2.eval.report` in K2 Table 3's layout), each stage's time and whether this run skipped it, and the
exact settings: the pipeline recipe as written and each stage's complete recipe. The page stands alone.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

from openk2.eval.report import render_html
from openk2.eval.results import read_results
from openk2.io import atomic_write_text
from openk2.run.pipeline import StageOutcome, serve_lines
from openk2.run.recipe import PipelineRecipe

REPORT_FILE = "report.html"
STAGE_PLOTS_DIR = "report"  # where a training stage's report keeps its PNGs
# (stage, file in its plots directory, caption) in the order the page shows them
PLOTS = {
    "pretrain": [
        ("loss.png", "loss"),
        ("max_logit.png", "max attention logit per layer (QK-Clip caps it at τ)"),
        ("heads_clipped.png", "heads clipped by QK-Clip"),
        ("expert_load.png", "expert load"),
    ],
    "sft": [("loss.png", "loss on the assistant's tokens"), ("max_logit.png", "max attention logit")],
    "rl": [
        ("reward.png", "reward (training samples and held-out greedy)"),
        ("reply_length.png", "reply length"),
    ],
}
COLUMN = {"pretrain": "pre-trained", "sft": "after SFT", "rl": "after RL"}

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       color: #1d1d1f; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; } h2 { font-size: 1.15rem; margin-top: 2.2rem;
     border-bottom: 1px solid #e4e4e7; padding-bottom: 0.2rem; }
p.sub, p.muted { color: #555; font-size: 0.9rem; }
table.stages { border-collapse: collapse; font-size: 0.9rem; }
table.stages th, table.stages td { padding: 0.3rem 0.7rem; border-bottom: 1px solid #e4e4e7; text-align: left; }
table.stages td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.stages td.nowrap { white-space: nowrap; }
span.skipped { color: #71717a; } span.resumed { color: #b45309; } span.ran { color: #15803d; }
div.plots { display: flex; flex-wrap: wrap; gap: 0.5rem; }
figure { margin: 0; width: 570px; } figure img { width: 100%; border: 1px solid #e4e4e7; }
figcaption { font-size: 0.8rem; color: #555; }
pre { background: #f4f4f5; padding: 0.8rem; font-size: 0.8rem; white-space: pre-wrap; }
details { margin: 0.4rem 0; } summary { cursor: pointer; }
"""


def write_run_report(
    recipe: PipelineRecipe, outcomes: list[StageOutcome], not_run: list[str], wall_seconds: float
) -> Path:
    root = recipe.root
    by_name = {outcome.stage.name: outcome for outcome in outcomes}
    final = outcomes_final_checkpoint(outcomes)
    parts = [
        f"<h1>OpenK2 run {html.escape(recipe.sections.run.name)}</h1>",
        f"<p class='sub'>The K2 recipe end to end from <code>{html.escape(str(recipe.path))}</code>: "
        "pre-training (K2 report §2) → post-training: SFT (§3.1) and RL (§3.2) → evaluation (§4). "
        f"This invocation took {_duration(wall_seconds)}; the stages' own times add up to "
        f"{_duration(sum(o.record.seconds for o in outcomes))}.</p>",
        "<h2>Stages</h2>",
        _stages_table(root, outcomes),
        *(f"<p class='muted'>not run: {html.escape(note)}</p>" for note in not_run),
        _evaluation(root, [name for name in COLUMN if f"eval-{name}" in by_name]),
        *_stage_sections(root, by_name),
        "<h2>Serve the result</h2>",
        f"<pre>{html.escape(chr(10).join(serve_lines(final)))}</pre>" if final else "<p>No checkpoint.</p>",
        "<h2>Settings</h2>",
        f"<details open><summary>{html.escape(str(recipe.path))} (as written)</summary>"
        f"<pre>{html.escape(recipe.text)}</pre></details>",
        *(
            f"<details><summary>{html.escape(o.stage.name)}: {html.escape(_relative(o.stage.recipe_file, root))}"
            f"</summary><pre>{html.escape(o.stage.recipe_file.read_text(encoding='utf-8'))}</pre></details>"
            for o in outcomes
            if o.stage.recipe is not None and o.stage.recipe_file.is_file()
        ),
    ]
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>OpenK2 run {html.escape(recipe.sections.run.name)}</title><style>{STYLE}</style>"
        f"{_eval_style()}</head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )
    path = root / REPORT_FILE
    atomic_write_text(path, page)
    return path


def outcomes_final_checkpoint(outcomes: list[StageOutcome]) -> Path | None:
    """The last training stage's checkpoint: what the run produced."""
    trained = [o for o in outcomes if o.stage.name in ("pretrain", "sft", "rl")]
    return trained[-1].stage.output if trained else None


def _stages_table(root: Path, outcomes: list[StageOutcome]) -> str:
    rows = []
    for index, outcome in enumerate(outcomes, start=1):
        stage, record = outcome.stage, outcome.record
        report = stage.directory / REPORT_FILE
        link = f" · <a href='{_relative(report, root)}'>its report</a>" if report.is_file() else ""
        action = {"ran": "ran", "resumed": "resumed after an interruption", "skipped": "skipped: current"}
        rows.append(
            f"<tr><td class='num'>{index}</td><td class='nowrap'><b>{html.escape(stage.name)}</b></td>"
            f"<td>{html.escape(stage.title)}{''.join(f'<br><i>{html.escape(n)}</i>' for n in outcome.notes)}</td>"
            f"<td class='nowrap'><span class='{outcome.action}'>{action[outcome.action]}</span></td>"
            f"<td class='num'>{_duration(record.seconds)}</td>"
            f"<td class='nowrap'>{html.escape(record.finished[:16].replace('T', ' '))}</td>"
            f"<td><code>{html.escape(_relative(stage.output, root))}</code>{link}</td></tr>"
        )
    return (
        "<table class='stages'><thead><tr><th>#</th><th>stage</th><th>what</th><th>this run</th>"
        "<th>time</th><th>finished (UTC)</th><th>output</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + "<p class='muted'>A stage's time is that of the run that produced its output; a skipped stage's "
        "output was current (same settings and inputs, output intact).</p>"
    )


def _evaluation(root: Path, evaluated: list[str]) -> str:
    if not evaluated:
        return ""
    runs = []
    for stage in evaluated:
        results = read_results(root / "eval" / stage)
        model = results.model.model_copy(update={"name": COLUMN[stage]})
        runs.append(results.model_copy(update={"model": model}))
    page = render_html(runs)
    body = page[page.index("<body>") + len("<body>") : page.index("</body>")]
    body = re.sub(r"<h1>.*?</h1>", "", body, count=1)  # our own heading replaces the page's
    return (
        "<h2>Evaluation across stages (K2 report Table 3 layout)</h2>"
        "<p class='muted'>Each column is <code>openk2 eval</code> of that stage's final checkpoint; below "
        "the table, every setting and metric of each.</p>"
        + re.sub(r"<p class=\"sub\">.*?</p>", "", body, count=1)
    )


def _eval_style() -> str:
    """The evaluation table's own style, scoped by its classes (t3, ci, warn...)."""
    from openk2.eval.report import STYLE as EVAL_STYLE

    rules = [rule for rule in EVAL_STYLE.strip().splitlines() if not rule.startswith(("body", "h1"))]
    return "<style>" + "\n".join(rules) + "</style>"


def _stage_sections(root: Path, by_name: dict[str, StageOutcome]) -> list[str]:
    sections = []
    for stage, title in (
        ("pretrain", "Pre-training (K2 report §2): loss, MuonClip's max logits and clipping, expert load"),
        ("synth", "Agentic data synthesis (K2 report §3.1.1): acceptance and the tool map"),
        ("sft", "Supervised fine-tuning (K2 report §3.1)"),
        ("rl", "Reinforcement learning (K2 report §3.2): reward and reply length"),
    ):
        if stage not in by_name:
            continue
        directory = by_name[stage].stage.directory
        sections.append(f"<h2>{html.escape(title)}</h2>")
        if stage == "synth":
            sections.append(_synthesis(directory))
            continue
        figures = [
            _figure(directory / STAGE_PLOTS_DIR / file, caption)
            for file, caption in PLOTS[stage]
            if (directory / STAGE_PLOTS_DIR / file).is_file()
        ]
        sections.append("<div class='plots'>" + "".join(figures) + "</div>")
    return sections


def _synthesis(directory: Path) -> str:
    summary_file = directory / "summary.json"
    if not summary_file.is_file():
        return "<p>No summary.json.</p>"
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    tools, tasks, runs = summary["tools"], summary["tasks"], summary["trajectories"]
    rows = [
        (
            "tools",
            f"{tools['real']} real, {tools['synthetic']} synthetic in {tools['categories']} categories",
        ),
        ("tool candidates accepted", _share(tools["acceptance"])),
        ("agents and tasks", f"{tasks['agents']} agents, {tasks['tasks']} tasks"),
        ("trajectories", f"{runs['kept']} kept, {runs['rejected']} rejected of {runs['played']} played"),
        ("trajectory acceptance (judge)", _share(runs["acceptance"])),
    ]
    table = "<table class='stages'>" + "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows
    )
    tool_map = directory / "tool_map.png"
    figure = _figure(tool_map, "tool repository map (t-SNE of tool descriptions, cf. K2 Fig. 9)")
    return table + "</table><div class='plots'>" + (figure if tool_map.is_file() else "") + "</div>"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _share(value: object) -> str:
    return f"{100 * value:.0f}%" if isinstance(value, int | float) else str(value)


def _figure(path: Path, caption: str) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode()
    return (
        f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{encoded}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
