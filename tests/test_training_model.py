"""The model: parameter and FLOP accounting, RoPE against CS336, causality, sampling, the KV cache."""

import itertools

import numpy as np
import pytest
import torch

from training import config
from training.config import Config
from training.generate import filter_logits, generate_ids, sample_next
from training.model import GPT, KVCache, flops_per_token, num_params, param_count
from training_helpers import DATA

SWITCHES = list(itertools.product(
    ["rms", "layer", "none"], ["pre", "post"], ["rope", "learned", "sinusoidal", "none"], ["swiglu", "silu", "gelu"],
    [False, True], [False, True],
))


def small(**kw) -> Config:
    base = dict(vocab_size=97, context_length=16, d_model=24, n_layers=2, n_heads=3, d_ff=40)
    return Config(**{**base, **kw}).validate()


@pytest.mark.parametrize("norm,position,positions,ffn,bias,tied", SWITCHES)
def test_parameter_count_formula_equals_the_real_count(norm, position, positions, ffn, bias, tied):
    cfg = small(norm=norm, norm_position=position, positions=positions, ffn=ffn, bias=bias, tie_embeddings=tied)
    assert param_count(cfg) == num_params(GPT(cfg))


def test_gpt2_preset_has_gpt2_small_parameter_count():
    cfg = config.load("gpt2-124m")
    # GPT-2 small: 124,439,808 parameters with vocab 50257; nanoGPT pads the vocab to 50304
    assert param_count(cfg) == 124_439_808 + (50304 - 50257) * 768


def test_flops_per_token_is_6n_plus_the_attention_term():
    cfg = config.load("gpt2-124m")
    n_matmul = param_count(cfg) - cfg.context_length * cfg.d_model  # tied: the table is also the output layer
    assert flops_per_token(cfg) == 6 * n_matmul + 12 * 12 * 768 * 1024
    cs336 = config.load("tinystories", sets={"vocab_size": 10000})
    n_matmul = param_count(cs336) - cs336.vocab_size * cs336.d_model  # untied: the input lookup is free
    assert flops_per_token(cs336) == 6 * n_matmul + 12 * 4 * 512 * 256


