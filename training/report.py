"""`python -m training report RUN_DIR ... --out DIR`: the report over finished training runs.

DIR/report.md with its figures under DIR/plots/ and every number of it in DIR/summary.json.

A run folder is what `python -m training train` writes (metrics.jsonl, config.toml,
ckpt_best.pt). Its data folder (for the data section, bits per byte and the samples) is the one
named in RUN_DIR/run.json (written by `experiment` and `sweep`), else the folder of the
tokenizer its checkpoint names.

Bits per byte of a validation loss L (nats per token) on a split of B bytes and N tokens:
L * N / (B * ln 2). It compares runs whose tokenizers differ; per-token losses do not.

A run without ckpt_best.pt (or whose tokenizer is gone) gets one warning line and "No samples"
in the report, which is written all the same; a run folder without metrics.jsonl, or whose
metrics hold no validation loss yet, stops the report with one line.

Zipf exponent: the least-squares slope s of log(frequency) = c - s * log(rank) over the ranks
1 .. R of a split's token counts, R the last rank whose token occurs at least ZIPF_MIN_COUNT
times (capped at ZIPF_MAX_RANK): hapax tails flatten the fit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from training.errors import TrainingError
from training.files import write_text_atomically
from training.plot import pyplot, save_figure

SCHEMA = 1
ZIPF_MIN_COUNT = 2
ZIPF_MAX_RANK = 10_000
TOP_TOKENS = 15
TEMPERATURES = (0.7, 1.0)
SAMPLE_SEED = 1337
SHARED_PROMPT = "The"
PROMPTS = {  # prompts suited to each data set, by its prepare NAME
    "wikitext2": "The history of the city",
    "wikitext103": "The history of the city",
    "bookcorpus": "She looked at him and",
    "shakespeare_char": "ROMEO:\n",
    "tinystories": "Once upon a time, there was a little",
    "owt": "The government said on Tuesday that",
    "text": "The",
}
PLOTS = ("loss_vs_steps.png", "loss_vs_tokens.png", "val_perplexity.png", "val_bits_per_byte.png", "lr_schedule.png",
         "tokens_per_s.png", "final_val_loss.png", "convergence.png", "overfitting.png")
DATA_PLOTS = ("zipf.png", "token_lengths.png", "vocab_overlap.png")
RUN_KEYS = ("final_val_loss", "final_val_ppl", "best_val_loss", "tokens_per_s", "train_time_s", "params", "steps", "data")
DATASET_KEYS = ("documents", "tokens", "bytes_per_token", "unique_tokens", "zipf_exponent")


# -- numbers -----------------------------------------------------------------------------


def zipf_exponent(counts: np.ndarray, max_rank: Optional[int] = None,
                  min_count: int = ZIPF_MIN_COUNT) -> tuple[float, int]:
    """(s, R): the least-squares fit of log(count) = c - s log(rank) over ranks 1..R, R the last
    rank with count >= min_count (at most max_rank). Counts need not be sorted; zeros are unused."""
    freq = np.sort(np.asarray(counts, dtype=np.float64)[np.asarray(counts) > 0])[::-1]
    r = int(np.count_nonzero(freq >= min_count))
    r = min(r, max_rank or ZIPF_MAX_RANK)
    if r < 2:
        return float("nan"), r
    ranks = np.arange(1, r + 1, dtype=np.float64)
    slope, _ = np.polyfit(np.log(ranks), np.log(freq[:r]), 1)
    return float(-slope), r


def coverage(counts: np.ndarray, vocab_size: int) -> tuple[int, float]:
    """(unique tokens used, their share of the vocabulary)."""
    used = int(np.count_nonzero(counts))
    return used, used / vocab_size if vocab_size else float("nan")


def bits_per_byte(loss: float, tokens: int, nbytes: int) -> float:
    return loss * tokens / (nbytes * math.log(2))


def first_reached(points: list[tuple[int, float]], level: float) -> Optional[int]:
    """The first x whose y is at or below `level`."""
    for x, y in points:
        if y <= level:
            return x
    return None


# -- reading runs and data ---------------------------------------------------------------


@dataclass
class Data:
    key: str  # the name the report gives the data set
    path: Path
    meta: dict  # dataset.json, or {} for a folder prepared otherwise
    name: str  # the prepare NAME (wikitext2, ...), or the folder's name
    vocab_size: int
    tokenizer_path: Optional[str]
    tokenizer_sha: Optional[str]
    splits: dict = field(default_factory=dict)  # split -> {documents, bytes, tokens, words}
    counts: Optional[np.ndarray] = None  # train token counts by id

    @property
    def label(self) -> str:
        return self.meta.get("label") or self.key


@dataclass
class Run:
    name: str
    path: Path
    records: list[dict]
    config: dict
    data: Optional[Data] = None
    info: dict = field(default_factory=dict)  # run.json

    def series(self, key: str, x: str = "step") -> list[tuple[float, float]]:
        return [(r[x], r[key]) for r in self.records if r.get(key) is not None and r.get(x) is not None]


def read_run(path: Path) -> Run:
    from training.config import read_toml

    if not path.is_dir():
        raise TrainingError(f"{path}: no such run folder")
    metrics = path / "metrics.jsonl"
    if not metrics.is_file():
        raise TrainingError(f"{path}: no metrics.jsonl, not a training run (python -m training train --out {path})")
    try:
        records = [json.loads(l) for l in metrics.read_text(encoding="utf-8").splitlines() if l.strip()]
    except json.JSONDecodeError as e:
        raise TrainingError(f"{metrics}: not JSON lines ({e})") from None
    if not any(r.get("val_loss") is not None for r in records):
        raise TrainingError(f"{path}: metrics.jsonl holds no validation loss yet (the run has not evaluated)")
    config = read_toml(path / "config.toml") if (path / "config.toml").is_file() else {}
    info = {}
    if (path / "run.json").is_file():
        info = json.loads((path / "run.json").read_text(encoding="utf-8"))
    return Run(path.name, path, records, config, info=info)


def data_dir_of(run: Run) -> Optional[Path]:
    if run.info.get("data"):
        return Path(run.info["data"])
    for name in ("ckpt_best.pt", "ckpt_last.pt"):
        ckpt = run.path / name
        if ckpt.is_file():
            from training import checkpoint

            tok = (checkpoint.load(ckpt).get("tokenizer") or {}).get("path")
            if tok and (Path(tok).parent / "train.bin").is_file():
                return Path(tok).parent
            return None
    return None


def read_data(path: Path, key: str) -> Data:
    from training.data import open_tokens

    meta = {}
    if (path / "dataset.json").is_file():
        meta = json.loads((path / "dataset.json").read_text(encoding="utf-8"))
    train = open_tokens(path / "train.bin")
    tok = train.tokenizer or {}
    d = Data(key, path, meta, meta.get("name") or path.name, train.vocab_size, tok.get("path"), tok.get("sha256"))
    if meta.get("label"):
        d.meta["label"] = meta["label"]
    counts = token_counts(train)
    d.counts = counts
    vocab = token_bytes(d)
    for split in ("train", "val"):
        if meta.get("splits", {}).get(split):
            s = meta["splits"][split]
            d.splits[split] = {k: s.get(k) for k in ("documents", "bytes", "tokens", "words")}
        else:  # counted from the token file: bytes from the tokens' byte strings
            f = open_tokens(path / f"{split}.bin")
            c = counts if split == "train" else token_counts(f)
            specials = set(f.special_tokens.values())
            lengths = np.array([0 if i in specials else len(vocab.get(i, b"")) for i in range(len(c))])
            eot = f.eot_id
            d.splits[split] = {"documents": int(c[eot]) if eot is not None and eot < len(c) else 1,
                               "bytes": int((c * lengths).sum()), "tokens": f.num_tokens, "words": None}
    return d


def token_counts(f, block: int = 1 << 24) -> np.ndarray:
    """Occurrences of each id in a token file, counted a block at a time (bounded memory)."""
    tokens = f.tokens()
    counts = np.zeros(f.vocab_size, dtype=np.int64)
    for start in range(0, len(tokens), block):
        counts += np.bincount(tokens[start:start + block], minlength=f.vocab_size)[:f.vocab_size]
    return counts


_VOCABS: dict[Optional[str], dict[int, bytes]] = {}


def load_tokenizer(d: Data):
    from pybpe.tokenizer_files import load_any

    if not d.tokenizer_path or not Path(d.tokenizer_path).is_file():
        return None
    return load_any(d.tokenizer_path)


def token_bytes(d: Data) -> dict[int, bytes]:
    """id -> the bytes of the token (special tokens as their names); {} without a tokenizer."""
    key = d.tokenizer_path
    if key not in _VOCABS:
        tok = load_tokenizer(d)
        vocab = dict(tok.vocab) if tok is not None else {}
        if tok is not None:
            for name, i in tok.special_tokens.items():
                vocab[i] = name.encode()
        _VOCABS[key] = vocab
    return _VOCABS[key]


# -- the report ----------------------------------------------------------------------------


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if abs(x) >= 1e4:
            return f"{x:,.0f}"
        return f"{x:.{digits}g}"
    return str(x)


def printable(b: bytes) -> str:
    """A token's bytes as text for a Markdown table cell."""
    return json.dumps(b.decode("utf-8", "replace"), ensure_ascii=False)[1:-1].replace("|", "\\|")


