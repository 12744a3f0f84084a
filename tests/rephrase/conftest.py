"""The embedded teacher (SmolLM2-135M-Instruct) shared by the rephrasing pipeline tests."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from openk2.llm.teacher import load_teacher
from openk2.llm.transformers_engine import TransformersLLM

SAMPLES = Path(__file__).parents[2] / "samples" / "knowledge.jsonl"


@pytest.fixture(scope="package")
def teacher() -> Iterator[TransformersLLM]:
    llm = load_teacher()
    yield llm
    llm.close()


@pytest.fixture(scope="package")
def batching_teacher() -> Iterator[TransformersLLM]:
    """The teacher generating at most 4 requests at once (the engine batches concurrent callers itself)."""
    llm = load_teacher(max_batch_size=4)
    yield llm
    llm.close()


def write_documents(path: Path, ids: list[str]) -> Path:
    """The named paragraphs of samples/knowledge.jsonl, in the given order, as an input file."""
    records = {record["id"]: record for record in map(json.loads, SAMPLES.read_text().splitlines())}
    path.write_text("".join(json.dumps(records[name]) + "\n" for name in ids))
    return path
