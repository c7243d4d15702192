#!/usr/bin/env python3
"""Side-by-side BPE training benchmark: pybpe vs HF tokenizers, rustbpe and gigatoken.

Every peer gets the same corpus, the same pre-tokenization pattern (GPT-2's, the CS336
one), the same special token <|endoftext|>, the same vocabulary size (256 bytes + merges
+ the special token) and the same thread count. Each (peer, setting) measurement runs in
a fresh Python subprocess (this script with --worker), so the peak RSS it reports
(getrusage ru_maxrss of that process right after training: interpreter + library + input +
training) belongs to that peer alone.

What is timed: "from file path to trained merges" -- the training call itself, plus,
for a peer that needs its input read in Python (rustbpe), the reading and splitting,
which is shown in the "prep s" column and included in "wall s". Importing the library
and extracting the merges afterwards are not timed.

    python3 benchmarks/train.py --quick                 # smoke run, under a minute
    python3 benchmarks/train.py                         # all sections on enwiki_extract.txt
    python3 benchmarks/train.py --sections headline --repeat 3 --markdown benchmarks/RESULTS.md

Sections: (1) headline: the whole corpus at --vocab; (2) vocab scaling: --vocabs on a
--vocab-corpus-mb prefix of the corpus; (3) corpus-size scaling: --sizes-mb prefixes at
--vocab. Prefixes are written to a temporary directory, cut at a newline.

Data: $PYBPE_DATA/corpora (default ../shared/data beside the repository).
"""

import argparse
import datetime
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from machine import machine_line, versions

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = ["pybpe", "tokenizers", "rustbpe", "gigatoken"]
SPECIAL = "<|endoftext|>"
# The CS336 / GPT-2 (r50k) pre-tokenization pattern.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
RESULT_MARK = "@@BENCH_RESULT "  # the worker's JSON line; peers may print to stdout too
COMPARE_FIRST = 1000  # how many learned tokens are compared with pybpe's

# How each peer is configured; printed under every table.
PEER_NOTES = {
    "pybpe": "pybpe.Tokenizer.train([path], vocab, special_tokens=[SPECIAL], pattern='gpt2', threads=T)",
    "tokenizers": (
        "Tokenizer(models.BPE()), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True) "
        "(GPT-2's regex, same splits as the CS336 one), BpeTrainer(vocab, special_tokens=[SPECIAL], "
        "initial_alphabet=ByteLevel.alphabet(), show_progress=False), train([path]); threads via "
        "RAYON_NUM_THREADS. Caveats: reads the file line by line, and does not cut the special token "
        "out of the training text (it is pre-tokenized as '<|', 'endoftext', '|>' and counted)"
    ),
    "rustbpe": (
        "rustbpe.Tokenizer().train_from_iterator(docs, vocab - 1, pattern=GPT2) where docs = the file "
        "read in Python and split on SPECIAL (timed as prep); it has no special tokens, so it is asked "
        "for vocab - 1 to learn the same number of merges; threads via RAYON_NUM_THREADS (no own knob)"
    ),
    "gigatoken": (
        "gigatoken.train_bpe(TextFileSource([path], separator=SPECIAL), vocab, [SPECIAL], "
        "tie_breaking=TB); its pre-tokenizer is built in (GPT-2), not configurable; threads via "
        "RAYON_NUM_THREADS (no own knob). No tie_breaking mode is CS336's (ties to the greater pair): "
        "'huggingface', 'raw_token_ids' and 'assembled_bytes' all give ties to a smaller pair. "
        "Its merge phase slows down sharply when the vocab is large for the corpus (many low-count merges)"
    ),
}


# --------------------------------------------------------------------------- worker


def peak_rss_mib():
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# Each train_* returns (prep seconds, training seconds, peak RSS MiB right after training,
# learned tokens in order); the peak is taken before the merges are extracted.


def train_pybpe(path, vocab, threads, args):
    import pybpe

    start = time.perf_counter()
    tok = pybpe.Tokenizer.train([path], vocab, special_tokens=[SPECIAL], pattern="gpt2", threads=threads)
    train_s = time.perf_counter() - start
    peak = peak_rss_mib()
    return 0.0, train_s, peak, [a + b for a, b in tok.merges]


def train_tokenizers(path, vocab, threads, args):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=[SPECIAL],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    start = time.perf_counter()
    tok.train([path], trainer)
    train_s = time.perf_counter() - start
    peak = peak_rss_mib()

    from pybpe.interop import BYTE_TO_UNICODE

    decode = {c: b for b, c in enumerate(BYTE_TO_UNICODE)}
    tokens = []
    for merge in json.loads(tok.to_str())["model"]["merges"]:
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        tokens.append(bytes(decode[c] for c in left + right))
    return 0.0, train_s, peak, tokens


