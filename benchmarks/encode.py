#!/usr/bin/env python3
"""Encoding benchmark: pybpe vs tiktoken, HF tokenizers and gigatoken with GPT-2's tokenizer.

Every peer encodes the same text with the same GPT-2 vocabulary, merges, pattern and
special token <|endoftext|> (read as a special token), at 1 thread and at all threads.
GPT-2 comes from the CS336 files gpt2_vocab.json + gpt2_merges.txt: pybpe reads them with
`Tokenizer.from_gpt2`, HF tokenizers loads pybpe's tokenizer.json export of it, gigatoken
pybpe's .tiktoken export of it; tiktoken uses its own "gpt2" encoding. Each peer's ids are
checked against tiktoken's (the ✓ column).

Each (peer, threads, corpus) is measured in a fresh Python subprocess (this script with
--worker): the tokenizer is loaded and warmed up on a small unrelated text (not timed),
the corpus is read into memory (not timed), then one call that turns the text into ids
is timed, so every pre-token cache starts cold for the corpus, as when a file is encoded
once. Threads are set with RAYON_NUM_THREADS for every peer, plus each peer's own knob;
OPENBLAS_NUM_THREADS=1 keeps numpy's idle BLAS threads from taking CPU time from any of them.
With --repeat N each is measured N times, in rounds over all of them (the VM's speed
drifts from minute to minute), and the fastest is kept. HF tokenizers' cells are measured
after all the others' (see `measure_all`).

Then the same with the GPT-4 (cl100k) pattern, on a few corpora: a 32K tokenizer that pybpe
trains on webtext_pool.txt with that pattern, which tiktoken gets as `to_tiktoken()` and
gigatoken as its .tiktoken export; then `pybpe encode` end to end (process start, loading,
reading, writing .bin + sidecar) on the largest corpus, and a compression table (bytes per
token) of tokenizers trained by pybpe, in domain and across domains.

    python3 benchmarks/encode.py --quick                       # small corpora, under a minute
    python3 benchmarks/encode.py --repeat 3 --markdown benchmarks/RESULTS.md

Data: $PYBPE_DATA (default ../shared/data beside the repository).
"""

import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

from machine import machine_line, versions

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

PEERS = ["pybpe", "tiktoken", "tokenizers", "gigatoken"]
SPECIAL = "<|endoftext|>"
EOT = 50256
RESULT_MARK = "@@BENCH_RESULT "
QUICK_CORPORA = ["tinyshakespeare.txt", "tinystories_pool_valid.txt", "wikitext2_valid.txt"]

PEER_NOTES = {
    "pybpe": "Tokenizer.from_gpt2(vocab.json, merges.txt); tok.encode_to_numpy(text, allowed_special='all', threads=T)",
    "tiktoken": ("get_encoding('gpt2'); 1 thread: encode(text, allowed_special='all'); T threads: "
                 "encode_ordinary_batch(text.split(SPECIAL), num_threads=T), joined with the special's id "
                 "(the split and the join are timed)"),
    "tokenizers": ("Tokenizer.from_file(pybpe's save_huggingface export); encode_batch(text.split(SPECIAL)) "
                   "with RAYON_NUM_THREADS=T (TOKENIZERS_PARALLELISM off for 1 thread), ids joined with the "
                   "special's id (timed)"),
    "gigatoken": ("Tokenizer.from_tiktoken(pybpe's save_tiktoken export, pretokenizer='gpt2', "
                  "special_tokens={SPECIAL: 50256}); 1 thread: encode(text); T threads: "
                  "encode_batch([text], parallel=True) (it splits one long document itself), flattened"),
}
NOTE_GPT4 = ("GPT-4-pattern tables: the same calls on a tokenizer pybpe trains (pybpe: Tokenizer.load of it; tiktoken: "
             "its to_tiktoken(); gigatoken: from_tiktoken(its save_tiktoken export, pretokenizer='gpt4'))")
