"""Training runs: overfitting, exact resume, ablation switches, DDP, the command line."""

import os
import subprocess
import sys

import pytest
import torch

from training import checkpoint
from training.generate import generate_ids, load_model
from training.train import train
from training_helpers import EOT_ID, REPO, byte_ids, byte_tokenizer, cli, make_data, quiet, read_metrics, sets, \
    shakespeare, tiny_config

SENTENCE = "a cat sat on a red mat."  # shorter than the context: every next byte is determined


@pytest.fixture(scope="module")
def shakespeare_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("shakespeare")
    ids = byte_ids(shakespeare(40_000))
    return make_data(root / "data", ids[:32_000], ids[32_000:], tokenizer=byte_tokenizer(root / "tokenizer.json"))


def test_a_tiny_model_overfits_a_small_corpus_and_generation_stops_at_end_of_text(tmp_path):
    ids = byte_ids("\n\n".join([SENTENCE] * 200))
    data = make_data(tmp_path / "data", ids, ids[:2000])
    cfg = tiny_config(max_steps=150, lr=1e-2, min_lr=1e-3, warmup_steps=10, eval_interval=150, log_interval=50)
    last = train(cfg, data, tmp_path / "run", log=quiet)
    assert last["val_loss"] < 0.2  # what is left: the first bytes of a window lack context
    assert last["val_accuracy"] > 0.9
    model, ckpt = load_model(tmp_path / "run" / "ckpt_best.pt", torch.device("cpu"))
    new = generate_ids(model, list(b"a cat"), max_new_tokens=200, temperature=0, eot_id=EOT_ID)
    assert bytes(new).decode() == " sat on a red mat."  # the rest of the document, then it stops


def test_resume_reaches_the_same_losses_as_an_uninterrupted_run(shakespeare_data, tmp_path):
    keys = dict(max_steps=12, lr_decay_steps=12, log_interval=1, eval_interval=4, dropout=0.1, grad_accum=2)
    train(tiny_config(**keys), shakespeare_data, tmp_path / "whole", log=quiet)
    train(tiny_config(**{**keys, "max_steps": 8}), shakespeare_data, tmp_path / "split", log=quiet)
    train(tiny_config(**keys), shakespeare_data, tmp_path / "split", resume=True, log=quiet)
    whole, split = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "split")
    strip = lambda records: [{k: r[k] for k in ("step", "train_loss", "val_loss", "lr", "tokens_seen")} for r in records]
    assert len(whole) == 12 + 1 + 3  # a record per step, the evaluation at step 0, one every 4 steps
    assert strip(split) == strip(whole)
    a = checkpoint.load(tmp_path / "whole" / "ckpt_last.pt")["model"]
    b = checkpoint.load(tmp_path / "split" / "ckpt_last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


SWITCHES = [
    {"norm": "layer"}, {"norm": "none"}, {"norm_position": "post"}, {"positions": "learned"},
    {"positions": "sinusoidal"}, {"positions": "none"}, {"weight_decay_on": "all"}, {"ffn": "silu"}, {"ffn": "gelu"}, {"tie_embeddings": True}, {"bias": True},
    {"norm": "layer", "positions": "learned", "ffn": "gelu", "bias": True, "tie_embeddings": True, "dropout": 0.1},
]


@pytest.mark.parametrize("switch", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_each_ablation_switch_trains(switch, shakespeare_data, tmp_path):
    cfg = tiny_config(max_steps=150, eval_interval=150, lr=1e-2, min_lr=1e-3, warmup_steps=10, **switch)
    last = train(cfg, shakespeare_data, tmp_path, log=quiet)
    first_loss = read_metrics(tmp_path)[1]["train_loss"]
    # from about log(257) = 5.55 to about the entropy of the byte frequencies (3.30) or below
    assert last["val_loss"] < 3.5 < 5.0 < first_loss
    saved = checkpoint.config_of(checkpoint.load(tmp_path / "ckpt_last.pt"))
    assert all(getattr(saved, k) == v for k, v in switch.items())


def test_the_command_line_trains_samples_and_plots(shakespeare_data, tmp_path):
    out = tmp_path / "run"
    r = cli("train", "--data", str(shakespeare_data), "--out", str(out), *sets(max_steps=10, eval_interval=5))
    assert r.returncode == 0, r.stderr
    assert "step 10/10 | loss" in r.stdout and "tok/s | " in r.stdout and " steps/s | mfu n/a | eta" in r.stdout
    assert "step 0: val loss " in r.stdout and "| val acc " in r.stdout
    assert {"ckpt_last.pt", "ckpt_best.pt", "config.toml", "metrics.jsonl", "loss.png"} <= set(os.listdir(out))
    records = read_metrics(out)
    assert [r["step"] for r in records if r["val_loss"] is not None] == [0, 5, 10]
    assert set(records[0]) == {"step", "train_loss", "val_loss", "val_ppl", "val_accuracy", "val_word_ppl", "lr",
                               "tokens_seen", "elapsed_s", "tokens_per_s", "steps_per_s", "mfu", "eval_s", "ckpt_s"}
    assert "d_model = 32" in (out / "config.toml").read_text()

    r = cli("generate", "--ckpt", str(out / "ckpt_last.pt"), "--max-new-tokens", "20", "--num-samples", "2",
            "--top-k", "5", "--top-p", "0.9", "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("-" * 40) == 1

    (out / "loss.png").unlink()
    r = cli("plot", str(out))
    assert r.returncode == 0, r.stderr
    assert (out / "loss.png").stat().st_size > 1000


def test_ddp_with_gloo_and_two_processes(shakespeare_data, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "training", "train", "--data", str(shakespeare_data), "--out", str(out),
           *sets(max_steps=20, eval_interval=10, dropout=0.1, grad_accum=2)]  # global: 1 micro-batch a process
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 process(es); grad_accum 2 = 1 per process" in r.stdout and r.stdout.count("step 20/20") == 1  # rank 0 alone prints
    records = read_metrics(out)
    assert records[-1]["tokens_seen"] == 20 * 8 * 32 * 2
    assert records[-1]["val_loss"] < records[1]["train_loss"]
    ckpt = checkpoint.load(out / "ckpt_last.pt")
    assert len(ckpt["rng"]) == 2 and ckpt["rng"][0]["sampler"] != ckpt["rng"][1]["sampler"]
