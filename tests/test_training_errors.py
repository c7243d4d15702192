"""Bad input: a clear TrainingError from the API, one line on stderr and exit 1 from the command line,
and the last good checkpoint kept."""

import json

import numpy as np
import pytest
import torch

from cli_helpers import assert_one_line_error as one_line_error

from training import TrainingError, checkpoint, config
from training.generate import load_model
from training.model import GPT
from training.train import train
from training_helpers import cli, make_data, quiet, sets, tiny_config, write_bin


@pytest.fixture
def data(tmp_path):
    ids = np.random.default_rng(0).integers(0, 257, size=5000)
    return make_data(tmp_path / "data", ids[:4000], ids[4000:])


def fails(match: str, *args, **kwargs):
    with pytest.raises(TrainingError, match=match):
        train(*args, log=quiet, **kwargs)


def assert_one_line_error(result, *words):
    one_line_error(result, *words, prefix="error: ")


# -- data --------------------------------------------------------------------------------


def test_missing_data_directory(tmp_path):
    fails("data directory .* does not exist", tiny_config(), tmp_path / "nowhere", tmp_path / "run")


def test_missing_validation_split(data, tmp_path):
    (data / "val.bin").unlink()
    fails("val.bin does not exist", tiny_config(), data, tmp_path / "run")


def test_missing_sidecar(data, tmp_path):
    (data / "train.bin.json").unlink()
    fails("has no sidecar train.bin.json", tiny_config(), data, tmp_path / "run")


def test_empty_data(data, tmp_path):
    write_bin(data / "train.bin", [])
    fails("train.bin is empty", tiny_config(), data, tmp_path / "run")


def test_data_shorter_than_the_context(data, tmp_path):
    write_bin(data / "val.bin", range(20))
    fails(r"val.bin has 20 tokens, fewer than context_length \+ 1 = 33", tiny_config(), data, tmp_path / "run")


def test_dtype_that_does_not_match_the_file_size(data, tmp_path):
    meta = json.loads((data / "train.bin.json").read_text())
    meta["dtype"] = "uint32"  # the file holds 4000 uint16 values = 2000 uint32 values
    (data / "train.bin.json").write_text(json.dumps(meta))
    fails("wrong dtype or a truncated file", tiny_config(), data, tmp_path / "run")


def test_vocab_too_large_for_uint16(data, tmp_path):
    write_bin(data / "train.bin", range(100), vocab_size=70000)
    fails("does not fit dtype uint16", tiny_config(), data, tmp_path / "run")


def test_train_and_validation_disagree(data, tmp_path):
    write_bin(data / "val.bin", range(200), vocab_size=300)
    fails("train.bin and val.bin disagree on vocab_size", tiny_config(), data, tmp_path / "run")


def test_model_vocabulary_smaller_than_the_data(data, tmp_path):
    fails("model's vocab_size 100 is smaller than the data's vocab_size 257",
          tiny_config(vocab_size=100), data, tmp_path / "run")


def test_not_a_pybpe_sidecar(data, tmp_path):
    (data / "train.bin.json").write_text('{"dtype": "uint16"}')
    fails("not a pybpe-tokens file", tiny_config(), data, tmp_path / "run")


@pytest.mark.parametrize("key,value,match", [
    ("tokenizer", "tokenizer.json", "tokenizer must be null or an object"),
    ("tokenizer", {"path": 3}, "tokenizer must be null or an object"),
    ("special_tokens", ["<|endoftext|>"], "special_tokens must be an object"),
    ("special_tokens", {"<|endoftext|>": "256"}, "special token ids must be whole numbers"),
])
def test_sidecar_field_of_the_wrong_type(data, tmp_path, key, value, match):
    meta = json.loads((data / "train.bin.json").read_text())
    meta[key] = value
    (data / "train.bin.json").write_text(json.dumps(meta))
    fails(match, tiny_config(), data, tmp_path / "run")


def test_a_sidecar_field_of_the_wrong_type_is_one_line_on_the_command_line(data, tmp_path):
    meta = json.loads((data / "train.bin.json").read_text())
    meta["special_tokens"] = ["<|endoftext|>"]
    (data / "train.bin.json").write_text(json.dumps(meta))
    r = cli("train", "--data", str(data), "--out", str(tmp_path / "cli"), *sets())
    assert_one_line_error(r, "train.bin.json", "special_tokens must be an object")


def test_an_id_at_or_above_the_vocabulary_size_is_named_with_its_position(data, tmp_path):
    ids = np.zeros(4000, dtype=np.int64)
    ids[1234], ids[3000] = 300, 999
    write_bin(data / "train.bin", ids, vocab_size=257)
    fails(r"train.bin holds id 300 at position 1,234, not below its sidecar's vocab_size 257",
          tiny_config(), data, tmp_path / "run")
    r = cli("train", "--data", str(data), "--out", str(tmp_path / "cli"), *sets())
    assert_one_line_error(r, "id 300 at position 1,234")


