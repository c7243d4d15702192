"""Training throughput (tokens/s) and MFU of the presets, against a plain configuration.

    python3 benchmarks/train_gpu.py [--steps 20] [--warmup 5] [--only tinystories gpt2-124m]

On a GPU each preset runs twice, with the preset's batch and context:
  ours   bf16 autocast, torch.compile, fused AdamW, TF32, pinned non-blocking batches;
  plain  the same model in fp32, eager, for-each AdamW, TF32 off: nanoGPT's model without the speed work.
Without a GPU it runs a few steps on CPU with a small batch and context (a smoke test; no compile):
those figures say nothing about GPU speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training import config  # noqa: E402
from training.data import Batches, open_tokens  # noqa: E402
from training.model import GPT, flops_per_token, mfu, num_params  # noqa: E402
from training.train import autocast, make_optimizer  # noqa: E402


def token_file(tmp: Path, vocab_size: int, n: int = 2_000_000):
    path = tmp / f"bench_{vocab_size}.bin"
    ids = np.random.default_rng(0).integers(0, vocab_size, size=n, dtype=np.uint32)
    dtype = "uint16" if vocab_size <= 1 << 16 else "uint32"
    path.write_bytes(ids.astype(dtype).tobytes())
    Path(str(path) + ".json").write_text(json.dumps({
        "format": "pybpe-tokens", "version": 1, "dtype": dtype, "num_tokens": n, "vocab_size": vocab_size,
        "special_tokens": {}, "tokenizer": None, "sources": []}))
    return open_tokens(path)


def run(preset: str, mode: str, device: torch.device, steps: int, warmup: int, tmp: Path) -> dict:
    cfg = config.load(preset)
    if device.type == "cpu":
        cfg.batch_size, cfg.context_length, cfg.grad_accum = 2, min(cfg.context_length, 128), 1
    fast = mode == "ours" and device.type == "cuda"
    torch.backends.cuda.matmul.allow_tf32 = fast
    torch.backends.cudnn.allow_tf32 = fast
    dtype = torch.bfloat16 if fast else torch.float32
    torch.manual_seed(0)
    model = GPT(cfg).to(device)
    optimizer = make_optimizer(model, cfg, device)
    if not fast:  # the plain run: for-each AdamW instead of the fused kernel
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                      weight_decay=cfg.weight_decay)
    step_model = torch.compile(model) if fast else model
    batches = Batches(token_file(tmp, cfg.vocab_size), cfg.batch_size, cfg.context_length, device, seed=0)

    def step():
        for _ in range(cfg.grad_accum):
            x, y = batches.next()
            with autocast(device, dtype):
                _, loss = step_model(x, y)
            (loss / cfg.grad_accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = time.perf_counter() - t0
    tok_s = steps * cfg.batch_size * cfg.context_length * cfg.grad_accum / seconds
    util = mfu(cfg, tok_s, device)
    return {"preset": preset, "mode": mode, "device": device_name(device), "params": num_params(model),
            "batch": cfg.batch_size, "grad_accum": cfg.grad_accum, "context": cfg.context_length,
            "dtype": str(dtype).replace("torch.", ""), "compile": fast, "steps": steps,
            "tokens_per_s": round(tok_s, 1), "mfu": None if util is None else round(util, 4),
            "flops_per_token": flops_per_token(cfg)}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", default=["tinystories", "gpt2-124m"], help="presets to run")
    parser.add_argument("--modes", nargs="+", default=["ours", "plain"], choices=["ours", "plain"])
    parser.add_argument("--steps", type=int, default=None, help="timed steps (GPU 20, CPU 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (GPU 5, CPU 1)")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    steps = args.steps or (20 if device.type == "cuda" else 2)
    warmup = args.warmup if args.warmup is not None else (5 if device.type == "cuda" else 1)
    if device.type == "cpu":
        print("no GPU: a CPU smoke run with batch 2 and context <= 128; these are not GPU figures", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.only:
            for mode in args.modes:
                row = run(preset, mode, device, steps, warmup, Path(tmp))
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    print("| preset | mode | device | batch x accum x context | dtype | compile | tokens/s | MFU |")
    print("|---|---|---|---|---|---|---:|---:|")
    for r in rows:
        util = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        print(f"| {r['preset']} | {r['mode']} | {r['device']} | {r['batch']} x {r['grad_accum']} x {r['context']} | "
              f"{r['dtype']} | {r['compile']} | {r['tokens_per_s']:,.0f} | {util} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
