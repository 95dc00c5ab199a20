"""The evaluation report: PNG plots and an index.html that shows them with the results table."""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence

import numpy as np

from evaluation.results import table_blocks

CHECK, CROSS = "\u2713", "\u2717"
# Training-curve panels: title and the metrics.jsonl keys drawn in it (a key ending in "*" is a prefix).
CURVE_PANELS = (
    ("train loss", ("train/loss",)),
    ("learning rate", ("train/learning_rate",)),
    ("temperature", ("train/temperature",)),
    ("in-batch accuracy", ("train/i2t_accuracy", "train/t2i_accuracy")),
    ("zero-shot accuracy (eval)", ("eval/zero_shot/*",)),
    ("retrieval R@1 (eval)", ("eval/retrieval/*R@1", "eval/retrieval_rewrites/*R@1")),
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt

    return plt


def read_metrics(path: str) -> list[dict]:
    """The rows of a metrics.jsonl file; [] when it does not exist."""
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _matches(key: str, pattern: str) -> bool:
    if "*" not in pattern:
        return key == pattern
    head, tail = pattern.split("*")
    return key.startswith(head) and key.endswith(tail)


def plot_training_curves(rows: list[dict], path: str) -> bool:
    """One panel per CURVE_PANELS entry that has data; returns False (and writes nothing) without data."""
    keys = sorted({k for r in rows for k in r} - {"step", "time"})
    panels = [(title, [k for k in keys if any(_matches(k, p) for p in patterns)]) for title, patterns in CURVE_PANELS]
    panels = [(title, ks) for title, ks in panels if ks]
    if not panels:
        return False
    plt = _pyplot()
    columns = min(3, len(panels))
    rows_needed = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows_needed, columns, figsize=(4.2 * columns, 3.0 * rows_needed), squeeze=False)
    for ax, (title, ks) in zip(axes.flat, panels, strict=False):
        for key in ks:
            points = [(r["step"], r[key]) for r in rows if key in r]
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, marker="o" if len(points) < 8 else None, ms=3, label=key.split("/", 1)[1])
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(ks) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def pca_2d(points: np.ndarray) -> np.ndarray:
    """[N, D] -> [N, 2]: coordinates on the two principal axes of the centred points."""
    centred = points - points.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def plot_embedding_projection(image_embeddings: np.ndarray, text_embeddings: np.ndarray, gap: float, path: str):
    """Images and their captions ([N, D] each) on the first two principal axes of both together."""
    plt = _pyplot()
    n = len(image_embeddings)
    xy = pca_2d(np.concatenate([image_embeddings, text_embeddings]))
    images, texts = xy[:n], xy[n:]
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for i in range(min(n, 40)):  # a few pairs joined, to show that the gap separates matching pairs too
        ax.plot(*zip(images[i], texts[i], strict=True), color="0.75", lw=0.6, zorder=1)
    ax.scatter(*images.T, s=10, alpha=0.6, label="images", color="tab:blue", zorder=2)
    ax.scatter(*texts.T, s=10, alpha=0.6, label="captions", color="tab:orange", zorder=2)
    centres = np.stack([images.mean(axis=0), texts.mean(axis=0)])
    ax.plot(*centres.T, color="black", lw=2, zorder=3)
    ax.scatter(*centres.T, s=120, marker="X", c=["tab:blue", "tab:orange"], edgecolors="black", zorder=4)
    ax.set_title(f"PCA of image and caption embeddings (modality gap {gap:.3f})")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _show_image(ax, image: np.ndarray, colour: str | None = None) -> None:
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(colour is not None)
        if colour:
            spine.set_color(colour)
            spine.set_linewidth(4)


