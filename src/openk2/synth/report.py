"""report.html: one self-contained page per run (the map inline, no external assets)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from openk2.io import atomic_write_text
from openk2.synth.pipeline import REJECTS_FILE, REPORT_FILE, TOOLS_FILE, TRAJECTORIES_FILE, read_jsonl

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
td, th { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 1rem; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem 0.8rem; }
.msg { margin: 0.3rem 0; padding: 0.3rem 0.6rem; border-radius: 4px; white-space: pre-wrap; font-size: 0.85rem; }
.user { background: #eef5ff; } .assistant { background: #f3f3f3; } .tool { background: #fff7e6; font-family: monospace; }
.system { background: #f0fff0; } .bad { color: #a00; } .good { color: #070; } .muted { color: #777; font-size: 0.85rem; }
img { max-width: 100%; border: 1px solid #eee; } code { font-size: 0.85rem; }
.card, .msg, li { overflow-wrap: anywhere; } pre { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 0.8rem; }
"""


def _table(rows: list[tuple[str, Any]], header: tuple[str, str] | None = None) -> str:
    if not rows:
        return "<p class='muted'>none</p>"
    head = f"<tr><th>{html.escape(header[0])}</th><th>{html.escape(header[1])}</th></tr>" if header else ""
    body = "".join(
        f"<tr><td>{html.escape(str(key))}</td><td{_numeric(value)}>{html.escape(_fmt(value))}</td></tr>"
        for key, value in rows
    )
    return f"<table>{head}{body}</table>"


def _numeric(value: Any) -> str:
    return " class='n'" if isinstance(value, int | float) else ""


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _conversation(trajectory: dict[str, Any], limit: int = 12) -> str:
    parts = []
    for message, meta in list(zip(trajectory["messages"], trajectory["meta"], strict=True))[:limit]:
        role = message["role"]
        text = message.get("content") or ""
        if isinstance(text, list):
            text = " ".join(part.get("text", "") for part in text)
        calls = [
            f"→ {call['function']['name']}({call['function']['arguments']})"
            for call in message.get("tool_calls") or []
        ]
        body = "\n".join([str(text)[:600]] * bool(text) + calls)
        label = f"{role} · {meta['author']}" + (
            # the kind alone: the message itself is the tool's answer below
            f" · <span class='bad'>{html.escape(meta['error'].split(':', 1)[0][:60])}</span>"
            if meta.get("error")
            else ""
        )
        parts.append(f"<div class='msg {role}'><b>{label}</b>\n{html.escape(body)}</div>")
    return "".join(parts)


