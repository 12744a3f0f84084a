"""The rephrasing pipeline end to end with the embedded teacher (SmolLM2-135M-Instruct), greedy.

The teacher is a weak rewriter (a run's summary shows how weak); these tests prove the machinery:
chunk boundaries, the autoregressive context, stitching, rejection with reasons, the reply cache and
the corpus that `openk2 tokenize` reads.
"""

import base64
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from openk2.data.config import DataConfig
from openk2.data.tokenize_corpus import tokenize_corpus
from openk2.llm import LLM, ChatRequest, LLMConfig
from openk2.rephrase.chunking import chunk_document, sentence_spans, stitch
from openk2.rephrase.config import RephraseConfig
from openk2.rephrase.pipeline import rephrase_corpus
from openk2.rephrase.summary import RephraseSummary
from openk2.rephrase.token_counter import TokenCounter
from openk2.serve.app import create_app
from openk2.serve.background import BackgroundServer
from tests.rephrase.conftest import write_documents
from tests.rephrase.llm_wrappers import RecordingLLM, RefusingLLM, passage

# Lenient checks: the 135M teacher rarely keeps every name of a paragraph, nor stops in time.
LENIENT = RephraseConfig(
    temperature=0.0,
    chunk_tokens=48,
    judge_threshold=1,
    concurrency=1,
    checks={"names": False, "min_length_ratio": 0.3, "max_length_ratio": 3.0, "max_copied_fraction": 1.0},
)


@dataclass
class LenientRun:
    documents: Path
    output: Path
    summary: RephraseSummary
    rewriter: RecordingLLM


@pytest.fixture(scope="module")
def lenient_run(tmp_path_factory: pytest.TempPathFactory, teacher: LLM) -> LenientRun:
    """Two paragraphs rewritten in process, one at a time, with the rewrite calls recorded."""
    directory = tmp_path_factory.mktemp("lenient")
    documents = write_documents(directory / "docs.jsonl", ["penicillin", "great-barrier-reef"])
    rewriter = RecordingLLM(teacher)
    summary = rephrase_corpus(
        LENIENT, documents, directory / "out", progress=False, rewriter=rewriter, judge=teacher
    )
    return LenientRun(documents, directory / "out", summary, rewriter)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_documents_are_chunked_rewritten_in_order_with_context_and_stitched(lenient_run):
    accepted = read_jsonl(lenient_run.output / "rephrased.jsonl")
    rejected = read_jsonl(lenient_run.output / "rejects.jsonl")
    assert sorted(record["id"] for record in accepted + rejected) == [
        "great-barrier-reef#knowledge-0",
        "penicillin#knowledge-0",
    ]
    assert (lenient_run.summary.accepted, lenient_run.summary.rejected) == (len(accepted), len(rejected))
    assert accepted, "the greedy teacher keeps the penicillin paragraph (see the run's summary if not)"
    count_tokens = TokenCounter.load("teacher")
    sources = {record["id"]: record["text"] for record in read_jsonl(lenient_run.documents)}
    for record in accepted:
        source = sources[record["source_id"]]
        chunks = chunk_document(source, LENIENT.chunk_tokens, count_tokens)
        assert record["chunks"] == len(chunks) >= 2
        # chunk boundaries: whole sentences within the budget
        sentence_ends = {end for _, end in sentence_spans(source)}
        assert all(chunk.end in sentence_ends for chunk in chunks)
        assert all(count_tokens(chunk.text) <= LENIENT.chunk_tokens for chunk in chunks)
        chunk_texts = [chunk.text for chunk in chunks]
        asked = [call for call in lenient_run.rewriter.calls if passage(call.messages) in chunk_texts]
        assert [passage(call.messages) for call in asked] == chunk_texts  # in order, once each
        # the autoregressive context: chunk i sees the source before it and the rewrites of chunks < i
        for index, call in enumerate(asked):
            system = call.messages[0].text
            if index == 0:
                assert "just before it" not in system
            else:
                assert source[: chunks[index].start].strip()[-60:] in system
                assert stitch([c.reply for c in asked[:index]], chunks[:index])[-60:] in system
        assert record["text"] == stitch([call.reply for call in asked], chunks)
        assert record["tokens"] == count_tokens(record["text"])
        assert len(record["judge_scores"]) == len(chunks)
    for record in rejected:
        assert record["rejected"] and "text" not in record  # never read as corpus
        assert record["source_text"] == sources[record["source_id"]]