def test_the_largest_valid_id_is_accepted(data, tmp_path):
    write_bin(data / "val.bin", [256] * 100, vocab_size=257)
    train(tiny_config(max_steps=1), data, tmp_path / "run", log=quiet)


def test_splits_encoded_by_different_tokenizers(data, tmp_path):
    for name, text in (("train.bin", b"one"), ("val.bin", b"two")):
        (tmp_path / f"{name}.tok").write_bytes(text)
        write_bin(data / name, np.arange(2000) % 257, tokenizer=tmp_path / f"{name}.tok")
    fails("train.bin and val.bin were encoded by different tokenizers", tiny_config(), data, tmp_path / "run")


# -- config ------------------------------------------------------------------------------


def test_unknown_config_key_on_the_command_line(data, tmp_path):
    r = cli("train", "--data", str(data), "--out", str(tmp_path / "run"), *sets(), "--set", "n_layer=3")
    assert_one_line_error(r, "unknown config key 'n_layer'")
    assert not (tmp_path / "run").exists()


def test_unknown_config_key_in_a_toml_file(tmp_path):
    (tmp_path / "c.toml").write_text("d_model = 64\nlearning_rate = 0.1\n")
    with pytest.raises(TrainingError, match="unknown config key 'learning_rate'"):
        config.load(path=str(tmp_path / "c.toml"))


@pytest.mark.parametrize("pair,match", [
    ("max_steps=ten", "max_steps: 'ten' is not a valid int"),
    ("norm=batch", "norm = 'batch': expected one of rms, layer, none"),
    ("n_heads=5", "d_model 32 is not a multiple of n_heads 5"),
    ("compile=maybe", "compile = 'maybe': expected one of auto, true, false"),
    ("beta1=2", r"beta1 = 2.0: expected in \[0, 1\)"),
    ("beta2=-0.5", r"beta2 = -0.5: expected in \[0, 1\)"),
    ("beta1=nan", "beta1 = nan: expected a finite number"),
    ("lr=nan", "lr = nan: expected a finite number greater than 0"),
    ("lr=inf", "lr = inf: expected a finite number"),
    ("lr=0", "lr = 0.0: expected greater than 0"),
    ("grad_clip=nan", "grad_clip = nan: expected a finite number at least 0"),
    ("min_lr=-inf", "min_lr = -inf: expected a finite number"),
    ("seed=-1", r"seed = -1: expected in \[0, 4294967295\]"),
    ("dropout=1", r"dropout = 1.0: expected in \[0, 1\)"),
    ("warmup_steps=-1", "warmup_steps = -1: expected at least 0"),
    ("rope_theta=0", "rope_theta = 0.0: expected greater than 0"),
])
def test_bad_config_values(pair, match):
    key, value = pair.split("=")
    with pytest.raises(TrainingError, match=match):
        tiny_config(**{key: value})


@pytest.mark.parametrize("pair", ["beta1=nan", "seed=-1"])
def test_bad_config_values_on_the_command_line(data, tmp_path, pair):
    r = cli("train", "--data", str(data), "--out", str(tmp_path / "run"), *sets(), "--set", pair)
    assert_one_line_error(r, f"config key {pair.split('=')[0]} = ")
    assert not (tmp_path / "run").exists()


def test_every_key_has_its_allowed_values_in_the_one_table():
    assert set(config.ALLOWED) == {f.name for f in config.fields(config.Config)}
    config.Config().validate()
    for name in config.ARCHITECTURE_KEYS:
        assert name in config.ALLOWED


def test_a_model_too_large_for_memory_is_refused_before_it_is_built(data, tmp_path):
    r = cli("train", "--data", str(data), "--out", str(tmp_path / "run"), *sets(), "--set", "d_model=1000000")
    assert_one_line_error(r, "the model does not fit", "GiB", "d_model")
    assert not (tmp_path / "run").exists()


def test_every_preset_loads():
    assert config.presets() == ["cpu", "gpt2-124m", "large", "medium", "owt", "shakespeare-char", "small", "tiny",
                                "tinystories", "wikitext2"]
    cpu = config.load("cpu")
    assert (cpu.vocab_size, cpu.d_model, cpu.n_layers, cpu.context_length, cpu.device) == (0, 128, 4, 128, "auto")
    ts = config.load("tinystories")
    assert (ts.vocab_size, ts.context_length, ts.d_model, ts.d_ff, ts.n_layers, ts.n_heads, ts.rope_theta) == \
        (0, 256, 512, 1344, 4, 16, 10000.0)  # vocab_size 0: the data's
    assert config.load("owt").vocab_size == 0
    for name, dropout in (("shakespeare-char", 0.2), ("wikitext2", 0.1)):
        c = config.load(name)
        assert (c.n_layers, c.n_heads, c.d_model, c.context_length, c.dropout) == (6, 6, 384, 256, dropout)
    g = config.load("gpt2-124m")
    assert (g.norm, g.ffn, g.positions, g.bias, g.tie_embeddings) == ("layer", "gelu", "learned", True, True)


