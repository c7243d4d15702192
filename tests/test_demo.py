"""`pybpe demo`, the README's first command: the whole pipeline on the default corpus, offline."""

import json
import subprocess
import sys

import numpy as np


def test_demo_trains_encodes_and_compares_with_tiktoken(data, tmp_path):
    result = subprocess.run([sys.executable, "-m", "pybpe", "demo", "--out", str(tmp_path)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "ids identical: yes" in result.stdout
    assert "bytes/token" in result.stdout
    import torch

    preset = "tinystories" if torch.cuda.is_available() else "cpu"
    assert f"next: python -m training train --preset {preset} --data {tmp_path} --out {tmp_path / 'run'}" \
        in result.stdout
    for name in ("train.bin", "val.bin"):
        meta = json.loads((tmp_path / f"{name}.json").read_text())
        assert meta["vocab_size"] == 10000 and meta["dtype"] == "uint16"
        ids = np.fromfile(tmp_path / name, dtype="<u2")
        assert len(ids) == meta["num_tokens"] > 100_000
        assert (ids == meta["special_tokens"]["<|endoftext|>"]).sum() > 100