NOTE_SPLIT = ("tiktoken and tokenizers encode documents in parallel, not parts of one: a corpus without "
              "<|endoftext|> is one document to them")


# --------------------------------------------------------------------------- worker


WARMUP_FILES = ["cs336/tinystories_sample.txt", "cs336/german.txt", "cs336/address.txt"]


def load_peer(peer, threads, exports):
    """`exports["trained"]`, when given, is a tokenizer saved by pybpe that every peer loads
    instead of GPT-2 (tiktoken through `to_tiktoken()`, gigatoken through the .tiktoken export)."""
    from pybpe.data import data_file

    eot = exports.get("eot", EOT)
    if peer == "pybpe":
        import pybpe

        if "trained" in exports:
            tok = pybpe.Tokenizer.load(exports["trained"])
        else:
            tok = pybpe.Tokenizer.from_gpt2(data_file("cs336/gpt2_vocab.json"), data_file("cs336/gpt2_merges.txt"))
        return lambda text: tok.encode_to_numpy(text, allowed_special="all", threads=threads)
    if peer == "tiktoken":
        import tiktoken

        if "trained" in exports:
            import pybpe

            enc = pybpe.Tokenizer.load(exports["trained"]).to_tiktoken()
        else:
            enc = tiktoken.get_encoding("gpt2")
        if threads == 1:
            return lambda text: enc.encode(text, allowed_special="all")

        def tiktoken_batch(text):
            ids = []
            for i, doc in enumerate(enc.encode_ordinary_batch(text.split(SPECIAL), num_threads=threads)):
                if i:
                    ids.append(eot)
                ids.extend(doc)
            return ids

        return tiktoken_batch
    if peer == "tokenizers":
        import tokenizers

        hf = tokenizers.Tokenizer.from_file(exports["huggingface"])

        def hf_batch(text):
            ids = []
            for i, encoding in enumerate(hf.encode_batch(text.split(SPECIAL), add_special_tokens=False)):
                if i:
                    ids.append(eot)
                ids.extend(encoding.ids)
            return ids

        return hf_batch
    if peer == "gigatoken":
        import awkward
        import gigatoken

        giga = gigatoken.Tokenizer.from_tiktoken(exports["tiktoken"], pretokenizer=exports.get("pattern", "gpt2"),
                                                 special_tokens={SPECIAL: eot})
        if threads == 1:
            return lambda text: giga.encode(text)
        return lambda text: awkward.to_numpy(awkward.flatten(giga.encode_batch([text], parallel=True)))
    raise SystemExit(f"unknown peer {peer}")


def ids_digest(ids):
    import numpy as np

    array = np.asarray(ids, dtype="<u4")
    return len(array), hashlib.sha256(array.tobytes()).hexdigest()


def run_worker(args):
    from pybpe.data import data_file

    encode = load_peer(args.worker, args.threads, json.loads(args.exports))
    for name in WARMUP_FILES:
        encode(data_file(name).read_text(encoding="utf-8"))
    text = open(args.corpus, encoding="utf-8").read()
    started = time.perf_counter()
    ids = encode(text)
    seconds = time.perf_counter() - started
    num_tokens, digest = ids_digest(ids)
    print(RESULT_MARK + json.dumps({"seconds": seconds, "tokens": num_tokens, "sha256": digest}))


# --------------------------------------------------------------------------- driver


def data_dir():
    from pybpe.data import data_dir as find

    return find()


def measure(peer, threads, corpus, exports):
    # No peer uses BLAS; numpy's OpenBLAS would start a thread per core that spins for a while
    # after numpy is imported, taking CPU time from whichever peer runs then.
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false" if threads == 1 else "true",
               OPENBLAS_NUM_THREADS="1")
    command = [sys.executable, os.path.abspath(__file__), "--worker", peer, "--threads", str(threads),
               "--corpus", str(corpus), "--exports", json.dumps(exports)]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    print(f"  {peer} x{threads} on {os.path.basename(corpus)} failed: {tail}", file=sys.stderr)
    return None


