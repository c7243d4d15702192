"""The training loop: one process, or one per GPU under torchrun (DDP)."""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from training import checkpoint
from training.config import Config, to_toml
from training.data import Batches, Dataset, eval_starts, open_dataset, windows
from training.errors import TrainingError
from training.files import write_text_atomically
from training.model import GPT, flops_per_token, mfu, num_params, param_count
from training.perplexity import token_perplexity, word_perplexity, word_counts

METRIC_KEYS = ("step", "train_loss", "val_loss", "val_ppl", "val_accuracy", "val_word_ppl", "lr", "tokens_seen",
               "elapsed_s", "tokens_per_s", "steps_per_s", "mfu", "eval_s", "ckpt_s")
# Steps left out of tokens/s, MFU and ETA after a run starts or resumes: compilation and warm-up.
UNTIMED_STEPS = 3


# -- system ------------------------------------------------------------------------------


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError("device cuda was asked for, but no CUDA GPU is available")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if name == "mps" and not torch.backends.mps.is_available():
        raise TrainingError("device mps was asked for, but MPS is not available")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """auto: bf16 on GPUs that have it in hardware (compute capability 8.0 on: Ampere and later),
    else fp16 (with a GradScaler); fp32 on CPU and MPS. (torch.cuda.is_bf16_supported() is not
    asked: it also says yes where bf16 is emulated, slower than fp16.)"""
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    if dtype == torch.float16 and device.type != "cuda":
        raise TrainingError("dtype float16 needs a CUDA GPU; use bfloat16 or float32 here")
    return dtype


def resolve_compile(setting: str, device: torch.device) -> bool:
    """compile = auto: torch.compile on CUDA, where it pays for itself; not on CPU or MPS."""
    return device.type == "cuda" if setting == "auto" else setting == "true"


def micro_steps(grad_accum: int, world: int) -> int:
    """The micro-batches each process takes a step: grad_accum is the accumulation over all
    processes (as in nanoGPT), so a run keeps its tokens per step on any number of GPUs."""
    if grad_accum % world:
        suggestion = world * max(1, round(grad_accum / world))
        raise TrainingError(
            f"grad_accum {grad_accum} is the accumulation over all {world} processes and must be a multiple of "
            f"{world} (each process takes grad_accum / {world} micro-batches a step); set grad_accum={suggestion}"
        )
    return grad_accum // world


def autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def lr_at(step: int, cfg: Config) -> float:
    """CS336's get_lr_cosine_schedule(step, lr, min_lr, warmup_steps, decay_steps): step / T_w * lr
    while step < T_w (0 at step 0), cosine from lr to min_lr at T_c = decay_steps, then min_lr.

    `step` counts the updates already taken: the first update uses lr_at(0).
    """
    warmup, decay = cfg.warmup_steps, cfg.decay_steps()
    if step < warmup:
        return step / warmup * cfg.lr
    if step >= decay:
        return cfg.min_lr
    return cfg.min_lr + 0.5 * (1 + math.cos((step - warmup) / (decay - warmup) * math.pi)) * (cfg.lr - cfg.min_lr)


def make_optimizer(model: torch.nn.Module, cfg: Config, device: torch.device) -> torch.optim.AdamW:
    """AdamW. weight_decay_on = "matrices": no decay on norm gains and biases (nanoGPT);
    "all": decay on every parameter (CS336's AdamW)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.weight_decay_on == "all":
        groups = [{"params": params, "weight_decay": cfg.weight_decay}]
    else:
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8, fused=device.type == "cuda"
    )


class Dist:
    """Rank and world size; a single process is rank 0 of 1."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def start(self, device_name: str) -> None:
        if self.enabled and not dist.is_initialized():
            use_cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")

    def stop(self) -> None:
        if self.enabled and dist.is_initialized():
            # The DDP wrapper (in a reference cycle) holds the process group: collected here, so
            # that the group is torn down now and not while the interpreter exits (SIGABRT there).
            try:
                dist.barrier()
            finally:
                gc.collect()
                dist.destroy_process_group()

    def gather(self, obj: Any) -> list:
        if not self.enabled:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


def available_memory(device: torch.device) -> Optional[int]:
    """Bytes free for a new model: free GPU memory on CUDA, MemAvailable (else free pages) on CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_lower_bound(cfg: Config) -> int:
    """Bytes training `cfg` needs at the least: fp32 weights, gradients and AdamW's two moments
    (16 bytes a parameter), and one micro-batch's logits with their gradient."""
    return 16 * param_count(cfg) + 2 * 4 * cfg.batch_size * cfg.context_length * cfg.vocab_size


