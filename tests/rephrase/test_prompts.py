from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from openk2.rephrase.fidelity import FidelitySettings
from openk2.rephrase.prompts import (
    BUILTIN_LIBRARY,
    JUDGE_FILE,
    MODES,
    JudgeExample,
    JudgePrompts,
    Mode,
    ModePrompts,
    Style,
    library_digest,
    load_judge_prompts,
    load_mode_prompts,
)

CHUNK = "The bridge opened in 1932 and carries eight lanes."
SOURCE_CONTEXT = "Construction began in 1929 under the engineer Othmar Ammann."
REWRITE_SO_FAR = "Work on the crossing started in 1929, led by Othmar Ammann."
BRACES = "f(x) = {x}, a set {{1, 2}}, a format field {0} and stray }{ braces"

# the first line of each built-in user template, as it reads once {language} is filled in
USER_WORDING: dict[Mode, str] = {
    "knowledge": "Rewrite this passage:",
    "math-notes": "Write learning notes for this text:",
    "translate": "Translate this passage into French:",
}
# the first line of each built-in context template (added to the system prompt after the first chunk)
CONTEXT_WORDING: dict[Mode, str] = {
    "knowledge": "The passage continues a document.",
    "math-notes": "The text continues a document.",
    "translate": "The passage continues a document.",
}

MODE_TOML = """\
system = "You rewrite {style}."
context = "Before:\\n{source_context}\\nSo far:\\n{rewrite_so_far}"
user = "Rewrite:\\n{chunk}"

[[styles]]
id = "plain"
instruction = "plainly"

[[styles]]
id = "formal"
instruction = "formally"
"""

JUDGE_TOML = """\
system = "Rate the rewrite from 1 to 5."
user = "SOURCE: {source}\\nREWRITE: {rewrite}"

[[examples]]
source = "Water boils at 100 C."
rewrite = "Ice cream is sweet."
verdict = "Score: 1\\nReason: unrelated."

[[examples]]
source = "The cat sat."
rewrite = "A cat was sitting."
verdict = "Score: 5\\nReason: same."
"""

PLAIN = Style(id="plain", instruction="in plain words")
SIMPLE_PROMPTS = ModePrompts(
    system="Editor {style}, writing {language}.",
    context="Before:\n{source_context}\nSo far:\n{rewrite_so_far}",
    user="Use {{braces}} literally.\nRewrite:\n{chunk}",
    styles=(PLAIN,),
)


def library(tmp_path: Path, mode_toml: str = MODE_TOML, judge_toml: str = JUDGE_TOML) -> Path:
    """A custom prompt library with one mode file (knowledge.toml) and judge.toml."""
    directory = tmp_path / "library"
    directory.mkdir()
    (directory / "knowledge.toml").write_text(mode_toml, encoding="utf-8")
    (directory / JUDGE_FILE).write_text(judge_toml, encoding="utf-8")
    return directory


def load_error(directory: Path, mode_toml: str) -> str:
    """The message of the ValueError that loading `mode_toml` as knowledge.toml raises."""
    with pytest.raises(ValueError) as error:
        load_mode_prompts(library(directory, mode_toml), "knowledge")
    return str(error.value)


# --- the built-in library -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_builtin_library_has_at_least_two_distinct_styles_per_mode(mode: Mode) -> None:
    prompts = load_mode_prompts(BUILTIN_LIBRARY, mode)
    ids = [style.id for style in prompts.styles]
    assert len(ids) >= 2
    assert len(set(ids)) == len(ids)


def test_builtin_judge_prompts_load_with_examples() -> None:
    judge = load_judge_prompts(BUILTIN_LIBRARY)
    assert len(judge.examples) == 3
    assert judge.examples[1].verdict == "Score: 3\nReason: The number of lanes is changed from eight to four."


@pytest.mark.parametrize("mode", MODES)
def test_first_chunk_message_holds_chunk_and_style_but_no_context(mode: Mode) -> None:
    prompts = load_mode_prompts(BUILTIN_LIBRARY, mode)
    style = prompts.styles[0]
    messages = prompts.messages(style, "French", CHUNK, SOURCE_CONTEXT, REWRITE_SO_FAR, first=True)
    assert [message["role"] for message in messages] == ["system", "user"]
    system, user = messages[0]["content"], messages[1]["content"]
    assert style.instruction in system
    assert CONTEXT_WORDING[mode] not in system
    assert user.startswith(USER_WORDING[mode])
    assert user.endswith(CHUNK)
    for message in messages:
        assert SOURCE_CONTEXT not in message["content"]
        assert REWRITE_SO_FAR not in message["content"]