# -- runs and checkpoints ----------------------------------------------------------------


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    forward, calls = GPT.forward, [0]

    def poisoned(self, idx, targets=None, cache=None):
        logits, loss = forward(self, idx, targets, cache)
        if self.training:
            calls[0] += 1
            if calls[0] > 6:
                loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(GPT, "forward", poisoned)
    # the losses are read at steps 5 (log), 8 (evaluation): step 7 is found among steps 6 to 8, before the save at 8
    fails(r"training loss is nan at step 7 \(checked between steps 6 and 8\); stopped, the last good checkpoint is "
          r".*ckpt_last.pt \(step 4\)",
          tiny_config(eval_interval=4), data, tmp_path / "run")
    ckpt = checkpoint.load(tmp_path / "run" / "ckpt_last.pt")
    assert ckpt["step"] == 4
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())


def test_a_run_is_not_overwritten_without_resume(data, tmp_path):
    train(tiny_config(max_steps=2), data, tmp_path / "run", log=quiet)
    fails("already holds a run .* pass --resume", tiny_config(max_steps=2), data, tmp_path / "run")


def test_resume_without_a_checkpoint(data, tmp_path):
    fails("ckpt_last.pt does not exist", tiny_config(), data, tmp_path / "run", resume=True)


def test_resume_with_an_incompatible_config(data, tmp_path):
    train(tiny_config(max_steps=2), data, tmp_path / "run", log=quiet)
    fails("incompatible config: d_model 32 in the checkpoint, 64 now",
          tiny_config(max_steps=4, d_model=64), data, tmp_path / "run", resume=True)


def test_resume_on_other_data(data, tmp_path):
    train(tiny_config(max_steps=2), data, tmp_path / "run", log=quiet)
    other = make_data(tmp_path / "other", range(3000), range(300), vocab_size=3000)
    fails("is not the data of the checkpoint", tiny_config(max_steps=4, vocab_size=3000), other, tmp_path / "run",
          resume=True)


def test_corrupt_checkpoint(data, tmp_path):
    train(tiny_config(max_steps=2), data, tmp_path / "run", log=quiet)
    path = tmp_path / "run" / "ckpt_last.pt"
    path.write_bytes(path.read_bytes()[:1000])
    fails("ckpt_last.pt is corrupt or unreadable", tiny_config(max_steps=4), data, tmp_path / "run", resume=True)
    r = cli("generate", "--ckpt", str(path))
    assert_one_line_error(r, "is corrupt or unreadable")


def test_checkpoints_are_written_atomically(data, tmp_path):
    train(tiny_config(max_steps=4, eval_interval=2), data, tmp_path / "run", log=quiet)
    assert not [p for p in (tmp_path / "run").iterdir() if "tmp" in p.name]


def test_a_checkpoint_saved_from_a_compiled_model_loads(tmp_path):
    cfg = tiny_config(vocab_size=257)
    model = GPT(cfg)
    compiled = torch.compile(model)  # compiles lazily: nothing runs here
    assert next(iter(compiled.state_dict())).startswith("_orig_mod.")
    checkpoint.save(tmp_path / "c.pt", {"model": compiled.state_dict(), "config": cfg.to_dict()})
    ckpt = checkpoint.load(tmp_path / "c.pt")
    fresh = GPT(checkpoint.config_of(ckpt))
    fresh.load_state_dict(ckpt["model"])
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))


def test_cli_train_without_a_preset_uses_the_default_config(data, tmp_path):
    small_run = ["--set", "max_steps=1", "--set", "batch_size=1", "--set", "eval_batches=1", "--set", "device=cpu"]
    r = cli("train", "--data", str(data), "--out", str(tmp_path / "run"), *small_run)
    assert r.returncode == 0, r.stderr
    saved = config.read_toml(tmp_path / "run" / "config.toml")
    defaults = config.Config()
    assert (saved["d_model"], saved["n_layers"], saved["context_length"], saved["positions"]) == \
        (defaults.d_model, defaults.n_layers, defaults.context_length, defaults.positions)


def test_resuming_a_finished_run_says_so(data, tmp_path):
    r = cli("train", "--data", str(data), "--out", str(tmp_path / "run"), *sets(max_steps=2, eval_interval=2))
    assert r.returncode == 0, r.stderr
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    r = cli("train", "--data", str(data), "--out", str(tmp_path / "run"), *sets(max_steps=2), "--resume")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines() == [
        f"{tmp_path / 'run' / 'ckpt_last.pt'} is already at max_steps 2 (step 2); raise --set max_steps to train longer"]
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before