def train_rustbpe(path, vocab, threads, args):
    import rustbpe

    tok = rustbpe.Tokenizer()
    start = time.perf_counter()
    with open(path, encoding="utf-8", errors="replace") as f:
        docs = f.read().split(SPECIAL)
    prep_s = time.perf_counter() - start
    start = time.perf_counter()
    # rustbpe's vocab_size is 256 + merges; it knows no special tokens.
    tok.train_from_iterator(iter(docs), vocab - 1, pattern=GPT2_PATTERN)
    train_s = time.perf_counter() - start
    peak = peak_rss_mib()
    del docs
    ranks = sorted(tok.get_mergeable_ranks(), key=lambda kv: kv[1])
    return prep_s, train_s, peak, [bytes(t) for t, rank in ranks if rank >= 256]


def train_gigatoken(path, vocab, threads, args):
    import gigatoken

    start = time.perf_counter()
    source = gigatoken.TextFileSource([path], separator=SPECIAL)
    _vocab, merges = gigatoken.train_bpe(source, vocab, [SPECIAL], tie_breaking=args.gigatoken_tie_breaking)
    train_s = time.perf_counter() - start
    peak = peak_rss_mib()
    return 0.0, train_s, peak, [a + b for a, b in merges]


TRAINERS = {
    "pybpe": train_pybpe,
    "tokenizers": train_tokenizers,
    "rustbpe": train_rustbpe,
    "gigatoken": train_gigatoken,
}


def run_worker(args):
    """One measurement in this (fresh) process; prints one JSON line after RESULT_MARK."""
    result = {"peer": args.worker}
    try:
        __import__(args.worker)
    except ImportError as e:
        result["error"] = f"not installed ({e})"
        print(RESULT_MARK + json.dumps(result), flush=True)
        return 0
    rss_before = peak_rss_mib()
    try:
        prep_s, train_s, peak, tokens = TRAINERS[args.worker](args.corpus, args.vocab, args.threads, args)
    except Exception as e:  # reported in the table, not a crash
        result["error"] = f"failed: {type(e).__name__}: {e}"
        print(RESULT_MARK + json.dumps(result), flush=True)
        return 0
    result.update(
        prep_s=prep_s,
        train_s=train_s,
        wall_s=prep_s + train_s,
        peak_rss_mib=peak,
        rss_before_train_mib=rss_before,
        merges=len(tokens),
        first_tokens=[t.hex() for t in tokens[:COMPARE_FIRST]],
    )
    sys.stdout.flush()
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------- parent


def data_dir():
    return os.environ.get("PYBPE_DATA") or os.path.join(REPO, "..", "shared", "data")


def resolve_corpus(name):
    if os.path.exists(name):
        return os.path.abspath(name)
    path = os.path.join(data_dir(), "corpora", name)
    if not os.path.exists(path):
        sys.exit(f"corpus not found: {name} (looked in . and {os.path.dirname(path)})")
    return os.path.abspath(path)


def prefix_file(corpus, mb, tmpdir):
    """A copy of the first `mb` MB (10^6 bytes) of corpus, cut after a newline; or the corpus itself."""
    size = os.path.getsize(corpus)
    limit = int(mb * 1_000_000)
    if limit >= size:
        return corpus
    with open(corpus, "rb") as f:
        data = f.read(limit)
    cut = data.rfind(b"\n")
    if cut > 0:
        data = data[: cut + 1]
    path = os.path.join(tmpdir, f"{os.path.basename(corpus)}.{mb:g}MB")
    with open(path, "wb") as f:
        f.write(data)
    return path


def measure_once(peer, corpus, vocab, threads, args):
    env = dict(os.environ)
    env["RAYON_NUM_THREADS"] = str(threads)  # tokenizers, rustbpe, gigatoken (and pybpe) use rayon
    env["TOKENIZERS_PARALLELISM"] = "true"
    cmd = [
        sys.executable, os.path.abspath(__file__), "--worker", peer,
        "--corpus", corpus, "--vocab", str(vocab), "--threads", str(threads),
        "--gigatoken-tie-breaking", args.gigatoken_tie_breaking,
    ]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"peer": peer, "error": f"timed out after {args.timeout} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"peer": peer, "error": f"failed (exit {proc.returncode}): {last[:200]}"}