@pytest.mark.parametrize("mode", MODES)
def test_next_chunk_message_holds_source_context_and_rewrite_so_far(mode: Mode) -> None:
    prompts = load_mode_prompts(BUILTIN_LIBRARY, mode)
    style = prompts.styles[1]
    messages = prompts.messages(style, "French", CHUNK, SOURCE_CONTEXT, REWRITE_SO_FAR, first=False)
    assert [message["role"] for message in messages] == ["system", "user"]
    system, user = messages[0]["content"], messages[1]["content"]
    assert style.instruction in system
    assert system.index(style.instruction) < system.index(CONTEXT_WORDING[mode])
    assert system.index(SOURCE_CONTEXT) < system.index(REWRITE_SO_FAR)
    assert user.startswith(USER_WORDING[mode])
    assert user.endswith(CHUNK)


def test_translate_names_the_target_language() -> None:
    prompts = load_mode_prompts(BUILTIN_LIBRARY, "translate")
    messages = prompts.messages(prompts.styles[0], "Japanese", CHUNK, "", "", first=True)
    assert "into Japanese" in messages[0]["content"]
    assert messages[1]["content"] == f"Translate this passage into Japanese:\n\n{CHUNK}"


@pytest.mark.parametrize("mode", MODES)
def test_instructions_hold_style_and_wording_but_no_passages(mode: Mode) -> None:
    prompts = load_mode_prompts(BUILTIN_LIBRARY, mode)
    style = prompts.styles[0]
    system, context, user = prompts.instructions(style, "French")
    assert style.instruction in system
    assert context.startswith(CONTEXT_WORDING[mode])
    assert user.startswith(USER_WORDING[mode])
    for text in (system, context, user):
        assert "{" not in text
        assert "}" not in text


# --- messages and instructions, exactly -----------------------------------------------------------


def test_first_chunk_messages_leave_out_the_context_template() -> None:
    messages = SIMPLE_PROMPTS.messages(PLAIN, "Welsh", "CHUNK", "CONTEXT", "SO FAR", first=True)
    assert messages == [
        {"role": "system", "content": "Editor in plain words, writing Welsh."},
        {"role": "user", "content": "Use {braces} literally.\nRewrite:\nCHUNK"},
    ]


def test_later_chunk_messages_append_the_context_to_the_system_prompt() -> None:
    messages = SIMPLE_PROMPTS.messages(PLAIN, "Welsh", "CHUNK", "CONTEXT", "SO FAR", first=False)
    assert messages == [
        {
            "role": "system",
            "content": "Editor in plain words, writing Welsh.\n\nBefore:\nCONTEXT\nSo far:\nSO FAR",
        },
        {"role": "user", "content": "Use {braces} literally.\nRewrite:\nCHUNK"},
    ]


@pytest.mark.parametrize("mode", MODES)
def test_braces_in_passages_pass_through_verbatim(mode: Mode) -> None:
    prompts = load_mode_prompts(BUILTIN_LIBRARY, mode)
    first = prompts.messages(prompts.styles[0], "French", BRACES, "", "", first=True)
    assert first[1]["content"].endswith(BRACES)
    later = prompts.messages(prompts.styles[0], "French", BRACES, "ctx " + BRACES, "so far " + BRACES, False)
    assert "ctx " + BRACES in later[0]["content"]
    assert "so far " + BRACES in later[0]["content"]
    assert later[1]["content"].endswith(BRACES)


def test_instructions_drop_the_passage_placeholders_and_keep_the_wording() -> None:
    assert SIMPLE_PROMPTS.instructions(PLAIN, "Welsh") == [
        "Editor in plain words, writing Welsh.",
        "Before:\n\n\nSo far:\n\n",
        "Use {braces} literally.\nRewrite:\n\n",
    ]


# --- loading a custom library: what is checked --------------------------------------------------


def test_custom_library_loads_its_templates_and_styles(tmp_path: Path) -> None:
    prompts = load_mode_prompts(library(tmp_path), "knowledge")
    assert prompts.system == "You rewrite {style}."
    assert prompts.styles == (
        Style(id="plain", instruction="plainly"),
        Style(id="formal", instruction="formally"),
    )
    assert prompts.checks == FidelitySettings()


def test_unknown_placeholder_is_an_error_naming_file_field_and_placeholder(tmp_path: Path) -> None:
    message = load_error(tmp_path, MODE_TOML.replace("{rewrite_so_far}", "{foo}"))
    assert str(tmp_path / "library" / "knowledge.toml") in message
    assert "context" in message
    assert "foo" in message


