#!/bin/bash
# A/B of two builds of the encode_speed example, run alternately so that the VM's drift hits
# both alike; prints the best and median cold and warm MB/s of each.
#
#   git stash; cargo build --release --example encode_speed; cp target/release/examples/encode_speed /tmp/A
#   git stash pop; cargo build --release --example encode_speed; cp target/release/examples/encode_speed /tmp/B
#   benchmarks/tuning/alternate.sh /tmp/A /tmp/B TOKENIZER.json [CORPUS] [ROUNDS] [THREADS]
#
# TOKENIZER.json: GPT-2 as a pybpe file, e.g. written by
#   python3 -c "import pybpe; from pybpe.data import data_file as d; pybpe.Tokenizer.from_gpt2(d('cs336/gpt2_vocab.json'), d('cs336/gpt2_merges.txt'), special_tokens=['<|endoftext|>']).save('/tmp/gpt2.json')"
DATA=${PYBPE_DATA:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/data}
T=$3; F=${4:-$DATA/corpora/enwiki_extract.txt}; R=${5:-8}; THREADS=${6:-1}
for i in $(seq $R); do
  for b in A B; do
    bin=$1; [ $b = B ] && bin=$2
    ${PIN:+taskset -c $PIN} $bin $T $F --threads $THREADS | awk -v b=$b '/cold/{c=$(NF-2)} /warm/{w=$2} END{print b, c, w}'
  done
done | python3 -c "
import sys,statistics as st
d={}
for l in sys.stdin:
    b,c,w=l.split(); d.setdefault(b,[]).append((float(c),float(w)))
for b in sorted(d):
    c=[x[0] for x in d[b]]; w=[x[1] for x in d[b]]
    print(b,'cold best %.0f median %.0f | warm best %.0f median %.0f'%(max(c),st.median(c),max(w),st.median(w)))
"
