"""HumanEval through the eval suite end to end (rollout, sandbox, scoring): canonical solutions pass."""

from openk2.eval import EvalProfile
from tests.eval.conftest import run_suites
from tests.eval.oracles import humaneval_oracle


def test_canonical_solutions_score_100_percent_on_the_held_out_split(tmp_path):
    results = run_suites(tmp_path, humaneval_oracle(), "humaneval")
    [suite] = results.suites
    assert suite.settings.split == "test" and suite.tasks == 32  # the gym's held-out fifth of the 164
    assert suite.scored == suite.items == 32
    assert [score.metric for score in suite.scores] == ["pass@1", "parsed"]
    assert suite.headline.value == 1.0


def test_pass_at_k_with_several_samples_uses_the_unbiased_estimator(tmp_path):
    results = run_suites(
        tmp_path, humaneval_oracle(), "humaneval", {"n": 4, "samples": 5, "temperature": 0.6}
    )
    [suite] = results.suites
    assert [score.metric for score in suite.scores[:2]] == ["pass@1", "pass@5"]
    assert suite.scores[0].value == suite.scores[1].value == 1.0
    assert suite.scores[0].interval.method == "bootstrap"


def test_all_164_canonical_solutions_score_100_percent(tmp_path):
    results = run_suites(tmp_path, humaneval_oracle(), "humaneval", profile=EvalProfile(split="all"))
    [suite] = results.suites
    assert suite.tasks == suite.scored == 164 and suite.headline.value == 1.0