def test_rope_matches_the_cs336_reference_snapshot():
    snapshot = DATA / "cs336" / "_snapshots" / "test_rope.npz"
    expected = np.load(snapshot)["array"]  # fails loudly when the shared data is missing
    torch.manual_seed(4)
    x = torch.randn(4, 12, 64)  # CS336 fixture in_embeddings; d_k = 64, theta = 10000
    from training.model import Rotary

    out = Rotary(64, 12, 10000.0)(x, torch.arange(12))
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("positions", ["rope", "learned", "sinusoidal", "none"])
def test_attention_is_causal(positions):
    torch.manual_seed(0)
    model = GPT(small(positions=positions)).eval()
    idx = torch.randint(0, 97, (2, 16))
    changed = idx.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 97
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_sinusoidal_positions_are_the_transformer_papers():
    from training.model import sinusoidal_positions

    table = sinusoidal_positions(50, 16)
    for pos in (0, 1, 7, 49):
        for i in range(8):
            angle = pos / 10000 ** (2 * i / 16)
            assert table[pos, 2 * i].item() == pytest.approx(np.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(np.cos(angle), abs=1e-6)


def test_sinusoidal_positions_are_added_to_the_embeddings_and_are_not_parameters():
    torch.manual_seed(0)
    model = GPT(small(positions="sinusoidal", n_layers=1)).eval()
    assert num_params(model) == num_params(GPT(small(positions="none", n_layers=1)))
    assert "pos_table" not in model.state_dict()
    # the same token at two positions enters the first block as two different vectors
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    model(torch.tensor([[5, 5]]))
    x = seen[0][0]
    from training.model import sinusoidal_positions

    torch.testing.assert_close(x[1] - x[0], sinusoidal_positions(2, 24)[1] - sinusoidal_positions(2, 24)[0])


def test_loss_of_an_untrained_model_is_near_log_vocab():
    torch.manual_seed(0)
    model = GPT(small())
    idx = torch.randint(0, 97, (4, 16))
    _, loss = model(idx, idx)
    assert abs(loss.item() - np.log(97)) < 0.1


# -- sampling ----------------------------------------------------------------------------

PROBS = torch.tensor([0.05, 0.4, 0.1, 0.3, 0.15])  # by rank: 1, 3, 4, 2, 0


def kept(**kw) -> set[int]:
    logits = filter_logits(PROBS.log()[None], **kw)[0]
    return {i for i in range(5) if logits[i] > float("-inf")}


def test_top_k_keeps_exactly_the_k_most_likely_tokens():
    assert kept(top_k=1) == {1}
    assert kept(top_k=2) == {1, 3}
    assert kept(top_k=4) == {1, 3, 4, 2}
    assert kept(top_k=5) == kept(top_k=0) == set(range(5))


def test_top_p_keeps_the_smallest_set_reaching_p():
    assert kept(top_p=0.3) == {1}           # 0.4 >= 0.3
    assert kept(top_p=0.6) == {1, 3}        # 0.4 < 0.6 <= 0.7
    assert kept(top_p=0.8) == {1, 3, 4}     # 0.7 < 0.8 <= 0.85
    assert kept(top_p=0.9) == {1, 3, 4, 2}  # 0.85 < 0.9 <= 0.95
    assert kept(top_p=1.0) == set(range(5))


def test_top_k_and_top_p_together_keep_the_intersection():
    assert kept(top_k=2, top_p=0.9) == {1, 3}
    assert kept(top_k=4, top_p=0.3) == {1}


def test_sampling_draws_only_kept_tokens_with_renormalized_probabilities():
    g = torch.Generator().manual_seed(0)
    logits = PROBS.log()[None].expand(20000, 5)
    draws = sample_next(logits, temperature=1.0, top_k=2, generator=g)
    counts = torch.bincount(draws, minlength=5).float() / 20000
    assert set(draws.unique().tolist()) == {1, 3}
    assert abs(counts[1].item() - 0.4 / 0.7) < 0.02


def test_temperature_zero_is_greedy():
    logits = torch.tensor([[0.1, 2.0, 1.9], [3.0, -1.0, 2.0]])
    assert sample_next(logits, temperature=0).tolist() == [1, 0]


class Scripted(torch.nn.Module):
    """Stands in for GPT: always predicts the next token of `script`."""

    def __init__(self, script, vocab=10, context_length=8):
        super().__init__()
        self.cfg = Config(vocab_size=vocab, context_length=context_length, d_model=4, n_layers=1, n_heads=1)
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.script, self.calls = list(script), 0

    def forward(self, idx, targets=None, cache=None):
        logits = torch.full((idx.size(0), 1, self.cfg.vocab_size), -10.0)
        logits[..., self.script[self.calls]] = 10.0
        self.calls += 1
        cache.pos += idx.size(1)
        return logits, None


def test_generation_stops_at_end_of_text():
    eot = 9
    out = generate_ids(Scripted([5, 6, eot, 7, 8]), [1, 2], max_new_tokens=10, temperature=0, eot_id=eot)
    assert out == [5, 6]


def test_generation_stops_after_max_new_tokens():
    out = generate_ids(Scripted([5, 6, 7, 8, 4]), [1], max_new_tokens=3, temperature=0, eot_id=9)
    assert out == [5, 6, 7]


@pytest.mark.parametrize("positions", ["rope", "learned", "sinusoidal"])
def test_kv_cache_generation_equals_recomputing_the_window(positions):
    torch.manual_seed(0)
    model = GPT(small(positions=positions)).eval()
    prompt = [3, 1, 4, 1, 5]
    cached = generate_ids(model, prompt, max_new_tokens=30, temperature=0)  # runs past context_length 16
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(30):
            logits, _ = model(torch.tensor([seq[-16:]]))
            seq.append(int(logits[0, -1].argmax()))
    assert cached == seq[len(prompt):]


def test_kv_cache_logits_equal_full_forward_logits():
    torch.manual_seed(0)
    cfg = small()
    model = GPT(cfg).eval()
    idx = torch.randint(0, 97, (2, 12))
    with torch.no_grad():
        full, _ = model(idx)
        cache = KVCache(cfg, 2, "cpu", torch.float32)
        model(idx[:, :7], cache=cache)
        step, _ = model(idx[:, 7:9], cache=cache)  # two tokens at once after a prefill
    torch.testing.assert_close(step[:, -1], full[:, 8], atol=1e-5, rtol=1e-4)


# Sampled with the code before the model was cast once and one-token decoding dropped its mask.
SAMPLED_BEFORE = {
    "rope": [50, 59, 49, 73, 53, 78, 33, 12, 79, 22, 95, 75, 37, 41, 57, 42, 66, 90, 40, 96, 6, 83, 54, 75, 37, 65,
             34, 25, 48, 36, 6, 14, 34, 56, 12, 4, 18, 32, 83, 51],
    "learned": [31, 2, 6, 18, 4, 88, 12, 87, 2, 49, 27, 75, 31, 51, 56, 12, 66, 84, 20, 51, 30, 83, 92, 75, 94, 36,
                34, 40, 20, 50, 16, 92, 34, 63, 54, 92, 59, 51, 75, 89],
}


@pytest.mark.parametrize("positions", ["rope", "learned"])
def test_sampling_with_a_seed_gives_the_same_tokens_as_before(positions):
    torch.manual_seed(0)
    model = GPT(small(positions=positions)).eval()
    generator = torch.Generator().manual_seed(7)
    out = generate_ids(model, [3, 1, 4, 1, 5], max_new_tokens=40, temperature=1.0, top_k=20, generator=generator)
    assert out == SAMPLED_BEFORE[positions]  # 40 tokens: past context_length 16, so the cache is refilled too


def test_one_token_decoded_with_the_cache_runs_attention_without_a_mask(monkeypatch):
    import training.model as model_module

    calls = []
    sdpa = model_module.F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, is_causal=False, **kw):
        calls.append((q.size(2), k.size(2), attn_mask is None, is_causal))
        return sdpa(q, k, v, attn_mask=attn_mask, is_causal=is_causal, **kw)

    monkeypatch.setattr(model_module.F, "scaled_dot_product_attention", spy)
    torch.manual_seed(0)
    model = GPT(small(n_layers=1)).eval()
    generate_ids(model, [3, 1, 4], max_new_tokens=3, temperature=0)
    # the prompt: causal, no mask; each new token: one query over every cached key, no mask
    assert calls == [(3, 3, True, True), (1, 4, True, False), (1, 5, True, False)]


