"""K2 report §2.2: chunk-wise autoregressive rephrasing with fidelity checks.

    from openk2.rephrase.config import load_rephrase_config
    from openk2.rephrase.pipeline import rephrase_corpus

    config = load_rephrase_config(Path("recipes/rephrase.toml"), overrides={})
    summary = rephrase_corpus(config, Path("docs.jsonl"), Path("runs/rephrased"))

Writes `rephrased.jsonl` (a corpus `openk2 tokenize` reads), `rejects.jsonl` and `summary.json`.
The package itself imports nothing, so that `openk2 rephrase --help` reads the modes without the pipeline.
"""
