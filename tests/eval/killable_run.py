"""A run to SIGKILL: `python -m tests.eval.killable_run OUTPUT` evaluates bfcl-simple (40 cases) with the
ground-truth oracle slowed to 20 requests/s, so the test can kill it part-way through."""

import sys
import time
from pathlib import Path

from tests.eval.conftest import run_suites
from tests.eval.oracles import bfcl_oracle

SUITE, CASES = "bfcl-simple", 40


def slow_oracle():
    oracle = bfcl_oracle(["simple"])
    answer = oracle.script

    def script(request):
        time.sleep(0.05)
        return answer(request)

    oracle.script = script
    return oracle


if __name__ == "__main__":
    run_suites(Path(sys.argv[1]), slow_oracle(), SUITE, {"n": CASES}, concurrency=2)
