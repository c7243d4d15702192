"""What the seeds' runs report and how they optimize: the CS336 schedule and AdamW, validation
accuracy, steps/s, the evaluation at step 0, word-level perplexity, the size presets."""

import json
import math

import numpy as np
import pytest
import torch

from training import TrainingError, config
from training.model import GPT
from training.perplexity import word_counts, word_perplexity
from training.train import Dist, evaluate, lr_at, make_optimizer, train, whole_split_windows
from training_helpers import byte_ids, make_data, quiet, read_metrics, shakespeare, tiny_config


def cs336_get_lr_cosine_schedule(it, max_learning_rate, min_learning_rate, warmup_iters, cosine_cycle_iters):
    """CS336 assignment 1's definition (section 4.4), transcribed."""
    if it < warmup_iters:
        return it / warmup_iters * max_learning_rate
    if it > cosine_cycle_iters:
        return min_learning_rate
    return min_learning_rate + 0.5 * (
        1 + math.cos((it - warmup_iters) / (cosine_cycle_iters - warmup_iters) * math.pi)
    ) * (max_learning_rate - min_learning_rate)


@pytest.mark.parametrize("lr,min_lr,warmup,decay", [(1.0, 0.1, 7, 21), (3e-3, 3e-4, 200, 10000), (6e-4, 0.0, 0, 50)])
def test_the_schedule_is_cs336s(lr, min_lr, warmup, decay):
    cfg = config.Config(lr=lr, min_lr=min_lr, warmup_steps=warmup, max_steps=decay)
    for it in sorted({*range(0, 30), *range(decay - 3, decay + 5), warmup - 1, warmup, warmup + 1} - {-1}):
        assert lr_at(it, cfg) == pytest.approx(cs336_get_lr_cosine_schedule(it, lr, min_lr, warmup, decay), rel=1e-12)


def test_the_schedule_matches_cs336s_published_values():
    # tests/test_optimizer.py::test_get_lr_cosine_schedule in the CS336 assignment
    expected = [0, 0.14285714285714285, 0.2857142857142857, 0.42857142857142855, 0.5714285714285714,
                0.7142857142857143, 0.8571428571428571, 1.0, 0.9887175604818206, 0.9554359905560885,
                0.9018241671106134, 0.8305704108364301, 0.7452476826029011, 0.6501344202803414, 0.55,
                0.44986557971965857, 0.3547523173970989, 0.26942958916356996, 0.19817583288938662,
                0.14456400944391146, 0.11128243951817937, 0.1, 0.1, 0.1, 0.1]
    cfg = config.Config(lr=1.0, min_lr=0.1, warmup_steps=7, max_steps=21)
    assert [lr_at(it, cfg) for it in range(25)] == pytest.approx(expected, rel=1e-12)


def test_the_first_update_has_learning_rate_zero_under_warmup(tmp_path):
    ids = byte_ids(shakespeare(6000))
    data = make_data(tmp_path / "data", ids[:5000], ids[5000:])
    train(tiny_config(max_steps=3, log_interval=1, eval_interval=3, warmup_steps=2), data, tmp_path / "run", log=quiet)
    assert [r["lr"] for r in read_metrics(tmp_path / "run") if r["train_loss"] is not None] == [0.0, 1.5e-3, 3e-3]