def plot_text_to_image(
    images: np.ndarray, captions: Sequence[str], similarity: np.ndarray, path: str, queries: int = 4, top: int = 5
) -> None:
    """For `queries` captions spread over the test set, the `top` images they retrieve; green frames the true one.

    images: uint8 [N, H, W, 3]; captions: [N], caption i of image i; similarity: [N images, N captions].
    """
    plt = _pyplot()
    picks = np.linspace(0, len(captions) - 1, queries).astype(int)
    fig, axes = plt.subplots(queries, top, figsize=(1.6 * top + 0.5, 1.9 * queries), squeeze=False)
    for row, q in enumerate(picks):
        ranked = np.argsort(-similarity[:, q], kind="stable")[:top]
        for col, i in enumerate(ranked):
            _show_image(axes[row, col], images[i], "tab:green" if i == q else "tab:red")
            axes[row, col].set_xlabel(f"{similarity[i, q]:.2f}", fontsize=7)
        axes[row, 0].set_title(f"\u201c{captions[q]}\u201d", loc="left", fontsize=8)
    fig.suptitle("text \u2192 image: top retrieved images (green = the caption's image)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_image_to_text(
    images: np.ndarray, captions: Sequence[str], similarity: np.ndarray, path: str, queries: int = 4, top: int = 3
) -> None:
    """For `queries` images, the `top` captions they retrieve, the true one marked; shapes as in plot_text_to_image."""
    plt = _pyplot()
    picks = np.linspace(0, len(images) - 1, queries).astype(int)
    fig, axes = plt.subplots(queries, 2, figsize=(7.5, 1.5 * queries), squeeze=False, width_ratios=(1, 4))
    for row, q in enumerate(picks):
        _show_image(axes[row, 0], images[q])
        ranked = np.argsort(-similarity[q], kind="stable")[:top]
        lines = [f"{CHECK if t == q else CROSS} {similarity[q, t]:.2f}  {captions[t]}" for t in ranked]
        axes[row, 1].axis("off")
        for k, (line, t) in enumerate(zip(lines, ranked, strict=True)):
            colour = "tab:green" if t == q else "0.2"
            axes[row, 1].text(0, 0.8 - 0.3 * k, line, fontsize=8, color=colour, transform=axes[row, 1].transAxes)
    fig.suptitle("image \u2192 text: top retrieved captions (\u2713 = the image's caption)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(logits: np.ndarray, labels: np.ndarray, class_names: Sequence[str], title: str, path: str) -> None:
    """Row-normalised confusion matrix of argmax predictions ([N, C] logits, [N] labels)."""
    plt = _pyplot()
    c = len(class_names)
    counts = np.zeros((c, c))
    np.add.at(counts, (labels, np.argmax(logits, axis=1)), 1)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * c, 0.8 + 0.45 * c))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(c), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(c), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(c):
        for j in range(c):
            if counts[i, j]:
                ax.text(j, i, f"{rates[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if rates[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_compositionality(accuracy: dict[str, float], path: str) -> None:
    """Bars of caption-vs-hard-negative accuracy per negative type, chance (0.5) marked."""
    plt = _pyplot()
    names = [k for k in accuracy if k != "mean"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(names, [accuracy[k] for k in names], color="tab:purple")
    ax.axhline(0.5, color="black", ls="--", lw=1, label="chance")
    ax.set_ylim(0, 1)
    ax.set_ylabel("caption beats negative")
    ax.set_title(f"compositionality by hard-negative type (mean {accuracy['mean']:.3f})", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(
    directory: str,
    views: dict[str, dict],
    records: Sequence[dict],
    metrics_rows: list[dict],
    title: str,
    facts: Sequence[tuple[str, str]],
) -> str:
    """Draws every plot the views allow into `directory`, writes index.html there and returns its path.

    views: suite.SuiteOutput.views; records: benchmark_record dicts; metrics_rows: read_metrics().
    """
    os.makedirs(directory, exist_ok=True)
    figures: list[tuple[str, str]] = []

    def target(name: str) -> str:
        return os.path.join(directory, name)

    if plot_training_curves(metrics_rows, target("training_curves.png")):
        figures.append(("training_curves.png", "Training curves from metrics.jsonl."))
    for dataset, view in views.items():
        if "text_embeddings" in view:
            images, texts = view["image_embeddings"], view["text_embeddings"]
            gap = float(np.linalg.norm(images.mean(axis=0) - texts.mean(axis=0)))
            name = f"{dataset}_modality_gap.png"
            plot_embedding_projection(images, texts, gap, target(name))
            figures.append((name, f"{dataset}: test images and their captions on the two principal axes; "
                            "the crosses are the centroids, their distance the modality gap."))  # fmt: skip
            similarity = images @ texts.T
            name = f"{dataset}_text_to_image.png"
            plot_text_to_image(view["images"], view["captions"], similarity, target(name))
            figures.append((name, f"{dataset}: captions as queries, the images they retrieve."))
            name = f"{dataset}_image_to_text.png"
            plot_image_to_text(view["images"], view["captions"], similarity, target(name))
            figures.append((name, f"{dataset}: images as queries, the captions they retrieve."))
        if "compositionality" in view:
            name = f"{dataset}_compositionality.png"
            plot_compositionality(view["compositionality"], target(name))
            figures.append((name, f"{dataset}: how often an image scores its caption above each hard negative."))
        for label, zero_shot in view["zero_shot"].items():
            if len(zero_shot["class_names"]) > 16:  # a 64x64 matrix is unreadable at page width
                continue
            name = f"{dataset}_{label}_confusion.png".replace("/", "_")
            plot_confusion(zero_shot["logits"], zero_shot["labels"], zero_shot["class_names"],
                           f"{dataset} zero-shot {label}: confusion (rows sum to 1)", target(name))  # fmt: skip
            figures.append((name, f"{dataset}: zero-shot {label} confusion matrix."))
    path = target("index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_index(title, facts, records, figures))
    return path


# Counts the figures that loaded, so that a broken image is reported on the page itself.
_IMAGE_CHECK = """<script>
window.addEventListener("load", () => {
  const images = [...document.querySelectorAll("figure img")];
  const broken = images.filter((im) => !(im.complete && im.naturalWidth > 0));
  document.body.dataset.imagesLoaded = images.length - broken.length;
  document.body.dataset.imagesTotal = images.length;
  document.getElementById("status").textContent = broken.length
    ? broken.length + " of " + images.length + " figures failed to load: " + broken.map((im) => im.alt).join(", ")
    : "All " + images.length + " figures loaded.";
});
</script>"""

_STYLE = """<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; }
#status { color: #666; font-size: 0.85em; }
.wide { overflow-x: auto; }
</style>"""


def render_index(
    title: str, facts: Sequence[tuple[str, str]], records: Sequence[dict], figures: Sequence[tuple[str, str]]
) -> str:
    """index.html: facts, the results table per task, then each figure (file name, caption) in order."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        _STYLE,
        "</head><body>",
        f"<h1>{e(title)}</h1>",
        '<p id="status">Loading figures\u2026</p>',
        "<table>" + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts) + "</table>",
        "<h2>Results</h2>",
    ]
    for task, header, rows in table_blocks(records):
        parts.append(f'<h3>{e(task)}</h3><div class="wide"><table>')
        parts.append("<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        parts.extend("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
        parts.append("</table></div>")
    parts.append("<h2>Figures</h2>")
    for file, caption in figures:
        parts.append(f'<figure><img src="{e(file)}" alt="{e(file)}"><figcaption>{e(caption)}</figcaption></figure>')
    parts += [_IMAGE_CHECK, "</body></html>", ""]
    return "\n".join(parts)