def measure_all(corpora, settings, exports, repeat, sizes):
    """{(peer, threads, corpus): the fastest of `repeat` runs, or None if one failed or ids differed}.

    HF tokenizers' workers run in a pass of their own after the others: they allocate several
    GB (its Encoding objects), and on this project's VM a process started soon after one
    touches fresh memory slowly (the freed memory has gone back to the host), which landed on
    whichever peer ran next."""
    results = {}
    others = sorted((s for s in settings if s[0] != "tokenizers"), key=lambda s: s != ("tiktoken", 1))
    for settings_pass in (others, [s for s in settings if s[0] == "tokenizers"]):
        for round_ in range(repeat):
            for c in corpora:
                for peer, threads in settings_pass:
                    key = (peer, threads, c)
                    r = measure(peer, threads, c, exports)
                    if r:
                        print(f"  {os.path.basename(c):32} {peer:>10} x{threads}  {sizes[c] / r['seconds'] / 1e6:8.1f} MB/s",
                              file=sys.stderr)
                    if round_ == 0 or (results[key] and r and r["sha256"] == results[key]["sha256"]):
                        results[key] = r if round_ == 0 or r["seconds"] < results[key]["seconds"] else results[key]
                    else:
                        results[key] = None  # a failed run, or ids that differ between runs
    return results


GPT4_CORPORA = ["webtext_pool.txt", "alice_multilingual_40lang.txt", "enwiki_extract.txt"]
GPT4_VOCAB = 32000


def gpt4_tables(corpora, settings, peers, repeat, tmp):
    """Speed tables for a tokenizer with the GPT-4 pattern, trained by pybpe (HF tokenizers left out: it
    takes minutes on these corpora and its GPT-2 figures above already place it)."""
    import pybpe
    from pybpe.data import data_file

    print(f"  training a {GPT4_VOCAB} GPT-4-pattern tokenizer on webtext_pool.txt", file=sys.stderr)
    trained = pybpe.Tokenizer.train(data_file("corpora/webtext_pool.txt"), GPT4_VOCAB, [SPECIAL], pattern="gpt4")
    exports = {"trained": os.path.join(tmp, "gpt4-pattern.json"), "tiktoken": os.path.join(tmp, "gpt4-pattern.tiktoken"),
               "pattern": "gpt4", "eot": trained.special_tokens[SPECIAL]}
    trained.save(exports["trained"])
    trained.save_tiktoken(exports["tiktoken"])
    sizes = {c: os.path.getsize(c) for c in corpora}
    settings = [s for s in settings if s[0] in peers or s == ("tiktoken", 1)]
    results = measure_all(corpora, settings, exports, repeat, sizes)
    lines, rates = speed_tables(results, corpora, sizes, [s for s in settings if s[0] in peers], repeat,
                                tokenizer=f"GPT-4 pattern, {GPT4_VOCAB // 1000}K trained by pybpe on webtext_pool.txt")
    ratios = [f"{rates[('pybpe', t)] / rates[(peer, t)]:.2f}× {peer} at {t} thread{'s' if t > 1 else ''}"
              for peer, t in settings if peer != "pybpe" and ("pybpe", t) in rates and (peer, t) in rates]
    return lines + (["GPT-4 pattern, pybpe against: " + ", ".join(ratios) + ".", ""] if ratios else [])


