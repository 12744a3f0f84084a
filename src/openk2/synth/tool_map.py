"""A map of the tool repository like K2 report Fig. 9: t-SNE of description embeddings, real vs synthetic.

Fig. 9 shows MCP tools clustered by their source category and synthetic tools by their domain
category covering complementary regions. Here the points are the tools of `tools.jsonl`, embedded by
all-MiniLM-L6-v2 (`embeddings.py`) and laid out with scikit-learn's t-SNE (seeded); synthetic tools
are dots coloured by category, real tools crosses coloured by server.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from openk2.synth.tools import ToolRecord


def tsne_layout(vectors: np.ndarray, seed: int) -> np.ndarray:
    """[n, 2] coordinates; t-SNE needs more points than its perplexity, so tiny sets get a small one."""
    from sklearn.manifold import TSNE

    count = len(vectors)
    if count < 3:
        return np.zeros((count, 2))
    perplexity = float(min(30, max(2, (count - 1) // 3)))
    layout = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, metric="cosine")
    return layout.fit_transform(vectors.astype(np.float64))


def map_points(tools: list[ToolRecord], coordinates: np.ndarray) -> list[dict[str, Any]]:
    return [
        {"name": tool.name, "category": tool.category, "origin": tool.origin, "x": float(x), "y": float(y)}
        for tool, (x, y) in zip(tools, coordinates, strict=True)
    ]


def render_map_png(points: list[dict[str, Any]]) -> bytes:
    """The scatter plot as PNG bytes (matplotlib, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(11, 7.5), dpi=110)
    synthetic = sorted({p["category"] for p in points if p["origin"] == "synthetic"})
    real = sorted({p["category"] for p in points if p["origin"] != "synthetic"})
    palette = plt.get_cmap("tab20")
    for index, category in enumerate(synthetic):
        chosen = [p for p in points if p["origin"] == "synthetic" and p["category"] == category]
        axes.scatter(
            [p["x"] for p in chosen],
            [p["y"] for p in chosen],
            s=18,
            color=palette(2 * index % 20 + index // 10 % 2),  # tab20's ten dark shades, then its light ones
            alpha=0.8,
            label=f"{category} ({len(chosen)})",
        )
    dark = plt.get_cmap("Dark2")
    for index, category in enumerate(real):
        chosen = [p for p in points if p["origin"] != "synthetic" and p["category"] == category]
        axes.scatter(
            [p["x"] for p in chosen],
            [p["y"] for p in chosen],
            s=70,
            marker="X",
            color=dark(index % 8),
            edgecolors="black",
            linewidths=0.6,
            label=f"real: {category} ({len(chosen)})",
        )
    axes.set_title(
        "Tool repository: t-SNE of description embeddings (dots: synthetic, by category; X: real, by server)"
    )
    axes.set_xticks([])
    axes.set_yticks([])
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