def run_stats(run: Run) -> dict[str, Any]:
    from training.config import Config, apply
    from training.model import param_count

    val = run.series("val_loss")
    train = run.series("train_loss")
    best_step, best = min(val, key=lambda p: p[1])
    last_step, last = val[-1]
    rates = [r["tokens_per_s"] for r in run.records if r.get("tokens_per_s")]
    steps_rates = [r["steps_per_s"] for r in run.records if r.get("steps_per_s")]
    cfg = Config()
    known = {k: v for k, v in run.config.items() if hasattr(cfg, k)}
    apply(cfg, known, str(run.path / "config.toml"))
    stats: dict[str, Any] = {
        "final_val_loss": last, "final_val_ppl": math.exp(min(last, 700.0)), "best_val_loss": best,
        "best_val_step": int(best_step),
        "final_train_loss": train[-1][1] if train else None,
        "tokens_per_s": float(np.mean(rates[1:] if len(rates) > 1 else rates)) if rates else None,
        "train_time_s": max((r.get("elapsed_s") or 0.0) for r in run.records),
        "params": param_count(cfg) if cfg.vocab_size else None,
        "steps": int(max(r.get("step") or 0 for r in run.records)),
        "tokens_seen": int(max(r.get("tokens_seen") or 0 for r in run.records)),
        "data": run.data.key if run.data else None,
        "stopped_improving_step": int(best_step) if best_step < last_step else None,
        "val_rise_after_best": last - best,
    }
    if steps_rates:
        stats["steps_per_s"] = float(np.mean(steps_rates))
    accs = run.series("val_accuracy")
    if accs:
        stats["final_val_accuracy"] = accs[-1][1]
    if run.info.get("status") and run.info["status"] != "finished":
        stats["status"] = run.info["status"]
    d = run.data
    if d is not None and d.splits.get("val", {}).get("bytes"):
        v = d.splits["val"]
        stats["final_val_bpb"] = bits_per_byte(last, v["tokens"], v["bytes"])
        stats["best_val_bpb"] = bits_per_byte(best, v["tokens"], v["bytes"])
    word_ppl = run.series("val_word_ppl")
    if word_ppl:
        stats["final_val_word_ppl"] = word_ppl[-1][1]
    elif d is not None and d.name.startswith("wikitext") and d.splits.get("val", {}).get("words"):
        v = d.splits["val"]
        stats["final_val_word_ppl"] = math.exp(min(last * v["tokens"] / v["words"], 700.0))
    return stats


