"""The sample documents of the rephrasing tests (the teacher they talk to is tests/conftest.py's, shared)."""

import json
from pathlib import Path

SAMPLES = Path(__file__).parents[2] / "samples" / "knowledge.jsonl"


def write_documents(path: Path, ids: list[str]) -> Path:
    """The named paragraphs of samples/knowledge.jsonl, in the given order, as an input file."""
    records = {record["id"]: record for record in map(json.loads, SAMPLES.read_text().splitlines())}
    path.write_text("".join(json.dumps(records[name]) + "\n" for name in ids))
    return path