def fmt_rate(x):
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def speed_tables(results, corpora, sizes, settings, repeat=1, tokenizer="GPT-2 tokenizer"):
    """results[(peer, threads, corpus)] = dict or None. Returns markdown lines."""
    reference = {c: results.get(("tiktoken", 1, c)) for c in corpora}

    def ok(peer, threads, corpus):
        r, ref = results.get((peer, threads, corpus)), reference[corpus]
        if r is None:
            return "failed"
        if ref is None:
            return "?"
        if (peer, threads) == ("tiktoken", 1):
            return "ref"
        return "✓" if r["sha256"] == ref["sha256"] else "✗"

    lines = [f"### Encoding speed, all corpora together ({tokenizer})", "",
             "| peer | threads | MB/s | M tokens/s | ids = tiktoken | pybpe × faster |", "|---|---:|---:|---:|:---:|---:|"]
    total_bytes = sum(sizes[c] for c in corpora)
    rates = {}
    for peer, threads in settings:
        rows = [results.get((peer, threads, c)) for c in corpora]
        if any(r is None for r in rows):
            lines.append(f"| {peer} | {threads} | failed | | | |")
            continue
        seconds = sum(r["seconds"] for r in rows)
        tokens = sum(r["tokens"] for r in rows)
        rates[(peer, threads)] = total_bytes / seconds / 1e6
        marks = {ok(peer, threads, c) for c in corpora}
        mark = "✗" if "✗" in marks else ("ref" if marks == {"ref"} else "✓")
        lines.append(f"| {peer} | {threads} | {fmt_rate(rates[(peer, threads)])} | {tokens / seconds / 1e6:.2f} | {mark} | "
                     f"{{ratio:{peer}:{threads}}} |")
    for i, line in enumerate(lines):
        if "{ratio:" in line:
            _, peer, threads = line[line.index("{ratio:") + 1:line.index("}", line.index("{ratio:"))].split(":")
            ours = rates.get(("pybpe", int(threads)))
            theirs = rates.get((peer, int(threads)))
            ratio = "" if peer == "pybpe" or not ours or not theirs else f"{ours / theirs:.2f}×"
            lines[i] = line.replace(f"{{ratio:{peer}:{threads}}}", ratio)
    each = "one encoding call each" if repeat == 1 else f"the fastest of {repeat} encoding calls each"
    lines += ["", f"Total {total_bytes / 1e6:.1f} MB in {len(corpora)} files; time = the sum over files of {each} "
              "(a fresh process per call, caches cold).", ""]

    lines += [f"### MB/s by corpus ({tokenizer})", "",
              "| corpus | MB | " + " | ".join(f"{p} ×{t}" for p, t in settings) + " |",
              "|---|---:|" + "---:|" * len(settings)]
    for c in corpora:
        cells = []
        for peer, threads in settings:
            r = results.get((peer, threads, c))
            mark = ok(peer, threads, c)
            cells.append("failed" if r is None else
                         f"{fmt_rate(sizes[c] / r['seconds'] / 1e6)}{'' if mark in ('✓', 'ref') else ' ' + mark}")
        lines.append(f"| {os.path.basename(c)} | {sizes[c] / 1e6:.1f} | " + " | ".join(cells) + " |")
    lines += ["", "Cells without a mark have ids identical to tiktoken's; ✗ marks a difference.", ""]
    return lines, rates


def targets(rates, all_threads, cli_rate):
    def ratio(a, b):
        return rates[a] / rates[b] if a in rates and b in rates else None

    checks = [
        ("pybpe 1 thread ≥ 1.5× gigatoken 1 thread", ratio(("pybpe", 1), ("gigatoken", 1)), 1.5, "×"),
        ("pybpe 1 thread ≥ 10× tiktoken 1 thread", ratio(("pybpe", 1), ("tiktoken", 1)), 10, "×"),
        (f"pybpe {all_threads} threads ≥ 1.8× pybpe 1 thread", ratio(("pybpe", all_threads), ("pybpe", 1)), 1.8, "×"),
        ("`pybpe encode` end to end ≥ 150 MB/s", cli_rate, 150, " MB/s"),
    ]
    lines = ["### Targets", ""]
    for text, value, goal, unit in checks:
        if value is None:
            lines.append(f"- {text}: not measured")
        else:
            lines.append(f"- {text}: **{value:.2f}{unit}** — {'met' if value >= goal else 'NOT met'}")
    return lines + [""]


