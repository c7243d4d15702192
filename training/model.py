"""A GPT-style language model, CS336 by default, nanoGPT/GPT-2 by switches.

Default (CS336 assignment 1): pre-norm blocks, RMSNorm, SwiGLU feed-forward, RoPE, causal
multi-head attention, no biases. Switches: norm rms|layer|none, norm_position pre|post,
positions rope|learned|sinusoidal|none, ffn swiglu|silu|gelu, bias, dropout, tie_embeddings.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from training.config import Config


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x * self.weight).to(dtype)


def make_norm(cfg: Config) -> nn.Module:
    if cfg.norm == "rms":
        return RMSNorm(cfg.d_model)
    if cfg.norm == "layer":
        return nn.LayerNorm(cfg.d_model, bias=cfg.bias)
    return nn.Identity()


class Rotary(nn.Module):
    """RoPE on pairs of adjacent features (x[2i], x[2i+1]), as CS336 defines it."""

    def __init__(self, head_dim: int, max_len: int, theta: float):
        super().__init__()
        inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        # x: (..., T, head_dim); positions: (T,)
        cos, sin = self.cos[positions], self.sin[positions]
        x1, x2 = x.float()[..., 0::2], x.float()[..., 1::2]
        out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
        return out.flatten(-2).to(x.dtype)


def sinusoidal_positions(max_len: int, d_model: int) -> torch.Tensor:
    """The fixed encoding of "Attention Is All You Need": PE[p, 2i] = sin(p / 10000^(2i/d)),
    PE[p, 2i+1] = cos(p / 10000^(2i/d)); (max_len, d_model), added to the token embeddings."""
    inv_freq = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = angles.sin()
    pe[:, 1::2] = angles.cos()[:, : d_model // 2]
    return pe.float()


class KVCache:
    """Keys and values of the tokens seen so far, for generation one token at a time."""

    def __init__(self, cfg: Config, batch: int, device, dtype):
        hd = cfg.d_model // cfg.n_heads
        shape = (cfg.n_layers, batch, cfg.n_heads, cfg.context_length, hd)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0  # tokens already stored

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        end = self.pos + k.size(2)
        self.k[layer, :, :, self.pos:end] = k
        self.v[layer, :, :, self.pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: Config, layer: int, rotary: Optional[Rotary]):
        super().__init__()
        self.layer = layer
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.rotary = rotary
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, positions: torch.Tensor, cache: Optional[KVCache]) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, C // self.n_heads).permute(2, 0, 3, 1, 4)
        if self.rotary is not None:
            q, k = self.rotary(q, positions), self.rotary(k, positions)
        mask, causal = None, True
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
            if cache.pos > 0:  # new queries see every cached key and the new keys causally
                causal = False
                if T > 1:  # one query sees every key: no mask, so the flash kernel can run
                    mask = torch.ones(T, k.size(2), dtype=torch.bool, device=x.device).tril(k.size(2) - T)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class FeedForward(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        d_ff = cfg.resolved_d_ff()
        self.kind = cfg.ffn
        self.w1 = nn.Linear(cfg.d_model, d_ff, bias=cfg.bias)
        self.w3 = nn.Linear(cfg.d_model, d_ff, bias=cfg.bias) if cfg.ffn == "swiglu" else None
        self.w2 = nn.Linear(d_ff, cfg.d_model, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "swiglu":
            return self.w2(F.silu(self.w1(x)) * self.w3(x))
        if self.kind == "silu":
            return self.w2(F.silu(self.w1(x)))
        return self.w2(F.gelu(self.w1(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg: Config, layer: int, rotary: Optional[Rotary]):
        super().__init__()
        self.pre = cfg.norm_position == "pre"
        self.norm1, self.norm2 = make_norm(cfg), make_norm(cfg)
        self.attn = CausalSelfAttention(cfg, layer, rotary)
        self.ffn = FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, cache: Optional[KVCache]) -> torch.Tensor:
        if self.pre:
            x = x + self.drop(self.attn(self.norm1(x), positions, cache))
            return x + self.drop(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attn(x, positions, cache)))
        return self.norm2(x + self.drop(self.ffn(x)))


class GPT(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        assert cfg.vocab_size > 0, "vocab_size must be resolved before building the model"
        self.cfg = cfg
        head_dim = cfg.d_model // cfg.n_heads
        rotary = Rotary(head_dim, cfg.context_length, cfg.rope_theta) if cfg.positions == "rope" else None
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.d_model) if cfg.positions == "learned" else None
        if cfg.positions == "sinusoidal":
            self.register_buffer("pos_table", sinusoidal_positions(cfg.context_length, cfg.d_model), persistent=False)
        else:
            self.pos_table = None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i, rotary) for i in range(cfg.n_layers))
        # post-norm blocks already end in a norm
        self.norm_f = make_norm(cfg) if cfg.norm_position == "pre" else nn.Identity()
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        # GPT-2: scale the projections into the residual stream by 1/sqrt(2 n_layers)
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "ffn.w2.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(
        self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None, cache: Optional[KVCache] = None
    ):
        """Logits (B, T, vocab) and, given targets, the mean cross-entropy.

        With a cache, only the last position's logits are computed.
        """
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        if start + T > self.cfg.context_length:
            raise ValueError(f"sequence of {start + T} tokens is longer than context_length {self.cfg.context_length}")
        positions = torch.arange(start, start + T, device=idx.device)
        x = self.tok_emb(idx)
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions)
        elif self.pos_table is not None:
            x = x + self.pos_table[positions].to(x.dtype)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, positions, cache)
        if cache is not None:
            cache.pos += T
        x = self.norm_f(x)
        if targets is None:
            return self.lm_head(x[:, -1:] if cache is not None else x), None
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss


# -- accounting -------------------------------------------------------------------------


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # tied weights are one parameter


def param_count(cfg: Config) -> int:
    """The number of parameters of GPT(cfg), from the config alone."""
    d, V, L, T = cfg.d_model, cfg.vocab_size, cfg.n_layers, cfg.context_length
    d_ff, b = cfg.resolved_d_ff(), int(cfg.bias)
    norm = {"rms": d, "layer": d + b * d, "none": 0}[cfg.norm]
    attn = 4 * d * d + b * 4 * d
    ffn = (3 if cfg.ffn == "swiglu" else 2) * d * d_ff + b * (d_ff * (2 if cfg.ffn == "swiglu" else 1) + d)
    total = V * d + L * (attn + ffn + 2 * norm)
    total += norm if cfg.norm_position == "pre" else 0
    total += T * d if cfg.positions == "learned" else 0
    total += 0 if cfg.tie_embeddings else V * d
    return total


def matmul_params(cfg: Config) -> int:
    """Parameters that take part in a matrix multiply per token: all but the lookup tables.

    The output layer counts even when tied (its matmul is done); the input lookups do not.
    """
    lookups = cfg.vocab_size * cfg.d_model * (0 if cfg.tie_embeddings else 1)
    lookups += cfg.context_length * cfg.d_model if cfg.positions == "learned" else 0
    return param_count(cfg) - lookups


def flops_per_token(cfg: Config) -> float:
    """Training FLOPs per token, forward + backward (CS336 / PaLM accounting).

    6 N for the weight matmuls (2 forward, 4 backward) plus the attention scores and the
    weighted sum: 2 * 2 * T * d forward per layer, times 3 with the backward pass.
    """
    return 6 * matmul_params(cfg) + 12 * cfg.n_layers * cfg.d_model * cfg.context_length


# Dense 16-bit tensor-core peaks (FLOP/s, bf16 where the GPU has it, else fp16; no sparsity, fp32
# accumulation), by the exact name torch reports (see gpu_key). A GPU not listed has no MFU.
PEAK_FLOPS = {
    "a100 sxm4 40gb": 312e12, "a100 sxm4 80gb": 312e12, "a100 pcie 40gb": 312e12, "a100 80gb pcie": 312e12,
    "a100 sxm 80gb": 312e12,
    "h100 80gb hbm3": 989e12, "h100 sxm5 80gb": 989e12, "h100 sxm": 989e12,  # SXM
    "h100 pcie": 756e12,
    "h100 nvl": 835e12,
    "h800": 989e12, "h800 pcie": 756e12,
    "h200": 989e12, "h200 nvl": 835e12, "gh200 480gb": 989e12, "gh200 144g hbm3e": 989e12,
    "l4": 121e12,
    "l40": 181e12, "l40s": 362e12,
    "a10": 125e12, "a10g": 70e12, "a40": 150e12, "rtx a6000": 155e12, "rtx 6000 ada generation": 365e12,
    "v100 sxm2 16gb": 125e12, "v100 sxm2 32gb": 125e12, "v100 pcie 16gb": 112e12, "v100 pcie 32gb": 112e12,
    "v100s pcie 32gb": 130e12,  # fp16: V100 has no bf16
    "t4": 65e12,  # fp16
    "rtx 4090": 165e12, "rtx 3090": 71e12, "rtx 3090 ti": 80e12,
}


def gpu_key(name: str) -> str:
    """A device name as PEAK_FLOPS keys it: lower case, without the vendor and brand words,
    dashes as spaces ("NVIDIA A100-SXM4-80GB" -> "a100 sxm4 80gb")."""
    words = name.lower().replace("-", " ").split()
    return " ".join(w for w in words if w not in ("nvidia", "tesla", "geforce"))


def peak_flops(device: torch.device) -> Optional[float]:
    """The detected GPU's dense 16-bit peak, or None (CPU, MPS, a GPU not in PEAK_FLOPS)."""
    if device.type != "cuda":
        return None
    return PEAK_FLOPS.get(gpu_key(torch.cuda.get_device_name(device)))


def mfu(cfg: Config, tokens_per_s: float, device: torch.device, world_size: int = 1) -> Optional[float]:
    """Model FLOPs utilization: achieved FLOP/s over the peak of all GPUs in the run."""
    peak = peak_flops(device)
    if peak is None:
        return None
    return flops_per_token(cfg) * tokens_per_s / (peak * world_size)