def test_a_model_cast_for_sampling_runs_without_autocast_and_keeps_its_tables_in_float32(monkeypatch):
    from training.generate import cast_for_sampling

    torch.manual_seed(0)
    model = cast_for_sampling(GPT(small()).eval(), torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert model.blocks[0].attn.rotary.cos.dtype == torch.float32

    def no_autocast(*a, **k):
        raise AssertionError("autocast entered while sampling a model already in bf16")

    monkeypatch.setattr(torch, "autocast", no_autocast)
    out = generate_ids(model, [3, 1, 4, 1, 5], max_new_tokens=20, temperature=0)
    assert len(out) == 20 and all(0 <= t < 97 for t in out)


@pytest.mark.parametrize("name,peak", [
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H100 NVL", 835e12),
    ("NVIDIA H200", 989e12), ("NVIDIA A100-SXM4-40GB", 312e12), ("NVIDIA A100-SXM4-80GB", 312e12),
    ("NVIDIA A100 80GB PCIe", 312e12), ("NVIDIA L4", 121e12), ("NVIDIA L40", 181e12), ("NVIDIA L40S", 362e12),
    ("NVIDIA A10", 125e12), ("NVIDIA A10G", 70e12), ("Tesla V100-SXM2-16GB", 125e12), ("Tesla T4", 65e12),
    ("NVIDIA GeForce RTX 4090", 165e12), ("NVIDIA GeForce RTX 3090", 71e12),
    ("NVIDIA Imaginary X1", None), ("NVIDIA H100 80GB HBM3 Prototype", None),
])
def test_the_mfu_peak_is_looked_up_by_the_exact_gpu_name(monkeypatch, name, peak):
    from training.model import mfu, peak_flops

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    cuda = torch.device("cuda", 0)
    assert peak_flops(cuda) == peak
    cfg = small()
    util = mfu(cfg, 1e6, cuda, world_size=2)
    assert util is None if peak is None else util == pytest.approx(flops_per_token(cfg) * 1e6 / (2 * peak))


def test_there_is_no_mfu_without_a_gpu():
    from training.model import mfu

    assert mfu(small(), 1e6, torch.device("cpu")) is None
