"""The training loop's speed work: compile auto, deferred loss reads, warm-up left out of tokens/s,
cheap best checkpoints, eval/ckpt timing, dtype auto, grad_accum under torchrun."""

import os

import pytest
import torch

from training import checkpoint, config
from training.errors import TrainingError
from training.model import GPT
from training.train import UNTIMED_STEPS, micro_steps, resolve_compile, resolve_dtype, train
from training_helpers import byte_ids, make_data, read_metrics, shakespeare, tiny_config

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    ids = byte_ids(shakespeare(12_000))
    return make_data(tmp_path_factory.mktemp("data"), ids[:10_000], ids[10_000:])


def test_compile_auto_is_on_for_cuda_only_and_true_or_false_force_it():
    assert config.Config().compile == "auto"
    assert resolve_compile("auto", CUDA) and not resolve_compile("auto", CPU)
    assert not resolve_compile("auto", torch.device("mps"))
    assert resolve_compile("true", CPU) and not resolve_compile("false", CUDA)


def test_compile_takes_toml_booleans_and_old_checkpoints_with_a_boolean(tmp_path):
    (tmp_path / "c.toml").write_text("compile = true\n")
    assert config.load(path=str(tmp_path / "c.toml")).compile == "true"
    assert tiny_config(compile="off").compile == "false"
    saved = tiny_config(vocab_size=257).to_dict()
    saved["compile"] = False  # as a checkpoint written before compile took "auto" holds it
    assert checkpoint.config_of({"config": saved}).compile == "false"


def test_the_first_steps_are_left_out_of_tokens_per_second(data, tmp_path):
    logged = []
    train(tiny_config(max_steps=6, log_interval=1, eval_interval=6), data, tmp_path / "run", log=logged.append)
    steps = [r for r in read_metrics(tmp_path / "run") if r["train_loss"] is not None]
    untimed = [r["step"] for r in steps if r["tokens_per_s"] is None]
    assert untimed == list(range(1, UNTIMED_STEPS + 1))
    assert all(r["tokens_per_s"] > 0 and r["steps_per_s"] > 0 for r in steps[UNTIMED_STEPS:])
    lines = [line for line in logged if line.startswith("step ") and "/6 |" in line]
    assert f"the first {UNTIMED_STEPS} steps (compilation, warm-up) are not timed" in lines[0]
    assert f"timed from step {UNTIMED_STEPS} (the first {UNTIMED_STEPS}: compilation, warm-up)" in lines[UNTIMED_STEPS]
    assert "eager" in logged[0]  # compile = auto on CPU


def test_the_loss_is_read_only_at_log_and_evaluation_steps(data, tmp_path, monkeypatch):
    forward, calls = GPT.forward, [0]

    def poisoned(self, idx, targets=None, cache=None):
        logits, loss = forward(self, idx, targets, cache)
        if self.training:
            calls[0] += 1
            if calls[0] == 3:
                loss = loss * float("inf")
        return logits, loss

    monkeypatch.setattr(GPT, "forward", poisoned)
    with pytest.raises(TrainingError, match=r"training loss is inf at step 3 \(checked between steps 1 and 10\); "
                                            r"stopped, no checkpoint was written yet"):
        train(tiny_config(max_steps=30, log_interval=10, eval_interval=20), data, tmp_path / "run")
    assert calls[0] == 10  # the steps ran on to the read at step 10, without a host sync each
    assert not (tmp_path / "run" / "ckpt_last.pt").exists()


