"""`python -m training experiment RECIPE --out DIR`: the seeds' studies, one command each.

A recipe names the data sets to prepare (through training.prepare) and the runs to train
(a config each), at a scale:
  tiny  seconds: the tests' size (a 1-layer 32-wide model, 20 steps, ~20K tokens)
  cpu   minutes on 2 cores: a 2-layer 128-wide model, a few hundred steps; WikiText recipes use a
        4,096-token BPE trained on the WikiText-2 train text (shared by the compared data set) so
        that the output layer fits the budget
  gpu   the seeds' sizes: CS336's 17M-parameter model, 128 x 256 tokens a step (327.68M tokens
        for tinystories and owt), GPT-2 tokens for WikiText

DIR/data/KEY/ holds each prepared data set, DIR/runs/NAME/ each run (with run.json), and
DIR/report.md, DIR/plots/, DIR/summary.json the report. A data set already prepared with the
same options and a run already finished with the same config are reused; a run with a
checkpoint but no run.json status "finished" resumes from it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from training.errors import TrainingError
from training.files import write_json_atomically, write_text_atomically

SCALES = ("tiny", "cpu", "gpu")
PILE_BYTES = 825e9

BASE = {
    "tiny": dict(context_length=32, d_model=32, n_layers=1, n_heads=2, batch_size=4, max_steps=20, warmup_steps=2,
                 eval_interval=5, eval_batches=2, log_interval=5, lr=1e-2, min_lr=1e-3, device="cpu"),
    "cpu": dict(context_length=128, d_model=128, n_layers=2, n_heads=4, batch_size=16, max_steps=300,
                warmup_steps=30, eval_interval=25, eval_batches=8, log_interval=10, lr=3e-3, min_lr=3e-4,
                device="cpu"),
    "gpu": dict(context_length=256, d_model=512, n_layers=4, n_heads=16, d_ff=1344, batch_size=128,
                max_steps=10000, warmup_steps=200, eval_interval=500, eval_batches=20, log_interval=50,
                lr=3e-3, min_lr=3e-4),
}
# Data sizes (train tokens, validation tokens) by scale; None: the whole text.
SAMPLE_TOKENS = {"tiny": 24, "cpu": None, "gpu": None}  # tokens per sample in the report (None: its default)
# On CPU one thread per process: a small model's ops are too short to share, and the cores are shared.
TORCH_THREADS = {"tiny": 1, "cpu": 1, "gpu": None}
SIZES = {"tiny": (20_000, 4_000), "cpu": (None, None), "gpu": (None, None)}
BPE_VOCAB = {  # train:VOCAB of the CS336 tokenizers by scale
    "tinystories": {"tiny": 300, "cpu": 2048, "gpu": 10000},
    "owt": {"tiny": 400, "cpu": 4096, "gpu": 32000},
}
WIKITEXT_TOKENIZER = {"tiny": "gpt2", "cpu": "train:4096", "gpu": "gpt2"}


@dataclass
class DataPlan:
    key: str  # the folder under DIR/data and the name in the report
    name: str  # the prepare NAME
    tokenizer: Optional[str]  # a SPEC, or "@KEY": the tokenizer file of data set KEY
    max_tokens: Optional[int] = None
    val_tokens: Optional[int] = None
    val_fraction: Optional[float] = None
    match: Optional[str] = None  # KEY: train/val token counts of that data set
    label: Optional[str] = None


@dataclass
class RunPlan:
    name: str
    data: str
    config: dict


@dataclass
class Recipe:
    name: str
    title: str
    data: list[DataPlan]
    runs: list[RunPlan] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _sized(scale: str, ready_tokenizer: bool, has_val: bool) -> dict:
    """max_tokens / val_tokens / val_fraction for a data set at `scale`."""
    train, val = SIZES[scale]
    out: dict[str, Any] = {"max_tokens": train}
    if val is not None:
        if ready_tokenizer or has_val:
            out["val_tokens"] = val
        else:
            out["val_fraction"] = 0.1
    return out


def _d_ff_matched(d_model: int) -> tuple[int, int]:
    """(SwiGLU d_ff, SiLU d_ff) with equal feed-forward parameters: 3 d d_swiglu = 2 d d_silu,
    d_swiglu the even number nearest 8/3 d_model (CS336's choice), d_silu = 1.5 d_swiglu."""
    swiglu = 2 * round(8 * d_model / 3 / 2)
    return swiglu, swiglu * 3 // 2


def recipe(name: str, scale: str, files: dict[str, list[str]]) -> Recipe:
    if scale not in SCALES:
        raise TrainingError(f"unknown scale {scale!r}: choose one of {', '.join(SCALES)}")
    if name not in RECIPES:
        raise TrainingError(f"unknown recipe {name!r}: choose one of {', '.join(RECIPES)}")
    return RECIPES[name](scale, files)


def _has_val(files: dict, key: str, hub_val: bool) -> bool:
    return bool(files.get(key + ".val")) or (hub_val and not files.get(key))


def _wikitext(scale: str, files: dict) -> DataPlan:
    tok = WIKITEXT_TOKENIZER[scale]
    return DataPlan("wikitext2", "wikitext2", tok, label="WikiText-2",
                    **_sized(scale, tok == "gpt2", _has_val(files, "wikitext2", True)))


def _tinystories(scale: str, files: dict, key: str = "tinystories") -> DataPlan:
    return DataPlan(key, "tinystories", f"train:{BPE_VOCAB['tinystories'][scale]}", label="TinyStories",
                    **_sized(scale, False, _has_val(files, key, True)))


def _owt(scale: str, files: dict) -> DataPlan:
    return DataPlan("owt", "owt", f"train:{BPE_VOCAB['owt'][scale]}", label="OpenWebText",
                    **_sized(scale, False, _has_val(files, "owt", False)))


def _cfg(scale: str, **kw) -> dict:
    return {**BASE[scale], **kw}


def r_wikitext2_vs_bookcorpus(scale: str, files: dict) -> Recipe:
    wt = _wikitext(scale, files)
    book_tok = "@wikitext2" if wt.tokenizer.startswith("train:") else wt.tokenizer
    book = DataPlan("bookcorpus", "bookcorpus", book_tok, match="wikitext2", label="BookCorpus")
    extra = dict(max_steps=1500, eval_interval=100) if scale == "gpu" else {}
    notes = ["Seed plan 000: one model, one set of hyper-parameters and one token budget on WikiText-2 and on "
             "a BookCorpus sample matched to WikiText-2's train and validation token counts."]
    if book_tok.startswith("@"):
        notes.append(f"At this scale both data sets use one {wt.tokenizer[6:]}-token BPE trained on the "
                     "WikiText-2 train text (GPT-2's 50,257-token output layer would not fit the CPU budget); "
                     "it favours WikiText-2's compression a little.")
    return Recipe("wikitext2-vs-bookcorpus", "WikiText-2 vs BookCorpus (matched size)", [wt, book],
                  [RunPlan("wikitext2", "wikitext2", _cfg(scale, **extra)),
                   RunPlan("bookcorpus", "bookcorpus", _cfg(scale, **extra))], notes)


def r_wikitext2_vs_shakespeare_char(scale: str, files: dict) -> Recipe:
    wt = _wikitext(scale, files)
    train, val = SIZES[scale]
    sh = DataPlan("shakespeare_char", "shakespeare_char", "char", max_tokens=train, val_tokens=val,
                  label="shakespeare_char")
    extra = dict(max_steps=1500, eval_interval=100) if scale == "gpu" else {}
    notes = ["Seed plan 001: WikiText-2 (subword tokens) from scratch, with tiny Shakespeare at the character "
             "level as the baseline. Per-token losses do not compare across the two; bits per byte do.",
             "Both runs train on the same number of tokens, so the character-level model sees fewer bytes of text "
             "(one byte per token against the BPE's three to four)."]
    return Recipe("wikitext2-vs-shakespeare-char", "WikiText-2 (BPE) vs shakespeare_char (characters)", [wt, sh],
                  [RunPlan("wikitext2", "wikitext2", _cfg(scale, **extra)),
                   RunPlan("shakespeare_char", "shakespeare_char", _cfg(scale, **extra))], notes)


def r_tinystories(scale: str, files: dict) -> Recipe:
    return Recipe("tinystories", "TinyStories language model (CS336)", [_tinystories(scale, files)],
                  [RunPlan("tinystories", "tinystories", _cfg(scale))],
                  ["CS336 assignment 1's main run: RMSNorm, pre-norm, RoPE, SwiGLU; a BPE tokenizer trained on "
                   "the TinyStories train text."])


def r_owt(scale: str, files: dict) -> Recipe:
    return Recipe("owt", "OpenWebText language model (CS336)", [_owt(scale, files)],
                  [RunPlan("owt", "owt", _cfg(scale))],
                  ["CS336 assignment 1's OpenWebText run: the TinyStories architecture on web text."])


LRS = {"tiny": (1e-3, 1e-2), "cpu": (3e-4, 1e-3, 3e-3, 1e-2), "gpu": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)}
BATCHES = {"tiny": (2, 8), "cpu": (4, 16, 64), "gpu": (32, 64, 128, 256)}


