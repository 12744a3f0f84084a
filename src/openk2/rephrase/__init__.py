"""K2 report §2.2: chunk-wise autoregressive rephrasing with fidelity checks.

    config = load_rephrase_config(Path("recipes/rephrase.toml"), overrides={})
    summary = rephrase_corpus(config, Path("docs.jsonl"), Path("runs/rephrased"))

Writes `rephrased.jsonl` (a corpus `openk2 tokenize` reads), `rejects.jsonl` and `summary.json`.
"""

from openk2.rephrase.config import RephraseConfig, load_rephrase_config
from openk2.rephrase.pipeline import RephraseStopped, rephrase_corpus
from openk2.rephrase.summary import RephraseSummary, print_summary

__all__ = [
    "RephraseConfig",
    "RephraseStopped",
    "RephraseSummary",
    "load_rephrase_config",
    "print_summary",
    "rephrase_corpus",
]
