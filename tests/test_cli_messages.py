"""What a new user meets first, through the real `openk2` command in a subprocess: `generate` reads and writes
text, and a broken file, a missing directory, a server that is not running or a loosely typed recipe give one
clean line on stderr naming the thing at fault, with exit status 2, never a traceback."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from openk2.cli import PRESET_NAMES
from openk2.model import PRESETS, K2Config, K2ForCausalLM
from openk2.tokenizer.bpe import plain_text_tokenizer, train_k2_tokenizer
from openk2.tokenizer.special_tokens import BOS
from tests.train.small_run import SMALL_MODEL, VOCAB, write_corpus

REPO = Path(__file__).resolve().parents[1]
PROMPT = "To be, or not to be"


def openk2(*arguments: str, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run(
        [sys.executable, "-m", "openk2", *arguments],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_clean_error(completed: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit status 2 and one `error: ...` line on stderr holding every expected part; returns the line."""
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr
    [line] = completed.stderr.strip().splitlines()
    assert line.startswith("error: "), line
    for part in expected:
        assert part in line, (part, line)
    return line


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised small K2 with its own K2 BPE: a checkpoint as `openk2 pretrain` writes it."""
    root = tmp_path_factory.mktemp("checkpoint")
    corpus = write_corpus(tmp_path_factory.mktemp("corpus"))
    tokenizer = train_k2_tokenizer((path.read_text() for path in sorted(corpus.iterdir())), VOCAB)
    torch.manual_seed(0)
    K2ForCausalLM(K2Config(**SMALL_MODEL)).save_pretrained(root)
    tokenizer.save(str(root / "tokenizer.json"))
    return root


def damaged_copy(checkpoint: Path, destination: Path, file: str, content: bytes) -> Path:
    shutil.copytree(checkpoint, destination)
    (destination / file).write_bytes(content)
    return destination


def test_generate_continues_a_text_prompt_and_prints_text(checkpoint: Path) -> None:
    text = openk2("generate", PROMPT, "--checkpoint", str(checkpoint), "--max-new-tokens", "12")
    assert text.returncode == 0, text.stderr
    # the same continuation asked for as token ids: [BOS] and the prompt's ids, as training documents start
    loaded = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    prompt_ids = [loaded.token_to_id(BOS), *plain_text_tokenizer(loaded).encode(PROMPT).ids]
    ids = openk2(
        "generate",
        ",".join(map(str, prompt_ids)),
        "--ids",
        "--checkpoint",
        str(checkpoint),
        "--max-new-tokens",
        "12",
    )
    assert ids.returncode == 0, ids.stderr
    continuation = [int(token) for token in ids.stdout.strip().split(",")]
    assert len(continuation) == 12
    expected = loaded.decode(prompt_ids + continuation, skip_special_tokens=True)
    assert text.stdout == expected + "\n" and text.stdout.startswith(PROMPT)


def test_generate_help_names_every_preset_and_a_preset_without_ids_is_refused() -> None:
    assert tuple(PRESETS) == PRESET_NAMES  # the light copy of the names the help shows
    usage = openk2("generate", "--help")
    assert usage.returncode == 0
    flat = " ".join(usage.stdout.split())
    assert re.search(r"--preset PRESET .*" + ".*".join(re.escape(name) for name in PRESETS), flat)
    assert_clean_error(openk2("generate", PROMPT, "--preset", "tiny"), "--preset", "--ids")
    random_ids = openk2("generate", "1,2,3", "--ids", "--preset", "tiny", "--max-new-tokens", "2")
    assert random_ids.returncode == 0 and len(random_ids.stdout.strip().split(",")) == 2


@pytest.mark.parametrize("verb", ["generate", "serve"])
def test_a_truncated_safetensors_file_is_named(verb: str, checkpoint: Path, tmp_path: Path) -> None:
    weights = (checkpoint / "model.safetensors").read_bytes()
    for name, cut in (("in_header", weights[:100]), ("in_data", weights[: len(weights) // 2])):
        damaged = damaged_copy(checkpoint, tmp_path / name, "model.safetensors", cut)
        arguments = [PROMPT] if verb == "generate" else ["--port", "0"]
        completed = openk2(verb, *arguments, "--checkpoint", str(damaged))
        assert_clean_error(completed, f"{damaged / 'model.safetensors'}: not a readable safetensors file")


@pytest.mark.parametrize("verb", ["generate", "serve"])
def test_a_config_json_that_is_not_json_is_named(verb: str, checkpoint: Path, tmp_path: Path) -> None:
    damaged = damaged_copy(checkpoint, tmp_path / "bad_config", "config.json", b'{"vocab_size": 1024,\n')
    arguments = [PROMPT] if verb == "generate" else ["--port", "0"]
    completed = openk2(verb, *arguments, "--checkpoint", str(damaged))
    assert_clean_error(completed, f"{damaged / 'config.json'}: not valid JSON", "line 2")


@pytest.mark.parametrize("verb", ["generate", "serve", "chat"])
def test_a_checkpoint_directory_that_does_not_exist_is_named(verb: str, tmp_path: Path) -> None:
    missing = tmp_path / "no_such_run"
    arguments = [PROMPT] if verb == "generate" else []
    completed = openk2(verb, *arguments, "--checkpoint", str(missing))
    line = assert_clean_error(completed, f"{missing}: no such checkpoint directory")
    assert "tokenizer.json" not in line


def test_chat_with_an_endpoint_that_is_not_running_says_so() -> None:
    with socket.socket() as probe:  # a port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    completed = openk2("chat", "--endpoint", f"http://127.0.0.1:{port}/v1")
    assert_clean_error(completed, f"http://127.0.0.1:{port}/v1", "is `openk2 serve` running there?")


def test_tokenize_refuses_a_typo_outside_data_before_writing_anything(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    recipe = tmp_path / "pretrain-tiny.toml"
    text = (REPO / "recipes" / "pretrain-tiny.toml").read_text()
    text = text.replace('shards_dir = "runs/pretrain-tiny/data"', f'shards_dir = "{shards}"')
    recipe.write_text(text.replace("grad_accum = 1", "grad_acum = 1"))
    completed = openk2("tokenize", "--recipe", str(recipe), cwd=tmp_path)
    assert_clean_error(completed, f"{recipe}: [train].grad_acum: Extra inputs are not permitted")
    assert not shards.exists()


RECIPES = REPO / "recipes"


@pytest.mark.parametrize(
    ("verb", "recipe", "line", "loose", "problem"),
    [
        ("tokenize", "pretrain-tiny.toml", "vocab_size = 8192", 'vocab_size = "8192"', "[data].vocab_size: Input should be a valid integer"),
        ("pretrain", "pretrain-tiny.toml", "batch_size = 16", 'batch_size = "16"', "[train].batch_size: Input should be a valid integer"),
        ("pretrain", "pretrain-tiny.toml", "momentum = 0.95", 'momentum = "0.95"', "[optim].momentum: Input should be a valid number"),
        ("pretrain", "pretrain-tiny.toml", 'preset = "tiny"', 'preset = "tiny"\noverrides = { hidden_size = "128" }', "[model]: overrides: hidden_size: Input should be a valid integer"),
        ("rephrase", "rephrase.toml", "concurrency = 4", 'concurrency = "4"', "[rephrase].concurrency: Input should be a valid integer"),
        ("rephrase", "rephrase.toml", 'backend = "teacher"', 'backend = "teacher"\ntimeout_s = "60"', "[rephrase].rewriter.timeout_s: Input should be a valid number"),
        ("sft", "sft-tiny.toml", "seq_len = 512", 'seq_len = "512"', "[sft].seq_len: Input should be a valid integer"),
    ],
)  # fmt: skip
def test_every_recipe_refuses_a_value_of_the_wrong_type_naming_the_field(
    verb: str, recipe: str, line: str, loose: str, problem: str, tmp_path: Path
) -> None:
    text = (RECIPES / recipe).read_text()
    assert line in text
    path = tmp_path / recipe
    path.write_text(text.replace(line, loose, 1))
    arguments = (
        ["--input", str(REPO / "samples/knowledge.jsonl"), "--output", "out"] if verb == "rephrase" else []
    )
    completed = openk2(verb, "--recipe", str(path), *arguments, cwd=tmp_path)
    assert_clean_error(completed, f"{path}: ", problem)
    assert sorted(entry.name for entry in tmp_path.iterdir()) == [recipe]  # nothing written
