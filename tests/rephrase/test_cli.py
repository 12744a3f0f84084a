"""`openk2 rephrase` from the command line: math notes and translation with the teacher, and its errors."""

import json
import socket

import pytest

from openk2.cli import main
from openk2.llm import LLMConfig
from openk2.rephrase.config import RephraseConfig, load_rephrase_config
from openk2.rephrase.pipeline import RephraseStopped, rephrase_corpus
from openk2.rephrase.prompts import BUILTIN_LIBRARY, load_mode_prompts
from openk2.serve.app import create_app
from openk2.serve.background import BackgroundServer
from tests.rephrase.llm_wrappers import RecordingLLM

GREEDY_RECIPE = """
[rephrase]
temperature = 0.0
judge_threshold = 1
"""


def run_cli(tmp_path, mode_arguments: list[str], text: str, recipe_tail: str = "") -> dict:
    (tmp_path / "docs.jsonl").write_text(json.dumps({"id": "doc", "text": text}) + "\n")
    (tmp_path / "recipe.toml").write_text(GREEDY_RECIPE + recipe_tail)
    recipe, documents, output = (str(tmp_path / name) for name in ("recipe.toml", "docs.jsonl", "out"))
    main(["rephrase", "--recipe", recipe, "--input", documents, "--output", output, *mode_arguments])
    return json.loads((tmp_path / "out/rephrase.json").read_text())


def all_records(tmp_path) -> list[dict]:
    lines = []
    for name in ("rephrased.jsonl", "rejects.jsonl"):
        lines += (tmp_path / "out" / name).read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.long  # the teacher served over HTTP rewrites a document (~20 s)
def test_math_notes_mode_rewrites_in_a_learning_note_style(tmp_path, teacher):
    """`--mode math-notes` through the CLI, the teacher served over HTTP as `openk2 serve` would, writes a
    math-notes record; the same settings in process behind a recorder show the rewrite request carries the
    math-notes prompt in the record's style, and the teacher's reply is the rewrite the record keeps."""
    source = "If a = 3 and b = 4, then a^2 + b^2 = 25."
    (tmp_path / "cli").mkdir()
    with BackgroundServer(create_app(teacher)) as server:
        endpoint = f'\n[rephrase.rewriter]\nbackend = "endpoint"\nbase_url = "{server.base_url}"\n'
        manifest = run_cli(tmp_path / "cli", ["--mode", "math-notes"], source, recipe_tail=endpoint)
    assert manifest["settings"]["mode"] == "math-notes"
    [served] = all_records(tmp_path / "cli")
    assert served["id"] == "doc#math-notes-0" and served["mode"] == "math-notes"

    rewriter = RecordingLLM(teacher)
    (tmp_path / "recipe.toml").write_text(GREEDY_RECIPE)
    config = load_rephrase_config(tmp_path / "recipe.toml", {"mode": "math-notes"})
    rephrase_corpus(
        config, tmp_path / "cli" / "docs.jsonl", tmp_path / "out", progress=False, rewriter=rewriter
    )
    [record] = all_records(tmp_path)
    assert record["style"] == served["style"]
    prompts = load_mode_prompts(BUILTIN_LIBRARY, "math-notes")
    [style] = [style for style in prompts.styles if style.id == record["style"]]
    [asked] = [call for call in rewriter.calls if call.messages[-1].text == prompts.user.format(chunk=source)]
    assert asked.messages[0].text == prompts.system.format(style=style.instruction)
    rewrite = asked.reply
    assert rewrite.strip() and rewrite.strip() != source
    if "text" in record:  # accepted: the corpus text is the teacher's notes
        assert record["text"] == rewrite.strip()
    else:  # rejected by a fidelity check or the judge: the attempt keeps the notes and the reasons
        assert [attempt["rewrite"] for attempt in record["attempts"]] == [rewrite]
        assert record["rejected"]


def test_to_a_language_means_translate_mode_without_the_name_and_date_checks(tmp_path):
    manifest = run_cli(tmp_path, ["--to", "French"], "The bridge opened in 1932.")

    assert (manifest["settings"]["mode"], manifest["settings"]["language"]) == ("translate", "French")
    [record] = all_records(tmp_path)
    assert record["id"] == "doc#translate-0"
    for attempt in record["attempts"]:
        assert "names" not in attempt["failed"] and "dates" not in attempt["failed"]


def test_to_with_another_mode_is_an_error_naming_the_flag(tmp_path, capsys):
    (tmp_path / "docs.jsonl").write_text(json.dumps({"text": "x"}) + "\n")
    with pytest.raises(SystemExit) as exited:
        documents, output = str(tmp_path / "docs.jsonl"), str(tmp_path / "out")
        main(["rephrase", "--input", documents, "--output", output, "--mode", "knowledge", "--to", "French"])
    assert exited.value.code == 2
    assert "--to" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_unreachable_endpoint_stops_the_run_with_a_resume_hint(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = LLMConfig(
        backend="endpoint", base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=0, timeout_s=5
    )
    (tmp_path / "docs.jsonl").write_text(json.dumps({"id": "doc", "text": "It opened in 1932."}) + "\n")
    with pytest.raises(RephraseStopped, match=r"0 finished documents are kept .* rerun the same command"):
        rephrase_corpus(
            RephraseConfig(rewriter=endpoint), tmp_path / "docs.jsonl", tmp_path / "out", progress=False
        )


def test_more_variants_than_styles_is_refused_before_any_model_loads_naming_the_field(tmp_path, capsys):
    (tmp_path / "docs.jsonl").write_text(json.dumps({"text": "x"}) + "\n")
    documents, output = str(tmp_path / "docs.jsonl"), str(tmp_path / "out")
    with pytest.raises(SystemExit) as exited:
        main(
            ["rephrase", "--input", documents, "--output", output, "--mode", "math-notes", "--variants", "4"]
        )
    assert exited.value.code == 2
    [printed] = capsys.readouterr().err.splitlines()  # one line on stderr, not wrapped
    assert "[rephrase].variants: 4 variants need as many styles, but the math-notes prompts have 3" in printed