def cli_end_to_end(corpus, gpt2_json, reference, tmp, repeat=1):
    """`pybpe encode` of one corpus, timed from process start to exit (the fastest of `repeat`)."""
    import numpy as np

    out = os.path.join(tmp, "out.bin")
    command = [sys.executable, "-m", "pybpe", "encode", "-t", gpt2_json, str(corpus), "-o", out]
    seconds = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            return ["### `pybpe encode` end to end", "", f"failed: {done.stderr.strip()}", ""], None
        seconds = min(seconds, time.perf_counter() - started)
    size = os.path.getsize(corpus)
    _, digest = ids_digest(np.fromfile(out, dtype=json.load(open(out + ".json"))["dtype"]))
    same = "✓" if reference and digest == reference["sha256"] else ("?" if not reference else "✗")
    summary = [line.strip() for line in done.stdout.splitlines() if line.strip().startswith(("tokens", "time"))]
    rate = size / seconds / 1e6
    lines = ["### `pybpe encode` end to end", "",
             f"`pybpe encode -t gpt2.json {os.path.basename(corpus)} -o out.bin` ({size / 1e6:.1f} MB, all threads): "
             f"**{seconds:.2f} s wall = {rate:.1f} MB/s** from process start to exit"
             f"{'' if repeat == 1 else f' (fastest of {repeat})'} "
             f"(its own summary: {'; '.join(summary)}); .bin ids = tiktoken: {same}", ""]
    return lines, rate