def test_a_corrupted_rewrite_is_rejected_naming_the_changed_number_and_the_dropped_name(tmp_path, teacher):
    text = (
        "Alexander Fleming discovered penicillin in London in 1928. "
        "He shared the Nobel Prize with Howard Florey and Ernst Chain in 1945."
    )
    (tmp_path / "docs.jsonl").write_text(json.dumps({"id": "fleming", "text": text}) + "\n")

    def corrupt(request: ChatRequest, reply: str) -> str:
        return re.sub(r"\b1945\b", "1946", reply).replace("Florey", "a colleague")

    config = LENIENT.model_copy(update={"checks": {"min_length_ratio": 0.3, "max_length_ratio": 3.0}})
    summary = rephrase_corpus(
        config,
        tmp_path / "docs.jsonl",
        tmp_path / "out",
        progress=False,
        rewriter=RecordingLLM(teacher, corrupt),
        judge=teacher,
    )

    assert (summary.accepted, summary.rejected) == (0, 1)
    [record] = read_jsonl(tmp_path / "out/rejects.jsonl")
    assert record["chunks"] == 1 and list(record["rejected"]) == ["chunk 0"]
    failed = record["attempts"][-1]["failed"]
    assert "1945" in failed["numbers"] and "Florey" in failed["names"]
    assert "1945" in record["rejected"]["chunk 0"] and "Florey" in record["rejected"]["chunk 0"]
    assert "judge" not in failed  # the judge is not asked about a rewrite the cheap checks reject
    assert read_jsonl(tmp_path / "out/rephrased.jsonl") == []


def test_a_rerun_is_answered_from_the_reply_cache_with_the_same_output(tmp_path, lenient_run):
    (tmp_path / "again").mkdir()
    shutil.copy(lenient_run.output / "cache.jsonl", tmp_path / "again/cache.jsonl")
    again = rephrase_corpus(
        LENIENT, lenient_run.documents, tmp_path / "again", progress=False, rewriter=RefusingLLM()
    )

    assert again.cache_misses == 0 and again.cache_hits == lenient_run.summary.cache_misses > 0
    for name in ("rephrased.jsonl", "rejects.jsonl"):
        assert (tmp_path / "again" / name).read_text() == (lenient_run.output / name).read_text()


def test_the_rephrased_corpus_feeds_tokenize_next_to_the_raw_text(tmp_path, lenient_run):
    rephrased = read_jsonl(lenient_run.output / "rephrased.jsonl")
    assert rephrased and all(record["variant"] == 0 for record in rephrased)
    assert {record["source_id"] for record in rephrased} <= {"penicillin", "great-barrier-reef"}

    config = DataConfig(
        corpus=[str(lenient_run.documents), str(lenient_run.output / "rephrased.jsonl")],
        vocab_size=600,
        val_fraction=0.3,
        shards_dir=tmp_path / "shards",
    )
    manifest = tokenize_corpus(config, progress=False)
    assert [source.name for source in manifest.sources] == ["docs.jsonl", "rephrased.jsonl"]
    assert manifest.train.num_documents + manifest.val.num_documents == 2 + len(rephrased)


@pytest.mark.long  # a server start and a document rewritten twice by the teacher (~15 s)
def test_the_http_back_end_gives_the_same_rephrasing_as_the_in_process_teacher(
    tmp_path, lenient_run, teacher
):
    documents = write_documents(
        tmp_path / "docs.jsonl", ["penicillin"]
    )  # the accepted one: every step over HTTP
    with BackgroundServer(create_app(teacher)) as server:  # `openk2 serve` on loopback
        endpoint = LLMConfig(backend="endpoint", base_url=server.base_url)
        config = LENIENT.model_copy(update={"rewriter": endpoint})
        summary = rephrase_corpus(config, documents, tmp_path / "http", progress=False)

    assert summary.cache_hits == 0 and summary.cache_misses > 0  # every call went over HTTP
    [served] = read_jsonl(tmp_path / "http" / "rephrased.jsonl")
    in_process = read_jsonl(lenient_run.output / "rephrased.jsonl")
    assert served == next(record for record in in_process if record["source_id"] == "penicillin")


def test_a_document_the_model_can_never_serve_is_rejected_and_the_run_goes_on(tmp_path, teacher):
    blob = base64.b64encode(bytes(range(256)) * 40).decode()  # one 13,656-character "word"
    records = [{"id": "blob", "text": blob}, {"id": "empty", "text": "   "}]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))

    summary = rephrase_corpus(
        LENIENT, tmp_path / "docs.jsonl", tmp_path / "out", progress=False, rewriter=teacher
    )

    assert (summary.accepted, summary.rejected) == (0, 2)
    blob_record, empty_record = read_jsonl(tmp_path / "out/rejects.jsonl")
    assert blob_record["rejected"]["chunk 0"].startswith("request: ")
    assert "the model's context is 8192" in blob_record["rejected"]["chunk 0"]
    assert empty_record["rejected"] == {"document": "the document has no text"}
    assert (tmp_path / "out/summary.json").exists()