def r_lr_sweep(scale: str, files: dict) -> Recipe:
    runs = [RunPlan(f"lr={lr:g}", "tinystories", _cfg(scale, lr=lr, min_lr=lr / 10)) for lr in LRS[scale]]
    return Recipe("lr-sweep", "Learning-rate sweep on TinyStories (CS336)", [_tinystories(scale, files)], runs,
                  ["The same model and budget at each peak learning rate; the schedule decays to a tenth of it."])


def r_batch_sweep(scale: str, files: dict) -> Recipe:
    base = BASE[scale]
    budget = base["batch_size"] * base["max_steps"]  # sequences
    runs = []
    for b in BATCHES[scale]:
        steps = max(1, budget // b)
        runs.append(RunPlan(f"batch={b}", "tinystories",
                            _cfg(scale, batch_size=b, max_steps=steps,
                                 warmup_steps=max(1, base["warmup_steps"] * steps // base["max_steps"]),
                                 eval_interval=max(1, base["eval_interval"] * steps // base["max_steps"]),
                                 log_interval=max(1, min(base["log_interval"], steps // 4)))))
    return Recipe("batch-sweep", "Batch-size sweep on TinyStories (CS336)", [_tinystories(scale, files)], runs,
                  [f"Each batch size trains on the same number of tokens ({budget * base['context_length']:,}); "
                   "compare the curves against tokens seen."])


def r_ablations(scale: str, files: dict) -> Recipe:
    swiglu, silu = _d_ff_matched(BASE[scale]["d_model"])
    runs = [
        RunPlan("baseline", "tinystories", _cfg(scale, d_ff=swiglu)),
        RunPlan("no-norm", "tinystories", _cfg(scale, d_ff=swiglu, norm="none")),
        RunPlan("post-norm", "tinystories", _cfg(scale, d_ff=swiglu, norm_position="post")),
        RunPlan("nope", "tinystories", _cfg(scale, d_ff=swiglu, positions="none")),
        RunPlan("silu", "tinystories", _cfg(scale, d_ff=silu, ffn="silu")),
    ]
    return Recipe("ablations", "Architecture ablations on TinyStories (CS336)", [_tinystories(scale, files)], runs,
                  ["CS336's ablations of the baseline (RMSNorm, pre-norm, RoPE, SwiGLU): no normalization, "
                   "post-norm, no position embedding (NoPE), and SiLU instead of SwiGLU.",
                   f"SwiGLU d_ff = {swiglu} (about 8/3 d_model) against SiLU d_ff = {silu}: 3 x d_model x {swiglu} = "
                   f"2 x d_model x {silu} feed-forward parameters each, so the parameter counts match."])


def r_tokenizers(scale: str, files: dict) -> Recipe:
    return Recipe("tokenizers", "Tokenizers (CS336 section 2.7)", [_tinystories(scale, files), _owt(scale, files)], [],
                  ["TinyStories and OpenWebText BPE tokenizers (trained by prepare on each train text), with "
                   "tiktoken's GPT-2 encoding beside them: compression in and across domains, encode throughput "
                   "and the time it implies for the Pile (825 GB), the longest tokens, and the lengths of the "
                   "vocabularies' tokens."])


RECIPES: dict[str, Callable[[str, dict], Recipe]] = {
    "wikitext2-vs-bookcorpus": r_wikitext2_vs_bookcorpus,
    "wikitext2-vs-shakespeare-char": r_wikitext2_vs_shakespeare_char,
    "tinystories": r_tinystories,
    "owt": r_owt,
    "lr-sweep": r_lr_sweep,
    "batch-sweep": r_batch_sweep,
    "ablations": r_ablations,
    "tokenizers": r_tokenizers,
}


# -- options ---------------------------------------------------------------------------------


def parse_from_files(pairs: list[str]) -> dict[str, list[str]]:
    """NAME=FILE[,FILE...] (a data set's train text) and NAME.val=FILE[,FILE...] (its validation text)."""
    out: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        files = [f for f in value.split(",") if f]
        if not sep or not key or not files:
            raise TrainingError(f"--from-files expects NAME=FILE[,FILE...] or NAME.val=FILE[,...], got {pair!r}")
        out.setdefault(key, []).extend(files)
    return out


def _check_files(r: Recipe, files: dict) -> None:
    keys = {d.key for d in r.data}
    for k in files:
        base = k[:-4] if k.endswith(".val") else k
        if base not in keys:
            raise TrainingError(f"--from-files {k}: recipe {r.name} has no data set {base!r} "
                                f"(its data sets: {', '.join(sorted(keys))})")
        if k.endswith(".val") and base not in files:
            raise TrainingError(f"--from-files {k}: give the train text too ({base}=FILE)")


# -- running -------------------------------------------------------------------------------


def prepare_data(plan: DataPlan, r: Recipe, out: Path, files: dict, seed: int, prepared: dict, log) -> Path:
    from training.prepare import Options, prepare, summary

    dest = out / "data" / plan.key
    dest.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = plan.tokenizer
    if tokenizer and tokenizer.startswith("@"):
        ref = prepared[tokenizer[1:]]
        tokenizer = str(ref / json.loads((ref / "dataset.json").read_text())["tokenizer"]["file"])
    max_tokens, val_tokens, val_fraction = plan.max_tokens, plan.val_tokens, plan.val_fraction
    if plan.match:
        m = json.loads((prepared[plan.match] / "dataset.json").read_text())["splits"]
        max_tokens, val_tokens, val_fraction = m["train"]["tokens"], m["val"]["tokens"], None
    opts = Options(name=plan.name, out=str(dest), tokenizer=tokenizer, max_tokens=max_tokens, val_tokens=val_tokens,
                   val_fraction=val_fraction, seed=seed, from_files=files.get(plan.key, []),
                   val_files=files.get(plan.key + ".val", []), progress=False)
    opts.command = "experiment data " + json.dumps(
        {k: getattr(opts, k) for k in ("name", "tokenizer", "max_tokens", "val_tokens", "val_fraction", "seed",
                                       "from_files", "val_files")}, sort_keys=True)
    if (dest / "dataset.json").is_file():
        if json.loads((dest / "dataset.json").read_text()).get("command") == opts.command:
            log(f"data {plan.key}: reused {dest}")
            return dest
        log(f"data {plan.key}: prepared with other options before; preparing it again")
    from pybpe import PybpeError

    try:
        report = prepare(opts)
    except PybpeError as e:
        raise TrainingError(str(e)) from None
    for line in summary(report, str(dest)):
        log(line)
    return dest


def run_config(plan: RunPlan, sets: dict, seed: Optional[int]):
    from training.config import Config, apply

    cfg = apply(Config(), plan.config, f"recipe run {plan.name}")
    if seed is not None:
        cfg.seed = seed
    return apply(cfg, sets, "--set").validate()


def train_run(name: str, cfg, data_dir: Path, run_dir: Path, log, data_key: str = "", data_label: str = "") -> str:
    """Trains (or reuses, or resumes) one run; returns its status."""
    info_path = run_dir / "run.json"
    wanted = cfg.to_dict()
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("status") != "running" and info.get("config") == wanted:
            log(f"run {name}: reused ({info['status']}) {run_dir}")
            return info["status"]
        if info.get("config") != wanted:
            log(f"run {name}: its config changed; training it again")
            shutil.rmtree(run_dir)
    resume = (run_dir / "ckpt_last.pt").is_file()
    if run_dir.exists() and not resume:
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {"name": name, "data": str(data_dir.resolve()), "data_key": data_key, "data_label": data_label,
            "config": wanted, "status": "running"}
    write_json_atomically(info_path, info)
    from training.train import train

    log(f"run {name}: {'resuming' if resume else 'training'} -> {run_dir}")
    started = time.perf_counter()
    try:
        train(cfg, data_dir, run_dir, resume=resume, log=lambda line: log(f"  [{name}] {line}"))
        info["status"] = "finished"
    except TrainingError as e:
        if "training loss is" not in str(e):
            raise
        info["status"] = "diverged"
        info["error"] = str(e)
        log(f"run {name}: diverged ({e})")
    info["wall_s"] = round(time.perf_counter() - started, 2)
    write_json_atomically(info_path, info)
    return info["status"]


def label_of(plan: DataPlan, files: dict) -> str:
    label = plan.label or plan.key
    if files.get(plan.key):
        names = ", ".join(Path(f).name for f in files[plan.key] + files.get(plan.key + ".val", []))
        stem = Path(files[plan.key][0]).stem.lower()
        if not any(part in stem for part in plan.name.split("_") if len(part) >= 3):
            return f"{label} (stand-in: {names})"
        return f"{label} ({names})"
    return label


def run_experiment(name: str, out: str, scale: str = "tiny", from_files: Optional[list[str]] = None,
                   sets: Optional[dict] = None, seed: Optional[int] = None, samples: bool = True, log=print) -> dict:
    files = parse_from_files(from_files or [])
    r = recipe(name, scale, files)
    _check_files(r, files)
    sets = sets or {}
    configs = {p.name: run_config(p, sets, seed) for p in r.runs}  # bad --set values fail before any work
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise TrainingError(f"--out {out}: exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomically(out_dir / "recipe.json", {"recipe": name, "scale": scale, "from_files": files, "sets": sets,
                                          "seed": seed})
    threads = TORCH_THREADS[scale]
    if threads is None or r.name == "tokenizers":
        return _run_experiment(r, name, out_dir, scale, files, sets, seed, configs, samples, log)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run_experiment(r, name, out_dir, scale, files, sets, seed, configs, samples, log)
    finally:
        torch.set_num_threads(before)


def _run_experiment(r: Recipe, name: str, out_dir: Path, scale: str, files: dict, sets: dict, seed: Optional[int],
                    configs: dict, samples: bool, log) -> dict:
    prepared: dict[str, Path] = {}
    data_seed = 1337 if seed is None else seed
    for plan in r.data:
        prepared[plan.key] = prepare_data(plan, r, out_dir, files, data_seed, prepared, log)
    labels = {p.key: label_of(p, files) for p in r.data}
    if name == "tokenizers":
        return tokenizer_report(r, prepared, labels, out_dir, scale, log)
    run_dirs = []
    for p in r.runs:
        d = out_dir / "runs" / p.name
        status = train_run(p.name, configs[p.name], prepared[p.data], d, log, p.data, labels[p.data])
        if status != "finished" and not (d / "metrics.jsonl").is_file():
            log(f"run {p.name}: {status} before its first evaluation; left out of the report")
            continue
        run_dirs.append(str(d))
    from training.report import build_report

    notes = [f"Recipe `{name}` at scale `{scale}`" + (f", --set {sets}" if sets else "")
             + (f", seed {seed}" if seed is not None else "") + "."] + r.notes
    if scale != "gpu":
        notes.append(f"Trained on CPU, one thread per run, on a machine with {os.cpu_count()} cores shared with other "
                     "jobs: tokens/s between runs reflects the load as much as the model.")
    for p in r.data:
        notes.append(f"Data set {p.key}: {labels[p.key]}.")
    summary = build_report(run_dirs, str(out_dir), samples=samples, max_new_tokens=SAMPLE_TOKENS[scale],
                           title=r.title, notes=notes,
                           extra={"recipe": name, "scale": scale}, log=log)
    log(f"report -> {out_dir / 'report.md'}")
    return summary


# -- the tokenizers recipe --------------------------------------------------------------------


def _val_documents(data_dir: Path, max_bytes: int) -> list[str]:
    """The first validation documents of a prepared data set, decoded, up to max_bytes."""
    import numpy as np

    from training.data import open_tokens
    from training.report import Data, load_tokenizer

    meta = json.loads((data_dir / "dataset.json").read_text())
    f = open_tokens(data_dir / "val.bin")
    tok = load_tokenizer(Data("", data_dir, meta, "", f.vocab_size, str(data_dir / meta["tokenizer"]["file"]), None))
    ids = np.asarray(f.tokens())
    eot = f.eot_id
    cuts = np.nonzero(ids == eot)[0] if eot is not None else np.array([], dtype=np.int64)
    docs, start, size = [], 0, 0
    for end in list(cuts) + [len(ids)]:
        if end > start:
            text = tok.decode(ids[start:end].tolist())
            docs.append(text)
            size += len(text.encode())
            if size >= max_bytes:
                break
        start = end + 1
    return docs


def tokenizer_report(r: Recipe, prepared: dict[str, Path], labels: dict, out_dir: Path, scale: str, log) -> dict:
    import numpy as np

    import pybpe
    import tiktoken

    from training.plot import pyplot, save_figure
    from training.report import data_plots, printable, dataset_stats, read_data, vocab_overlap

    sample_bytes = {"tiny": 200_000, "cpu": 2_000_000, "gpu": 20_000_000}[scale]
    domains = {k: _val_documents(p, sample_bytes) for k, p in prepared.items()}
    toks: dict[str, Any] = {}
    for k, p in prepared.items():
        meta = json.loads((p / "dataset.json").read_text())
        toks[f"{labels[k].split(' (')[0]}-{meta['tokenizer']['vocab_size']}"] = pybpe.Tokenizer.load(
            str(p / meta["tokenizer"]["file"]))
    try:
        gpt2 = tiktoken.get_encoding("gpt2")
    except Exception as e:
        raise TrainingError(f"tiktoken cannot load gpt2 ({str(e).splitlines()[0][:120]}); set TIKTOKEN_CACHE_DIR") from None
    cores = os.cpu_count() or 1

    def encoder(name):
        if name == "gpt2 (tiktoken)":
            return (lambda docs, threads: gpt2.encode_ordinary_batch(docs, num_threads=threads or cores))
        t = toks[name]
        return lambda docs, threads: t.encode_batch(docs, threads=threads)

    names = list(toks) + ["gpt2 (tiktoken)"]
    compression: dict[str, dict[str, float]] = {}
    throughput: dict[str, dict[str, float]] = {}
    for n in names:
        enc = encoder(n)
        compression[n] = {}
        throughput[n] = {}
        for dk, docs in domains.items():
            nbytes = sum(len(d.encode()) for d in docs)
            ntok = sum(len(x) for x in enc(docs, 1))
            compression[n][dk] = nbytes / ntok
        docs = [d for ds in domains.values() for d in ds]
        nbytes = sum(len(d.encode()) for d in docs)
        for label, threads in (("1 thread", 1), (f"{cores} threads", cores)):
            enc(docs[:50], threads)
            best = math.inf
            for _ in range(3):  # the best of three: the machine is shared
                t0 = time.perf_counter()
                enc(docs, threads)
                best = min(best, time.perf_counter() - t0)
            throughput[n][label] = nbytes / best
    own_vocab = {n: [b for i, b in toks[n].vocab.items() if i not in set(toks[n].special_tokens.values())]
                 for n in toks}
    vocabs = {n: [len(b) for b in own_vocab[n]] for n in toks}
    vocabs["gpt2 (tiktoken)"] = [len(b) for b in gpt2._mergeable_ranks]
    longest = {n: [printable(b) for b in sorted(own_vocab[n], key=len, reverse=True)[:5]] for n in toks}
    longest["gpt2 (tiktoken)"] = [printable(b) for b in sorted(gpt2._mergeable_ranks, key=len, reverse=True)[:5]]

    plots = out_dir / "plots"
    plots.mkdir(exist_ok=True)
    plt = pyplot()
    figures = {}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    dks = list(domains)
    w = 0.8 / len(names)
    for i, n in enumerate(names):
        ax.bar([j + i * w for j in range(len(dks))], [compression[n][d] for d in dks], width=w, label=n)
    ax.set_xticks([j + 0.4 - w / 2 for j in range(len(dks))], [labels[d] for d in dks], fontsize=8)
    ax.set_ylabel("bytes per token (higher: better compression)")
    ax.set_title("Compression of each tokenizer on each domain's validation text")
    ax.legend(fontsize=8)
    figures["bytes_per_token.png"] = save_figure(fig, plots / "bytes_per_token.png")
    fig, ax = plt.subplots(figsize=(8, 4))
    modes = list(next(iter(throughput.values())))
    for i, m in enumerate(modes):
        ax.bar([j + i * 0.4 for j in range(len(names))], [throughput[n][m] / 1e6 for n in names], width=0.4, label=m)
    ax.set_xticks([j + 0.2 for j in range(len(names))], names, fontsize=8)
    ax.set_ylabel("encode throughput (MB/s)")
    ax.set_title(f"Encode throughput on this machine ({cores} cores, shared with other jobs)")
    ax.legend()
    figures["throughput.png"] = save_figure(fig, plots / "throughput.png")
    fig, ax = plt.subplots(figsize=(8, 4))
    top = max(max(v) for v in vocabs.values())
    bins = np.arange(1, min(top, 32) + 2) - 0.5
    for n in names:
        ax.hist(np.minimum(vocabs[n], 32), bins=bins, histtype="step", density=True, linewidth=1.5, label=n)
    ax.set_xlabel("token length (bytes; 32 = 32 or more)")
    ax.set_ylabel("share of the vocabulary")
    ax.set_title("Token-length histogram of each vocabulary")
    ax.legend(fontsize=8)
    figures["vocab_token_lengths.png"] = save_figure(fig, plots / "vocab_token_lengths.png")

    datasets = {k: read_data(p, k) for k, p in prepared.items()}
    for k, d in datasets.items():
        d.meta["label"] = labels[k]
    section = {k: dataset_stats(d) for k, d in datasets.items()}
    overlap = vocab_overlap(datasets)
    figures.update(data_plots(datasets, section, overlap, plots))
    pile = {n: {m: PILE_BYTES / rate for m, rate in throughput[n].items()} for n in names}
    tokenizers = {n: {"vocab_size": len(vocabs[n]), "bytes_per_token": compression[n],
                      "throughput_bytes_per_s": throughput[n], "pile_seconds": pile[n],
                      "longest_tokens": longest[n], "max_token_bytes": max(vocabs[n])} for n in names}

    sentences = []
    for dk in dks:
        best = max(names, key=lambda n: compression[n][dk])
        sentences.append(f"On {labels[dk]}, {best} compresses best: {compression[best][dk]:.2f} bytes/token "
                         f"(the others: " + ", ".join(f"{n} {compression[n][dk]:.2f}" for n in names if n != best) + ").")
    own = list(toks)
    if len(own) == 2 and len(dks) == 2:
        a, b = own
        da, db = dks
        sentences.append(f"{a} on {labels[db]} gives {compression[a][db]:.2f} bytes/token against "
                         f"{compression[a][da]:.2f} in its own domain ({100 * (compression[a][db] / compression[a][da] - 1):+.0f}%).")
    for n in own:
        m1 = "1 thread"
        sentences.append(f"{n} encodes {throughput[n][m1] / 1e6:.1f} MB/s on one thread: the Pile (825 GB) would take "
                         f"{pile[n][m1] / 3600:.1f} hours per core, {pile[n][f'{cores} threads'] / 3600:.1f} hours "
                         f"on this machine's {cores} cores.")
    lines = [f"# {r.title}", ""] + r.notes + [f"Scale `{scale}`; up to {sample_bytes:,} bytes of each validation text. "
                                              f"Timings on a {cores}-core machine shared with other jobs.", ""]
    for dk in dks:
        lines.append(f"Data set {dk}: {labels[dk]}.")
    lines += ["", "## Findings", ""] + [f"- {s}" for s in sentences] + ["", "## Compression (bytes/token)", "",
              "| tokenizer | vocab | " + " | ".join(labels[d] for d in dks) + " |", "|---|---|" + "---|" * len(dks)]
    for n in names:
        lines.append(f"| {n} | {len(vocabs[n]):,} | " + " | ".join(f"{compression[n][d]:.3f}" for d in dks) + " |")
    lines += ["", "![bytes per token](plots/bytes_per_token.png)", "", "## Throughput and the Pile", "",
              "| tokenizer | " + " | ".join(f"{m} MB/s" for m in modes) + " | "
              + " | ".join(f"Pile at {m} (h)" for m in modes) + " |", "|---|" + "---|" * (2 * len(modes))]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{throughput[n][m] / 1e6:.2f}" for m in modes) + " | "
                     + " | ".join(f"{pile[n][m] / 3600:.1f}" for m in modes) + " |")
    lines += ["", "![throughput](plots/throughput.png)", "", "## Longest tokens", ""]
    for n in names:
        lines.append(f"- {n} ({max(vocabs[n])} bytes): " + ", ".join(f"`{t}`" for t in longest[n]))
    lines += ["", "![token lengths](plots/vocab_token_lengths.png)", "", "## Data", "",
              "| data set | documents | bytes | tokens | bytes/token | unique tokens used | Zipf exponent |",
              "|---|---|---|---|---|---|---|"]
    for k, d in section.items():
        lines.append(f"| {d['label']} | {d['documents']:,} | {d['bytes']:,} | {d['tokens']:,} | "
                     f"{d['bytes_per_token']:.3f} | {d['unique_tokens']:,} of {d['vocab_size']:,} | {d['zipf_exponent']:.3f} |")
    lines += ["", "![Zipf](plots/zipf.png)", "", "![token lengths in the data](plots/token_lengths.png)", ""]
    summary = {"schema": 1, "recipe": r.name, "scale": scale, "runs": {}, "datasets": section,
               "tokenizers": tokenizers, "vocab_overlap": overlap, "findings": sentences,
               "plots": sorted(figures.values())}
    write_text_atomically(out_dir / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False, default=float) + "\n")
    write_text_atomically(out_dir / "report.md", "\n".join(lines) + "\n")
    log(f"report -> {out_dir / 'report.md'}")
    return summary


# -- sweep -----------------------------------------------------------------------------------


def parse_grid(pairs: list[str]) -> dict[str, list[str]]:
    from training.config import FIELD_TYPES

    if not pairs:
        raise TrainingError("sweep needs at least one --grid KEY=V1,V2,...")
    grid: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        values = [v for v in value.split(",") if v.strip()]
        if not sep or not key:
            raise TrainingError(f"--grid expects KEY=V1,V2,..., got {pair!r}")
        if key not in FIELD_TYPES:
            raise TrainingError(f"--grid {key}: unknown config key (known keys: {', '.join(FIELD_TYPES)})")
        if not values:
            raise TrainingError(f"--grid {key}: no values (an empty grid)")
        grid[key] = values
    return grid


def run_sweep(data: str, out: str, grid_pairs: list[str], preset: Optional[str] = None, config_file: Optional[str] = None,
              sets: Optional[dict] = None, samples: bool = True, log=print) -> dict:
    import itertools

    from training import config as config_mod

    grid = parse_grid(grid_pairs)
    if preset is None and config_file is None:
        raise TrainingError("sweep needs --preset NAME or --config FILE.toml")
    if not (Path(data) / "train.bin").is_file():
        raise TrainingError(f"--data {data}: no train.bin (prepare it with python -m training prepare)")
    combos = []
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values))
        cfg = config_mod.load(preset, config_file, {**(sets or {}), **point})
        name = "_".join(f"{k}-{v}" for k, v in point.items()).replace("/", "-")
        combos.append((name, cfg))
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_dirs = []
    for name, cfg in combos:
        d = out_dir / "runs" / name
        status = train_run(name, cfg, Path(data), d, log, Path(data).resolve().name)
        if status == "finished" or (d / "metrics.jsonl").is_file():
            run_dirs.append(str(d))
    from training.report import build_report

    summary = build_report(run_dirs, str(out_dir), samples=samples, title="Sweep: " + ", ".join(
        f"{k} in {{{', '.join(v)}}}" for k, v in grid.items()), notes=[f"Data: {data}."],
        extra={"grid": grid}, log=log)
    log(f"report -> {out_dir / 'report.md'}")
    return summary
