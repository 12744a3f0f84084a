from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from openk2.data.corpus import (
    EMBEDDED_SHAKESPEARE,
    CorpusFile,
    Document,
    corpus_files,
    hold_out_documents,
    read_documents,
)
from openk2.data.shards import verify_shards_dir
from openk2.data.tokenize_corpus import tokenize_corpus
from tests.data.small_corpus import PLAYS, UNICODE_DOCUMENTS, small_config

REPHRASED_IDS = ["hamlet_gut_f.txt#knowledge-0", "hamlet_gut_f.txt#knowledge-1", "more/unicode.jsonl:2#qa-0"]


def write_rephrased(directory: Path) -> Path:
    """A rephrasing stage's output directory: rephrased.jsonl beside files that are not corpus."""
    directory.mkdir()
    records = [
        {
            "text": f"Rephrased passage {index}: to be, or not to be, that is the question.",
            "id": id_,
            "source_id": id_.split("#")[0],
            "variant": index,
        }
        for index, id_ in enumerate(REPHRASED_IDS)
    ]
    (directory / "rephrased.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    (directory / "rejects.jsonl").write_text(json.dumps({"text": "rejected", "id": "reject-0"}) + "\n")
    (directory / "cache.jsonl").write_text(json.dumps({"text": "cached", "id": "cache-0"}) + "\n")
    return directory / "rephrased.jsonl"


def test_embedded_corpus_is_the_35_first_folio_texts_in_name_order() -> None:
    files = corpus_files(EMBEDDED_SHAKESPEARE)
    assert len(files) == 35
    assert [file.name for file in files] == sorted(file.name for file in files)
    assert all(
        file.name.startswith("embedded:shakespeare/") and file.name.endswith("_gut_f.txt") for file in files
    )
    assert 4_000_000 < sum(file.path.stat().st_size for file in files) < 5_000_000


def test_directory_corpus_reads_txt_as_one_document_and_jsonl_as_one_per_line(small_corpus: Path) -> None:
    files = corpus_files(str(small_corpus))
    assert [file.name for file in files] == [*PLAYS, "more/unicode.jsonl"]
    documents = [document for file in files for document in read_documents(file)]
    assert [document.source for document in documents[:3]] == list(PLAYS)
    # line 4 of the JSONL file is blank: skipped, and later documents keep their true line numbers
    assert [document.source for document in documents[3:]] == [
        f"more/unicode.jsonl:{n}" for n in (1, 2, 3, 5, 6, 7)
    ]
    assert [document.text for document in documents[3:]] == UNICODE_DOCUMENTS
    assert "\r\n" in documents[7].text  # line ends are kept exactly as written


def test_jsonl_record_without_text_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text(
        json.dumps({"text": "fine"}) + "\n" + json.dumps({"body": "x"}) + "\n"
    )
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: expected a JSON object with a string 'text'"):
        read_documents(corpus_files(str(tmp_path))[0])


def test_non_utf8_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt: not UTF-8"):
        read_documents(corpus_files(str(tmp_path))[0])


@pytest.mark.parametrize(
    ("corpus", "message"),
    [
        ("embedded:tinystories", "unknown embedded corpus"),
        ("/nonexistent/corpus", "does not exist"),
    ],
)
def test_unusable_corpus_names_the_config_field(corpus: str, message: str) -> None:
    with pytest.raises(ValueError, match=rf"data\.corpus: .*{message}"):
        corpus_files(corpus)


def test_directory_without_text_files_names_the_config_field(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("not a corpus file")
    with pytest.raises(ValueError, match=r"data\.corpus: .* holds no \.txt or \.jsonl files"):
        corpus_files(str(tmp_path))


def test_hold_out_takes_whole_documents_deterministically_from_the_seed() -> None:
    documents = [Document(source=f"doc{index}", text=str(index)) for index in range(35)]
    train, val = hold_out_documents(documents, val_fraction=0.05, seed=0)
    assert len(val) == 2  # ceil(0.05 * 35)
    assert sorted(train + val, key=documents.index) == documents
    assert train == sorted(train, key=documents.index) and val == sorted(val, key=documents.index)
    assert hold_out_documents(documents, 0.05, seed=0) == (train, val)
    assert {d.source for d in hold_out_documents(documents, 0.2, seed=1)[1]} != {
        d.source for d in hold_out_documents(documents, 0.2, seed=2)[1]
    }


def test_rephrasings_are_held_out_with_their_source_and_plain_corpora_split_as_before(tmp_path) -> None:
    raw = [Document(source=f"doc{index}", text=str(index)) for index in range(10)]
    rephrased = [
        Document(source=f"doc{index}#knowledge-{variant}", text=f"{index}'", derived_from=f"doc{index}")
        for index in range(10)
        for variant in range(2)
    ]
    train, val = hold_out_documents(raw + rephrased, val_fraction=0.2, seed=3)
    held_out = {document.source for document in val if document.derived_from is None}
    assert len(held_out) == 2  # ceil(0.2 * 10 groups)
    assert {document.derived_from for document in val if document.derived_from} == held_out
    assert not {document.derived_from for document in train} & held_out
    assert len(val) == 2 * 3  # each held-out document with its two rephrasings
    # without rephrasings the split is the one a plain permutation of the documents gives
    expected = {f"doc{index}" for index in np.random.default_rng(3).permutation(10)[:2]}
    assert {document.source for document in hold_out_documents(raw, 0.2, seed=3)[1]} == expected == held_out
    # read from a file: `source_id` becomes derived_from
    (tmp_path / "rephrased.jsonl").write_text('{"text": "t", "id": "a#knowledge-0", "source_id": "a"}\n')
    [document] = read_documents(CorpusFile(tmp_path / "rephrased.jsonl", "rephrased.jsonl"))
    assert (document.source, document.derived_from) == ("a#knowledge-0", "a")


def test_hold_out_that_leaves_no_training_document_names_val_fraction() -> None:
    documents = [Document(source="a", text="a"), Document(source="b", text="b")]
    with pytest.raises(ValueError, match=r"data\.val_fraction"):
        hold_out_documents(documents, val_fraction=0.6, seed=0)


def test_list_corpus_reads_each_entry_in_order_with_its_single_source_names(
    small_corpus: Path, tmp_path: Path
) -> None:
    rephrased = write_rephrased(tmp_path / "rephrased")
    files = corpus_files([str(small_corpus), str(rephrased)])
    assert [file.name for file in files] == [*PLAYS, "more/unicode.jsonl", "rephrased.jsonl"]
    assert files[:-1] == corpus_files(str(small_corpus)) == corpus_files([str(small_corpus)])
    assert files[-1] == CorpusFile(path=rephrased, name="rephrased.jsonl")  # rejects/cache.jsonl unread
    documents = [document for file in files for document in read_documents(file)]
    assert [document.source for document in documents] == [
        *PLAYS,
        *(f"more/unicode.jsonl:{n}" for n in (1, 2, 3, 5, 6, 7)),
        *REPHRASED_IDS,
    ]
    reordered = corpus_files([str(rephrased), str(small_corpus)])
    assert [file.name for file in reordered] == ["rephrased.jsonl", *PLAYS, "more/unicode.jsonl"]


def test_a_single_file_is_a_corpus_named_by_its_file_name(tmp_path: Path) -> None:
    (tmp_path / "nested").mkdir()
    play = tmp_path / "nested" / "play.txt"
    play.write_text("Enter Ghost.")
    assert corpus_files(str(play)) == [CorpusFile(path=play, name="play.txt")]
    assert corpus_files([EMBEDDED_SHAKESPEARE, str(play)])[-1] == CorpusFile(path=play, name="play.txt")
    assert read_documents(corpus_files(str(play))[0]) == [Document(source="play.txt", text="Enter Ghost.")]


def test_files_of_two_entries_with_one_name_are_an_error_naming_both_paths(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "rephrased").mkdir()
    raw, rephrased = tmp_path / "raw" / "docs.jsonl", tmp_path / "rephrased" / "docs.jsonl"
    for path in (raw, rephrased):
        path.write_text(json.dumps({"text": "a document"}) + "\n")
    with pytest.raises(
        ValueError,
        match=rf"data\.corpus\[1\]: {re.escape(str(rephrased))} and {re.escape(str(raw))} \(data\.corpus\[0\]\) "
        r"would both be named 'docs\.jsonl'",
    ):
        corpus_files([str(tmp_path / "raw"), str(rephrased)])


def test_a_file_read_through_two_entries_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "rephrased").mkdir()
    rephrased = tmp_path / "rephrased" / "rephrased.jsonl"
    rephrased.write_text(json.dumps({"text": "a document"}) + "\n")
    with pytest.raises(
        ValueError,
        match=rf"data\.corpus\[1\]: {re.escape(str(rephrased))} is already read through data\.corpus\[0\]",
    ):
        corpus_files([str(tmp_path), str(rephrased)])


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("notes.csv", r"'.*notes\.csv' is not a \.txt or \.jsonl file"),
        ("missing.jsonl", r"'.*missing\.jsonl' does not exist"),
        ("empty", r".*empty holds no \.txt or \.jsonl files"),
        ("embedded:tinystories", "unknown embedded corpus 'embedded:tinystories'"),
    ],
)
def test_an_unusable_list_entry_is_named_by_its_index(tmp_path: Path, entry: str, message: str) -> None:
    (tmp_path / "notes.csv").write_text("a,b\n")
    (tmp_path / "empty").mkdir()
    path = entry if entry.startswith("embedded:") else str(tmp_path / entry)
    with pytest.raises(ValueError, match=rf"^data\.corpus\[1\]: {message}"):
        corpus_files([EMBEDDED_SHAKESPEARE, path])