def gap_series(run: Run) -> list[tuple[int, float]]:
    """(step, val loss - train loss) at each evaluation with a train loss logged at that step or before."""
    train = run.series("train_loss")
    out = []
    for step, v in run.series("val_loss"):
        before = [t for s, t in train if s <= step]
        if before:
            out.append((int(step), v - before[-1]))
    return out


def convergence_levels(runs: list[Run], n: int = 4) -> list[float]:
    """Validation-loss levels every run reaches: from the highest evaluated loss to the worst best."""
    top = min(max(v for _, v in r.series("val_loss")) for r in runs)
    floor = max(min(v for _, v in r.series("val_loss")) for r in runs)
    if not top > floor:
        return [floor]
    return [float(x) for x in np.linspace(top, floor, n + 1)[1:]]


def build_report(run_dirs: list[str], out: str, samples: bool = True, max_new_tokens: Optional[int] = None,
                 prompts: Optional[dict[str, str]] = None, title: str = "Training report",
                 notes: Optional[list[str]] = None, extra: Optional[dict] = None, log=print) -> dict:
    """Writes OUT/report.md, OUT/plots/*.png and OUT/summary.json; returns the summary."""
    if not run_dirs:
        raise TrainingError("report needs at least one run folder")
    runs = [read_run(Path(p)) for p in run_dirs]
    names = [r.name for r in runs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise TrainingError(f"two runs are named {dupes[0]!r}: give run folders with different names")
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise TrainingError(f"--out {out}: exists and is not a directory")
    datasets: dict[str, Data] = {}
    by_path: dict[Path, Data] = {}
    for run in runs:
        dpath = data_dir_of(run)
        if dpath is None or not (dpath / "train.bin").is_file():
            log(f"warning: {run.path}: its data folder is unknown or gone; no bits per byte or data section for it")
            continue
        dpath = dpath.resolve()
        if dpath not in by_path:
            key = run.info.get("data_key") or dpath.name
            while key in datasets:
                key += "'"
            by_path[dpath] = datasets[key] = read_data(dpath, key)
            if run.info.get("data_label"):
                datasets[key].meta["label"] = run.info["data_label"]
        run.data = by_path[dpath]
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = out_dir / "plots"
    plots.mkdir(exist_ok=True)

    stats = {r.name: run_stats(r) for r in runs}
    shas = {d.tokenizer_sha or d.tokenizer_path for d in datasets.values()}
    mixed = len(shas) > 1
    loss_key = "final_val_bpb" if mixed and all("final_val_bpb" in s for s in stats.values()) else "final_val_loss"

    figures = training_plots(runs, stats, plots, mixed)
    data_section = {k: dataset_stats(d) for k, d in datasets.items()}
    overlap = vocab_overlap(datasets) if len(datasets) > 1 else {}
    figures.update(data_plots(datasets, data_section, overlap, plots))
    sample_texts: dict[str, Any] = {}
    if samples:
        sample_texts = make_samples(runs, max_new_tokens, prompts or {}, log)
    sentences = findings(runs, stats, mixed, loss_key)
    summary = {"schema": SCHEMA, "runs": stats, "datasets": data_section,
               "mixed_tokenizers": mixed, "compare_by": loss_key,
               "convergence": convergence_table(runs), "vocab_overlap": overlap,
               "findings": sentences, "samples": sample_texts, "plots": sorted(figures.values())}
    if extra:
        summary.update(extra)
    md = markdown(title, runs, stats, data_section, overlap, figures, sample_texts, sentences, mixed, notes or [],
                  samples)
    write_text_atomically(out_dir / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False, default=float) + "\n")
    write_text_atomically(out_dir / "report.md", md)
    return summary


