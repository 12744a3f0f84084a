"""The HTML table in Table 3's layout and the plain progress lines of a run outside a terminal."""

import re

from openk2.eval.report import render_html
from tests.eval.conftest import run_suites
from tests.eval.oracles import bfcl_oracle, humaneval_oracle
from tests.eval.test_runner import GarbledToolCalls


def test_html_groups_suites_by_area_with_one_column_per_model_and_the_best_in_bold(tmp_path):
    good = run_suites(tmp_path / "a", bfcl_oracle(["simple"]), "bfcl-simple", {"n": 4})
    coder = run_suites(tmp_path / "b", humaneval_oracle(), "humaneval", {"n": 2})
    bad = run_suites(tmp_path / "c", GarbledToolCalls(), "bfcl-simple,humaneval", {"n": 2})
    page = render_html([good, coder, bad])
    header = re.search(r"<thead>(.*?)</thead>", page, re.DOTALL).group(1)
    assert [re.sub(r"<.*", "", th) for th in re.findall(r"<th>([^<]*)<span", header)] == [
        "bfcl-oracle", "humaneval-oracle", "garbled",
    ]  # fmt: skip
    body = re.search(r"<tbody>(.*?)</tbody>", page, re.DOTALL).group(1)
    areas = re.findall(r'<tr class="area"><td class="left" colspan="5">([^<]*)</td>', body)
    assert areas == ["Coding Tasks", "Tool Use Tasks"]  # Table 3's order
    rows = {row[0]: row[1] for row in re.findall(r'<tr><td class="left">([^<]*)</td>(.*?)</tr>', body)}
    assert "<b>100.0</b>" in rows["HumanEval"] and "<b>100.0</b>" in rows["BFCL simple (Python)"]
    assert rows["HumanEval"].count("—") == 1  # the BFCL-only model has no HumanEval number
    assert "n=4" in rows["BFCL simple (Python)"] and "Wilson" in page


def test_a_run_outside_a_terminal_prints_plain_progress_lines(tmp_path, capsys):
    run_suites(tmp_path, bfcl_oracle(["simple"]), "bfcl-simple", {"n": 20}, progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("bfcl-simple: 1/20 items (5%) | 1 passed, 0 not scored | ")  # the first item
    assert lines[-1].startswith("bfcl-simple: 20/20 items (100%) | 20 passed, 0 not scored | ")  # the end
