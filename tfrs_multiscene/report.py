"""The run's report: a Markdown page with tables and plots, kept in ``<run>/report/``.

Each stage (data validation, retrieval training, evaluation, ranking, export, serving)
adds a section; sections are stored as JSON beside the page so a later command (e.g.
``evaluate`` after ``train``) adds to the same report instead of overwriting it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

os.environ.setdefault("MPLBACKEND", "Agg")


class Report:
    """Collects named sections and renders ``report.md``.

    A section is Markdown text plus figure paths relative to the report directory.
    Re-adding a section with the same name replaces it (re-running a stage).
    """

    def __init__(self, run_dir):
        self.dir = Path(run_dir) / "report"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._store = self.dir / "sections.json"
        self.sections: dict = json.loads(self._store.read_text()) if self._store.exists() else {}

    def add(self, name: str, text: str, figures: Sequence = (), order: int = 50) -> None:
        rel = [os.path.relpath(Path(f), self.dir) for f in figures]
        self.sections[name] = {"text": text, "figures": rel, "order": order}
        self.write()

    def figure_path(self, filename: str) -> Path:
        return self.dir / filename

    def write(self) -> Path:
        self._store.write_text(json.dumps(self.sections, indent=1))
        lines = ["# tfrs_multiscene run report", ""]
        for name, sec in sorted(self.sections.items(), key=lambda kv: (kv[1]["order"], kv[0])):
            lines += [f"## {name}", "", sec["text"].rstrip(), ""]
            for fig in sec["figures"]:
                lines += [f"![{Path(fig).stem}]({fig})", ""]
        page = self.dir / "report.md"
        page.write_text("\n".join(lines))
        return page


def markdown_table(rows: Sequence[Mapping], columns: Sequence[str], float_format: str = "{:.4f}") -> str:
    """Rows of dicts as a Markdown table with the given columns."""

    def cell(v):
        if isinstance(v, float):
            return float_format.format(v)
        return "" if v is None else str(v)

    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        out.append("| " + " | ".join(cell(row.get(c)) for c in columns) + " |")
    return "\n".join(out)


def plot_history(history: Mapping[str, Sequence[float]], path, title: str) -> Path:
    """Training curves: one line per metric of a Keras History dict, by epoch."""
    import matplotlib.pyplot as plt

    keys = [k for k, v in history.items() if len(v) and isinstance(v[0], (int, float))]
    losses = [k for k in keys if "loss" in k]
    others = [k for k in keys if k not in losses]
    ncols = 2 if others else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 3.6), squeeze=False)
    for key in losses:
        axes[0][0].plot(range(1, len(history[key]) + 1), history[key], marker="o", label=key)
    axes[0][0].set(xlabel="epoch", ylabel="loss", title=f"{title}: loss")
    axes[0][0].legend(fontsize=7)
    if others:
        for key in others:
            axes[0][1].plot(range(1, len(history[key]) + 1), history[key], marker="o", label=key)
        axes[0][1].set(xlabel="epoch", title=f"{title}: metrics")
        axes[0][1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_offset_curve(curve: Sequence[Mapping], chosen: float, floor: float, path) -> Path:
    """The new-item offset's validation curve: known-item and simulated-new-item selection
    scores by offset, the allowed floor of the known-item score and the chosen offset."""
    import matplotlib.pyplot as plt

    offsets = [row["offset"] for row in curve]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(offsets, [row["warm"] for row in curve], marker=".", label="known items")
    ax.plot(offsets, [row["new"] for row in curve], marker=".", label="items as if new")
    ax.axhline(floor, color="grey", linestyle=":", label="allowed known-item floor")
    ax.axvline(chosen, color="k", linestyle="--", label=f"chosen offset {chosen:g}")
    ax.set(title="new-item score offset (validation)", xlabel="offset added to items without an id embedding",
           ylabel="selection score")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_histogram(values: Sequence[float], path, title: str, xlabel: str) -> Path:
    """A histogram with p50 and p99 marked (e.g. request latencies in ms)."""
    import matplotlib.pyplot as plt
    import numpy as np

    values = np.asarray(values, dtype=float)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist(values, bins=40, color="#4c72b0")
    for q, style in ((50, "--"), (99, ":")):
        v = float(np.percentile(values, q)) if values.size else 0.0
        ax.axvline(v, color="k", linestyle=style, label=f"p{q} = {v:.2f}")
    ax.set(title=title, xlabel=xlabel, ylabel="count")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