def check_memory(cfg: Config, device: torch.device) -> None:
    needed, available = memory_lower_bound(cfg), available_memory(device)
    if available is not None and needed > available:
        raise TrainingError(
            f"the model does not fit: {param_count(cfg):,} parameters need at least {needed / 2**30:,.1f} GiB "
            f"for weights, gradients, optimizer state and logits, and {device} has {available / 2**30:,.1f} GiB "
            f"available; make d_model, n_layers, vocab_size or batch_size smaller"
        )


# -- evaluation --------------------------------------------------------------------------


@dataclass
class Evaluation:
    loss: float  # mean next-token cross-entropy, nats
    accuracy: float  # share of next tokens that are the model's argmax
    total_nll: float  # summed over every predicted token
    tokens: int  # predicted tokens


@torch.no_grad()
def evaluate(model, data, starts: np.ndarray, cfg: Config, device, dtype, ddp: Dist,
             lengths: Optional[np.ndarray] = None) -> Evaluation:
    """Loss and accuracy over the validation windows at `starts`, each of context_length tokens
    (or of `lengths`), shared out among the ranks."""
    model.eval()
    total = torch.zeros(3, dtype=torch.float64, device=device)  # nll, correct, tokens
    if lengths is None:
        lengths = np.full(len(starts), cfg.context_length)
    mine = np.arange(len(starts))[ddp.rank :: ddp.world]
    for length in np.unique(lengths[mine]):
        same = mine[lengths[mine] == length]
        for i in range(0, len(same), cfg.batch_size):
            x, y = windows(data, starts[same[i : i + cfg.batch_size]], int(length), device)
            with autocast(device, dtype):
                logits, _ = model(x)
            logits = logits.float()
            total[0] += F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1), reduction="sum").double()
            total[1] += (logits.argmax(-1) == y).sum()
            total[2] += y.numel()
    if ddp.enabled:
        dist.all_reduce(total)
    model.train()
    nll, correct, tokens = total.tolist()
    return Evaluation(nll / tokens, correct / tokens, nll, int(tokens))