# -- plots ---------------------------------------------------------------------------------


def training_plots(runs: list[Run], stats: dict, plots: Path, mixed: bool) -> dict[str, str]:
    plt = pyplot()
    figs: dict[str, str] = {}
    unit = "nats/token" + (" — tokenizers differ: not comparable across data sets" if mixed else "")

    for x, xlabel, fname in (("step", "step", "loss_vs_steps.png"), ("tokens_seen", "tokens seen", "loss_vs_tokens.png")):
        fig, ax = plt.subplots(figsize=(8, 5))
        for i, r in enumerate(runs):
            c = f"C{i % 10}"
            tr = r.series("train_loss", x)
            va = r.series("val_loss", x)
            if x == "tokens_seen":  # a log axis: the evaluation at step 0 has seen no tokens
                tr, va = [p for p in tr if p[0] > 0], [p for p in va if p[0] > 0]
            if tr:
                ax.plot(*zip(*tr), color=c, alpha=0.45, linewidth=1)
            ax.plot(*zip(*va), "o-", color=c, markersize=3, label=f"{r.name} (val; faint: train)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"cross-entropy loss ({unit})" if not mixed else "loss (nats/token, per-token: see bits/byte)")
        ax.set_title(f"Train and validation loss against {xlabel}")
        if x == "tokens_seen":
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        figs[fname] = save_figure(fig, plots / fname)

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, r in enumerate(runs):
        ppl = [(s, math.exp(min(v, 700.0))) for s, v in r.series("val_loss")]
        ax.plot(*zip(*ppl), "o-", markersize=3, color=f"C{i % 10}", label=r.name)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("validation perplexity (per token, log scale)")
    ax.set_title("Validation perplexity" + (" (per token: tokenizers differ)" if mixed else ""))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    figs["val_perplexity.png"] = save_figure(fig, plots / "val_perplexity.png")

    if all(r.data is not None and r.data.splits.get("val", {}).get("bytes") for r in runs):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for i, r in enumerate(runs):
            v = r.data.splits["val"]
            bpb = [(s, bits_per_byte(l, v["tokens"], v["bytes"])) for s, l in r.series("val_loss")]
            ax.plot(*zip(*bpb), "o-", markersize=3, color=f"C{i % 10}", label=f"{r.name} ({v['bytes'] / v['tokens']:.2f} bytes/token)")
        ax.set_xlabel("step")
        ax.set_ylabel("validation bits per byte")
        ax.set_title("Validation loss per byte of text (comparable across tokenizers)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        figs["val_bits_per_byte.png"] = save_figure(fig, plots / "val_bits_per_byte.png")

    def by_step(key: str, ylabel: str, title: str, name: str) -> None:
        fig, ax = plt.subplots(figsize=(8, 4))
        for i, r in enumerate(runs):
            series = r.series(key)
            if series:
                ax.plot(*zip(*series), color=f"C{i % 10}", label=r.name)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        figs[name] = save_figure(fig, plots / name)

    by_step("lr", "learning rate", "Learning-rate schedule", "lr_schedule.png")
    by_step("tokens_per_s", "training throughput (tokens/s)", "Tokens per second (evaluation time excluded)",
            "tokens_per_s.png")

    names = [r.name for r in runs]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.5 * len(runs) + 2.5))
    if mixed and all("final_val_bpb" in stats[n] for n in names):
        vals, label = [stats[n]["final_val_bpb"] for n in names], "final validation bits per byte"
    else:
        vals, label = [stats[n]["final_val_loss"] for n in names], "final validation loss (nats/token)"
    axes[0].barh(names, vals, color=[f"C{i % 10}" for i in range(len(names))])
    axes[0].set_xlabel(label)
    for y, v in enumerate(vals):
        axes[0].text(v, y, f" {v:.3f}", va="center", fontsize=8)
    ppls = [stats[n]["final_val_ppl"] for n in names]
    axes[1].barh(names, ppls, color=[f"C{i % 10}" for i in range(len(names))])
    axes[1].set_xlabel("final validation perplexity (per token" + (", not comparable" if mixed else "") + ")")
    for y, v in enumerate(ppls):
        axes[1].text(v, y, f" {v:.1f}", va="center", fontsize=8)
    axes[1].set_yticklabels([])
    fig.suptitle("Final validation loss and perplexity")
    figs["final_val_loss.png"] = save_figure(fig, plots / "final_val_loss.png")

    levels = convergence_levels(runs)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i, r in enumerate(runs):
        for ax, x in zip(axes, ("step", "tokens_seen")):
            pts = r.series("val_loss", x)
            reached = [(lv, first_reached(pts, lv)) for lv in levels]
            reached = [(lv, s) for lv, s in reached if s is not None]
            if reached:
                ax.plot(*zip(*reached), "o-", color=f"C{i % 10}", label=r.name)
    for ax, xl in zip(axes, ("steps", "tokens")):
        ax.set_xlabel("validation loss level (nats/token)")
        ax.set_ylabel(f"{xl} to first reach it")
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Convergence speed: steps and tokens to reach each validation-loss level")
    figs["convergence.png"] = save_figure(fig, plots / "convergence.png")

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, r in enumerate(runs):
        gap = gap_series(r)
        if gap:
            ax.plot(*zip(*gap), "o-", markersize=3, color=f"C{i % 10}", label=r.name)
        best = stats[r.name]["stopped_improving_step"]
        if best is not None:
            ax.axvline(best, color=f"C{i % 10}", linestyle="--", alpha=0.7)
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.set_xlabel("step (dashed: where validation loss stopped improving)")
    ax.set_ylabel("validation − train loss (nats/token)")
    ax.set_title("Overfitting: the train–validation gap")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figs["overfitting.png"] = save_figure(fig, plots / "overfitting.png")
    return figs