def test_a_jsonl_string_id_becomes_the_document_source(tmp_path: Path) -> None:
    records = [
        {"text": "rephrased", "id": "docs.jsonl:3#knowledge-0", "source_id": "docs.jsonl:3", "variant": 0},
        {"text": "no id"},
        {"text": "numeric id", "id": 7},  # not a string: ignored like any other field
        {"text": "empty id", "id": ""},
    ]
    (tmp_path / "mixed.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    assert read_documents(corpus_files(str(tmp_path))[0]) == [
        Document(source="docs.jsonl:3#knowledge-0", text="rephrased", derived_from="docs.jsonl:3"),
        Document(source="mixed.jsonl:2", text="no id"),
        Document(source="mixed.jsonl:3", text="numeric id"),
        Document(source="mixed.jsonl:4", text="empty id"),
    ]


def test_tokenizing_a_list_corpus_records_both_entries_and_rebuilds_only_when_the_list_changes(
    small_corpus: Path, tmp_path: Path
) -> None:
    rephrased = write_rephrased(tmp_path / "rephrased")
    shards_dir = tmp_path / "data"
    corpus = [small_corpus, rephrased]
    manifest = tokenize_corpus(small_config(corpus, shards_dir), progress=False)
    assert [source.name for source in manifest.sources] == [*PLAYS, "more/unicode.jsonl", "rephrased.jsonl"]
    assert [source.num_documents for source in manifest.sources] == [1, 1, 1, 6, 3]
    assert set(REPHRASED_IDS) <= set(manifest.train.documents + manifest.val.documents)
    assert manifest.settings.corpus == [str(small_corpus), str(rephrased)]
    assert verify_shards_dir(shards_dir) == manifest  # the list survives the manifest's JSON round trip

    before = {path.name: path.stat().st_mtime_ns for path in shards_dir.iterdir()}
    assert tokenize_corpus(small_config(corpus, shards_dir), progress=False) == manifest
    assert {path.name: path.stat().st_mtime_ns for path in shards_dir.iterdir()} == before

    extra = tmp_path / "extra.txt"
    extra.write_text("Exeunt omnes.")
    grown = tokenize_corpus(small_config([*corpus, extra], shards_dir), progress=False)
    assert [source.name for source in grown.sources][-2:] == ["rephrased.jsonl", "extra.txt"]
    assert verify_shards_dir(shards_dir) == grown

    reordered = tokenize_corpus(small_config([extra, *corpus], shards_dir), progress=False)
    assert reordered.sources[0].name == "extra.txt"
    assert reordered.settings.corpus == [str(extra), str(small_corpus), str(rephrased)]
    assert verify_shards_dir(shards_dir) == reordered
