"""Sampling from a trained model: KV cache, temperature, top-k, top-p, stop at end-of-text."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from pathlib import Path
from typing import Any, Optional

import torch

from training import checkpoint
from training.data import EOT
from training.errors import TrainingError
from training.model import GPT, KVCache
from training.train import autocast, resolve_device, resolve_dtype


def filter_logits(logits: torch.Tensor, top_k: Optional[int] = None, top_p: Optional[float] = None) -> torch.Tensor:
    """Sets the logits of the tokens sampling must not pick to -inf.

    top_k keeps the k most likely tokens; top_p keeps the smallest set of most likely tokens
    whose probabilities add up to at least p (a token is kept when the tokens more likely than
    it add up to less than p).
    """
    logits = logits.clone()
    if top_k is not None and top_k > 0 and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits[logits < kth] = float("-inf")
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits.float(), dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs
        drop_sorted = before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits[drop] = float("-inf")
    return logits


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: Optional[int] = None,
                top_p: Optional[float] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One token id per row of `logits` (B, vocab); temperature 0 is greedy."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate_ids(model: GPT, prompt: list[int], max_new_tokens: int, temperature: float = 1.0,
                 top_k: Optional[int] = None, top_p: Optional[float] = None, eot_id: Optional[int] = None,
                 generator: Optional[torch.Generator] = None, dtype: Optional[torch.dtype] = None) -> list[int]:
    """The new token ids after `prompt`, stopping before end-of-text or after max_new_tokens.

    The model runs in the dtype of its weights (see cast_for_sampling), under autocast only when
    `dtype` asks for another. Beyond the context length the model sees the last context_length
    tokens, as without a cache.
    """
    if not prompt:
        raise TrainingError("generation needs at least one prompt token")
    model.eval()
    weights = next(model.parameters())
    device = weights.device
    dtype = weights.dtype if dtype is None else dtype
    run = autocast(device, dtype) if dtype != weights.dtype else contextlib.nullcontext()
    T = model.cfg.context_length
    seq, new = list(prompt), []

    def prefill():
        cache = KVCache(model.cfg, 1, device, dtype)
        with run:
            logits, _ = model(torch.tensor([seq[-T:]], device=device), cache=cache)
        return cache, logits

    cache, logits = prefill()
    for _ in range(max_new_tokens):
        token = int(sample_next(logits[:, -1], temperature, top_k, top_p, generator)[0])
        if token == eot_id:
            break
        new.append(token)
        seq.append(token)
        if len(new) == max_new_tokens:
            break  # no forward pass for logits nothing samples from
        if cache.pos >= T:
            cache, logits = prefill()
        else:
            with run:
                logits, _ = model(torch.tensor([[token]], device=device), cache=cache)
    return new


def cast_for_sampling(model: GPT, dtype: torch.dtype) -> GPT:
    """Casts the weights to `dtype` once, so that sampling runs without autocast re-casting them
    at every token. Buffers (the RoPE and sinusoidal tables) stay in float32."""
    for p in model.parameters():
        p.data = p.data.to(dtype)
    return model


# -- from a checkpoint -------------------------------------------------------------------


def load_model(path: "str | os.PathLike[str]", device: torch.device) -> tuple[GPT, dict[str, Any]]:
    ckpt = checkpoint.load(path)
    model = GPT(checkpoint.config_of(ckpt))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise TrainingError(f"checkpoint {path} does not match its own config: {str(e).splitlines()[0]}") from None
    return model.to(device), ckpt


def load_tokenizer(ckpt: dict[str, Any], override: Optional[str] = None):
    """The tokenizer the checkpoint's data names: a file (BPE or character vocabulary) or a
    named encoding such as gpt2; `override` (a file or a name) instead."""
    from pybpe.tokenfile import tokenizer_sha256
    from pybpe.tokenizer_files import load_any

    ref = ckpt.get("tokenizer") or {}
    spec = override or ref.get("path") or ref.get("name")
    if not spec:
        raise TrainingError("the checkpoint names no tokenizer (its data sidecar had none); pass --tokenizer PATH")
    if ref.get("path") and not override and not Path(spec).is_file():
        raise TrainingError(f"the tokenizer {spec} the checkpoint refers to does not exist; pass --tokenizer PATH")
    try:
        tokenizer = load_any(spec)  # a BPE tokenizer file, a character vocabulary, or a named encoding
    except Exception as e:
        raise TrainingError(f"cannot load the tokenizer {spec}: {e}") from None
    if override is None and ref.get("sha256"):
        digest = hashlib.sha256(Path(spec).read_bytes()).hexdigest() if Path(spec).is_file() \
            else tokenizer_sha256(tokenizer)
        if digest != ref["sha256"]:
            print(f"warning: {spec} has changed since the data was encoded (sha256 differs)", file=sys.stderr)
    return tokenizer


def encode(tokenizer, text: str) -> list[int]:
    if not hasattr(tokenizer, "encode"):
        raise TrainingError("this pybpe cannot encode text yet; give an empty prompt to start a new document")
    try:
        try:
            return list(tokenizer.encode(text, allowed_special="all"))  # "<|endoftext|>" in a prompt is the token
        except TypeError:
            return list(tokenizer.encode(text))
    except ValueError as e:
        raise TrainingError(f"cannot encode the prompt: {e}") from None


def decode(tokenizer, ids: list[int]) -> str:
    if hasattr(tokenizer, "decode"):
        return tokenizer.decode(ids)
    vocab = tokenizer.vocab
    return b"".join(vocab[i] for i in ids).decode("utf-8", "replace")


def generate(ckpt_path: str, prompt: str, max_new_tokens: int = 200, temperature: float = 1.0,
             top_k: Optional[int] = None, top_p: Optional[float] = None, num_samples: int = 1,
             seed: int = 1337, device: str = "auto", tokenizer_path: Optional[str] = None) -> list[str]:
    """Texts sampled from the checkpoint, each the prompt's continuation (without the prompt).

    An empty prompt starts a new document (after an end-of-text token).
    """
    dev = resolve_device(device)
    model, ckpt = load_model(ckpt_path, dev)
    tokenizer = load_tokenizer(ckpt, tokenizer_path)
    eot_id = ((ckpt.get("data") or {}).get("special_tokens") or {}).get(EOT)
    if prompt:
        ids = encode(tokenizer, prompt)
    elif eot_id is not None:
        ids = [eot_id]
    else:
        raise TrainingError("an empty prompt needs an end-of-text token, and this data has none")
    generator = torch.Generator(device=dev).manual_seed(seed)
    cast_for_sampling(model, resolve_dtype("auto", dev))
    return [
        decode(tokenizer, generate_ids(model, ids, max_new_tokens, temperature, top_k, top_p, eot_id, generator))
        for _ in range(num_samples)
    ]
