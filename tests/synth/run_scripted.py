"""`python -m tests.synth.run_scripted OUTPUT AGENT_DELAY_S`: stage 3 of the small recipe with scripted
models whose agent is slow, so that a test can SIGKILL it mid-run (tests/synth/test_resume.py)."""

import sys
from pathlib import Path

from openk2.synth import synthesise
from tests.synth.scripted_world import bag_of_words, scripted_models
from tests.synth.synth_recipe import small_recipe

if __name__ == "__main__":
    output, delay = Path(sys.argv[1]), float(sys.argv[2])
    models = scripted_models(agent_delay_s=delay)
    synthesise(
        small_recipe(output, concurrency=2), ("run",), progress=False, models=models, embed=bag_of_words
    )
