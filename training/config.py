"""Run configuration: one flat dataclass, presets as small TOML files, `--set key=value` overrides."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional

from training.errors import TrainingError

try:
    import tomllib  # Python >= 3.11
except ModuleNotFoundError:  # pragma: no cover - exercised on 3.9/3.10 only
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ModuleNotFoundError:
        tomllib = None  # type: ignore[assignment]

CONFIG_DIR = Path(__file__).parent / "configs"

CHOICES = {
    "norm": ("rms", "layer", "none"),
    "norm_position": ("pre", "post"),
    "positions": ("rope", "learned", "none"),
    "ffn": ("swiglu", "silu", "gelu"),
    "device": ("auto", "cuda", "mps", "cpu"),
    "dtype": ("auto", "float32", "bfloat16", "float16"),
}

# Keys that define the model's shape: a checkpoint only resumes or loads with the same values.
ARCHITECTURE_KEYS = (
    "vocab_size", "context_length", "d_model", "n_layers", "n_heads", "d_ff",
    "norm", "norm_position", "positions", "ffn", "rope_theta", "bias", "tie_embeddings",
)


@dataclass
class Config:
    # model
    vocab_size: int = 0  # 0: the vocabulary size of the data
    context_length: int = 256
    d_model: int = 512
    n_layers: int = 4
    n_heads: int = 16
    d_ff: int = 0  # 0: 8/3 d_model rounded up to 64 for swiglu, else 4 d_model
    norm: str = "rms"
    norm_position: str = "pre"
    positions: str = "rope"
    ffn: str = "swiglu"
    rope_theta: float = 10000.0
    bias: bool = False
    tie_embeddings: bool = False
    dropout: float = 0.0
    # optimization
    max_steps: int = 1000
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    lr_decay_steps: int = 0  # 0: decay over max_steps
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0: no clipping
    # evaluation, logging, checkpoints
    eval_interval: int = 250
    eval_batches: int = 20
    log_interval: int = 10
    # system
    device: str = "auto"
    dtype: str = "auto"
    compile: bool = False
    seed: int = 1337
    wandb: bool = False
    wandb_project: str = "pybpe"
    tensorboard: bool = False

    def resolved_d_ff(self) -> int:
        if self.d_ff > 0:
            return self.d_ff
        if self.ffn == "swiglu":
            return 64 * math.ceil(8 * self.d_model / 3 / 64)
        return 4 * self.d_model

    def decay_steps(self) -> int:
        return self.lr_decay_steps if self.lr_decay_steps > 0 else self.max_steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "Config":
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                raise TrainingError(f"config key {key} = {getattr(self, key)!r}: expected one of {', '.join(allowed)}")
        positive = ("context_length", "d_model", "n_layers", "n_heads", "max_steps", "batch_size",
                    "grad_accum", "eval_interval", "eval_batches", "log_interval")
        for key in positive:
            if getattr(self, key) < 1:
                raise TrainingError(f"config key {key} must be at least 1, not {getattr(self, key)}")
        for key in ("vocab_size", "d_ff", "warmup_steps", "lr_decay_steps", "weight_decay", "grad_clip", "min_lr"):
            if getattr(self, key) < 0:
                raise TrainingError(f"config key {key} must not be negative, not {getattr(self, key)}")
        if self.d_model % self.n_heads:
            raise TrainingError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        if self.positions == "rope" and (self.d_model // self.n_heads) % 2:
            raise TrainingError(f"RoPE needs an even head size; d_model / n_heads = {self.d_model // self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise TrainingError(f"dropout must be in [0, 1), not {self.dropout}")
        if not self.lr > 0:
            raise TrainingError(f"lr must be positive, not {self.lr}")
        return self


FIELD_TYPES = {f.name: f.type for f in fields(Config)}


def _coerce(key: str, value: Any) -> Any:
    kind = FIELD_TYPES[key]
    if isinstance(value, str) and kind != "str":
        text = value.strip()
        try:
            if kind == "bool":
                if text.lower() in ("true", "1", "yes", "on"):
                    return True
                if text.lower() in ("false", "0", "no", "off"):
                    return False
                raise ValueError
            if kind == "int":
                return int(float(text)) if "e" in text.lower() and float(text).is_integer() else int(text)
            return float(text)
        except ValueError:
            raise TrainingError(f"config key {key}: {value!r} is not a valid {kind}") from None
    if kind == "bool":
        if not isinstance(value, bool):
            raise TrainingError(f"config key {key}: {value!r} is not true or false")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TrainingError(f"config key {key}: {value!r} is not a whole number")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TrainingError(f"config key {key}: {value!r} is not a number")
        return float(value)
    if not isinstance(value, str):
        raise TrainingError(f"config key {key}: {value!r} is not a string")
    return value


def apply(cfg: Config, values: dict[str, Any], origin: str) -> Config:
    for key, value in values.items():
        if key not in FIELD_TYPES:
            raise TrainingError(f"unknown config key {key!r} in {origin} (known keys: {', '.join(FIELD_TYPES)})")
        setattr(cfg, key, _coerce(key, value))
    return cfg


def presets() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def read_toml(path: "str | os.PathLike[str]") -> dict[str, Any]:
    if tomllib is None:
        raise TrainingError("reading TOML configs needs Python >= 3.11 or the 'tomli' package (pip install tomli)")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise TrainingError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise TrainingError(f"config file {path} is not valid TOML: {e}") from None


def parse_sets(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise TrainingError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value
    return out


def load(preset: Optional[str] = None, path: Optional[str] = None, sets: Optional[dict[str, Any]] = None) -> Config:
    """Defaults, then the preset or TOML file, then the overrides; validated."""
    cfg = Config()
    if preset is not None:
        if preset not in presets():
            raise TrainingError(f"unknown preset {preset!r} (presets: {', '.join(presets())})")
        apply(cfg, read_toml(CONFIG_DIR / f"{preset}.toml"), f"preset {preset}")
    if path is not None:
        apply(cfg, read_toml(path), str(path))
    if sets:
        apply(cfg, sets, "--set")
    return cfg.validate()


def to_toml(cfg: Config) -> str:
    lines = []
    for key, value in cfg.to_dict().items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        else:
            text = repr(value)
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"
