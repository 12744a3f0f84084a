"""`openk2 eval` on the command line: bad input is a one-line error naming what is wrong."""

import socket

import pytest

from openk2.cli import main


def run(argv, capsys) -> tuple[int, str]:
    """The exit code and what was printed on stderr (where every CLI error goes), as one line."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    return exited.value.code, " ".join(capsys.readouterr().err.split())


def test_an_unknown_suite_is_refused_listing_the_known_ones(capsys):
    code, output = run(["eval", "--model", "teacher", "--suite", "humaneval,mmlu"], capsys)
    assert code == 2
    assert (
        "unknown suite 'mmlu'; known suites: humaneval, bfcl-simple" in output
        and "groups: all, core" in output
    )


def test_a_model_that_is_neither_teacher_url_nor_checkpoint_is_refused(capsys, tmp_path):
    code, output = run(["eval", "--model", str(tmp_path / "nowhere"), "--suite", "humaneval"], capsys)
    assert code == 2 and "neither 'teacher', an http(s) endpoint URL, nor a checkpoint directory" in output


def test_a_bad_suite_setting_is_refused_naming_it(capsys):
    code, output = run(
        ["eval", "--model", "teacher", "--suite", "math500", "--set", "math500.sampels=4"], capsys
    )
    assert code == 2 and "math500: sampels: Extra inputs are not permitted" in output
    code, output = run(
        ["eval", "--model", "teacher", "--suite", "math500", "--set", "aime2024.samples=4"], capsys
    )
    assert (
        code == 2 and "--set aime2024.samples: expected SUITE.FIELD=VALUE with SUITE one of math500" in output
    )


def test_an_unreachable_endpoint_stops_with_a_resume_hint(capsys, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = ["eval", "--model", f"http://127.0.0.1:{port}/v1", "--suite", "math500", "--max-retries", "0"]
    code, output = run([*argv, "--output", str(tmp_path), "--no-progress"], capsys)
    assert code == 3 and "stopped:" in output and "rerun the same command" in output


def test_list_shows_every_suite_with_its_source(capsys):
    main(["eval", "list"])
    output = capsys.readouterr().out
    for suite in ("humaneval", "bfcl-parallel-multiple", "tau2-retail", "aime2025", "ifeval-style"):
        assert suite in output
