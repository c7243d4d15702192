"""Experiments: every recipe at tiny scale on the shared corpora, the report over run folders,
its numbers against hand-computed cases, reuse, resume and determinism, bad input."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training_helpers import REPO, byte_tokenizer, make_data

from training import experiments, report

TINY_FILES = {
    "wikitext2": ["wikitext2=wikitext2_test.txt", "wikitext2.val=wikitext2_valid.txt"],
    "bookcorpus": ["bookcorpus=war_and_peace.txt"],
    "shakespeare_char": ["shakespeare_char=tinyshakespeare.txt"],
    "tinystories": ["tinystories=tinystories_pool_train.txt", "tinystories.val=tinystories_pool_valid.txt"],
    "owt": ["owt=webtext_pool.txt"],
}
RECIPE_DATA = {
    "wikitext2-vs-bookcorpus": ["wikitext2", "bookcorpus"],
    "wikitext2-vs-shakespeare-char": ["wikitext2", "shakespeare_char"],
    "tinystories": ["tinystories"],
    "owt": ["owt"],
    "lr-sweep": ["tinystories"],
    "batch-sweep": ["tinystories"],
    "ablations": ["tinystories"],
    "tokenizers": ["tinystories", "owt"],
}
TOKENIZER_PLOTS = ("bytes_per_token.png", "throughput.png", "vocab_token_lengths.png")


def from_files(data: Path, recipe: str) -> list[str]:
    out = []
    for key in RECIPE_DATA[recipe]:
        for pair in TINY_FILES[key]:
            name, _, file = pair.partition("=")
            out.append(f"{name}={data / 'corpora' / file}")
    return out


def seed_data(src: Path, dest: Path, keys) -> None:
    """Copies data sets prepared by an earlier recipe (prepared with the same options, so reused)."""
    for key in keys:
        if (src / "data" / key).is_dir() and not (dest / "data" / key).exists():
            shutil.copytree(src / "data" / key, dest / "data" / key)


@pytest.fixture(scope="module")
def tiny(data, tmp_path_factory) -> dict[str, tuple[Path, dict, list[str]]]:
    """Every recipe at tiny scale: recipe -> (DIR, summary, log lines). Data sets are prepared once."""
    root = tmp_path_factory.mktemp("recipes")
    done: dict[str, tuple[Path, dict, list[str]]] = {}
    for name in experiments.RECIPES:
        out = root / name
        for earlier, _, _ in done.values():
            seed_data(earlier, out, RECIPE_DATA[name])
        lines: list[str] = []
        summary = experiments.run_experiment(name, str(out), "tiny", from_files(data, name), log=lines.append)
        done[name] = (out, summary, lines)
    return done


@pytest.mark.parametrize("name", [r for r in RECIPE_DATA if r != "tokenizers"])
def test_every_training_recipe_writes_a_complete_report(tiny, name):
    out, summary, _ = tiny[name]
    plan = experiments.recipe(name, "tiny", {})
    assert set(summary["runs"]) == {r.name for r in plan.runs}
    text = (out / "report.md").read_text()
    for plot in report.PLOTS + report.DATA_PLOTS:
        if plot == "vocab_overlap.png" and len(RECIPE_DATA[name]) == 1:
            continue
        assert (out / "plots" / plot).stat().st_size > 1000, plot
        assert f"(plots/{plot})" in text
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["schema"] == 1
    for run, stats in on_disk["runs"].items():
        for key in report.RUN_KEYS:
            assert stats[key] is not None, (run, key)
        assert stats["steps"] == plan.runs[0].config["max_steps"] or name == "batch-sweep"
        assert math.isfinite(stats["final_val_loss"]) and stats["final_val_ppl"] == pytest.approx(
            math.exp(stats["final_val_loss"]))
        samples = on_disk["samples"][run]["samples"]
        assert len(samples) == 2 * len(report.TEMPERATURES)  # its data set's prompt and the shared one
        assert {s["temperature"] for s in samples} == set(report.TEMPERATURES)
        assert all(s["text"] for s in samples), samples
        assert f"### {run}" in text and samples[0]["text"].strip()[:20] in text
    assert set(on_disk["datasets"]) == set(RECIPE_DATA[name])
    for key, d in on_disk["datasets"].items():
        for k in report.DATASET_KEYS:
            assert d[k] is not None, (key, k)
        assert 0 < d["unique_tokens"] <= d["vocab_size"]
    assert on_disk["findings"] and on_disk["findings"][0] in text


def test_the_tokenizers_recipe_measures_compression_throughput_and_the_pile(tiny):
    out, summary, _ = tiny["tokenizers"]
    for plot in TOKENIZER_PLOTS + ("zipf.png", "token_lengths.png", "vocab_overlap.png"):
        assert (out / "plots" / plot).stat().st_size > 1000, plot
    toks = summary["tokenizers"]
    assert set(toks) == {"TinyStories-300", "OpenWebText-400", "gpt2 (tiktoken)"}
    for name, t in toks.items():
        assert set(t["bytes_per_token"]) == {"tinystories", "owt"}
        assert all(1.0 < v < 8.0 for v in t["bytes_per_token"].values())
        for mode, rate in t["throughput_bytes_per_s"].items():
            assert t["pile_seconds"][mode] == pytest.approx(825e9 / rate)
        assert len(t["longest_tokens"]) == 5
    # each trained tokenizer compresses its own domain better than the other's
    assert toks["TinyStories-300"]["bytes_per_token"]["tinystories"] > toks["TinyStories-300"]["bytes_per_token"]["owt"]
    assert toks["gpt2 (tiktoken)"]["vocab_size"] == 50256
    assert set(summary["datasets"]) == {"tinystories", "owt"}


def test_runs_of_different_tokenizers_are_compared_in_bits_per_byte(tiny):
    out, summary, _ = tiny["wikitext2-vs-shakespeare-char"]
    assert summary["mixed_tokenizers"] is True and summary["compare_by"] == "final_val_bpb"
    for name, stats in summary["runs"].items():
        d = summary["datasets"][stats["data"]]["splits"]["val"]
        assert stats["final_val_bpb"] == pytest.approx(
            stats["final_val_loss"] * d["tokens"] / (d["bytes"] * math.log(2)))
    assert "not comparable" in (out / "report.md").read_text()
    assert "bits/byte" in summary["findings"][1]
    same = tiny["wikitext2-vs-bookcorpus"][1]
    assert same["mixed_tokenizers"] is False and same["compare_by"] == "final_val_loss"
    assert "final_val_word_ppl" in same["runs"]["wikitext2"]


def test_bookcorpus_is_sampled_to_wikitexts_token_counts(tiny):
    summary = tiny["wikitext2-vs-bookcorpus"][1]
    wt = summary["datasets"]["wikitext2"]["splits"]
    book = summary["datasets"]["bookcorpus"]["splits"]
    for split in ("train", "val"):
        # prepare stops at the first document that reaches the count
        assert wt[split]["tokens"] <= book[split]["tokens"] < 1.5 * wt[split]["tokens"]


def test_the_ablations_match_swiglu_and_silu_parameter_counts(tiny):
    runs = tiny["ablations"][1]["runs"]
    assert runs["silu"]["params"] == runs["baseline"]["params"]
    assert runs["nope"]["params"] == runs["baseline"]["params"]
    assert runs["no-norm"]["params"] < runs["baseline"]["params"]
    swiglu, silu = experiments._d_ff_matched(128)
    assert 3 * swiglu == 2 * silu and abs(swiglu - 8 * 128 / 3) <= 1


def test_a_finished_recipe_is_reused_not_retrained(tiny, data):
    out, first, _ = tiny["tinystories"]
    lines: list[str] = []
    again = experiments.run_experiment("tinystories", str(out), "tiny", from_files(data, "tinystories"),
                                       log=lines.append)
    assert any(l.startswith("data tinystories: reused") for l in lines)
    assert any(l.startswith("run tinystories: reused") for l in lines)
    assert not any("training ->" in l for l in lines)
    assert again["runs"] == first["runs"]


def test_the_same_seed_gives_the_same_numbers(tiny, data, tmp_path):
    _, first, _ = tiny["lr-sweep"]
    second = experiments.run_experiment("lr-sweep", str(tmp_path / "again"), "tiny", from_files(data, "lr-sweep"),
                                        log=lambda line: None)
    for run in first["runs"]:
        for key in ("final_val_loss", "best_val_loss", "params", "steps"):
            assert second["runs"][run][key] == first["runs"][run][key], (run, key)
        assert second["samples"][run]["samples"] == first["samples"][run]["samples"]
    assert second["datasets"]["tinystories"]["zipf_exponent"] == first["datasets"]["tinystories"]["zipf_exponent"]


def test_an_interrupted_recipe_resumes_to_the_uninterrupted_numbers(tiny, data, tmp_path):
    ref_dir, ref, _ = tiny["ablations"]
    out = tmp_path / "ablations"
    seed_data(ref_dir, out, ["tinystories"])

    def interrupt(line: str) -> None:
        if "[post-norm] step 10: val loss" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        experiments.run_experiment("ablations", str(out), "tiny", from_files(data, "ablations"), log=interrupt)
    assert json.loads((out / "runs" / "post-norm" / "run.json").read_text())["status"] == "running"
    assert not (out / "runs" / "nope").exists()
    lines: list[str] = []
    resumed = experiments.run_experiment("ablations", str(out), "tiny", from_files(data, "ablations"),
                                         log=lines.append)
    assert "run baseline: reused (finished) " + str(out / "runs" / "baseline") in lines
    assert any(l.startswith("run post-norm: resuming") for l in lines)
    assert any("resuming from" in l and "at step 10" in l for l in lines)
    steps = [json.loads(l)["step"] for l in (out / "runs" / "post-norm" / "metrics.jsonl").read_text().splitlines()
             if "train_loss" in json.loads(l) and json.loads(l)["train_loss"] is not None]
    assert steps == sorted(set(steps))
    for run in ref["runs"]:
        assert resumed["runs"][run]["final_val_loss"] == ref["runs"][run]["final_val_loss"], run
        assert resumed["runs"][run]["best_val_loss"] == ref["runs"][run]["best_val_loss"], run


def test_zipf_exponent_and_coverage_of_a_hand_computed_case():
    # frequencies 12, 6, 4, 3 = 12 / rank: exponent 1; the hapax and the unused id are left out
    counts = np.array([0, 3, 12, 1, 6, 4])
    s, r = report.zipf_exponent(counts)
    assert s == pytest.approx(1.0) and r == 4
    assert report.coverage(counts, 6) == (5, pytest.approx(5 / 6))
    # two points: slope log(2/8) / log 2 = -2
    assert report.zipf_exponent(np.array([8, 2]))[0] == pytest.approx(2.0)
    # three points off a line: the least-squares slope
    x, y = np.log([1, 2, 3]), np.log([9, 3, 2])
    expected = -((x - x.mean()) @ (y - y.mean())) / ((x - x.mean()) @ (x - x.mean()))
    assert report.zipf_exponent(np.array([2, 9, 3]))[0] == pytest.approx(expected)
    assert math.isnan(report.zipf_exponent(np.array([5, 1, 1]))[0])
    assert report.bits_per_byte(2 * math.log(2), 10, 20) == pytest.approx(1.0)


def test_dataset_numbers_of_a_folder_without_dataset_json(tmp_path):
    # byte ids: "abab" + EOT + "aab" + EOT; train counts a:4 b:3 eot:2 of 257 ids
    tok = byte_tokenizer(tmp_path / "bytes.json")
    ids = list(b"abab") + [256] + list(b"aab") + [256]
    d = report.read_data(make_data(tmp_path / "d", ids * 10, ids * 10, tokenizer=tok), "d")
    stats = report.dataset_stats(d)
    assert stats["unique_tokens"] == 3 and stats["vocab_coverage"] == pytest.approx(3 / 257)
    assert stats["splits"]["train"] == {"documents": 20, "bytes": 70, "tokens": 90, "words": None}
    assert (stats["documents"], stats["bytes"], stats["tokens"]) == (40, 140, 180)
    assert stats["bytes_per_token"] == pytest.approx(70 / 90)
    assert [t["token"] for t in stats["top_tokens"]] == ["a", "b", "<|endoftext|>"]
    x, y = np.log([1, 2, 3]), np.log([40, 30, 20])
    assert stats["zipf_exponent"] == pytest.approx(-np.polyfit(x, y, 1)[0])


def test_report_of_any_runs_and_a_run_without_its_checkpoint(tiny, tmp_path):
    src = tiny["ablations"][0] / "runs"
    shutil.copytree(src / "baseline", tmp_path / "mine")
    (tmp_path / "mine" / "ckpt_best.pt").unlink()
    result = cli("report", str(src / "nope"), str(tmp_path / "mine"), "--out", str(tmp_path / "rep"))
    assert result.returncode == 0, result.stderr
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 1 and "no ckpt_best.pt" in warnings[0] and "mine" in warnings[0]
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "### mine" in text and "No samples: no " in text
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert set(summary["runs"]) == {"nope", "mine"}
    assert summary["samples"]["nope"]["samples"] and "missing" in summary["samples"]["mine"]


def test_sweep_trains_the_cross_product_and_reports(tiny, tmp_path):
    data_dir = tiny["tinystories"][0] / "data" / "tinystories"
    cfg = tmp_path / "tiny.toml"
    cfg.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in experiments.BASE["tiny"].items()))
    summary = experiments.run_sweep(str(data_dir), str(tmp_path / "sweep"), ["lr=0.001,0.01", "n_layers=1,2"],
                                    config_file=str(cfg), samples=False, log=lambda line: None)
    assert set(summary["runs"]) == {"lr-0.001_n_layers-1", "lr-0.001_n_layers-2", "lr-0.01_n_layers-1",
                                    "lr-0.01_n_layers-2"}
    assert summary["runs"]["lr-0.01_n_layers-2"]["params"] > summary["runs"]["lr-0.01_n_layers-1"]["params"]
    assert (tmp_path / "sweep" / "plots" / "convergence.png").is_file()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)


@pytest.mark.parametrize("args, fragment", [
    (["experiment", "no-such-recipe", "--out", "{tmp}/x"], "unknown recipe 'no-such-recipe'"),
    (["experiment", "tinystories", "--scale", "huge", "--out", "{tmp}/x"], "unknown scale 'huge'"),
    (["experiment", "tinystories", "--out", "{tmp}/x", "--from-files", "wikitext2=a.txt"],
     "recipe tinystories has no data set 'wikitext2'"),
    (["experiment", "tinystories", "--out", "{tmp}/x", "--set", "no_such_key=1"], "unknown config key 'no_such_key'"),
    (["sweep", "--data", "{tmp}", "--out", "{tmp}/x", "--preset", "tinystories", "--grid", "learning_rate=1,2"],
     "--grid learning_rate: unknown config key"),
    (["sweep", "--data", "{tmp}", "--out", "{tmp}/x", "--preset", "tinystories", "--grid", "lr="],
     "--grid lr: no values (an empty grid)"),
    (["sweep", "--data", "{tmp}", "--out", "{tmp}/x", "--preset", "tinystories"], "at least one --grid"),
    (["report", "{tmp}/nowhere", "--out", "{tmp}/x"], "no such run folder"),
    (["report", "{tmp}", "--out", "{tmp}/x"], "no metrics.jsonl"),
])
def test_bad_input_is_one_line(args, fragment, tmp_path):
    result = cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert not (tmp_path / "x").exists()


def test_a_recipe_without_local_files_tries_the_hub_and_fails_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "training", "experiment", "tinystories", "--out",
                             str(tmp_path / "x")], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Hugging Face Hub" in lines[0] and "--from-files" in lines[0], result.stderr
    assert not (tmp_path / "x" / "data" / "tinystories").exists()


def write_run(path: Path, val: dict, train: dict, **cfg) -> Path:
    """A run folder by hand: config.toml and metrics.jsonl with the keys the training package may
    add (an evaluation at step 0, val_accuracy, steps_per_s)."""
    from training.config import Config, to_toml

    path.mkdir(parents=True)
    (path / "config.toml").write_text(to_toml(Config(vocab_size=100, d_model=16, n_layers=1, n_heads=2,
                                                     context_length=8, **cfg)))
    records = []
    for step in sorted(set(val) | set(train)):
        if step in train:
            records.append({"step": step, "train_loss": train[step], "lr": 1e-3, "tokens_seen": 64 * step,
                            "elapsed_s": step / 10, "tokens_per_s": 640.0, "steps_per_s": 10.0})
        if step in val:
            records.append({"step": step, "val_loss": val[step], "val_ppl": math.exp(val[step]),
                            "val_accuracy": 0.1 + step / 100, "tokens_seen": 64 * step, "elapsed_s": step / 10})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_convergence_and_overfitting_are_computed_from_the_numbers(tmp_path):
    a = write_run(tmp_path / "a", {0: 6.0, 10: 4.0, 20: 3.5, 30: 3.6}, {10: 4.1, 20: 3.3, 30: 3.0}, lr=3e-3)
    b = write_run(tmp_path / "b", {0: 6.0, 10: 5.0, 20: 4.2, 30: 3.8}, {10: 5.1, 20: 4.3, 30: 3.9}, lr=1e-3)
    lines: list[str] = []
    summary = report.build_report([str(a), str(b)], str(tmp_path / "rep"), log=lines.append)
    # levels from the highest loss every run saw (6.0) to the worst best (3.8), in four steps
    assert summary["convergence"]["levels"] == pytest.approx([5.45, 4.9, 4.35, 3.8])
    assert summary["convergence"]["steps"] == {"a": [10, 10, 10, 20], "b": [10, 20, 20, 30]}
    assert summary["convergence"]["tokens"]["b"] == [640, 1280, 1280, 1920]
    ra, rb = summary["runs"]["a"], summary["runs"]["b"]
    assert (ra["best_val_loss"], ra["final_val_loss"], ra["stopped_improving_step"]) == (3.5, 3.6, 20)
    assert ra["val_rise_after_best"] == pytest.approx(0.1) and rb["stopped_improving_step"] is None
    assert (ra["final_val_accuracy"], ra["steps_per_s"], ra["steps"], ra["train_time_s"]) == (0.4, 10.0, 30, 3.0)
    from training.config import Config
    from training.model import param_count
    assert ra["params"] == param_count(Config(vocab_size=100, d_model=16, n_layers=1, n_heads=2, context_length=8))
    findings = summary["findings"]
    assert findings[0].startswith("a ended with the lowest validation loss (3.6000 nats/token); b the highest (3.8000")
    assert "a took 20 steps and b 30: 1.50x as many" in findings[1]
    assert any(f.startswith("a: validation loss stopped improving at step 20 (best 3.5000) and rose 0.1000 by step 30")
               and "gap was 0.600" in f for f in findings)
    assert any(f.startswith("b: validation loss was still at its lowest") for f in findings)
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "| a | ? | lr=0.003 |" in text and "| b | ? | lr=0.001 |" in text
    # no data folder and no checkpoint: one line each per run, the report still written
    assert sum("data folder is unknown" in l for l in lines) == 2 and sum("no ckpt_best.pt" in l for l in lines) == 2
    assert not (tmp_path / "rep" / "plots" / "zipf.png").exists()