def measure(peer, corpus, vocab, threads, args):
    """Best (lowest) wall time of --repeat fresh runs; peak RSS is the highest of them."""
    runs = []
    for _ in range(args.repeat):
        r = measure_once(peer, corpus, vocab, threads, args)
        if "error" in r:
            return r
        runs.append(r)
    best = min(runs, key=lambda r: r["wall_s"])
    best["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
    best["runs_wall_s"] = [round(r["wall_s"], 3) for r in runs]
    return best


def fmt_ratio(x):
    return f"{x:.2f}x"


def table(title, rows, headline_check):
    """rows: list of (label, result). Returns markdown lines; the pybpe row is the reference."""
    lines = [f"### {title}", ""]
    lines.append(
        "| setting | peer | wall s | prep s | peak RSS MiB | time / pybpe | RSS / pybpe | merges "
        f"| same prefix as pybpe | shared with pybpe, first {COMPARE_FIRST} |"
    )
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    by_label = {}
    for label, r in rows:
        by_label.setdefault(label, {})[r["peer"]] = r
    checks = []
    for label, results in by_label.items():
        ref = results.get("pybpe")
        ref_ok = ref is not None and "error" not in ref
        ref_tokens = ref.get("first_tokens") if ref_ok else None
        for peer, r in results.items():
            if "error" in r:
                lines.append(f"| {label} | {peer} | {r['error']} | | | | | | | |")
                continue
            t_ratio = fmt_ratio(r["wall_s"] / ref["wall_s"]) if ref_ok else "-"
            m_ratio = fmt_ratio(r["peak_rss_mib"] / ref["peak_rss_mib"]) if ref_ok else "-"
            prefix = shared = "-"
            if ref_tokens is not None:
                mine = r["first_tokens"]
                n = min(len(ref_tokens), len(mine))
                prefix = str(next((i for i in range(n) if ref_tokens[i] != mine[i]), n))
                shared = str(len(set(ref_tokens) & set(mine)))
            prep = f"{r['prep_s']:.3f}" if r["prep_s"] else "-"
            lines.append(
                f"| {label} | {peer} | {r['wall_s']:.3f} | {prep} | {r['peak_rss_mib']:.0f} | {t_ratio} "
                f"| {m_ratio} | {r['merges']} | {prefix} | {shared} |"
            )
        if headline_check and ref_ok:
            giga = results.get("gigatoken")
            if giga and "error" not in giga:
                half = ref["wall_s"] <= giga["wall_s"] / 2
                checks.append(
                    f"pybpe <= 1/2 gigatoken? {'YES' if half else 'NO'} "
                    f"(pybpe {ref['wall_s']:.2f} s, gigatoken {giga['wall_s']:.2f} s, "
                    f"gigatoken / pybpe = {giga['wall_s'] / ref['wall_s']:.2f}x, target >= 2x)"
                )
            others = [r for p, r in results.items() if p != "pybpe" and "error" not in r]
            if others:
                lowest = min(others, key=lambda r: r["peak_rss_mib"])
                ok = ref["peak_rss_mib"] <= lowest["peak_rss_mib"]
                checks.append(
                    f"pybpe peak RSS <= every peer? {'YES' if ok else 'NO'} "
                    f"(pybpe {ref['peak_rss_mib']:.0f} MiB, lowest peer {lowest['peer']} "
                    f"{lowest['peak_rss_mib']:.0f} MiB)"
                )
    lines.append("")
    lines.extend(f"- **{c}**" for c in checks)
    if checks:
        lines.append("")
    return lines


def parse_list(text, kind):
    return [kind(x) for x in text.split(",") if x.strip()]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small smoke run on tinystories_pool_train.txt (under a minute)")
    p.add_argument("--sections", default="headline,vocab,size", help="any of headline,vocab,size (default: all)")
    p.add_argument("--corpus", default=None, help="corpus file, or a name in $PYBPE_DATA/corpora (default enwiki_extract.txt)")
    p.add_argument("--vocab", type=int, default=None, help="vocab size for headline and size scaling (default 32000)")
    p.add_argument("--vocabs", default=None, help="vocab sizes to scale over (default 1000,8000,32000,64000)")
    p.add_argument("--vocab-corpus-mb", type=float, default=None, help="corpus prefix (MB) for vocab scaling (default 16)")
    p.add_argument("--sizes-mb", default=None, help="corpus prefixes (MB) to scale over, 'all' = whole file (default 4,16,all)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every peer (default: all cores)")
    p.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated subset of {','.join(PEERS)}")
    p.add_argument("--repeat", type=int, default=1, help="fresh runs per measurement; the best time is kept")
    p.add_argument("--timeout", type=float, default=1800, help="seconds allowed per worker run")
    p.add_argument("--gigatoken-tie-breaking", default="huggingface",
                   choices=["huggingface", "raw_token_ids", "assembled_bytes"],
                   help="gigatoken's tie_breaking (default its own default, the one closest to pybpe's merges)")
    p.add_argument("--markdown", default=None, help="append a markdown block (command, machine, date, tables) to this file")
    # internal: one measurement in a fresh process
    p.add_argument("--worker", choices=PEERS, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker:
        return run_worker(args)

    if args.quick:
        defaults = dict(corpus="tinystories_pool_train.txt", vocab=2000, vocabs="500,1000,2000,4000",
                        vocab_corpus_mb=2, sizes_mb="1,2,all")
    else:
        defaults = dict(corpus="enwiki_extract.txt", vocab=32000, vocabs="1000,8000,32000,64000",
                        vocab_corpus_mb=16, sizes_mb="4,16,all")
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    corpus = resolve_corpus(args.corpus)
    peers = parse_list(args.peers, str)
    for peer in peers:
        if peer not in PEERS:
            sys.exit(f"unknown peer {peer!r}; choose from {', '.join(PEERS)}")
    sections = parse_list(args.sections, str)
    threads = args.threads
    corpus_mb = os.path.getsize(corpus) / 1e6

    header = [
        f"## Training benchmark, {datetime.date.today().isoformat()}",
        "",
        f"- command: `python3 benchmarks/train.py {' '.join(sys.argv[1:])}`".rstrip(),
        f"- machine: {machine_line()}",
        f"- versions: {versions(peers)}",
        f"- corpus: {os.path.basename(corpus)} ({corpus_mb:.1f} MB), special token `{SPECIAL}`, "
        f"GPT-2 pattern, {threads} threads for every peer, best of {args.repeat} fresh process(es)",
        "- timed: from file path to trained merges (training call + any Python-side reading, "
        "shown as prep); peak RSS = ru_maxrss of the worker process right after training (interpreter + "
        "library + input + training), highest over the repeats",
        "",
    ]
    print("\n".join(header), flush=True)
    out = list(header)

    tmpdir = tempfile.mkdtemp(prefix="pybpe-bench-")
    try:
        plan = []  # (title, [(label, corpus path, vocab)], headline?)
        if "headline" in sections:
            plan.append((f"Headline: {os.path.basename(corpus)} ({corpus_mb:.1f} MB), vocab {args.vocab}, {threads} threads",
                         [(f"{corpus_mb:.1f} MB / {args.vocab}", corpus, args.vocab)], True))
        if "vocab" in sections:
            path = prefix_file(corpus, args.vocab_corpus_mb, tmpdir)
            mb = os.path.getsize(path) / 1e6
            plan.append((f"Vocab scaling: {mb:.1f} MB of {os.path.basename(corpus)}, {threads} threads",
                         [(f"vocab {v}", path, v) for v in parse_list(args.vocabs, int)], False))
        if "size" in sections:
            settings = []
            for size in parse_list(args.sizes_mb, str):
                path = corpus if size == "all" else prefix_file(corpus, float(size), tmpdir)
                settings.append((f"{os.path.getsize(path) / 1e6:.1f} MB", path, args.vocab))
            plan.append((f"Corpus-size scaling: prefixes of {os.path.basename(corpus)}, vocab {args.vocab}, {threads} threads",
                         settings, False))

        for title, settings, headline in plan:
            rows = []
            for label, path, vocab in settings:
                for peer in peers:
                    r = measure(peer, path, vocab, threads, args)
                    status = r.get("error") or f"{r['wall_s']:.2f} s, {r['peak_rss_mib']:.0f} MiB, {r['merges']} merges"
                    print(f"  [{label}] {peer}: {status}", file=sys.stderr, flush=True)
                    rows.append((label, r))
            lines = table(title, rows, headline)
            print("\n".join(lines), flush=True)
            out.extend(lines)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    notes = ["How each peer is called:", ""]
    notes += [f"- {peer}: {PEER_NOTES[peer]}" for peer in peers]
    notes = [n.replace("tie_breaking=TB", f"tie_breaking={args.gigatoken_tie_breaking!r}") for n in notes]
    notes += [
        f"- learned tokens (the merged byte strings, in order) compared with pybpe's: 'same prefix' = how many "
        f"leading ones are identical; 'shared' = how many of the first {COMPARE_FIRST} occur in pybpe's first "
        f"{COMPARE_FIRST}. pybpe follows CS336 (ties go to the lexicographically greater pair of byte strings); "
        "the peers break ties differently, and HF tokenizers also learns merges from the special token's text",
        "",
    ]
    print("\n".join(notes), flush=True)
    out.extend(notes)

    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as f:
            f.write("\n" + "\n".join(out) + "\n")
        print(f"appended to {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
