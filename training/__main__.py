"""`python -m training train|generate|plot|prepare|experiment|sweep|report`: the training
command line, its parser and the one-line error; each subcommand imports its module only when run."""

from __future__ import annotations

import argparse
import os
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

    add_prepare_parser(sub)
    add_experiment_parsers(sub)
    return parser


def add_experiment_parsers(sub) -> None:
    from training.experiments import RECIPES, SCALES

    e = sub.add_parser("experiment", help="prepare the data, train every run of a recipe, write the report",
                       description="Recipes: " + ", ".join(RECIPES))
    e.add_argument("recipe", metavar="RECIPE", help=f"one of: {', '.join(RECIPES)}")
    e.add_argument("--out", required=True, metavar="DIR", help="data/, runs/, report.md, plots/, summary.json")
    e.add_argument("--scale", default="tiny", help=f"one of: {', '.join(SCALES)} (default tiny)")
    e.add_argument("--from-files", nargs="+", action="extend", default=[], metavar="NAME=FILE[,FILE...]",
                   help="a data set's train text as local files (NAME.val=FILE...: its validation text)")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config key of every run")
    e.add_argument("--seed", type=int, default=None, help="the seed of the data sample and of every run")
    e.add_argument("--no-samples", action="store_true", help="leave generations out of the report")

    s = sub.add_parser("sweep", help="train the cross product of --grid values on one data set, then the report")
    s.add_argument("--data", required=True, metavar="DIR")
    s.add_argument("--out", required=True, metavar="DIR")
    src = s.add_mutually_exclusive_group()
    src.add_argument("--preset")
    src.add_argument("--config", metavar="FILE.toml")
    s.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument("--no-samples", action="store_true")

    r = sub.add_parser("report", help="the report over finished run folders")
    r.add_argument("runs", nargs="+", metavar="RUN_DIR")
    r.add_argument("--out", required=True, metavar="DIR")
    r.add_argument("--title", default="Training report")
    r.add_argument("--no-samples", action="store_true")
    r.add_argument("--max-new-tokens", type=int, default=None, help="tokens per sample (default 80; 300 for characters)")


def add_prepare_parser(sub) -> None:
    from training.datasets import REGISTRY

    d = sub.add_parser(
        "prepare", help="a data set's text -> DIR/train.bin, val.bin, tokenizer, dataset.json",
        description="Prepare a data set for training: from the Hugging Face Hub, or from local files "
                    "(--from-files: .txt, .jsonl or .parquet with a text field).")
    d.add_argument("name", metavar="NAME", help=f"one of: {', '.join(REGISTRY)}")
    d.add_argument("--out", required=True, metavar="DIR", help="the folder to write (built beside it, renamed at the end)")
    d.add_argument("--tokenizer", default=None, metavar="SPEC",
                   help="a tokenizer file, gpt2 or a tiktoken name, char, or train:VOCAB (default: the data set's)")
    d.add_argument("--max-tokens", type=int, default=None, metavar="N",
                   help="shuffle documents (buffer, --seed) and stop once train holds N tokens")
    val = d.add_mutually_exclusive_group()
    val.add_argument("--val-tokens", type=int, default=None, metavar="N",
                     help="validation: documents until it holds N tokens")
    val.add_argument("--val-fraction", type=float, default=None, metavar="F",
                     help="held-out validation: each document with probability F (default 0.005; 0.1 of the "
                          "characters for shakespeare_char)")
    d.add_argument("--seed", type=int, default=1337)
    d.add_argument("--from-files", nargs="+", default=[], metavar="FILE", help="the train text (or the whole text) as local files")
    d.add_argument("--val-files", nargs="+", default=[], metavar="FILE", help="the validation text as local files")
    d.add_argument("--threads", type=int, default=None, metavar="N", help="threads (default: all cores)")
    d.add_argument("--dtype", choices=["auto", "uint16", "uint32"], default="auto")


def run_prepare(args: argparse.Namespace, argv) -> int:
    import shlex

    from pybpe import PybpeError

    from training.prepare import Options, prepare, summary

    opts = Options(name=args.name, out=args.out, tokenizer=args.tokenizer, max_tokens=args.max_tokens,
                   val_tokens=args.val_tokens, val_fraction=args.val_fraction, seed=args.seed,
                   from_files=args.from_files, val_files=args.val_files, threads=args.threads, dtype=args.dtype,
                   command="python -m training " + shlex.join(argv))
    try:
        report = prepare(opts)
    except PybpeError as e:
        raise TrainingError(str(e)) from None
    except OSError as e:
        raise TrainingError(f"{e.filename + ': ' if getattr(e, 'filename', None) else ''}{e.strerror or e}") from None
    try:
        for line in summary(report, args.out):
            print(line, flush=True)
    except BrokenPipeError:  # `| head`: the data set is written; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def run_experiments(args: argparse.Namespace) -> int:
    from pybpe import PybpeError

    from training import experiments
    from training.config import parse_sets

    log = lambda line: print(line, flush=True)  # noqa: E731
    try:
        if args.command == "experiment":
            experiments.run_experiment(args.recipe, args.out, args.scale, args.from_files, parse_sets(args.set),
                                       args.seed, not args.no_samples, log)
        elif args.command == "sweep":
            experiments.run_sweep(args.data, args.out, args.grid, args.preset, args.config, parse_sets(args.set),
                                  not args.no_samples, log)
        else:
            from training.report import build_report

            build_report(args.runs, args.out, not args.no_samples, args.max_new_tokens, title=args.title,
                         log=lambda line: print(line, file=sys.stderr, flush=True))
            print(f"report -> {os.path.join(args.out, 'report.md')}")
    except PybpeError as e:
        raise TrainingError(str(e)) from None
    return 0


def run(args: argparse.Namespace, argv=None) -> int:
    if args.command == "prepare":
        return run_prepare(args, sys.argv[1:] if argv is None else list(argv))
    if args.command in ("experiment", "sweep", "report"):
        return run_experiments(args)
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
        return run(args, argv)
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; nothing was written" if args.command == "prepare"
              else "interrupted; the last checkpoint written is kept", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated; nothing was written" if args.command == "prepare"
              else "terminated; the last checkpoint written is kept", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
