"""Supervised fine-tuning (K2 report §3.1) on the shared training loop, and the critic's bootstrap (§3.2.2).

Conversations from chat datasets, gym trajectories, preference pairs (judged pairwise in the critic's
format, both orders) and gym task files (prompt → reference answer) are checked, held out, rendered with the
K2 template (loss on the assistant's tokens), cut to the context by whole turns, mixed by weight and packed.

    from openk2.sft.run import sft              # what `openk2 sft --recipe R` runs
    from openk2.sft.recipe import load_sft_recipe
    from openk2.sft.evaluate import exact_match_rate, tool_call_rates

Nothing is imported here, so that `openk2 --help` (which reads `openk2.sft.cli`) does not load torch.
"""