def test_unmatched_brace_is_an_error_naming_file_and_field(tmp_path: Path) -> None:
    message = load_error(tmp_path, MODE_TOML.replace('Rewrite:\\n{chunk}"', 'Rewrite:\\n{chunk"'))
    assert str(tmp_path / "library" / "knowledge.toml") in message
    assert "user" in message


def test_unknown_placeholder_inside_a_format_spec_is_an_error(tmp_path: Path) -> None:
    # the nested field {foo} is not a known placeholder: messages() would raise KeyError('foo') mid-run
    message = load_error(tmp_path, MODE_TOML.replace('Rewrite:\\n{chunk}"', 'Rewrite:\\n{chunk:{foo}}"'))
    assert "user" in message
    assert "foo" in message


def test_missing_mode_file_is_an_error_naming_it(tmp_path: Path) -> None:
    directory = library(tmp_path)
    with pytest.raises(ValueError, match="cannot read prompt file") as error:
        load_mode_prompts(directory, "translate")
    assert str(directory / "translate.toml") in str(error.value)


def test_bad_toml_is_an_error_naming_the_file(tmp_path: Path) -> None:
    message = load_error(tmp_path, 'system = "never closed\n')
    assert str(tmp_path / "library" / "knowledge.toml") in message
    assert "cannot read prompt file" in message


def test_repeated_style_ids_are_an_error_naming_the_file(tmp_path: Path) -> None:
    message = load_error(tmp_path, MODE_TOML.replace('id = "formal"', 'id = "plain"'))
    assert str(tmp_path / "library" / "knowledge.toml") in message
    assert "style ids repeat: ['plain', 'plain']" in message


def test_unknown_top_level_key_is_an_error_naming_file_and_key(tmp_path: Path) -> None:
    message = load_error(tmp_path, "temperature = 0.5\n" + MODE_TOML)
    assert str(tmp_path / "library" / "knowledge.toml") in message
    assert "temperature" in message


def test_unknown_style_key_is_an_error_naming_its_location(tmp_path: Path) -> None:
    message = load_error(
        tmp_path, MODE_TOML.replace('instruction = "formally"', 'instruction = "x"\ntone = "y"')
    )
    assert str(tmp_path / "library" / "knowledge.toml") in message
    assert "styles[1].tone: Extra inputs are not permitted" in message  # the JSON-path form of every error


def test_missing_template_is_an_error_naming_it(tmp_path: Path) -> None:
    without_context = "\n".join(line for line in MODE_TOML.splitlines() if not line.startswith("context"))
    message = load_error(tmp_path, without_context)
    assert "context: Field required" in message


def test_no_styles_is_an_error(tmp_path: Path) -> None:
    message = load_error(tmp_path, MODE_TOML.split("[[styles]]")[0])
    assert str(tmp_path / "library" / "knowledge.toml") in message
    assert "styles" in message


# --- [checks] -----------------------------------------------------------------------------------


def test_checks_table_loads_into_fidelity_settings(tmp_path: Path) -> None:
    checks = '[checks]\nnames = false\nmin_length_ratio = 0.3\nleak_markers = ["as an ai"]\n\n'
    prompts = load_mode_prompts(
        library(tmp_path, MODE_TOML.replace("[[styles]]", checks + "[[styles]]", 1)), "knowledge"
    )
    assert prompts.checks == FidelitySettings(names=False, min_length_ratio=0.3, leak_markers=("as an ai",))


def test_unknown_check_is_an_error_naming_it(tmp_path: Path) -> None:
    message = load_error(
        tmp_path, MODE_TOML.replace("[[styles]]", "[checks]\nnumber = false\n\n[[styles]]", 1)
    )
    assert "checks.number" in message


def test_builtin_checks_match_the_mode_files() -> None:
    knowledge = load_mode_prompts(BUILTIN_LIBRARY, "knowledge").checks
    assert (knowledge.numbers, knowledge.dates, knowledge.names) == (True, True, True)
    assert (knowledge.min_length_ratio, knowledge.max_length_ratio) == (0.6, 1.8)
    assert "as an ai" in knowledge.leak_markers
    math_notes = load_mode_prompts(BUILTIN_LIBRARY, "math-notes").checks
    assert (math_notes.min_length_ratio, math_notes.max_length_ratio) == (0.8, 3.0)
    translate = load_mode_prompts(BUILTIN_LIBRARY, "translate").checks
    assert (translate.numbers, translate.dates, translate.names) == (True, False, False)
    assert (translate.min_length_ratio, translate.max_length_ratio) == (0.4, 2.5)


# --- the judge ----------------------------------------------------------------------------------