def write_report(output: Path, summary: dict[str, Any]) -> None:
    tools = read_jsonl(output / TOOLS_FILE)
    kept = read_jsonl(output / TRAJECTORIES_FILE)
    rejects = read_jsonl(output / REJECTS_FILE)
    tool_summary, task_summary, run_summary = summary["tools"], summary["tasks"], summary["trajectories"]
    sections = [
        "<h1>Agentic data synthesis</h1>",
        "<p class='muted'>K2 report §3.1.1, Fig. 8: tool repository → agents and rubric tasks → trajectories with "
        f"simulated users and tools, filtered by a judge. Run directory: <code>{html.escape(str(output))}</code></p>",
        "<div class='grid'>",
        "<div class='card'><h3>Tools</h3>"
        + _table(
            [
                ("real (MCP, sandbox)", tool_summary["real"]),
                ("synthetic", tool_summary["synthetic"]),
                ("categories", tool_summary["categories"]),
                ("domains", tool_summary["domains"]),
                ("candidate acceptance", tool_summary["acceptance"]),
            ]
        )
        + "</div>",
        "<div class='card'><h3>Tasks</h3>"
        + _table(
            [
                ("agents", task_summary["agents"]),
                ("tasks", task_summary["tasks"]),
                ("with a world state", task_summary["stateful"]),
                ("acceptance", task_summary["acceptance"]),
            ]
        )
        + "</div>",
        "<div class='card'><h3>Trajectories</h3>"
        + _table(
            [
                ("played", run_summary["played"]),
                ("kept", run_summary["kept"]),
                ("rejected", run_summary["rejected"]),
                ("acceptance", run_summary["acceptance"]),
                ("mean turns", run_summary["turns_mean"]),
                ("tool calls", run_summary["tool_calls"]),
            ]
        )
        + "</div></div>",
    ]
    map_file = output / "tool_map.png"
    if map_file.exists():
        encoded = base64.b64encode(map_file.read_bytes()).decode()
        sections.append("<h2>Tool repository map (cf. K2 Fig. 9)</h2>")
        sections.append(f"<img alt='t-SNE map of tool descriptions' src='data:image/png;base64,{encoded}'>")
    sections.append("<h2>Tools by source</h2><div class='grid'>")
    sections.append(
        "<div class='card'><h3>Real, by server</h3>" + _table(sorted(tool_summary["real_by_server"].items()))
    )
    if tool_summary["servers_skipped"]:
        sections.append(
            "<p class='bad'>Skipped servers: "
            + html.escape(json.dumps(tool_summary["servers_skipped"]))
            + "</p>"
        )
    sections.append("</div><div class='card'><h3>Synthetic, by category</h3>")
    sections.append(_table(sorted(tool_summary["synthetic_by_category"].items())) + "</div>")
    sections.append("<div class='card'><h3>Rejected candidates, by reason</h3>")
    sections.append(
        _table(sorted(tool_summary["rejected_by_reason"].items(), key=lambda kv: -kv[1])[:12])
        + "</div></div>"
    )
    examples = [tool for tool in tools if tool["origin"] == "synthetic"][:6]
    if examples:
        sections.append("<h2>Synthetic tools (first six)</h2><div class='grid'>")
        for tool in examples:
            semantics = tool.get("semantics") or {}
            sections.append(
                f"<div class='card'><b>{html.escape(tool['name'])}</b> <span class='muted'>{html.escape(tool['category'])} / "
                f"{html.escape(str(tool.get('domain')))} / {html.escape(tool['provenance']['step'])}</span><br>"
                f"{html.escape(tool['description'])}<br><span class='muted'>{html.escape(semantics.get('effect', ''))} "
                f"{html.escape(semantics.get('entity', ''))}: {html.escape(semantics.get('behaviour', ''))}</span>"
                f"<pre>{html.escape(json.dumps(tool['parameters'], indent=1)[:500])}</pre></div>"
            )
        sections.append("</div>")
    sections.append("<h2>Trajectories</h2>")
    sections.append(
        "<div class='grid'><div class='card'><h3>Rejected, by rubric item</h3>"
        + _table(list(run_summary["rejected_by_rubric_item"].items()))
        + "</div><div class='card'><h3>Tool calls, by executor</h3>"
        + _table(sorted(run_summary["tool_calls_by_executor"].items()))
        + "</div><div class='card'><h3>Simulated outcomes</h3>"
        + _table(sorted(run_summary["simulated_outcomes"].items()))
        + "</div></div>"
    )
    unplayed = [r for r in rejects if "trajectory" not in r]  # requests no model could serve
    if unplayed:
        sections.append(
            f"<h3>Episodes no model could serve ({len(unplayed)})</h3>"
            + _table([(r["id"], r["reason"][:300]) for r in unplayed[:5]], ("episode", "reason"))
        )
    for title, records in (
        ("A kept trajectory", kept[:1]),
        ("A rejected trajectory", [r["trajectory"] for r in rejects if "trajectory" in r][:2]),
    ):
        for trajectory in records:
            verdict = trajectory.get("judge") or {}
            items = "".join(
                f"<li class='{'good' if item['passed'] else 'bad'}'>{html.escape(item['name'])} "
                f"({html.escape(item['by'])}): {html.escape(item['reason'][:200])}</li>"
                for item in verdict.get("items", [])
            )
            sections.append(f"<h3>{title}: <code>{html.escape(trajectory['id'])}</code></h3>")
            sections.append(f"<ul>{items}</ul>{_conversation(trajectory)}")
    sections.append("<h2>Models and tokens</h2>")
    rows = "".join(
        f"<tr><td>{html.escape(role)}</td>"
        + "".join(f"<td class='n'>{value}</td>" for value in counts.values())
        + "</tr>"
        for role, counts in summary["models"].items()
    )
    sections.append(
        "<table><tr><th>role</th><th>calls</th><th>from cache</th><th>prompt tokens</th><th>completion tokens</th>"
        f"<th>unparsed replies</th></tr>{rows}</table>"
    )
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>openk2 synth</title><style>{STYLE}</style></head><body>{''.join(sections)}</body></html>"
    atomic_write_text(output / REPORT_FILE, page)
