"""`python -m training prepare`: data sets from local files and through `datasets` offline,
the character tokenizer, and `pybpe encode --format jsonl`."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, run_pybpe
from training_helpers import REPO, cli, sets

import pybpe
from pybpe.chartok import CharTokenizer, UnknownCharacterError
from training import datasets as registry
from training.errors import TrainingError
from training.prepare import EOT, Options, documents, prepare, txt_documents

OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


def corpus(data: Path, name: str) -> str:
    return str(data / "corpora" / name)


def run(out: Path, name: str, *files: str, val_files=(), **kw) -> dict:
    """prepare() in this process, as `python -m training prepare NAME --from-files FILES ...`."""
    return prepare(Options(name=name, out=str(out), from_files=list(files), val_files=list(val_files),
                           progress=False, **kw))


def ids(path: Path) -> np.ndarray:
    meta = json.loads(Path(f"{path}.json").read_text())
    return np.fromfile(path, dtype=np.dtype(meta["dtype"]).newbyteorder("<"))


def split_docs(arr: np.ndarray, eot: int) -> list[np.ndarray]:
    bounds = np.flatnonzero(arr == eot)
    assert len(bounds) and bounds[-1] == len(arr) - 1, "every document ends with end-of-text"
    return np.split(arr[:-1], bounds[:-1] + 1) if len(bounds) > 1 else [arr[:-1]]


def doc_texts(out: Path, split: str) -> list[str]:
    tok = pybpe.Tokenizer.load(out / "tokenizer.json")
    text = tok.decode(ids(out / f"{split}.bin"))
    assert text.endswith(EOT)
    return text[: -len(EOT)].split(EOT)


def prepared_files(out: Path) -> set[str]:
    return {p.name for p in out.iterdir()}


def check_outputs(out: Path, report: dict) -> None:
    """The files a prepared folder holds, and that dataset.json agrees with them."""
    tok_file = report["tokenizer"]["file"]
    assert prepared_files(out) == {"train.bin", "train.bin.json", "val.bin", "val.bin.json", "dataset.json", tok_file}
    saved = json.loads((out / "dataset.json").read_text())
    assert saved["splits"] == report["splits"]
    assert saved["words"] == {"train": report["splits"]["train"]["words"], "val": report["splits"]["val"]["words"]}
    for split in ("train", "val"):
        meta = json.loads((out / f"{split}.bin.json").read_text())
        assert meta["format"] == "pybpe-tokens" and meta["dtype"] == saved["dtype"]
        assert meta["num_tokens"] == saved["splits"][split]["tokens"] == len(ids(out / f"{split}.bin"))
        assert meta["tokenizer"]["path"] == str((out / tok_file).resolve())
        assert meta["vocab_size"] == saved["tokenizer"]["vocab_size"]
        assert saved["splits"][split]["documents"] > 0


# -- each data set through --from-files --------------------------------------------------


def test_tinystories_eot_files_with_val_files_and_a_trained_tokenizer(data, tmp_path):
    out = tmp_path / "ts"
    report = run(out, "tinystories", corpus(data, "tinystories_pool_train.txt"),
                 val_files=[corpus(data, "tinystories_pool_valid.txt")], tokenizer="train:300")
    check_outputs(out, report)
    assert report["splits"]["train"]["documents"] == 4709  # SOURCES.md: the pool's stories
    assert report["splits"]["val"]["documents"] == 802
    assert report["tokenizer"]["vocab_size"] == 300
    assert report["val_from"] == "--val-files"
    files = report["source"]["files"]
    assert files["train"][0]["bytes"] == 4037529 and files["train"][0]["sha256"].startswith("2d66c681b9847e2c")
    # The documents are the stories of the file, whitespace around them removed.
    stories = [s.strip() for s in Path(corpus(data, "tinystories_pool_valid.txt")).read_text().split(EOT) if s.strip()]
    assert doc_texts(out, "val") == stories


def test_wikitext_documents_are_articles_and_keep_the_raw_text(data, tmp_path):
    out = tmp_path / "wt"
    report = run(out, "wikitext2", corpus(data, "wikitext2_test.txt"), val_files=[corpus(data, "wikitext2_valid.txt")])
    check_outputs(out, report)
    # WikiText-2's test and validation splits hold 60 articles each; an equation line
    # " = 1 <unk> / s ... = " inside a paragraph does not start one.
    assert report["splits"]["train"]["documents"] == 60 and report["splits"]["val"]["documents"] == 60
    assert report["tokenizer"]["spec"] == "gpt2" and report["tokenizer"]["vocab_size"] == 50257
    articles = doc_texts(out, "train")
    assert "".join(articles) == Path(corpus(data, "wikitext2_test.txt")).read_text()
    assert all(a.lstrip(" \n").startswith("= ") and not a.lstrip(" \n").startswith("= =") for a in articles)
    raw_words = len(Path(corpus(data, "wikitext2_valid.txt")).read_bytes().split())
    assert report["words"]["val"] == raw_words


def test_wikitext103_reads_the_same_layout(data, tmp_path):
    report = run(tmp_path / "w103", "wikitext103", corpus(data, "wikitext2_valid.txt"),
                 val_files=[corpus(data, "wikitext2_test.txt")])
    assert report["splits"]["train"]["documents"] == 60


def test_owt_holds_out_whole_documents(data, tmp_path):
    out = tmp_path / "owt"
    report = run(out, "owt", corpus(data, "webtext_pool.txt"), tokenizer="train:300", val_fraction=0.05)
    check_outputs(out, report)
    train, val = doc_texts(out, "train"), doc_texts(out, "val")
    source = [d.strip() for d in Path(corpus(data, "webtext_pool.txt")).read_text().split(EOT) if d.strip()]
    assert len(source) == 10443
    # Every document lands whole in exactly one split, in the file's order.
    assert sorted(train + val) == sorted(source)
    assert not set(train) & set(val)
    assert 0.03 < len(val) / len(source) < 0.07
    assert report["val_from"].startswith("held out")


def test_bookcorpus_lines_make_documents_and_max_tokens_stops_at_a_document_end(data, tmp_path):
    out = tmp_path / "bc"
    report = run(out, "bookcorpus", corpus(data, "war_and_peace.txt"), max_tokens=40_000, val_tokens=5_000)
    check_outputs(out, report)
    eot = report["tokenizer"]["special_tokens"][EOT]
    train = split_docs(ids(out / "train.bin"), eot)
    total = report["splits"]["train"]["tokens"]
    assert total >= 40_000 and total - (len(train[-1]) + 1) < 40_000
    val = split_docs(ids(out / "val.bin"), eot)
    assert report["splits"]["val"]["tokens"] >= 5_000 > report["splits"]["val"]["tokens"] - (len(val[-1]) + 1)
    # A document is LINES_PER_DOCUMENT lines of the book.
    tok = pybpe.Tokenizer.load(out / "tokenizer.json")
    assert all(tok.decode(d).count("\n") == registry.LINES_PER_DOCUMENT for d in train)
    assert not {tok.decode(d) for d in train} & {tok.decode(d) for d in val}


def test_shakespeare_char_splits_90_10_by_characters_as_nanogpt(data, tmp_path):
    out = tmp_path / "sc"
    report = run(out, "shakespeare_char", corpus(data, "tinyshakespeare.txt"))
    check_outputs(out, report)
    text = Path(corpus(data, "tinyshakespeare.txt")).read_text()
    n = len(text)
    assert report["tokenizer"] == {**report["tokenizer"], "file": "chars.json", "vocab_size": 65, "special_tokens": {}}
    assert report["splits"]["train"]["tokens"] == int(n * 0.9) == 1_003_854
    assert report["splits"]["val"]["tokens"] == n - int(n * 0.9)
    chars = sorted(set(text))
    train = ids(out / "train.bin")
    assert train.dtype == np.uint16
    assert "".join(chars[i] for i in train[:200]) == text[:200]
    tok = CharTokenizer.load(out / "chars.json")
    assert tok.decode(ids(out / "val.bin")) == text[int(n * 0.9):]


def test_text_reads_local_files_only(data, tmp_path):
    out = tmp_path / "tx"
    report = run(out, "text", corpus(data, "tinystories_pool_valid.txt"), tokenizer="train:300")
    check_outputs(out, report)
    assert report["splits"]["train"]["documents"] + report["splits"]["val"]["documents"] == 802


def test_a_txt_without_separators_is_cut_at_blank_lines(tmp_path):
    text = tmp_path / "paras.txt"
    text.write_text("one\ntwo\n\nthree\n \nfour\n\n\nfive\n")
    assert list(documents(registry.get("text"), txt_documents(str(text)))) == ["one\ntwo", "three", "four", "five"]


# -- the `datasets` loader path, offline ------------------------------------------------


def write_parquet(path: Path, texts: list[str], field: str = "text") -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({field: texts}), path)


def hub_rows_of_wikitext(path: str) -> list[str]:
    """The rows Salesforce/wikitext holds for a raw file: one per line, blank lines as ""."""
    return [line if line.strip() else "" for line in Path(path).read_text().splitlines(keepends=True)]


def test_the_hub_path_reads_a_hub_layout_through_datasets_to_the_same_ids_as_the_txt(data, tmp_path, monkeypatch):
    # A folder laid out as Salesforce/wikitext (a config of parquet files per split) stands in
    # for the Hub: datasets.load_dataset(folder, "wikitext-2-raw-v1", split=...) reads it.
    repo = tmp_path / "wikitext_repo"
    config = "wikitext-2-raw-v1"
    write_parquet(repo / config / "train-00000-of-00001.parquet", hub_rows_of_wikitext(corpus(data, "wikitext2_test.txt")))
    write_parquet(repo / config / "validation-00000-of-00001.parquet",
                  hub_rows_of_wikitext(corpus(data, "wikitext2_valid.txt")))
    (repo / "README.md").write_text(
        f"---\nconfigs:\n- config_name: {config}\n  data_files:\n  - split: train\n    path: {config}/train-*\n"
        f"  - split: validation\n    path: {config}/validation-*\n---\n")
    spec = registry.get("wikitext2")
    assert spec.hub_id == "Salesforce/wikitext" and spec.config == config
    monkeypatch.setitem(registry.REGISTRY, "wikitext2", dataclasses.replace(spec, hub_id=str(repo), streaming=True))
    hub = prepare(Options(name="wikitext2", out=str(tmp_path / "hub"), progress=False))
    local = run(tmp_path / "local", "wikitext2", corpus(data, "wikitext2_test.txt"),
                val_files=[corpus(data, "wikitext2_valid.txt")])
    assert hub["source"]["hub"]["id"] == str(repo) and hub["val_from"] == "the 'validation' split"
    assert hub["splits"] == local["splits"]
    for split in ("train.bin", "val.bin"):
        assert (tmp_path / "hub" / split).read_bytes() == (tmp_path / "local" / split).read_bytes()


def test_jsonl_and_parquet_files_give_the_ids_of_the_txt(data, tmp_path):
    source = corpus(data, "tinystories_pool_valid.txt")
    stories = [s.strip() for s in Path(source).read_text().split(EOT) if s.strip()]
    (tmp_path / "s.jsonl").write_text("".join(json.dumps({"text": s, "id": i}) + "\n" for i, s in enumerate(stories)))
    write_parquet(tmp_path / "s.parquet", stories)
    outs = {}
    for name, path in (("txt", source), ("jsonl", str(tmp_path / "s.jsonl")), ("parquet", str(tmp_path / "s.parquet"))):
        outs[name] = tmp_path / name
        run(outs[name], "tinystories", path, tokenizer="gpt2", val_fraction=0.1)
    for split in ("train.bin", "val.bin"):
        assert (outs["txt"] / split).read_bytes() == (outs["jsonl"] / split).read_bytes() \
            == (outs["parquet"] / split).read_bytes()


# -- determinism ---------------------------------------------------------------------


def without_command(path: Path) -> dict:
    report = json.loads(path.read_text())
    report.pop("command")
    return report


def test_the_same_output_for_any_threads_and_for_a_repeated_run(data, tmp_path):
    outs = []
    for i, threads in enumerate((1, 2, 2)):
        out = tmp_path / f"run{i}"
        report = run(out, "owt", corpus(data, "webtext_pool.txt"), tokenizer="train:400", max_tokens=60_000,
                     val_fraction=0.02, seed=7, threads=threads)
        assert 60_000 <= report["splits"]["train"]["tokens"] < 70_000
        outs.append(out)
    for out in outs[1:]:
        for name in ("train.bin", "val.bin", "tokenizer.json"):
            assert (out / name).read_bytes() == (outs[0] / name).read_bytes(), name
        assert without_command(out / "dataset.json") == without_command(outs[0] / "dataset.json")


def test_the_seed_chooses_the_sample(data, tmp_path):
    for seed in (1, 2):
        run(tmp_path / f"s{seed}", "bookcorpus", corpus(data, "war_and_peace.txt"), max_tokens=20_000, seed=seed)
    assert (tmp_path / "s1" / "train.bin").read_bytes() != (tmp_path / "s2" / "train.bin").read_bytes()


# -- the character tokenizer -----------------------------------------------------------


def test_char_tokenizer_round_trips_and_names_an_unknown_character(tmp_path):
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
    tok = CharTokenizer.from_text(text)
    assert tok.vocab_size == len(set(text)) and tok.chars == "".join(sorted(set(text)))
    ids_ = tok.encode(text)
    assert ids_ == [sorted(set(text)).index(c) for c in text]
    assert tok.decode(ids_) == text
    assert tok.encode_to_numpy(text).tolist() == ids_
    tok.save(tmp_path / "chars.json")
    again = CharTokenizer.load(tmp_path / "chars.json")
    assert again.chars == tok.chars and again.encode(text) == ids_
    with pytest.raises(UnknownCharacterError, match=r"'Z' \(U\+005A\)"):
        tok.encode("Zebra")
    with pytest.raises(UnknownCharacterError, match=r"'é'"):
        tok.encode_to_numpy("caf\u00e9")
    with_eot = CharTokenizer.from_text(text + EOT + text, [EOT])
    assert with_eot.special_tokens == {EOT: len(set(text))}
    assert with_eot.encode("Fi" + EOT, allowed_special="all")[-1] == len(set(text))


def test_pybpe_info_and_decode_read_a_character_vocabulary(data, tmp_path):
    out = tmp_path / "sc"
    run(out, "shakespeare_char", corpus(data, "tinyshakespeare.txt"))
    info = run_pybpe("info", out / "chars.json")
    assert info.returncode == 0 and "65" in info.stdout.decode() and "character-level" in info.stdout.decode()
    decoded = run_pybpe("decode", "-t", out / "chars.json", out / "val.bin", "--range", ":40")
    assert decoded.returncode == 0
    text = Path(corpus(data, "tinyshakespeare.txt")).read_text()
    assert decoded.stdout.decode() == text[int(len(text) * 0.9):][:40]


def test_a_tiny_model_trains_on_character_data_and_samples_text(data, tmp_path):
    out = tmp_path / "sc"
    run(out, "shakespeare_char", corpus(data, "tinyshakespeare.txt"))
    runs = tmp_path / "run"
    trained = cli("train", *sets(max_steps=4, eval_interval=4), "--data", str(out), "--out", str(runs))
    assert trained.returncode == 0, trained.stderr
    metrics = [json.loads(l) for l in (runs / "metrics.jsonl").read_text().splitlines() if l.strip()]
    assert any("val_loss" in m for m in metrics)
    sampled = cli("generate", "--ckpt", str(runs / "ckpt_last.pt"), "--prompt", "ROMEO:", "--max-new-tokens", "20",
                  "--device", "cpu")
    assert sampled.returncode == 0, sampled.stderr
    assert sampled.stdout.startswith("ROMEO:") and len(sampled.stdout.rstrip("\n")) >= len("ROMEO:") + 10


# -- pybpe encode --format jsonl -------------------------------------------------------


def test_jsonl_export_holds_the_documents_of_the_bin(data, tmp_path):
    source = corpus(data, "tinystories_pool_valid.txt")
    tok = tmp_path / "tok.json"
    pybpe.Tokenizer.train([source], 400, special_tokens=[EOT]).save(tok)
    assert run_pybpe("encode", "-t", tok, source, "-o", tmp_path / "v.bin").returncode == 0
    arr = ids(tmp_path / "v.bin")
    eot = pybpe.Tokenizer.load(tok).special_tokens[EOT]
    docs = [d.tolist() for d in np.split(arr, np.flatnonzero(arr == eot)) if len(d)]
    docs = [d[1:] if d[0] == eot else d for d in docs]
    docs = [d for d in docs if d]
    result = run_pybpe("encode", "-t", tok, source, "-o", tmp_path / "v.jsonl", "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(l) for l in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert lines == docs and len(lines) >= 802
    cut = run_pybpe("encode", "-t", tok, source, "-o", tmp_path / "c.jsonl", "--format", "jsonl", "--max-length", "64")
    assert cut.returncode == 0
    pieces = [json.loads(l) for l in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert max(map(len, pieces)) == 64
    assert [i for p in pieces for i in p] == [i for d in docs for i in d]
    assert len(pieces) == sum(-(-len(d) // 64) for d in docs)
    assert not list(tmp_path.glob(".*"))


def test_max_length_without_jsonl_is_one_line(data, tmp_path):
    result = run_pybpe("encode", "-t", tmp_path / "t.json", corpus(data, "tinyshakespeare.txt"), "-o",
                       tmp_path / "x.bin", "--max-length", "5")
    assert_one_line_error(result, "--format jsonl")


# -- bad input: one line, no partial folder -------------------------------------------


def prepare_cli(*args: str, env=None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "training", "prepare", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=300)


def assert_failed_cleanly(result: subprocess.CompletedProcess, folder: Path, *fragments: str) -> None:
    assert_one_line_error(result, *fragments)
    assert not (folder / "out").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], list(folder.iterdir())


@pytest.mark.parametrize("case", ["unknown name", "missing file", "no text field", "uint16 too small",
                                  "hub offline", "char outside the vocabulary"])
def test_bad_input_is_one_line_and_leaves_no_folder(case, data, tmp_path):
    out = str(tmp_path / "out")
    ts = corpus(data, "tinystories_pool_valid.txt")
    if case == "unknown name":
        result = prepare_cli("c4", "--out", out, "--from-files", ts)
        fragments = ("unknown data set 'c4'", "tinystories")
    elif case == "missing file":
        result = prepare_cli("tinystories", "--out", out, "--from-files", str(tmp_path / "nope.txt"))
        fragments = ("nope.txt: no such file",)
    elif case == "no text field":
        (tmp_path / "rows.jsonl").write_text(json.dumps({"story": "Once upon a time."}) + "\n")
        result = prepare_cli("owt", "--out", out, "--from-files", str(tmp_path / "rows.jsonl"), "--tokenizer", "gpt2",
                             env=OFFLINE)
        fragments = ("no 'text' field", "story")
    elif case == "uint16 too small":
        result = prepare_cli("tinystories", "--out", out, "--from-files", ts, "--tokenizer", "train:70000",
                             "--dtype", "uint16")
        fragments = ("--dtype uint16", "70,000")
    elif case == "hub offline":
        result = prepare_cli("tinystories", "--out", out, env=OFFLINE)
        fragments = ("roneneldan/TinyStories", "--from-files")
    else:
        chars = tmp_path / "chars.json"
        CharTokenizer.from_text("abc \n" + EOT, [EOT]).save(chars)
        result = prepare_cli("text", "--out", out, "--from-files", ts, "--tokenizer", str(chars))
        fragments = ("is not in the character vocabulary",)
    assert_failed_cleanly(result, tmp_path, *fragments)


def test_a_failure_keeps_a_folder_prepared_before(data, tmp_path):
    out = tmp_path / "out"
    run(out, "shakespeare_char", corpus(data, "tinyshakespeare.txt"))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(TrainingError, match="no such file"):
        run(out, "shakespeare_char", str(tmp_path / "missing.txt"))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("reader", ["txt", "datasets"])
def test_prepare_does_not_import_torch(reader, data, tmp_path):
    if reader == "txt":
        args = ["shakespeare_char", "--from-files", corpus(data, "tinyshakespeare.txt")]
    else:
        (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"text": f"story {i}"}) + "\n" for i in range(50)))
        args = ["tinystories", "--from-files", str(tmp_path / "rows.jsonl"), "--tokenizer", "gpt2"]
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "training", "prepare", *args,
                             "--out", str(tmp_path / "out")],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **OFFLINE}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert "training.prepare" in imported
    assert reader == "txt" or "datasets" in imported
    assert not [m for m in imported if m.split(".")[0] == "torch"]


def test_gpt2_ids_are_tiktokens_with_end_of_text_after_each_document(data, tmp_path):
    import tiktoken

    out = tmp_path / "ts"
    run(out, "tinystories", corpus(data, "tinystories_pool_valid.txt"), val_files=[corpus(data, "wikitext2_valid.txt")],
        tokenizer="gpt2")
    enc = tiktoken.get_encoding("gpt2")
    stories = [s.strip() for s in Path(corpus(data, "tinystories_pool_valid.txt")).read_text().split(EOT) if s.strip()]
    expected = [i for s in stories for i in [*enc.encode_ordinary(s), enc.eot_token]]
    assert ids(out / "train.bin").tolist() == expected


def test_shakespeare_char_takes_val_files_instead_of_the_last_tenth(data, tmp_path):
    val = tmp_path / "val.txt"
    val.write_text("ROMEO:\nBut soft!\n")
    report = run(tmp_path / "sc", "shakespeare_char", corpus(data, "tinyshakespeare.txt"), val_files=[str(val)])
    assert report["splits"]["train"]["tokens"] == 1_115_394
    assert report["splits"]["val"]["tokens"] == len("ROMEO:\nBut soft!\n")
    assert report["val_from"] == "--val-files"


def test_val_fraction_is_refused_where_the_validation_split_is_given(data, tmp_path):
    with pytest.raises(TrainingError, match="has a validation split"):
        run(tmp_path / "out", "wikitext2", corpus(data, "wikitext2_test.txt"),
            val_files=[corpus(data, "wikitext2_valid.txt")], val_fraction=0.1)
    assert not (tmp_path / "out").exists()


def test_a_second_run_replaces_the_prepared_folder_whole(data, tmp_path):
    out = tmp_path / "out"
    run(out, "text", corpus(data, "tinystories_pool_valid.txt"), tokenizer="gpt2")
    report = run(out, "shakespeare_char", corpus(data, "tinyshakespeare.txt"))
    check_outputs(out, report)
    assert "tokenizer.json" not in prepared_files(out)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_the_hub_path_reads_train_and_validation_splits_of_a_parquet_repo(data, tmp_path, monkeypatch):
    # roneneldan/TinyStories' layout: data/train-*.parquet and data/validation-*.parquet, no config.
    stories = [s.strip() for s in Path(corpus(data, "tinystories_pool_valid.txt")).read_text().split(EOT) if s.strip()]
    repo = tmp_path / "ts_repo"
    write_parquet(repo / "data" / "train-00000-of-00001.parquet", stories[:600])
    write_parquet(repo / "data" / "validation-00000-of-00001.parquet", stories[600:])
    spec = registry.get("tinystories")
    assert spec.streaming and spec.val_split == "validation"
    monkeypatch.setitem(registry.REGISTRY, "tinystories", dataclasses.replace(spec, hub_id=str(repo)))
    report = prepare(Options(name="tinystories", out=str(tmp_path / "out"), tokenizer="gpt2", progress=False))
    assert report["splits"]["train"]["documents"] == 600
    assert report["splits"]["val"]["documents"] == len(stories) - 600
    assert doc_texts(tmp_path / "out", "val") == stories[600:]
