"""Bad input: a clear TrainingError from the API, one line on stderr and exit 1 from the command line,
and the last good checkpoint kept."""

import json

import numpy as np
import pytest
import torch

from training import TrainingError, checkpoint, config
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
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


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
    ("compile=maybe", "compile: 'maybe' is not a valid bool"),
])
def test_bad_config_values(pair, match):
    key, value = pair.split("=")
    with pytest.raises(TrainingError, match=match):
        tiny_config(**{key: value})


def test_every_preset_loads():
    assert config.presets() == ["gpt2-124m", "owt", "shakespeare-char", "tinystories", "wikitext2"]
    ts = config.load("tinystories")
    assert (ts.vocab_size, ts.context_length, ts.d_model, ts.d_ff, ts.n_layers, ts.n_heads, ts.rope_theta) == \
        (10000, 256, 512, 1344, 4, 16, 10000.0)
    assert config.load("owt").vocab_size == 32000
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
    fails(r"training loss is nan at step 7; stopped, the last good checkpoint is .*ckpt_last.pt \(step 4\)",
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


def test_cli_train_needs_a_preset_or_config(data, tmp_path):
    r = cli("train", "--data", str(data), "--out", str(tmp_path / "run"))
    assert_one_line_error(r, "--preset NAME or --config FILE.toml")