def test_judge_examples_are_earlier_user_assistant_turns(tmp_path: Path) -> None:
    judge = load_judge_prompts(library(tmp_path))
    assert judge.messages("The bridge has {8} lanes.", "Eight lanes.") == [
        {"role": "system", "content": "Rate the rewrite from 1 to 5."},
        {"role": "user", "content": "SOURCE: Water boils at 100 C.\nREWRITE: Ice cream is sweet."},
        {"role": "assistant", "content": "Score: 1\nReason: unrelated."},
        {"role": "user", "content": "SOURCE: The cat sat.\nREWRITE: A cat was sitting."},
        {"role": "assistant", "content": "Score: 5\nReason: same."},
        {"role": "user", "content": "SOURCE: The bridge has {8} lanes.\nREWRITE: Eight lanes."},
    ]


def test_builtin_judge_asks_last_about_the_given_pair() -> None:
    messages = load_judge_prompts(BUILTIN_LIBRARY).messages("SRC", "RW")
    assert [message["role"] for message in messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert messages[-1]["content"] == "SOURCE:\nSRC\n\nREWRITE:\nRW"


def test_judge_without_examples_is_system_then_question() -> None:
    judge = JudgePrompts(system="S", user="{source}|{rewrite}")
    assert judge.messages("a", "b") == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "a|b"},
    ]
    with_example = JudgePrompts(
        system="S", user="{source}|{rewrite}", examples=(JudgeExample(source="x", rewrite="y", verdict="v"),)
    )
    assert [message["content"] for message in with_example.messages("a", "b")] == ["S", "x|y", "v", "a|b"]


def test_judge_unknown_placeholder_is_an_error_naming_file_and_field(tmp_path: Path) -> None:
    directory = library(tmp_path, judge_toml=JUDGE_TOML.replace("{rewrite}", "{verdict}"))
    with pytest.raises(ValueError) as error:
        load_judge_prompts(directory)
    message = str(error.value)
    assert str(directory / JUDGE_FILE) in message
    assert "user" in message
    assert "verdict" in message


def test_judge_system_takes_no_placeholders(tmp_path: Path) -> None:
    directory = library(tmp_path, judge_toml=JUDGE_TOML.replace("from 1 to 5.", "of {source}."))
    with pytest.raises(ValueError, match=r"system: unknown placeholder 'source'"):
        load_judge_prompts(directory)


def test_judge_system_escaped_braces_reach_the_model_as_single_braces(tmp_path: Path) -> None:
    # a single brace is refused at load (the system is checked as a template), so `{{` is the only way to
    # write one; like the mode templates, it must reach the model as `{`
    judge_toml = JUDGE_TOML.replace('"Rate the rewrite from 1 to 5."', """'Answer as {{"score": 4}}.'""")
    judge = load_judge_prompts(library(tmp_path, judge_toml=judge_toml))
    assert judge.messages("a", "b")[0]["content"] == 'Answer as {"score": 4}.'


# --- the library digest -------------------------------------------------------------------------


def test_library_digest_follows_the_files_a_run_reads(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(BUILTIN_LIBRARY, copy)
    original = library_digest(copy, "knowledge")
    assert original == library_digest(BUILTIN_LIBRARY, "knowledge")
    assert original != library_digest(copy, "translate")

    with (copy / "translate.toml").open("a", encoding="utf-8") as file:
        file.write("# a file this run does not read\n")
    assert library_digest(copy, "knowledge") == original

    with (copy / "knowledge.toml").open("a", encoding="utf-8") as file:
        file.write("# edited\n")
    edited_mode = library_digest(copy, "knowledge")
    assert edited_mode != original

    with (copy / JUDGE_FILE).open("a", encoding="utf-8") as file:
        file.write("# edited\n")
    assert library_digest(copy, "knowledge") not in (original, edited_mode)


def test_a_mode_judge_note_extends_the_rubric_and_may_only_name_the_language(tmp_path: Path) -> None:
    judge = load_judge_prompts(BUILTIN_LIBRARY)
    note = load_mode_prompts(BUILTIN_LIBRARY, "translate").judge_note.format(language="French")
    system = judge.messages("Bonjour.", "Hello.", note)[0]["content"]
    assert system.startswith(judge.system) and system.endswith(
        "a translation of the SOURCE into French: "
        "judge whether it says the same thing, not "
        "whether the words match."
    )
    assert judge.messages("a", "b")[0]["content"] == judge.system  # knowledge adds nothing
    assert "worked steps" in load_mode_prompts(BUILTIN_LIBRARY, "math-notes").judge_note
    message = load_error(
        tmp_path, MODE_TOML.replace('user = "Rewrite', 'judge_note = "{chunk}"\nuser = "Rewrite')
    )
    assert "judge_note: unknown placeholder 'chunk'" in message