def dataset_stats(d: Data) -> dict[str, Any]:
    counts = d.counts
    vocab = token_bytes(d)
    train, val = d.splits["train"], d.splits.get("val", {})
    used, share = coverage(counts, d.vocab_size)
    s, r = zipf_exponent(counts)
    order = np.argsort(-counts, kind="stable")[:TOP_TOKENS]
    total = int(counts.sum())
    top = [{"id": int(i), "token": vocab.get(int(i), b"?").decode("utf-8", "replace"), "count": int(counts[i]),
            "share": float(counts[i] / total)} for i in order if counts[i]]
    lengths = {}
    for i in np.nonzero(counts)[0]:
        n = len(vocab.get(int(i), b""))
        lengths[n] = lengths.get(n, 0) + int(counts[i])
    out = {
        "name": d.name, "label": d.label, "path": str(d.path),
        "documents": (train.get("documents") or 0) + (val.get("documents") or 0),
        "bytes": (train.get("bytes") or 0) + (val.get("bytes") or 0),
        "tokens": (train.get("tokens") or 0) + (val.get("tokens") or 0),
        "bytes_per_token": train["bytes"] / train["tokens"] if train.get("tokens") else None,
        "splits": d.splits,
        "vocab_size": d.vocab_size, "tokenizer": d.meta.get("tokenizer", {}).get("spec") or d.tokenizer_path,
        "unique_tokens": used, "vocab_coverage": share,
        "zipf_exponent": s, "zipf_ranks": [1, r],
        "top_tokens": top,
        "token_length_hist": {str(k): v for k, v in sorted(lengths.items())},
        "mean_token_bytes": sum(k * v for k, v in lengths.items()) / max(1, sum(lengths.values())),
        "source": d.meta.get("source"),
    }
    return out


def vocab_overlap(datasets: dict[str, Data]) -> dict[str, dict[str, float]]:
    """For each pair: the share of A's used token types that B uses too (by token bytes when the
    tokenizers differ, by id when they are one)."""
    used = {}
    for k, d in datasets.items():
        vocab = token_bytes(d)
        ids = np.nonzero(d.counts)[0]
        used[k] = {vocab.get(int(i), str(i).encode()) for i in ids}
    out: dict[str, dict[str, float]] = {}
    for a in used:
        out[a] = {b: len(used[a] & used[b]) / max(1, len(used[a])) for b in used}
    return out


