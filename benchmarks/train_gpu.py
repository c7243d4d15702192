"""Speed of the training loop users run (`training.train`): tokens/s, MFU, where a step's time
goes, and the time to a target validation loss.

    python3 benchmarks/train_gpu.py [--only tinystories gpt2-124m] [--modes compiled eager] [--steps 300]
    python3 benchmarks/train_gpu.py --device cpu --tiny          # the check that runs without a GPU

Each preset runs `training.train` twice per mode:
  timed     the run as users get it (no extra syncs): tokens/s and MFU over the steps after the
            warm-up the loop leaves out (its log line says how many), and the first evaluation whose
            validation loss is at or below --target-loss (training seconds, then with evaluation and
            checkpoints);
  profiled  --profile-steps steps with the device synchronized between phases: the split of a step
            into data, forward, backward, optimizer and host (Python bookkeeping, loss reads, logging).
The data is synthetic but learnable (each token is a fixed function of the one before it with
probability 0.8, else uniform), so the validation loss falls; --data DIR takes a prepared data set.
Modes: compiled (compile = true), eager (compile = false), auto (the default the loop picks).
--tiny shrinks the model and batch to what a CPU runs in seconds: its figures say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training import config  # noqa: E402
from training.train import StepClock, UNTIMED_STEPS, resolve_compile, resolve_device, resolve_dtype, train  # noqa: E402

TINY = {"vocab_size": 0, "context_length": 64, "d_model": 64, "n_layers": 2, "n_heads": 4, "d_ff": 0,
        "batch_size": 8, "grad_accum": 1, "warmup_steps": 10, "lr": 3e-3, "min_lr": 3e-4}


def markov_tokens(n: int, vocab: int, seed: int) -> np.ndarray:
    """Token i+1 is next_of[token i] with probability 0.8, else a uniform draw."""
    rng = np.random.default_rng(seed)
    next_of = np.random.default_rng(0).permutation(vocab)
    uniform = rng.integers(0, vocab, size=n)
    keep = rng.random(n) < 0.8
    out = np.empty(n, dtype=np.int64)
    out[0] = uniform[0]
    for i in range(1, n):  # sequential by nature; a few seconds for millions of tokens
        out[i] = next_of[out[i - 1]] if keep[i] else uniform[i]
    return out


def synthetic_data(folder: Path, vocab: int, train_tokens: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dtype = "uint16" if vocab <= 1 << 16 else "uint32"
    for split, n, seed in (("train", train_tokens, 1), ("val", max(train_tokens // 20, 20_000), 2)):
        path = folder / f"{split}.bin"
        markov_tokens(n, vocab, seed).astype(dtype).tofile(path)
        Path(str(path) + ".json").write_text(json.dumps({
            "format": "pybpe-tokens", "version": 1, "dtype": dtype, "num_tokens": n, "vocab_size": vocab,
            "special_tokens": {}, "tokenizer": None, "sources": []}))
    return folder


def preset_config(preset: str, args, mode: str, steps: int) -> config.Config:
    cfg = config.load(preset)
    overrides = dict(TINY) if args.tiny else {}
    overrides.update(device=args.device, max_steps=steps, log_interval=steps, seed=0,
                     eval_interval=args.eval_interval or max(1, steps // 5), eval_batches=args.eval_batches,
                     lr_decay_steps=max(steps, cfg.warmup_steps + 1),
                     compile={"compiled": "true", "eager": "false", "auto": "auto"}[mode])
    return config.apply(cfg, overrides, "benchmark").validate()


def run(preset: str, mode: str, args, data_dir: Path, tmp: Path) -> dict:
    device = resolve_device(args.device)
    cfg = preset_config(preset, args, mode, args.steps)
    out = tmp / f"{preset}-{mode}"
    logged: list[str] = []
    last = train(cfg, data_dir, out, log=logged.append)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    speed = [r for r in records if r["tokens_per_s"] is not None]
    evals = [r for r in records if r["val_loss"] is not None]
    hit = next((r for r in evals if r["val_loss"] <= args.target_loss), None)

    profiled = preset_config(preset, args, mode, args.profile_steps)
    profiled.eval_interval = 10 ** 9  # one evaluation at the end only
    clock = StepClock(device)
    train(profiled, data_dir, tmp / f"{preset}-{mode}-profiled", log=lambda *a: None, clock=clock)
    per_step = {k: 1000 * v / max(clock.steps, 1) for k, v in clock.seconds.items()}
    return {
        "preset": preset, "mode": mode, "device": device_name(device), "steps": args.steps,
        "dtype": str(resolve_dtype(cfg.dtype, device)).replace("torch.", ""),
        "compiled": resolve_compile(cfg.compile, device),
        "batch": cfg.batch_size, "grad_accum": cfg.grad_accum, "context": cfg.context_length,
        "tokens_per_s": speed[-1]["tokens_per_s"] if speed else None, "mfu": speed[-1]["mfu"] if speed else None,
        "untimed_steps": UNTIMED_STEPS, "final_val_loss": last.get("val_loss"),
        "target_loss": args.target_loss, "target_step": hit and hit["step"],
        "target_train_s": hit and hit["elapsed_s"],
        "target_wall_s": hit and round(hit["elapsed_s"] + hit["eval_s"] + hit["ckpt_s"], 3),
        "eval_s": records[-1]["eval_s"], "ckpt_s": records[-1]["ckpt_s"],
        "step_ms": {k: round(v, 3) for k, v in per_step.items()}, "profiled_steps": clock.steps,
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", default=None, help="presets (default: tinystories gpt2-124m; "
                                                                  "with --tiny: tinystories)")
    parser.add_argument("--modes", nargs="+", default=None, choices=["compiled", "eager", "auto"],
                        help="default: compiled eager on CUDA, auto elsewhere")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu", "mps"])
    parser.add_argument("--tiny", action="store_true", help="a model and batch a CPU trains in seconds")
    parser.add_argument("--steps", type=int, default=None, help="timed run length (default 300; --tiny 60)")
    parser.add_argument("--profile-steps", type=int, default=None, help="profiled run length (default 30; --tiny 12)")
    parser.add_argument("--eval-interval", type=int, default=None, help="default: steps / 5")
    parser.add_argument("--eval-batches", type=int, default=5)
    parser.add_argument("--target-loss", type=float, default=None,
                        help="validation loss to reach (default 4.0; --tiny 5.0)")
    parser.add_argument("--data", default=None, metavar="DIR", help="a prepared data set instead of synthetic data")
    parser.add_argument("--vocab", type=int, default=None, help="synthetic vocabulary (default 50257; --tiny 512)")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args()
    args.steps = args.steps or (60 if args.tiny else 300)
    args.profile_steps = args.profile_steps or (12 if args.tiny else 30)
    args.target_loss = args.target_loss if args.target_loss is not None else (5.0 if args.tiny else 4.0)
    device = resolve_device(args.device)
    modes = args.modes or (["compiled", "eager"] if device.type == "cuda" else ["auto"])
    presets = args.only or (["tinystories"] if args.tiny else ["tinystories", "gpt2-124m"])
    if device.type != "cuda":
        print(f"no GPU: {device} run; these figures say nothing about GPU speed", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_dir = Path(args.data) if args.data else synthetic_data(
            tmp / "data", args.vocab or (512 if args.tiny else 50257), 300_000 if args.tiny else 4_000_000)
        for preset in presets:
            for mode in modes:
                row = run(preset, mode, args, data_dir, tmp)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    print(f"timed: {args.steps} steps, the first {UNTIMED_STEPS} left out of tokens/s; "
          f"step split: {args.profile_steps} steps with a sync between phases (ms a step)")
    print("| preset | mode | device | batch x accum x context | dtype | tokens/s | MFU | data | forward | backward "
          "| optimizer | host | time to val loss | eval s | ckpt s |")
    print("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        util = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        tok = "n/a" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:,.0f}"
        ms = r["step_ms"]
        target = (f"{r['target_loss']}: step {r['target_step']}, {r['target_train_s']:.1f} s "
                  f"({r['target_wall_s']:.1f} s with eval/ckpt)") if r["target_step"] is not None \
            else f"{r['target_loss']}: not reached (last {r['final_val_loss']:.3f})"
        print(f"| {r['preset']} | {r['mode']} ({'compiled' if r['compiled'] else 'eager'}) | {r['device']} | "
              f"{r['batch']} x {r['grad_accum']} x {r['context']} | {r['dtype']} | {tok} | {util} | "
              + " | ".join(f"{ms[k]:.2f}" for k in StepClock.PHASES) + f" | {target} | {r['eval_s']:.2f} | {r['ckpt_s']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if any(math.isnan(r["final_val_loss"] or 0.0) for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