def compression_table(tmp):
    """bytes/token of tokenizers trained by pybpe, in domain and across domains."""
    import pybpe
    from pybpe.data import data_file

    documents = data_file("corpora/webtext_pool.txt").read_bytes().decode("utf-8").split(SPECIAL)
    web_train_text = SPECIAL.join(d for i, d in enumerate(documents) if i % 10 != 9)
    web_heldout_text = SPECIAL.join(d for i, d in enumerate(documents) if i % 10 == 9)
    web_train = os.path.join(tmp, "webtext_train.txt")
    with open(web_train, "w", encoding="utf-8", newline="") as f:
        f.write(web_train_text)
    stories_vocab, web_vocab = (10000, 32000)
    tokenizers = [
        (f"TinyStories {stories_vocab // 1000}K (pybpe, tinystories_pool_train.txt)",
         pybpe.Tokenizer.train(data_file("corpora/tinystories_pool_train.txt"), stories_vocab, [SPECIAL])),
        (f"web text {web_vocab // 1000}K (pybpe, 90% of webtext_pool.txt)",
         pybpe.Tokenizer.train(web_train, web_vocab, [SPECIAL])),
        ("GPT-2 50K (reference)",
         pybpe.Tokenizer.from_gpt2(data_file("cs336/gpt2_vocab.json"), data_file("cs336/gpt2_merges.txt"))),
    ]
    texts = [("tinystories_pool_valid.txt",
              data_file("corpora/tinystories_pool_valid.txt").read_bytes().decode("utf-8")),
             ("webtext held out (every 10th document)", web_heldout_text)]
    lines = ["### Compression: bytes per token (higher is better)", "",
             "| tokenizer | " + " | ".join(name for name, _ in texts) + " |", "|---|" + "---:|" * len(texts)]
    for label, tok in tokenizers:
        cells = []
        for _, text in texts:
            n = len(tok.encode_to_numpy(text, allowed_special="all"))
            cells.append(f"{len(text.encode('utf-8')) / n:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Trained with `Tokenizer.train(file, vocab, ['<|endoftext|>'], pattern='gpt2')`; the web "
              "tokenizer is trained on webtext_pool.txt without every 10th document, and measured on those "
              "documents; the TinyStories one on tinystories_pool_train.txt.", ""]
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_CORPORA)} (under a minute)")
    p.add_argument("--corpora", default=None, help="comma-separated file names in corpora/ (default: every .txt)")
    p.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, of {', '.join(PEERS)}")
    p.add_argument("--gpt4-corpora", default=None,
                   help=f"corpora for the GPT-4-pattern tables (default: {','.join(GPT4_CORPORA)}; none: skip them)")
    p.add_argument("--markdown", default=None, help="append a markdown block (command, machine, date, tables) to FILE")
    p.add_argument("--repeat", type=int, default=1, help="measure each N times (in rounds) and keep the fastest")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--corpus", default=None, help=argparse.SUPPRESS)
    p.add_argument("--exports", default="{}", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return run_worker(args)

    import pybpe
    from pybpe.data import data_file

    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(data_dir() / "tiktoken_cache"))
    corpora_dir = data_dir() / "corpora"
    if args.corpora:
        names = args.corpora.split(",")
    elif args.quick:
        names = QUICK_CORPORA
    else:
        names = sorted(p.name for p in corpora_dir.glob("*.txt"))
    corpora = sorted((str(corpora_dir / n) for n in names), key=os.path.getsize)
    for c in corpora:
        if not os.path.isfile(c):
            raise SystemExit(f"encode.py: error: {c} not found (set PYBPE_DATA)")
    sizes = {c: os.path.getsize(c) for c in corpora}
    gpt4_names = QUICK_CORPORA if args.quick else GPT4_CORPORA
    gpt4_names = [] if args.gpt4_corpora == "none" else (args.gpt4_corpora.split(",") if args.gpt4_corpora else gpt4_names)
    gpt4_corpora = sorted((str(corpora_dir / n) for n in gpt4_names), key=os.path.getsize)
    for c in gpt4_corpora:
        if not os.path.isfile(c):
            raise SystemExit(f"encode.py: error: {c} not found (set PYBPE_DATA)")
    peers = args.peers.split(",")
    all_threads = os.cpu_count() or 1
    settings = [(peer, t) for t in ([1, all_threads] if all_threads > 1 else [1]) for peer in peers]
    if "tiktoken" not in peers:
        settings.append(("tiktoken", 1))  # the reference ids

    with tempfile.TemporaryDirectory(prefix="pybpe-bench-") as tmp:
        gpt2 = pybpe.Tokenizer.from_gpt2(data_file("cs336/gpt2_vocab.json"), data_file("cs336/gpt2_merges.txt"))
        exports = {"huggingface": os.path.join(tmp, "gpt2-tokenizer.json"),
                   "tiktoken": os.path.join(tmp, "gpt2.tiktoken")}
        gpt2.save_huggingface(exports["huggingface"])
        gpt2.save_tiktoken(exports["tiktoken"])
        gpt2_json = os.path.join(tmp, "gpt2.json")
        gpt2.save(gpt2_json)

        started = time.perf_counter()
        results = measure_all(corpora, settings, exports, args.repeat, sizes)
        speed, rates = speed_tables(results, corpora, sizes, [s for s in settings if s[0] in peers], args.repeat)
        if gpt4_corpora:
            speed += gpt4_tables(gpt4_corpora, [s for s in settings if s[0] != "tokenizers"], peers, args.repeat, tmp)
        largest = corpora[-1]
        cli_lines, cli_rate = cli_end_to_end(largest, gpt2_json, results.get(("tiktoken", 1, largest)), tmp, args.repeat)
        compression = compression_table(tmp)
        elapsed = time.perf_counter() - started

    command = "python3 benchmarks/encode.py " + " ".join(sys.argv[1:])
    block = [f"## Encoding benchmark ({datetime.date.today().isoformat()})", "",
             f"- command: `{command.strip()}`", f"- machine: {machine_line()}", f"- versions: {versions(PEERS)}",
             f"- run time: {elapsed:.0f} s", ""]
    block += speed + cli_lines + targets(rates, all_threads, cli_rate) + compression
    block += ["Peers:", ""] + [f"- {peer}: {PEER_NOTES[peer]}" for peer in peers] + [f"- {NOTE_SPLIT}"]
    block += ([f"- {NOTE_GPT4}"] if gpt4_corpora else []) + [""]
    print("\n".join(block))
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as f:
            f.write("\n".join(block) + "\n")
        print(f"appended to {args.markdown}", file=sys.stderr)


if __name__ == "__main__":
    main()
