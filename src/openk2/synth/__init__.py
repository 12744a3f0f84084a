"""Large-scale agentic data synthesis for tool use (K2 report §3.1.1, Fig. 8 and 9).

    tools   real MCP tools + synthetic tools evolved from K2's categories        (repository.py)
    tasks   agents (system prompt + tool subset) and rubric tasks as gym Tasks   (task_stage.py)
    run     episodes through `openk2.gym.rollout` with a simulated user, real
            tools or the tool simulator, judged against the rubric             (episodes.py, judge.py)

`openk2 synth --recipe R` runs them over one directory; `trajectories.jsonl` is what `openk2 sft` reads.
"""

from openk2.synth.pipeline import STAGES, SynthRun, SynthStopped, synthesise
from openk2.synth.recipe import SynthRecipe, load_synth_recipe

__all__ = ["STAGES", "SynthRecipe", "SynthRun", "SynthStopped", "load_synth_recipe", "synthesise"]
