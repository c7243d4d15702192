"""Run configuration: one flat dataclass, presets as small TOML files, `--set key=value` overrides."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field, fields
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

# Keys that define the model's shape: a checkpoint only resumes or loads with the same values.
ARCHITECTURE_KEYS = (
    "vocab_size", "context_length", "d_model", "n_layers", "n_heads", "d_ff",
    "norm", "norm_position", "positions", "ffn", "rope_theta", "bias", "tie_embeddings",
)


@dataclass(frozen=True)
class Allowed:
    """The values a config key may take: one of `choices`, or a number within [lo, hi]
    (an open end where lo_open / hi_open; None is unbounded). Floats are always finite."""

    choices: tuple = ()
    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.hi is None:
            return f"{'greater than' if self.lo_open else 'at least'} {self.lo}"
        return f"in {'(' if self.lo_open else '['}{self.lo}, {self.hi}{')' if self.hi_open else ']'}"

    def admits(self, value: Any) -> bool:
        if self.choices:
            return value in self.choices
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            return False
        return True


def one_of(*choices: str) -> Allowed:
    return Allowed(choices=choices)


AT_LEAST_0, AT_LEAST_1, POSITIVE = Allowed(lo=0), Allowed(lo=1), Allowed(lo=0, lo_open=True)
ANY_STRING = ANY_BOOL = Allowed()


def key(default: Any, allowed: Allowed) -> Any:
    return field(default=default, metadata={"allowed": allowed})


@dataclass
class Config:
    # model
    vocab_size: int = key(0, AT_LEAST_0)  # 0: the vocabulary size of the data
    context_length: int = key(256, AT_LEAST_1)
    d_model: int = key(512, AT_LEAST_1)
    n_layers: int = key(4, AT_LEAST_1)
    n_heads: int = key(16, AT_LEAST_1)
    d_ff: int = key(0, AT_LEAST_0)  # 0: 8/3 d_model rounded up to 64 for swiglu, else 4 d_model
    norm: str = key("rms", one_of("rms", "layer", "none"))
    norm_position: str = key("pre", one_of("pre", "post"))
    positions: str = key("rope", one_of("rope", "learned", "sinusoidal", "none"))
    ffn: str = key("swiglu", one_of("swiglu", "silu", "gelu"))
    rope_theta: float = key(10000.0, POSITIVE)
    bias: bool = key(False, ANY_BOOL)
    tie_embeddings: bool = key(False, ANY_BOOL)
    dropout: float = key(0.0, Allowed(lo=0, hi=1, hi_open=True))
    # optimization
    max_steps: int = key(1000, AT_LEAST_1)
    batch_size: int = key(32, AT_LEAST_1)
    grad_accum: int = key(1, AT_LEAST_1)
    lr: float = key(1e-3, POSITIVE)
    min_lr: float = key(1e-4, AT_LEAST_0)
    warmup_steps: int = key(100, AT_LEAST_0)
    lr_decay_steps: int = key(0, AT_LEAST_0)  # 0: decay over max_steps
    weight_decay: float = key(0.1, AT_LEAST_0)
    # matrices: not on norm gains and biases (nanoGPT); all: every parameter (CS336's AdamW)
    weight_decay_on: str = key("matrices", one_of("matrices", "all"))
    beta1: float = key(0.9, Allowed(lo=0, hi=1, hi_open=True))
    beta2: float = key(0.95, Allowed(lo=0, hi=1, hi_open=True))
    grad_clip: float = key(1.0, AT_LEAST_0)  # 0: no clipping
    # evaluation, logging, checkpoints
    eval_interval: int = key(250, AT_LEAST_1)
    eval_batches: int = key(20, AT_LEAST_1)
    log_interval: int = key(10, AT_LEAST_1)
    # system
    device: str = key("auto", one_of("auto", "cuda", "mps", "cpu"))
    dtype: str = key("auto", one_of("auto", "float32", "bfloat16", "float16"))
    compile: str = key("auto", one_of("auto", "true", "false"))  # auto: on CUDA, off on CPU and MPS
    seed: int = key(1337, Allowed(lo=0, hi=2**32 - 1))  # numpy and torch both take it
    wandb: bool = key(False, ANY_BOOL)
    wandb_project: str = key("pybpe", ANY_STRING)
    tensorboard: bool = key(False, ANY_BOOL)

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
        """Every key against its type and ALLOWED values, then the rules that tie keys together."""
        for name, allowed in ALLOWED.items():
            value = getattr(self, name)
            if isinstance(value, bool) and {"true", "false"} <= set(allowed.choices):
                value = "true" if value else "false"  # compile = true in Python, or in an older checkpoint
                setattr(self, name, value)
            _check_type(name, value)
            if isinstance(value, float) and not math.isfinite(value):
                raise TrainingError(f"config key {name} = {value!r}: expected a finite number {allowed.describe()}")
            if not allowed.admits(value):
                raise TrainingError(f"config key {name} = {value!r}: expected {allowed.describe()}")
        if self.d_model % self.n_heads:
            raise TrainingError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        if self.positions == "rope" and (self.d_model // self.n_heads) % 2:
            raise TrainingError(f"RoPE needs an even head size; d_model / n_heads = {self.d_model // self.n_heads}")
        return self


ALLOWED: dict[str, Allowed] = {f.name: f.metadata["allowed"] for f in fields(Config)}
FIELD_TYPES = {f.name: f.type for f in fields(Config)}


def _check_type(key: str, value: Any) -> None:
    kind = FIELD_TYPES[key]
    ok = {"bool": lambda v: isinstance(v, bool),
          "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "str": lambda v: isinstance(v, str)}[kind]
    if not ok(value):
        raise TrainingError(f"config key {key}: {value!r} is not a valid {kind}")


def _coerce(key: str, value: Any) -> Any:
    kind = FIELD_TYPES[key]
    if isinstance(value, bool) and kind == "str" and {"true", "false"} <= set(ALLOWED[key].choices):
        return "true" if value else "false"
    if isinstance(value, str) and kind == "str" and {"true", "false"} <= set(ALLOWED[key].choices):
        value = {"1": "true", "yes": "true", "on": "true", "0": "false", "no": "false", "off": "false"}.get(
            value.strip().lower(), value.strip().lower())
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