def whole_split_windows(data, context_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of windows that predict every token of the split after the first once."""
    starts = np.arange(0, data.num_tokens - 1, context_length)
    return starts, np.minimum(context_length, data.num_tokens - 1 - starts)


# -- the run -----------------------------------------------------------------------------


def resolve_vocab(cfg: Config, data: Dataset) -> None:
    if cfg.vocab_size == 0:
        cfg.vocab_size = data.vocab_size
    elif cfg.vocab_size < data.vocab_size:
        raise TrainingError(
            f"the model's vocab_size {cfg.vocab_size} is smaller than the data's vocab_size {data.vocab_size} "
            f"({data.train.path}); set vocab_size to at least {data.vocab_size}"
        )


def data_ref(data: Dataset) -> dict[str, Any]:
    return {"dtype": data.train.dtype, "vocab_size": data.vocab_size, "special_tokens": data.train.special_tokens}


class Metrics:
    def __init__(self, out: Path, start_step: int, enabled: bool):
        self.path, self.enabled = out / "metrics.jsonl", enabled
        if enabled and self.path.exists():
            # a resumed run replays the steps after its checkpoint: drop their old records
            kept = []
            for number, line in enumerate(self.path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                try:
                    record = json.loads(line) if line.strip() else None
                except json.JSONDecodeError:
                    record = None
                    print(f"warning: {self.path} line {number} is not a complete record (a write cut short?); "
                          "dropped", file=sys.stderr)
                if isinstance(record, dict) and isinstance(record.get("step", 0), int) \
                        and record.get("step", 0) <= start_step:
                    kept.append(line)
            write_text_atomically(self.path, "".join(l + "\n" for l in kept))
        self.loggers: list = []

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {key: record.get(key) for key in METRIC_KEYS}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        for log in self.loggers:
            log(record)


def attach_loggers(metrics: Metrics, cfg: Config, out: Path) -> None:
    if not metrics.enabled:
        return
    if cfg.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise TrainingError("tensorboard = true, but tensorboard is not installed (pip install tensorboard)") from None
        writer = SummaryWriter(str(out / "tensorboard"))
        metrics.loggers.append(
            lambda r: [writer.add_scalar(k, v, r["step"]) for k, v in r.items() if k != "step" and v is not None]
        )
    if cfg.wandb:
        try:
            import wandb
        except ImportError:
            raise TrainingError("wandb = true, but wandb is not installed (pip install wandb)") from None
        wandb.init(project=cfg.wandb_project, config=cfg.to_dict(), dir=str(out))
        metrics.loggers.append(lambda r: wandb.log({k: v for k, v in r.items() if v is not None}, step=r["step"]))


def fmt_time(seconds: float) -> str:
    seconds = int(seconds)
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class StepClock:
    """Seconds of the timed steps spent in each phase of a step, for benchmarks/train_gpu.py: the
    device is synchronized at every phase boundary, so a run timed this way runs slower."""

    PHASES = ("data", "forward", "backward", "optimizer", "host")

    def __init__(self, device: torch.device):
        self.device, self.seconds, self.steps, self.on = device, dict.fromkeys(self.PHASES, 0.0), 0, False
        self.mark = time.perf_counter()

    def tick(self, phase: Optional[str]) -> None:
        """Ends the phase running since the last tick (None: time that belongs to no step)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        if phase is not None and self.on:
            self.seconds[phase] += now - self.mark
        self.mark = now


def train(cfg: Config, data_dir: "str | os.PathLike[str]", out_dir: "str | os.PathLike[str]",
          resume: bool = False, log=print, clock: Optional[StepClock] = None) -> dict[str, Any]:
    """Trains, evaluates and checkpoints into `out_dir`; returns the last metrics.

    Raises TrainingError on bad input or a non-finite loss (the last good checkpoint stays).
    `clock` (benchmarks only) times the phases of the steps after the untimed warm-up.
    """
    ddp = Dist()
    micro_steps(cfg.grad_accum, ddp.world)
    ddp.start(cfg.device)
    try:
        return _train(cfg, Path(data_dir), Path(out_dir), resume, log if ddp.main else (lambda *a, **k: None), ddp,
                      clock)
    finally:
        ddp.stop()


def _train(cfg: Config, data_dir: Path, out: Path, resume: bool, log, ddp: Dist,
           clock: Optional[StepClock] = None) -> dict[str, Any]:
    data = open_dataset(data_dir, cfg.context_length)
    val_words = (word_counts(data_dir) or {}).get("val")
    resolve_vocab(cfg, data)
    cfg.validate()
    last_path, best_path = out / "ckpt_last.pt", out / "ckpt_best.pt"
    ckpt = None
    if resume:
        ckpt = checkpoint.load(last_path)
        checkpoint.require(ckpt, checkpoint.TRAINING_STATE, last_path)
        saved = ckpt["data"]
        if (saved["dtype"], saved["vocab_size"]) != (data.train.dtype, data.vocab_size):
            raise TrainingError(
                f"the data in {data_dir} ({data.train.dtype}, vocab {data.vocab_size}) is not the data of the "
                f"checkpoint ({saved['dtype']}, vocab {saved['vocab_size']})"
            )
        checkpoint.check_compatible(checkpoint.config_of(ckpt), cfg, last_path)
        if ckpt["step"] >= cfg.max_steps:
            log(f"{last_path} is already at max_steps {cfg.max_steps} (step {ckpt['step']}); "
                "raise --set max_steps to train longer")
            return {"step": ckpt["step"]}
    elif last_path.exists():
        raise TrainingError(f"{out} already holds a run (ckpt_last.pt); pass --resume to continue it or choose another --out")

    device = resolve_device(cfg.device, ddp.local_rank)
    dtype = resolve_dtype(cfg.dtype, device)
    check_memory(cfg, device)
    if ddp.main:
        out.mkdir(parents=True, exist_ok=True)
        for tmp in checkpoint.remove_stale_temp_files(out):
            print(f"warning: removed {tmp}, left by a checkpoint save that did not finish", file=sys.stderr)
        write_text_atomically(out / "config.toml", to_toml(cfg))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    raw_model = GPT(cfg).to(device)
    optimizer = make_optimizer(raw_model, cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    batches = Batches(data.train, cfg.batch_size, cfg.context_length, device, seed=cfg.seed + ddp.rank)
    torch.manual_seed(cfg.seed + 1 + ddp.rank)  # dropout differs between ranks
    step, best_val, elapsed, tokens_seen = 0, math.inf, 0.0, 0
    eval_s = ckpt_s = 0.0  # seconds spent evaluating and writing checkpoints, over the whole run
    if ckpt is not None:
        raw_model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        step, best_val, elapsed, tokens_seen = ckpt["step"], ckpt["best_val"], ckpt["elapsed_s"], ckpt["tokens_seen"]
        eval_s, ckpt_s = ckpt.get("eval_s", 0.0), ckpt.get("ckpt_s", 0.0)
        rngs = ckpt["rng"]
        if len(rngs) == ddp.world:
            mine = rngs[ddp.rank]
            batches.set_state(mine["sampler"])
            torch.set_rng_state(mine["torch"])
            if device.type == "cuda" and mine.get("cuda") is not None:
                torch.cuda.set_rng_state(mine["cuda"], device)
        elif ddp.main:
            print(f"warning: the checkpoint was written by {len(rngs)} processes, this run has {ddp.world}: "
                  "the data order starts afresh", file=sys.stderr)
        log(f"resuming from {last_path} at step {step}")
    model = raw_model
    compiled = resolve_compile(cfg.compile, device)
    if compiled:
        model = torch.compile(model)
    eval_model = model  # without DDP, whose forward may sync buffers: ranks evaluate different numbers of windows
    if ddp.enabled:
        model = DDP(model, device_ids=[ddp.local_rank] if device.type == "cuda" else None)

    val_starts = eval_starts(data.val, cfg.context_length, cfg.eval_batches * cfg.batch_size)
    micro = micro_steps(cfg.grad_accum, ddp.world)
    tokens_per_step = cfg.batch_size * cfg.context_length * micro * ddp.world
    metrics = Metrics(out, step, ddp.main)
    attach_loggers(metrics, cfg, out)
    accum = f"grad_accum {cfg.grad_accum} = {micro} per process; " if ddp.enabled else ""
    log(f"model: {num_params(raw_model):,} parameters, {flops_per_token(cfg) / 1e6:.1f} MFLOPs per token; "
        f"device {device}, {str(dtype).replace('torch.', '')}, {'compiled' if compiled else 'eager'}; "
        f"{ddp.world} process(es); {accum}{tokens_per_step:,} tokens per step; "
        f"data {data.train.num_tokens:,} train / {data.val.num_tokens:,} val tokens")

    def save(path: Path) -> None:
        rngs = ddp.gather({
            "sampler": batches.state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        })
        if ddp.main:
            checkpoint.save(path, {
                "model": checkpoint.clean_state_dict(raw_model.state_dict()),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "step": step, "best_val": best_val, "elapsed_s": elapsed, "tokens_seen": tokens_seen,
                "eval_s": eval_s, "ckpt_s": ckpt_s,
                "config": cfg.to_dict(), "rng": rngs, "data": data_ref(data),
                "tokenizer": data.train.tokenizer,
            })

    last_saved: Optional[int] = ckpt["step"] if ckpt is not None else None
    record: dict[str, Any] = {}

    def run_evaluation(lr: float) -> tuple[dict[str, Any], str]:
        result = evaluate(eval_model, data.val, val_starts, cfg, device, dtype, ddp)
        eval_record = {"step": step, "val_loss": result.loss, "val_ppl": token_perplexity(result.loss),
                       "val_accuracy": result.accuracy, "lr": lr, "tokens_seen": tokens_seen,
                       "elapsed_s": round(elapsed, 3)}
        text = (f"step {step}: val loss {result.loss:.4f} | val ppl {eval_record['val_ppl']:.2f} | "
                f"val acc {100 * result.accuracy:.1f}%")
        if val_words is not None and step == cfg.max_steps:
            starts, lengths = whole_split_windows(data.val, cfg.context_length)
            whole = evaluate(eval_model, data.val, starts, cfg, device, dtype, ddp, lengths)
            eval_record["val_word_ppl"] = word_perplexity(whole.total_nll, val_words)
            text += f" | val word ppl {eval_record['val_word_ppl']:.2f} ({val_words:,} words, the whole split)"
        return eval_record, text

    if step == 0:
        t_eval = time.perf_counter()
        record, text = run_evaluation(lr_at(0, cfg))
        eval_s += time.perf_counter() - t_eval
        metrics.write({**record, "eval_s": round(eval_s, 3), "ckpt_s": round(ckpt_s, 3)})
        log(text)

    # Each step's loss stays on the device until it is read, every log_interval steps and before
    # every checkpoint: one transfer (and one all-reduce) for all the steps since the last read.
    unread: list[torch.Tensor] = []

    def read_losses() -> list[float]:
        nonlocal unread
        if not unread:
            return []
        values = torch.stack(unread).double()
        if ddp.enabled:
            dist.all_reduce(values)
            values /= ddp.world
        losses, first = values.tolist(), step - len(unread) + 1
        unread = []
        for at, value in enumerate(losses, first):
            if not math.isfinite(value):
                kept = f"the last good checkpoint is {last_path} (step {last_saved})" if last_saved is not None \
                    else "no checkpoint was written yet"
                raise TrainingError(f"training loss is {value} at step {at} (checked between steps {first} and "
                                    f"{step}); stopped, {kept}")
        return losses

    window_losses: list[float] = []
    timed_from = step + UNTIMED_STEPS  # the step after which tokens/s is timed
    t_window: Optional[float] = None
    steps_in_window, first_window = 0, True
    tick = clock.tick if clock is not None else (lambda phase: None)
    t_mark = time.perf_counter()
    model.train()
    tick(None)
    while step < cfg.max_steps:
        if clock is not None:
            clock.on = step >= timed_from
            clock.steps += clock.on
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_loss = torch.zeros((), device=device)
        for m in range(micro):
            x, y = batches.next()
            tick("data")
            sync = m == micro - 1
            with (model.no_sync() if ddp.enabled and not sync else contextlib.nullcontext()):
                with autocast(device, dtype):
                    _, loss = model(x, y)
                tick("forward")
                scaler.scale(loss / micro).backward()
            step_loss += loss.detach() / micro
            tick("backward")
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        tick("optimizer")
        unread.append(step_loss)
        step += 1
        tokens_seen += tokens_per_step
        log_now = step % cfg.log_interval == 0 or step == cfg.max_steps
        eval_now = step % cfg.eval_interval == 0 or step == cfg.max_steps
        if log_now or eval_now:
            window_losses.extend(read_losses())  # before any checkpoint: a non-finite loss is never saved
        if step == timed_from and device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        elapsed += now - t_mark
        t_mark = now
        if step == timed_from:
            t_window, steps_in_window = now, 0
        elif step > timed_from:
            steps_in_window += 1

        if log_now:
            tok_s = steps_s = util = None
            if t_window is not None and steps_in_window > 0:
                seconds = max(now - t_window, 1e-9)
                tok_s, steps_s = steps_in_window * tokens_per_step / seconds, steps_in_window / seconds
                util = mfu(cfg, tok_s, device, ddp.world)
            record = {"step": step, "train_loss": sum(window_losses) / len(window_losses), "lr": lr,
                      "tokens_seen": tokens_seen, "elapsed_s": round(elapsed, 3),
                      "tokens_per_s": None if tok_s is None else round(tok_s, 1),
                      "steps_per_s": None if steps_s is None else round(steps_s, 3), "mfu": util,
                      "eval_s": round(eval_s, 3), "ckpt_s": round(ckpt_s, 3)}
            metrics.write(record)
            if tok_s is None:
                speed = (f"tok/s n/a | steps/s n/a | mfu n/a | eta n/a | the first {UNTIMED_STEPS} steps "
                         "(compilation, warm-up) are not timed")
            else:
                speed = (f"{tok_s:,.0f} tok/s | {steps_s:.2f} steps/s | "
                         f"mfu {'n/a' if util is None else f'{100 * util:.1f}%'} | "
                         f"eta {fmt_time((cfg.max_steps - step) / steps_s)}")
                if first_window:
                    speed += f" | timed from step {timed_from} (the first {UNTIMED_STEPS}: compilation, warm-up)"
                    first_window = False
            log(f"step {step}/{cfg.max_steps} | loss {record['train_loss']:.4f} | lr {lr:.2e} | {speed} | "
                f"eval {eval_s:.1f}s, ckpt {ckpt_s:.1f}s so far")
            window_losses = []
            if t_window is not None:
                t_window, steps_in_window = time.perf_counter(), 0

        if eval_now:
            t_eval = time.perf_counter()
            eval_record, text = run_evaluation(lr)
            t_ckpt = time.perf_counter()
            eval_s += t_ckpt - t_eval
            val_loss = eval_record["val_loss"]
            is_best = val_loss < best_val
            best_val = min(best_val, val_loss)
            save(last_path)
            if is_best and ddp.main:
                checkpoint.link_or_copy(last_path, best_path)  # the file just written, not serialized again
            last_saved = step
            done = time.perf_counter()
            ckpt_s += done - t_ckpt
            eval_record.update(eval_s=round(eval_s, 3), ckpt_s=round(ckpt_s, 3))
            metrics.write(eval_record)
            record.update(eval_record)
            log(f"{text}{' (best)' if is_best else ''} | saved {last_path.name} | "
                f"eval {t_ckpt - t_eval:.2f}s, ckpt {done - t_ckpt:.2f}s")
            t_mark = done  # evaluation and checkpoints are not training time
            if t_window is not None:
                t_window += done - t_eval
        tick("host" if not eval_now else None)

    if ddp.main:
        try:
            from training.plot import plot

            plot(out)
        except Exception as e:  # a missing plot must not fail a finished run
            print(f"warning: could not plot the loss curves: {e}", file=sys.stderr)
    return record
