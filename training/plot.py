"""Figures: a run's loss curves (`RUN_DIR/metrics.jsonl` -> `RUN_DIR/loss.png`), and the
matplotlib set-up and PNG saving that the reports share."""

from __future__ import annotations

import json
import os
from pathlib import Path

from training.errors import TrainingError


def read_metrics(run_dir: "str | os.PathLike[str]") -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise TrainingError(f"{path} does not exist")
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise TrainingError(f"{path} is not JSON lines: {e}") from None


def plot(run_dir: "str | os.PathLike[str]") -> Path:
    """Writes loss.png (train and validation loss against step) and returns its path."""
    plt = pyplot()
    records = read_metrics(run_dir)
    train = [(r["step"], r["train_loss"]) for r in records if r.get("train_loss") is not None]
    val = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
    if not train and not val:
        raise TrainingError(f"{Path(run_dir) / 'metrics.jsonl'} holds no losses yet")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if train:
        ax.plot(*zip(*train), label="train", linewidth=1)
    if val:
        ax.plot(*zip(*val), "o-", label="validation", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.set_title(Path(run_dir).resolve().name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(run_dir) / "loss.png"
    tmp = out.with_name("loss.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, out)
    return out


def pyplot():
    """matplotlib.pyplot on the Agg backend: figures go to files, never to a window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> str:
    """Writes `fig` to the PNG `path` atomically, in 64 colours where PIL is there; returns the file name."""
    import warnings

    tmp = path.with_name(path.stem + ".tmp.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a layout it cannot tighten is still drawn
        fig.tight_layout()
    fig.savefig(tmp, dpi=80, bbox_inches="tight")
    pyplot().close(fig)
    try:  # a 64-colour palette: far fewer bytes, no visible change for line plots
        from PIL import Image

        with Image.open(tmp) as im:
            small = im.convert("RGB").quantize(64)
        small.save(tmp, optimize=True)
    except Exception:
        pass
    os.replace(tmp, path)
    return path.name
