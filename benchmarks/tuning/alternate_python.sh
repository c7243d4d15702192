#!/bin/bash
# A/B of two copies of the pybpe package (each a folder holding pybpe/ with its built _core),
# run alternately: one cold `encode_to_numpy` call per fresh process, as encode.py's workers do
# (GPT-2, or the tokenizer file $TOKENIZER, warmed up on small texts first). Prints the mean
# and best seconds of each.
#
# With THREADS = cli: `python3 -m pybpe encode -t TOKENIZER CORPUS -o OUT` instead, timed from
# process start to exit (TOKENIZER: $TOKENIZER, else $GPT2_JSON, default /tmp/gpt2.json; see
# alternate.sh).
#
#   git stash; make install; cp -r pybpe /tmp/A/; git stash pop; make install; cp -r pybpe /tmp/B/
#   python3 -m compileall -q /tmp/A /tmp/B
#   benchmarks/tuning/alternate_python.sh /tmp/A /tmp/B [CORPUS] [THREADS|cli] [ROUNDS]
DATA=${PYBPE_DATA:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/data}
A=$1; B=$2; C=${3:-$DATA/corpora/enwiki_extract.txt}; T=${4:-1}; R=${5:-5}
if [ "$T" = cli ]; then
  CALL='
import subprocess, sys, tempfile, time
with tempfile.TemporaryDirectory() as tmp:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pybpe", "encode", "-t", sys.argv[3], sys.argv[1], "-o", tmp + "/out.bin"],
                   check=True, capture_output=True)
    print(time.perf_counter() - started)
'
else
CALL='
import sys, time
import pybpe
from pybpe.data import data_file
if sys.argv[3]:
    tok = pybpe.Tokenizer.load(sys.argv[3])
else:
    tok = pybpe.Tokenizer.from_gpt2(data_file("cs336/gpt2_vocab.json"), data_file("cs336/gpt2_merges.txt"))
for name in ["cs336/tinystories_sample.txt", "cs336/german.txt", "cs336/address.txt"]:
    tok.encode_to_numpy(data_file(name).read_text(), allowed_special="all", threads=1)
text = open(sys.argv[1], encoding="utf-8").read()
started = time.perf_counter()
tok.encode_to_numpy(text, allowed_special="all", threads=int(sys.argv[2]))
print(time.perf_counter() - started)
'
fi
if [ "$T" = cli ]; then TOK=${TOKENIZER:-${GPT2_JSON:-/tmp/gpt2.json}}; else TOK=${TOKENIZER:-}; fi
for i in $(seq "$R"); do for d in "$A" "$B"; do
  echo "$d $(cd /tmp && PYTHONPATH=$d PYBPE_DATA=$DATA OPENBLAS_NUM_THREADS=1 ${PIN:+taskset -c $PIN} python3 -c "$CALL" "$C" "$T" "$TOK")"
done; done | awk '{k=$1; w=$2; s[k]+=w; n[k]++; if(!(k in m)||w<m[k])m[k]=w} END{for(k in s) printf "%s mean %.4f s best %.4f s\n", k, s[k]/n[k], m[k]}'