def data_plots(datasets: dict[str, Data], section: dict, overlap: dict, plots: Path) -> dict[str, str]:
    plt = pyplot()
    figs: dict[str, str] = {}
    if not datasets:
        return figs
    fig, ax = plt.subplots(figsize=(7, 5))
    for i, (k, d) in enumerate(datasets.items()):
        freq = np.sort(d.counts[d.counts > 0])[::-1].astype(float)
        ranks = np.arange(1, len(freq) + 1)
        s, r = section[k]["zipf_exponent"], section[k]["zipf_ranks"][1]
        ax.loglog(ranks, freq, ".", markersize=2, color=f"C{i % 10}", label=f"{d.label}")
        if math.isfinite(s) and r >= 2:
            c = np.mean(np.log(freq[:r]) + s * np.log(ranks[:r]))
            ax.loglog(ranks[:r], np.exp(c - s * np.log(ranks[:r])), "--", color=f"C{i % 10}",
                      label=f"fit ranks 1–{r}: exponent {s:.2f}")
    ax.set_xlabel("rank of token (by train-split frequency)")
    ax.set_ylabel("occurrences in the train split")
    ax.set_title("Zipf plot: token rank against frequency (log–log)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    figs["zipf.png"] = save_figure(fig, plots / "zipf.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(datasets)
    for i, (k, d) in enumerate(datasets.items()):
        hist = {int(n): v for n, v in section[k]["token_length_hist"].items()}
        total = sum(hist.values())
        xs = sorted(hist)
        ax.bar([x + i * width for x in xs], [hist[x] / total for x in xs], width=width, label=d.label)
    ax.set_xlabel("token length (bytes)")
    ax.set_ylabel("share of token occurrences (train)")
    ax.set_title("Token-length histogram")
    ax.legend(fontsize=8)
    figs["token_lengths.png"] = save_figure(fig, plots / "token_lengths.png")

    keys = list(datasets)
    fig, ax = plt.subplots(figsize=(2 + 1.2 * len(keys), 1.5 + 1.0 * len(keys)))
    m = np.array([[overlap.get(a, {}).get(b, 1.0) for b in keys] for a in keys])
    ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
    labels = [datasets[k].label for k in keys]
    ax.set_xticks(range(len(keys)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(keys)), labels, fontsize=8)
    for i in range(len(keys)):
        for j in range(len(keys)):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", color="white" if m[i, j] < 0.6 else "black")
    ax.set_title("Share of the row's used token types\nthat the column uses too", fontsize=9)
    figs["vocab_overlap.png"] = save_figure(fig, plots / "vocab_overlap.png")
    return figs


# -- samples -------------------------------------------------------------------------------


def make_samples(runs: list[Run], max_new_tokens: Optional[int], prompts: dict[str, str], log) -> dict[str, Any]:
    """{run: {"checkpoint", "step", "samples": [{prompt, temperature, seed, max_new_tokens, text}]}};
    a run without ckpt_best.pt gets {"missing": reason} and one warning line."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one token at a time: thread hand-offs cost more than they save
    try:
        return _samples(runs, max_new_tokens, prompts, log)
    finally:
        torch.set_num_threads(threads)


def _samples(runs: list[Run], max_new_tokens: Optional[int], prompts: dict[str, str], log) -> dict[str, Any]:
    import torch

    from training.generate import decode, encode, generate_ids, load_model, load_tokenizer as ckpt_tokenizer

    out: dict[str, Any] = {}
    dev = torch.device("cpu")
    for run in runs:
        ckpt_path = run.path / "ckpt_best.pt"
        if not ckpt_path.is_file():
            log(f"warning: {run.path}: no ckpt_best.pt; the report has no samples of {run.name}")
            out[run.name] = {"missing": f"no {ckpt_path}"}
            continue
        try:
            model, ckpt = load_model(ckpt_path, dev)
            tok = ckpt_tokenizer(ckpt)
        except TrainingError as e:
            log(f"warning: {run.path}: {e}; the report has no samples of {run.name}")
            out[run.name] = {"missing": str(e)}
            continue
        eot = ckpt["data"]["special_tokens"].get("<|endoftext|>")
        is_char = type(tok).__name__ == "CharTokenizer"
        n = max_new_tokens or (300 if is_char else 80)
        dname = run.data.name if run.data else None
        own = prompts.get(dname) or PROMPTS.get(dname or "", SHARED_PROMPT)
        entries = []
        for prompt in dict.fromkeys([own, SHARED_PROMPT]):
            for t in TEMPERATURES:
                gen = torch.Generator().manual_seed(SAMPLE_SEED)
                try:
                    ids = encode(tok, prompt)
                    text = decode(tok, generate_ids(model, ids, n, t, None, None, eot, gen))
                except TrainingError as e:
                    text, err = None, str(e)
                else:
                    err = None
                entries.append({"prompt": prompt, "temperature": t, "seed": SAMPLE_SEED, "max_new_tokens": n,
                                "text": text, **({"error": err} if err else {})})
        out[run.name] = {"checkpoint": str(ckpt_path), "step": ckpt.get("step"), "samples": entries}
    return out


# -- words ---------------------------------------------------------------------------------


def convergence_table(runs: list[Run]) -> dict[str, Any]:
    levels = convergence_levels(runs)
    return {"levels": levels,
            "steps": {r.name: [first_reached(r.series("val_loss"), lv) for lv in levels] for r in runs},
            "tokens": {r.name: [first_reached(r.series("val_loss", "tokens_seen"), lv) for lv in levels] for r in runs}}


def findings(runs: list[Run], stats: dict, mixed: bool, loss_key: str) -> list[str]:
    out = []
    unit = "bits/byte" if loss_key == "final_val_bpb" else "nats/token"
    if mixed:
        out.append("The runs use different tokenizers, so per-token losses and perplexities do not compare; "
                   "the comparisons below use validation bits per byte.")
    if len(runs) > 1:
        ranked = sorted(runs, key=lambda r: stats[r.name][loss_key])
        best, worst = ranked[0].name, ranked[-1].name
        b, w = stats[best][loss_key], stats[worst][loss_key]
        out.append(f"{best} ended with the lowest validation loss ({b:.4f} {unit}); {worst} the highest "
                   f"({w:.4f}, {w - b:.4f} more, {100 * (w - b) / b:.1f}%).")
        if not mixed and all("final_val_bpb" in stats[r.name] for r in runs) and len(
                {r.data.key for r in runs if r.data}) > 1:
            per_byte = sorted(runs, key=lambda r: stats[r.name]["final_val_bpb"])
            lo, hi = per_byte[0], per_byte[-1]
            b_lo, b_hi = stats[lo.name]["final_val_bpb"], stats[hi.name]["final_val_bpb"]
            t_lo, t_hi = stats[lo.name]["final_val_loss"], stats[hi.name]["final_val_loss"]
            bpt = {r.name: r.data.splits["val"]["bytes"] / r.data.splits["val"]["tokens"] for r in (lo, hi)}
            out.append(f"Per byte of text, {lo.name} reached {b_lo:.3f} bits/byte and {hi.name} {b_hi:.3f} "
                       f"({100 * (b_hi - b_lo) / b_lo:.1f}% apart, against {100 * abs(t_hi - t_lo) / min(t_hi, t_lo):.1f}% "
                       f"per token): their validation texts hold {bpt[lo.name]:.2f} and {bpt[hi.name]:.2f} bytes per token.")
        if not mixed:
            levels = convergence_levels(runs)
            level = levels[-1]
            reached = {r.name: first_reached(r.series("val_loss"), level) for r in runs}
            got = {k: v for k, v in reached.items() if v}
            if len(got) > 1:
                fast = min(got, key=got.get)
                slow = max(got, key=got.get)
                if got[slow] > got[fast]:
                    out.append(f"To reach a validation loss of {level:.3f} (the lowest level every run reached), "
                               f"{fast} took {got[fast]:,} steps and {slow} {got[slow]:,}: "
                               f"{got[slow] / got[fast]:.2f}x as many.")
                else:
                    out.append(f"Every run first reached a validation loss of {level:.3f} at the same evaluation "
                               f"(step {got[fast]:,}): the evaluations are too sparse to tell their speeds apart.")
        base = next((r for r in runs if r.name == "baseline"), None)
        if base is not None:
            b0 = stats[base.name][loss_key]
            out.append("Against the baseline's final validation loss: " + "; ".join(
                f"{r.name} {stats[r.name][loss_key] - b0:+.4f} ({100 * (stats[r.name][loss_key] - b0) / b0:+.1f}%)"
                for r in runs if r is not base) + ".")
        rates = {r.name: stats[r.name]["tokens_per_s"] for r in runs if stats[r.name]["tokens_per_s"]}
        if len(rates) > 1:
            f, s = max(rates, key=rates.get), min(rates, key=rates.get)
            out.append(f"{f} trained fastest ({rates[f]:,.0f} tokens/s), {s} slowest ({rates[s]:,.0f} tokens/s).")
    for r in runs:
        st = stats[r.name]
        gap = gap_series(r)
        if st["stopped_improving_step"] is not None:
            g = f"; the validation–train gap was {gap[-1][1]:.3f} at the end" if gap else ""
            out.append(f"{r.name}: validation loss stopped improving at step {st['stopped_improving_step']:,} "
                       f"(best {st['best_val_loss']:.4f}) and rose {st['val_rise_after_best']:.4f} by step "
                       f"{st['steps']:,}: overfitting began there{g}.")
        else:
            g = f" (validation–train gap {gap[-1][1]:+.3f})" if gap else ""
            out.append(f"{r.name}: validation loss was still at its lowest at the last evaluation, step "
                       f"{st['steps']:,}{g}: no overfitting within this budget.")
    return out


def markdown(title, runs, stats, data_section, overlap, figures, samples, sentences, mixed, notes, want_samples) -> str:
    from training.config import Config

    lines = [f"# {title}", ""]
    lines += notes + ([""] if notes else [])
    lines += ["## Findings", ""] + [f"- {s}" for s in sentences] + [""]
    # summary table
    defaults = Config().to_dict()
    keys = sorted({k for r in runs for k in r.config}
                  - {"seed", "device", "dtype", "wandb", "wandb_project", "tensorboard", "compile"})
    differ = [k for k in keys if len({json.dumps(r.config.get(k, defaults.get(k))) for r in runs}) > 1]
    lines += ["## Summary", ""]
    head = ["run", "data", f"config ({runs[0].name}: the keys that differ; others: where they differ from it)"
            if len(runs) > 1 else "config", "final val loss", "val ppl", "best val loss"]
    if any("final_val_bpb" in s for s in stats.values()):
        head.append("val bits/byte")
    if any("final_val_word_ppl" in s for s in stats.values()):
        head.append("word ppl")
    head += ["tokens/s", "time (s)", "params", "steps"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        s = stats[r.name]
        ref = runs[0].config
        shown = differ if r is runs[0] else [k for k in differ if r.config.get(k, defaults.get(k)) != ref.get(k, defaults.get(k))]
        diff = ", ".join(f"{k}={r.config.get(k, defaults.get(k))}" for k in shown) or "—"
        row = [r.name, r.data.label if r.data else "?", diff, _fmt(s["final_val_loss"]),
               _fmt(s["final_val_ppl"]), _fmt(s["best_val_loss"])]
        if "val bits/byte" in head:
            row.append(_fmt(s.get("final_val_bpb")))
        if "word ppl" in head:
            row.append(_fmt(s.get("final_val_word_ppl")))
        row += [_fmt(s["tokens_per_s"]), _fmt(s["train_time_s"], 3), _fmt(s["params"]), _fmt(s["steps"])]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    if mixed:
        lines += ["**Per-token figures (loss, perplexity) are not comparable here: the runs' tokenizers differ. "
                  "Compare bits per byte** (val loss × val tokens / (val bytes × ln 2)).", ""]
    lines += ["## Training", ""]
    captions = {
        "loss_vs_steps.png": "Train (faint) and validation loss against steps",
        "loss_vs_tokens.png": "The same against tokens seen",
        "val_perplexity.png": "Validation perplexity",
        "val_bits_per_byte.png": "Validation bits per byte",
        "lr_schedule.png": "Learning-rate schedule",
        "tokens_per_s.png": "Throughput",
        "final_val_loss.png": "Final validation loss and perplexity",
        "convergence.png": "Steps and tokens to reach each validation-loss level",
        "overfitting.png": "Train–validation gap; dashed: where validation loss stopped improving",
    }
    for f in PLOTS:
        if f in figures:
            lines += [f"![{captions[f]}](plots/{f})", ""]
    conv = convergence_table(runs)
    lines += ["Steps to first reach each validation-loss level:", "",
              "| run | " + " | ".join(f"≤ {lv:.3f}" for lv in conv["levels"]) + " |",
              "|---|" + "---|" * len(conv["levels"])]
    for r in runs:
        lines.append(f"| {r.name} | " + " | ".join(_fmt(x) for x in conv["steps"][r.name]) + " |")
    lines.append("")
    if data_section:
        lines += ["## Data", "",
                  "| data set | tokenizer | documents | bytes | tokens | bytes/token | unique tokens used | "
                  "vocab coverage | Zipf exponent (ranks) |", "|---|---|---|---|---|---|---|---|---|"]
        for k, d in data_section.items():
            lines.append(f"| {d['label']} | {d['tokenizer']} | {_fmt(d['documents'])} | {_fmt(d['bytes'])} | "
                         f"{_fmt(d['tokens'])} | {_fmt(d['bytes_per_token'])} | {_fmt(d['unique_tokens'])} "
                         f"of {_fmt(d['vocab_size'])} | {100 * d['vocab_coverage']:.1f}% | "
                         f"{_fmt(d['zipf_exponent'], 3)} ({d['zipf_ranks'][0]}–{d['zipf_ranks'][1]}) |")
        lines += ["", f"Counts over train and validation; coverage, Zipf and the top tokens over the train split. "
                  f"Zipf exponent: the least-squares slope of log frequency against log rank over ranks 1 to the "
                  f"last token seen at least {ZIPF_MIN_COUNT} times.", ""]
        for k, d in data_section.items():
            lines.append(f"Top tokens of {d['label']}: " + ", ".join(
                f"`{printable(t['token'].encode())}` {100 * t['share']:.1f}%" for t in d["top_tokens"][:10]))
            lines.append("")
        if overlap:
            keys = list(overlap)
            lines += ["Vocabulary overlap (share of the row's used token types the column uses too):", "",
                      "| | " + " | ".join(data_section[k]["label"] for k in keys) + " |", "|---|" + "---|" * len(keys)]
            for a in keys:
                lines.append(f"| {data_section[a]['label']} | " + " | ".join(f"{overlap[a][b]:.2f}" for b in keys) + " |")
            lines.append("")
        for f, cap in (("zipf.png", "Zipf plot"), ("token_lengths.png", "Token-length histogram"),
                       ("vocab_overlap.png", "Vocabulary overlap")):
            if f in figures:
                lines += [f"![{cap}](plots/{f})", ""]
    if want_samples:
        lines += ["## Samples", "", f"From each run's best checkpoint (ckpt_best.pt), seed {SAMPLE_SEED}, "
                  f"temperatures {' and '.join(map(str, TEMPERATURES))}; each text starts with its prompt.", ""]
        for name, s in samples.items():
            lines += [f"### {name}", ""]
            if "missing" in s:
                lines += [f"No samples: {s['missing']}.", ""]
                continue
            for e in s["samples"]:
                body = e["text"] if e["text"] is not None else f"(not generated: {e['error']})"
                lines += [f"*T = {e['temperature']}*", "", "```", (e["prompt"] + body).replace("```", "'''"), "```", ""]
    return "\n".join(lines).rstrip() + "\n"