def test_a_partial_last_metrics_line_is_dropped_on_resume(data, tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny_config(max_steps=4, eval_interval=4, log_interval=2), data, out, log=quiet)
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "train_lo')  # a write cut short when the run was killed
    train(tiny_config(max_steps=6, eval_interval=2, log_interval=2), data, out, resume=True, log=quiet)
    assert "is not a complete record" in capsys.readouterr().err
    steps = [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 2, 4, 4, 6, 6]


def edit_checkpoint(path, change):
    ckpt = torch.load(path, weights_only=True)
    change(ckpt)
    torch.save(ckpt, path)


@pytest.mark.parametrize("change,match", [
    (lambda c: c.pop("config"), "lacks config"),
    (lambda c: c["config"].pop("d_model"), "lacks the config keys d_model"),
    (lambda c: c["config"].update(n_heads=0), "has an invalid config: config key n_heads = 0"),
    (lambda c: c.pop("optimizer"), "lacks optimizer"),
])
def test_a_checkpoint_without_its_config_or_state(data, tmp_path, change, match):
    train(tiny_config(max_steps=2, eval_interval=2), data, tmp_path / "run", log=quiet)
    path = tmp_path / "run" / "ckpt_last.pt"
    edit_checkpoint(path, change)
    fails(match, tiny_config(max_steps=4), data, tmp_path / "run", resume=True)
    if match != "lacks optimizer":  # sampling needs the weights and the config only
        with pytest.raises(TrainingError, match=match):
            load_model(path, torch.device("cpu"))


def test_a_checkpoint_without_its_config_is_one_line_on_the_command_line(data, tmp_path):
    train(tiny_config(max_steps=2, eval_interval=2), data, tmp_path / "run", log=quiet)
    path = tmp_path / "run" / "ckpt_last.pt"
    edit_checkpoint(path, lambda c: c.pop("config"))
    r = cli("train", "--data", str(data), "--out", str(tmp_path / "run"), "--resume", "--set", "max_steps=4")
    assert_one_line_error(r, "ckpt_last.pt lacks config")
    assert_one_line_error(cli("generate", "--ckpt", str(path)), "ckpt_last.pt lacks config")


def test_disk_full_while_saving_keeps_the_previous_checkpoint_and_no_temp_file(data, tmp_path, monkeypatch):
    import errno

    out = tmp_path / "run"
    train(tiny_config(max_steps=2, eval_interval=2), data, out, log=quiet)
    before = (out / "ckpt_last.pt").read_bytes()

    def full_disk(obj, f):
        f.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    fails(r"cannot write checkpoint .*ckpt_last.pt: No space left on device; the previous ckpt_last.pt is kept",
          tiny_config(max_steps=4, eval_interval=2), data, out, resume=True)
    assert (out / "ckpt_last.pt").read_bytes() == before
    assert not list(out.glob("*.tmp"))


def dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_checkpoint_temp_files_are_removed_when_a_run_starts(data, tmp_path, capsys):
    import os

    out = tmp_path / "run"
    out.mkdir()
    stale = [out / f"ckpt_last.pt.{dead_pid()}.k2j4x9q1.tmp", out / "ckpt_best.pt.a8xk2m3z.tmp"]
    live = out / f"ckpt_last.pt.{os.getppid()}.p3m9c2d1.tmp"  # a process that is running
    for path in (*stale, live):
        path.write_bytes(b"partial")
    train(tiny_config(max_steps=2, eval_interval=2), data, out, log=quiet)
    assert not any(p.exists() for p in stale)
    assert live.exists()
    assert capsys.readouterr().err.count("left by a checkpoint save that did not finish") == 2


SLOW_SAVE = """
import sys, time, torch
def slow_save(obj, f):
    f.write(b"x" * 1000)
    f.flush()
    print("saving", flush=True)
    time.sleep(60)
torch.save = slow_save
from training.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("signal_name,code,message", [
    ("SIGTERM", 143, "terminated; the last checkpoint written is kept"),
    ("SIGINT", 130, "interrupted; the last checkpoint written is kept"),
])
def test_a_signal_while_saving_a_checkpoint_removes_its_temp_file(data, tmp_path, signal_name, code, message):
    import os
    import signal
    import subprocess
    import sys

    from training_helpers import REPO

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", SLOW_SAVE, "train", "--data", str(data), "--out", str(out),
                              *sets(max_steps=2, eval_interval=2)],
                             cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in child.stdout:
            if line.strip() == "saving":
                break
        assert list(out.glob("ckpt_last.pt.*.tmp"))
        child.send_signal(getattr(signal, signal_name))
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == code
    assert err.strip() == message
    assert not list(out.glob("*.tmp"))