def decays(cfg) -> dict[str, float]:
    model = GPT(cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    optimizer = make_optimizer(model, cfg, torch.device("cpu"))
    return {names[id(p)]: g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}


def test_weight_decay_on_matrices_spares_norms_and_biases():
    out = decays(tiny_config(vocab_size=257, bias=True, norm="layer", weight_decay_on="matrices", weight_decay=0.1))
    assert out["blocks.0.norm1.weight"] == out["blocks.0.attn.qkv.bias"] == 0.0
    assert out["blocks.0.attn.qkv.weight"] == out["tok_emb.weight"] == 0.1


def test_weight_decay_on_all_is_cs336s_adamw_and_the_cs336_presets_use_it():
    out = decays(tiny_config(vocab_size=257, bias=True, norm="layer", weight_decay_on="all", weight_decay=0.1))
    assert set(out.values()) == {0.1} and "blocks.0.norm1.weight" in out
    assert config.load("tinystories").weight_decay_on == config.load("owt").weight_decay_on == "all"
    assert config.Config().weight_decay_on == config.load("gpt2-124m").weight_decay_on == "matrices"


def test_size_presets_are_the_numpy_guides_and_follow_the_data(tmp_path):
    sizes = {name: (c.d_model, c.n_heads, c.d_ff, c.n_layers, c.vocab_size)
             for name in ("tiny", "small", "medium", "large") for c in [config.load(name)]}
    assert sizes == {"tiny": (64, 2, 256, 2, 0), "small": (128, 4, 512, 2, 0), "medium": (256, 8, 1024, 4, 0),
                     "large": (512, 16, 2048, 6, 0)}
    assert config.load("tinystories").vocab_size == config.load("owt").vocab_size == 0
    ids = byte_ids(shakespeare(3000))
    data = make_data(tmp_path / "data", ids[:2500], ids[2500:])
    small_run = {"max_steps": 1, "context_length": 32, "batch_size": 2, "eval_batches": 1, "device": "cpu"}
    train(config.load("tiny", sets=small_run), data, tmp_path / "run", log=quiet)
    assert config.read_toml(tmp_path / "run" / "config.toml")["vocab_size"] == 257


def test_validation_accuracy_is_the_share_of_next_tokens_that_are_the_argmax(tmp_path):
    torch.manual_seed(0)
    ids = np.random.default_rng(0).integers(0, 257, size=600)
    data = make_data(tmp_path / "data", ids, ids)
    from training.data import open_tokens

    val = open_tokens(data / "val.bin")
    cfg = tiny_config(vocab_size=257, context_length=32, batch_size=3)
    model = GPT(cfg)
    starts, lengths = whole_split_windows(val, 32)  # 19 windows of 32 and one of 23: batches of 3, uneven
    result = evaluate(model, val, starts, cfg, torch.device("cpu"), torch.float32, Dist(), lengths)
    correct = nll = 0.0
    with torch.no_grad():
        for s, n in zip(starts, lengths):
            x = torch.from_numpy(ids[s : s + n].astype(np.int64))[None]
            y = torch.from_numpy(ids[s + 1 : s + n + 1].astype(np.int64))
            out, _ = model(x)
            correct += (out[0].argmax(-1) == y).sum().item()
            nll += torch.nn.functional.cross_entropy(out[0], y, reduction="sum").item()
    assert result.tokens == 599
    assert result.accuracy == pytest.approx(correct / 599)
    assert result.total_nll == pytest.approx(nll, rel=1e-6)
    assert result.loss == pytest.approx(nll / 599, rel=1e-6)


def test_word_perplexity_is_exp_of_the_total_nll_over_the_words():
    assert word_perplexity(100 * math.log(50.0), 100) == pytest.approx(50.0)
    assert word_perplexity(0.0, 7) == 1.0
    with pytest.raises(ValueError):
        word_perplexity(1.0, 0)


def test_metrics_hold_accuracy_steps_per_second_and_a_step_0_evaluation(tmp_path):
    ids = byte_ids(shakespeare(8000))
    data = make_data(tmp_path / "data", ids[:6000], ids[6000:])
    logged = []
    train(tiny_config(max_steps=4, log_interval=2, eval_interval=2), data, tmp_path / "run", log=logged.append)
    records = read_metrics(tmp_path / "run")
    evals = [r for r in records if r["val_loss"] is not None]
    assert [r["step"] for r in evals] == [0, 2, 4]
    assert all(0.0 <= r["val_accuracy"] <= 1.0 for r in evals)
    assert all(r["val_word_ppl"] is None for r in evals)  # no dataset.json
    steps = [r for r in records if r["train_loss"] is not None]
    # the first UNTIMED_STEPS = 3 steps (compilation, warm-up) are not timed: step 2 has no speed
    assert [r["step"] for r in steps] == [2, 4] and steps[0]["steps_per_s"] is None and steps[1]["steps_per_s"] > 0
    assert logged[1].startswith("step 0: val loss ") and "| val acc " in logged[1]
    assert any(" steps/s | " in line for line in logged)
    assert not (tmp_path / "run" / "ckpt_best.pt").exists() or \
        torch.load(tmp_path / "run" / "ckpt_best.pt", weights_only=True)["step"] > 0


def test_word_perplexity_of_a_run_whose_data_counts_its_words(tmp_path):
    text = shakespeare(12000)
    ids = byte_ids(text)
    data = make_data(tmp_path / "data", ids[:9000], ids[9000:])
    (data / "dataset.json").write_text(json.dumps({"name": "text", "words": {"train": 1500, "val": 555}}))
    logged = []
    last = train(tiny_config(max_steps=4, eval_interval=2, eval_batches=1), data, tmp_path / "run",
                 log=logged.append)
    evals = [r for r in read_metrics(tmp_path / "run") if r["val_loss"] is not None]
    assert [r["val_word_ppl"] is not None for r in evals] == [False, False, True]  # the final evaluation
    # the whole split, not the eval_batches sample: recompute it from the saved model
    from training.data import open_tokens
    from training.generate import load_model

    model, _ = load_model(tmp_path / "run" / "ckpt_last.pt", torch.device("cpu"))
    val = open_tokens(data / "val.bin")
    starts, lengths = whole_split_windows(val, 32)
    assert starts[-1] + lengths[-1] == val.num_tokens - 1 and sum(lengths) == val.num_tokens - 1
    whole = evaluate(model, val, starts, model.cfg, torch.device("cpu"), torch.float32, Dist(), lengths)
    assert last["val_word_ppl"] == pytest.approx(math.exp(whole.total_nll / 555), rel=1e-5)
    assert "val word ppl" in logged[-1] and "555 words" in logged[-1]


def test_a_damaged_word_count_is_one_clear_error(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"words": {"val": "many"}}))
    with pytest.raises(TrainingError, match="dataset.json: words must be"):
        word_counts(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "owt"}))
    assert word_counts(tmp_path) is None