def test_the_best_checkpoint_is_a_link_to_the_last_one_written_not_a_second_save(data, tmp_path, monkeypatch):
    saves = []
    real_save = checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda path, ckpt: (saves.append(path.name), real_save(path, ckpt)))
    train(tiny_config(max_steps=8, eval_interval=4, lr=1e-2), data, tmp_path / "run")
    assert saves == ["ckpt_last.pt", "ckpt_last.pt"]  # serialized once per evaluation
    last, best = tmp_path / "run" / "ckpt_last.pt", tmp_path / "run" / "ckpt_best.pt"
    assert checkpoint.load(best)["step"] == 8 and os.path.samefile(last, best)
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_without_hard_links_the_best_checkpoint_is_a_copy(data, tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    train(tiny_config(max_steps=4, eval_interval=4, lr=1e-2), data, tmp_path / "run")
    last, best = tmp_path / "run" / "ckpt_last.pt", tmp_path / "run" / "ckpt_best.pt"
    assert not os.path.samefile(last, best) and last.read_bytes() == best.read_bytes()
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_a_later_save_leaves_the_best_checkpoint_as_it_was(tmp_path):
    last, best = tmp_path / "ckpt_last.pt", tmp_path / "ckpt_best.pt"
    checkpoint.save(last, {"model": {}, "config": {}, "step": 1})
    checkpoint.link_or_copy(last, best)
    checkpoint.save(last, {"model": {}, "config": {}, "step": 2})
    assert torch.load(best, weights_only=True)["step"] == 1 and torch.load(last, weights_only=True)["step"] == 2


def test_evaluation_and_checkpoint_seconds_are_in_the_metrics_and_the_log(data, tmp_path):
    logged = []
    train(tiny_config(max_steps=8, eval_interval=4, log_interval=4), data, tmp_path / "run", log=logged.append)
    records = read_metrics(tmp_path / "run")
    assert all(r["eval_s"] is not None and r["ckpt_s"] is not None for r in records)
    evals = [r for r in records if r["val_loss"] is not None]
    assert [r["step"] for r in evals] == [0, 4, 8]
    assert evals[0]["eval_s"] > 0 and evals[0]["ckpt_s"] == 0  # no checkpoint at step 0
    assert evals[0]["eval_s"] < evals[1]["eval_s"] < evals[2]["eval_s"] and 0 < evals[1]["ckpt_s"] < evals[2]["ckpt_s"]
    assert any(line.startswith("step 4: val loss") and "| eval " in line and "s, ckpt " in line for line in logged)
    assert any(line.startswith("step 8/8 |") and "s, ckpt " in line and "s so far" in line for line in logged)


@pytest.mark.parametrize("capability,expected", [((7, 0), torch.float16), ((7, 5), torch.float16),
                                                 ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_dtype_auto_takes_bf16_only_where_the_gpu_has_it_in_hardware(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # true under emulation too
    assert resolve_dtype("auto", CUDA) == expected
    assert resolve_dtype("auto", CPU) == torch.float32


def test_grad_accum_is_the_accumulation_over_all_processes():
    assert micro_steps(40, 8) == 5 and micro_steps(2, 2) == 1 and micro_steps(3, 1) == 3
    with pytest.raises(TrainingError, match=r"grad_accum 3 is the accumulation over all 2 processes and must be a "
                                            r"multiple of 2 .* set grad_accum=4"):
        micro_steps(3, 2)


def test_under_torchrun_a_grad_accum_that_the_processes_cannot_share_is_refused_first(data, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # refused before the process group would be joined
    with pytest.raises(TrainingError, match="grad_accum 1 is the accumulation over all 2 processes"):
        train(tiny_config(), data, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_step_clock_splits_the_timed_steps_into_phases(data, tmp_path):
    from training.train import StepClock

    clock = StepClock(CPU)
    train(tiny_config(max_steps=8), data, tmp_path / "run", log=lambda *a: None, clock=clock)
    assert clock.steps == 8 - UNTIMED_STEPS
    assert set(clock.seconds) == {"data", "forward", "backward", "optimizer", "host"}
    assert all(clock.seconds[phase] > 0 for phase in ("data", "forward", "backward", "optimizer"))


def test_the_gpu_benchmark_runs_the_training_loop_on_a_cpu(tmp_path):
    import subprocess
    import sys

    from training_helpers import REPO

    out = tmp_path / "rows.json"
    r = subprocess.run([sys.executable, "benchmarks/train_gpu.py", "--device", "cpu", "--tiny", "--steps", "8",
                        "--profile-steps", "6", "--eval-interval", "4", "--eval-batches", "1", "--target-loss", "100",
                        "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| tinystories | auto (eager) | CPU" in r.stdout and "100.0: step 0, " in r.stdout  # reached by the evaluation before training
    import json

    (row,) = json.loads(out.read_text())
    assert row["tokens_per_s"] > 0 and row["mfu"] is None and row["profiled_steps"] == 6 - UNTIMED_STEPS
    assert all(row["step_ms"][phase] > 0 for phase in ("data", "forward", "backward", "optimizer"))


def test_compile_set_as_a_python_boolean_is_accepted():
    assert config.Config(compile=True).validate().compile == "true"
