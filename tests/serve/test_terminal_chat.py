"""`openk2 chat`: the terminal conversation, driven through its CLI arguments against a live endpoint."""

import argparse
import io

from openk2.llm import SamplingParams
from openk2.serve.cli import add_chat_arguments, add_serve_arguments
from openk2.serve.terminal_chat import run_terminal_chat
from tests.llm.checkpoints import ANSWER


def test_chat_verb_talks_to_an_endpoint_over_stdin(scripted, monkeypatch, capsys):
    parser = argparse.ArgumentParser()
    add_chat_arguments(parser)
    args = parser.parse_args(
        ["--endpoint", scripted.server.base_url, "--temperature", "0", "--max-tokens", "32"]
    )
    monkeypatch.setattr(
        "sys.stdin", io.StringIO("What is the weather?\n\n/reset\nAnd now?\n/exit\nnever read\n")
    )
    args.run(args)
    shown = capsys.readouterr().out
    assert f"chatting with {scripted.engine.model_name}" in shown
    assert shown.count(f"{scripted.engine.model_name}> {ANSWER}") == 2
    assert "(new conversation)" in shown


def test_conversation_keeps_every_turn_until_reset(scripted):
    output = io.StringIO()
    lines = ["Hello", "What is the weather?", "/exit"]
    sampling = SamplingParams(temperature=0, max_tokens=4)
    messages = run_terminal_chat(scripted.engine, sampling, lines, output, system="Be brief.")
    assert [message["role"] for message in messages] == ["system", "user", "assistant", "user", "assistant"]
    # the scripted answer "Sunny, 18C." cut after its first 4 tokens, in both turns; an empty reply fails
    assert ANSWER.startswith("Sunny, ")
    assert messages[2]["content"] == messages[4]["content"] == "Sunny, "
    assert "[finish_reason: length]" in output.getvalue()


def test_serve_verb_needs_exactly_one_model_source():
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(["--teacher", "--port", "9001"])
    assert (args.teacher, args.checkpoint, args.host, args.port) == (True, None, "127.0.0.1", 9001)
    for wrong in ([], ["--teacher", "--checkpoint", "x"]):
        try:
            parser.parse_args(wrong)
        except SystemExit as exit_:
            assert exit_.code == 2
        else:
            raise AssertionError(f"{wrong} was accepted")
