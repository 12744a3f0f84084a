"""Long documents in a rephrasing run: documents take turns at the model, so short ones finish before a long
one that came first, and a document over [rephrase].max_document_tokens is refused with a warning rather
than stalling the run. The models are scripted (an echo rewriter, an approving judge): these tests are about
the pipeline's scheduling, not about a model."""

import json
from pathlib import Path

from openk2.rephrase.config import RephraseConfig, load_rephrase_config
from openk2.rephrase.pipeline import rephrase_corpus
from openk2.rephrase.token_counter import TokenCounter
from tests.rephrase.llm_wrappers import approving_judge, echo_rewriter, passage

SCRIPTED = RephraseConfig(
    temperature=0.0, chunk_tokens=48, concurrency=1, judge_threshold=3, checks={"max_copied_fraction": 1.0}
)
SENTENCE = "The Great Barrier Reef grows about 2 cm a year, and Captain Cook charted it in 1770. "


def write(path: Path, documents: dict[str, str]) -> Path:
    path.write_text(
        "".join(json.dumps({"id": name, "text": text}) + "\n" for name, text in documents.items())
    )
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_short_documents_finish_before_a_long_one_that_came_first(tmp_path):
    long_text = "".join(f"{SENTENCE[:-2]} (note {index}). " for index in range(60))  # ~40 chunks of 48 tokens
    shorts = {
        f"short-{index}": f"Document {index} is short. It has {index + 2} sentences." for index in range(3)
    }
    documents = write(tmp_path / "docs.jsonl", {"long": long_text, **shorts})
    rewriter = echo_rewriter()

    summary = rephrase_corpus(
        SCRIPTED, documents, tmp_path / "out", progress=False, rewriter=rewriter, judge=approving_judge()
    )

    assert (summary.accepted, summary.rejected) == (4, 0)
    [long_record] = [r for r in read_jsonl(tmp_path / "out/rephrased.jsonl") if r["id"] == "long#knowledge-0"]
    assert long_record["chunks"] >= 30 and long_record["text"] == long_text.strip()  # echoed and stitched
    # one request in flight (concurrency 1): the requests, in the order the model received them
    asked = ["long" if passage(request.messages) in long_text else "short" for request in rewriter.requests]
    assert asked.count("long") == long_record["chunks"] and asked.count("short") == 3
    last_short = max(index for index, who in enumerate(asked) if who == "short")
    assert asked[: last_short + 1].count("long") <= 3  # each short one waited a turn or so, not 30 chunks


def test_a_document_over_the_size_limit_is_refused_with_a_warning_and_the_others_go_on(tmp_path, capsys):
    megabyte = (SENTENCE * (1_000_000 // len(SENTENCE) + 1))[:1_000_000]
    documents = write(tmp_path / "docs.jsonl", {"book": megabyte, "note": SENTENCE.strip()})
    tokens = TokenCounter.load(SCRIPTED.tokenizer)(megabyte)
    assert tokens > SCRIPTED.max_document_tokens == 32_768  # the default: about 2,000 chunks of 256 tokens

    summary = rephrase_corpus(
        SCRIPTED, documents, tmp_path / "out", rewriter=echo_rewriter(), judge=approving_judge()
    )

    assert (summary.accepted, summary.rejected) == (1, 1)
    [book] = read_jsonl(tmp_path / "out/rejects.jsonl")
    reason = f"{tokens:,} tokens exceed [rephrase].max_document_tokens = 32,768; split it, or raise the limit"
    assert book["id"] == "book#knowledge-0" and book["rejected"] == {"document": reason}
    assert book["chunks"] == 0 and book["attempts"] == []  # the model was never asked about it
    assert f"warning: book#knowledge-0 rejected: {reason}" in capsys.readouterr().err.splitlines()


def test_the_size_limit_is_read_from_the_recipe(tmp_path):
    (tmp_path / "rephrase.toml").write_text("[rephrase]\ntemperature = 0.0\nmax_document_tokens = 16\n")
    config = load_rephrase_config(tmp_path / "rephrase.toml", {})
    documents = write(tmp_path / "docs.jsonl", {"note": SENTENCE.strip()})

    summary = rephrase_corpus(config, documents, tmp_path / "out", progress=False, rewriter=echo_rewriter())

    assert (summary.accepted, summary.rejected) == (0, 1)
    [note] = read_jsonl(tmp_path / "out/rejects.jsonl")
    assert "exceed [rephrase].max_document_tokens = 16;" in note["rejected"]["document"]
