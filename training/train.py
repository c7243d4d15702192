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
from training.model import GPT, flops_per_token, mfu, num_params, param_count
from training.perplexity import token_perplexity, word_perplexity, word_counts

METRIC_KEYS = ("step", "train_loss", "val_loss", "val_ppl", "val_accuracy", "val_word_ppl", "lr", "tokens_seen",
               "elapsed_s", "tokens_per_s", "steps_per_s", "mfu")


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
    """auto: bf16 on GPUs that have it, else fp16 (with a GradScaler); fp32 on CPU and MPS."""
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    if dtype == torch.float16 and device.type != "cuda":
        raise TrainingError("dtype float16 needs a CUDA GPU; use bfloat16 or float32 here")
    return dtype


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

    def mean(self, value: float, device: torch.device) -> float:
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.item() / self.world

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


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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
            write_atomic(self.path, "".join(l + "\n" for l in kept))
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


def train(cfg: Config, data_dir: "str | os.PathLike[str]", out_dir: "str | os.PathLike[str]",
          resume: bool = False, log=print) -> dict[str, Any]:
    """Trains, evaluates and checkpoints into `out_dir`; returns the last metrics.

    Raises TrainingError on bad input or a non-finite loss (the last good checkpoint stays).
    """
    ddp = Dist()
    ddp.start(cfg.device)
    try:
        return _train(cfg, Path(data_dir), Path(out_dir), resume, log if ddp.main else (lambda *a, **k: None), ddp)
    finally:
        ddp.stop()


def _train(cfg: Config, data_dir: Path, out: Path, resume: bool, log, ddp: Dist) -> dict[str, Any]:
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
        write_atomic(out / "config.toml", to_toml(cfg))
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
    if ckpt is not None:
        raw_model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        step, best_val, elapsed, tokens_seen = ckpt["step"], ckpt["best_val"], ckpt["elapsed_s"], ckpt["tokens_seen"]
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
    if cfg.compile:
        model = torch.compile(model)
    eval_model = model  # without DDP, whose forward may sync buffers: ranks evaluate different numbers of windows
    if ddp.enabled:
        model = DDP(model, device_ids=[ddp.local_rank] if device.type == "cuda" else None)

    val_starts = eval_starts(data.val, cfg.context_length, cfg.eval_batches * cfg.batch_size)
    tokens_per_step = cfg.batch_size * cfg.context_length * cfg.grad_accum * ddp.world
    metrics = Metrics(out, step, ddp.main)
    attach_loggers(metrics, cfg, out)
    log(f"model: {num_params(raw_model):,} parameters, {flops_per_token(cfg) / 1e6:.1f} MFLOPs per token; "
        f"device {device}, {str(dtype).replace('torch.', '')}; {ddp.world} process(es); "
        f"{tokens_per_step:,} tokens per step; data {data.train.num_tokens:,} train / {data.val.num_tokens:,} val tokens")

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
        metrics.write(eval_record)
        return eval_record, text

    if step == 0:
        record, text = run_evaluation(lr_at(0, cfg))
        log(text)
    window_losses: list[float] = []
    t_window, steps_in_window = time.perf_counter(), 0
    model.train()
    while step < cfg.max_steps:
        t0 = time.perf_counter()
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_loss = torch.zeros((), device=device)
        for micro in range(cfg.grad_accum):
            x, y = batches.next()
            sync = micro == cfg.grad_accum - 1
            with (model.no_sync() if ddp.enabled and not sync else contextlib.nullcontext()):
                with autocast(device, dtype):
                    _, loss = model(x, y)
                scaler.scale(loss / cfg.grad_accum).backward()
            step_loss += loss.detach() / cfg.grad_accum
        loss_value = ddp.mean(step_loss.item(), device)
        if not math.isfinite(loss_value):
            kept = f"the last good checkpoint is {last_path} (step {last_saved})" if last_saved is not None \
                else "no checkpoint was written yet"
            raise TrainingError(f"training loss is {loss_value} at step {step + 1}; stopped, {kept}")
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += tokens_per_step
        elapsed += time.perf_counter() - t0
        window_losses.append(loss_value)
        steps_in_window += 1

        if step % cfg.log_interval == 0 or step == cfg.max_steps:
            now = time.perf_counter()
            seconds = max(now - t_window, 1e-9)
            tok_s, steps_s = steps_in_window * tokens_per_step / seconds, steps_in_window / seconds
            util = mfu(cfg, tok_s, device, ddp.world)
            record = {"step": step, "train_loss": sum(window_losses) / len(window_losses), "lr": lr,
                      "tokens_seen": tokens_seen, "elapsed_s": round(elapsed, 3), "tokens_per_s": round(tok_s, 1),
                      "steps_per_s": round(steps_s, 3), "mfu": util}
            metrics.write(record)
            eta = (cfg.max_steps - step) / steps_s
            log(f"step {step}/{cfg.max_steps} | loss {record['train_loss']:.4f} | lr {lr:.2e} | "
                f"{tok_s:,.0f} tok/s | {steps_s:.2f} steps/s | mfu {'n/a' if util is None else f'{100 * util:.1f}%'} | "
                f"eta {fmt_time(eta)}")
            window_losses, t_window, steps_in_window = [], time.perf_counter(), 0

        if step % cfg.eval_interval == 0 or step == cfg.max_steps:
            t_eval = time.perf_counter()
            eval_record, text = run_evaluation(lr)
            record.update(eval_record)
            val_loss = eval_record["val_loss"]
            is_best = val_loss < best_val
            best_val = min(best_val, val_loss)
            save(last_path)
            if is_best:
                save(best_path)
            last_saved = step
            log(f"{text}{' (best)' if is_best else ''} | saved {last_path.name}")
            t_window += time.perf_counter() - t_eval  # evaluation time is not training throughput

    if ddp.main:
        try:
            from training.plot import plot

            plot(out)
        except Exception as e:  # a missing plot must not fail a finished run
            print(f"warning: could not plot the loss curves: {e}", file=sys.stderr)
    return record
