"""python -m training train|generate|plot"""

from __future__ import annotations

import argparse
import signal
import sys

from training.errors import TrainingError


def build_parser() -> argparse.ArgumentParser:
    from training.config import presets

    parser = argparse.ArgumentParser(prog="python -m training", description="Train and sample GPT-style models on pybpe token arrays.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model on DIR/train.bin, evaluating on DIR/val.bin")
    source = t.add_mutually_exclusive_group()
    source.add_argument("--preset", help=f"one of: {', '.join(presets())} (neither: the default config)")
    source.add_argument("--config", metavar="FILE.toml", help="a TOML file of config keys")
    t.add_argument("--data", required=True, metavar="DIR", help="holds train.bin, val.bin and their .json sidecars")
    t.add_argument("--out", required=True, metavar="DIR", help="metrics.jsonl, checkpoints, config.toml, loss.png")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/ckpt_last.pt")

    g = sub.add_parser("generate", help="sample text from a checkpoint")
    g.add_argument("--ckpt", required=True, metavar="PATH")
    g.add_argument("--prompt", default="", help="empty: start a new document")
    g.add_argument("--max-new-tokens", type=int, default=200)
    g.add_argument("--temperature", type=float, default=1.0, help="0 is greedy")
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--num-samples", type=int, default=1)
    g.add_argument("--seed", type=int, default=1337)
    g.add_argument("--device", default="auto")
    g.add_argument("--tokenizer", default=None, metavar="PATH", help="instead of the one the checkpoint names")

    p = sub.add_parser("plot", help="write RUN_DIR/loss.png from RUN_DIR/metrics.jsonl")
    p.add_argument("run_dir", metavar="RUN_DIR")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.command == "train":
        from training import config
        from training.train import train

        sets = config.parse_sets(args.set)
        if args.resume and args.preset is None and args.config is None:
            from pathlib import Path

            from training import checkpoint

            saved = checkpoint.config_of(checkpoint.load(Path(args.out) / "ckpt_last.pt"))
            cfg = config.apply(saved, sets, "--set").validate()
        else:
            cfg = config.load(args.preset, args.config, sets)
        train(cfg, args.data, args.out, resume=args.resume, log=lambda line: print(line, flush=True))
        return 0
    if args.command == "generate":
        from training.generate import generate

        if args.max_new_tokens < 0 or args.num_samples < 1:
            raise TrainingError("--max-new-tokens must be >= 0 and --num-samples >= 1")
        if args.top_p is not None and not 0.0 < args.top_p <= 1.0:
            raise TrainingError("--top-p must be in (0, 1]")
        texts = generate(args.ckpt, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p,
                         args.num_samples, args.seed, args.device, args.tokenizer)
        for i, text in enumerate(texts):
            if i:
                print("\n" + "-" * 40)
            print(args.prompt + text, flush=True)
        return 0
    from training.plot import plot

    print(plot(args.run_dir))
    return 0


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that a checkpoint being written is cleaned up."""


def _raise_terminated(signum, frame):
    raise Terminated()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return run(args)
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint written is kept", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated; the last checkpoint written is kept", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
