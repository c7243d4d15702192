"""The data sets `python -m training prepare NAME` knows: where each lives on the Hugging Face
Hub, how its rows become documents, and how a local copy (`--from-files`) is laid out.

Row layouts (the same for the Hub and for local files, so both give the same documents):
  documents  each row is one document (TinyStories, OpenWebText, local text)
  wikitext   each row is one line of the raw text; a document is an article, which starts at a
             top-level heading line " = Title = "; blank lines and " = = Section = = " lines stay
  lines      each row is one line (BookCorpus: one sentence per row); a document is
             LINES_PER_DOCUMENT consecutive rows joined with newlines
  one_text   the whole text is one document, split by characters (shakespeare_char)

Local .txt layouts (`--from-files`):
  eot        documents separated by `<|endoftext|>` (the TinyStoriesV2 / CS336 files); a file
             without any is cut at blank lines (one document per paragraph)
  lines      one row per line, as the upstream raw text (wiki.train.raw, books_large_p1.txt)
  whole      the file is the text
.jsonl and .parquet files are read through `datasets` (rows with a text field) for every data set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from training.errors import TrainingError

LINES_PER_DOCUMENT = 100


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    hub_id: Optional[str]
    config: Optional[str]
    revision: Optional[str]
    revision_note: str  # why this revision, or why none
    train_splits: tuple[str, ...]  # Hub splits read as the train text (concatenated)
    val_split: Optional[str]  # None: validation is held out of the train documents
    rows: str  # documents | wikitext | lines | one_text
    txt_layout: str  # eot | lines | whole
    default_tokenizer: str
    streaming: bool = False
    text_field: str = "text"
    default_val_fraction: float = 0.005


REGISTRY: dict[str, DatasetSpec] = {s.name: s for s in [
    DatasetSpec(
        "tinystories", "TinyStories (Eldan & Li 2023): short stories for small language models",
        "roneneldan/TinyStories", None, None,
        "not pinned: the dataset card's parquet files have been stable since 2023; "
        "no commit id could be verified from here (no network)",
        ("train",), "validation", "documents", "eot", "train:10000", streaming=True),
    DatasetSpec(
        "owt", "OpenWebText (Gokaslan & Cohen 2019), the parquet copy in Skylion007/openwebtext",
        "Skylion007/openwebtext", None, "cf22a3730519fbb9629cd35ddf1669bbfe9e2b97",
        "the commit that deleted the loading script: data/train-000NN-of-00093.parquet, "
        "loads with datasets >= 3 (no trust_remote_code)",
        ("train",), None, "documents", "eot", "train:32000", streaming=True),
    DatasetSpec(
        "wikitext2", "WikiText-2 raw (Merity et al. 2016): Wikipedia good/featured articles",
        "Salesforce/wikitext", "wikitext-2-raw-v1", None,
        "not pinned: the parquet conversion of 2024 is the only script-free revision; "
        "no commit id could be verified from here (no network)",
        ("train",), "validation", "wikitext", "lines", "gpt2"),
    DatasetSpec(
        "wikitext103", "WikiText-103 raw (Merity et al. 2016)",
        "Salesforce/wikitext", "wikitext-103-raw-v1", None,
        "not pinned: as wikitext2", ("train",), "validation", "wikitext", "lines", "gpt2", streaming=True),
    DatasetSpec(
        "bookcorpus", "BookCorpus (Zhu et al. 2015) as two text files, one sentence per line",
        "rojagtap/bookcorpus", None, None,
        "not pinned: the repository holds books_large_p1.txt and books_large_p2.txt unchanged since "
        "its upload (commit 7600e0b...); the full commit id could not be verified from here",
        ("train",), None, "lines", "lines", "gpt2", streaming=True),
    DatasetSpec(
        "shakespeare_char", "tiny Shakespeare (Karpathy's char-rnn input.txt), character-level as nanoGPT",
        "karpathy/tiny_shakespeare", None, "refs/convert/parquet",
        "the Hub's parquet conversion of the script dataset (a branch, not verified from here: no network); "
        "its train, validation and test rows are read in that order as one text and split 90/10 by "
        "characters as nanoGPT does",
        ("train", "validation", "test"), None, "one_text", "whole", "char", default_val_fraction=0.1),
    DatasetSpec(
        "text", "local text files (--from-files only)", None, None, None, "local files",
        ("train",), None, "documents", "eot", "train:10000"),
]}


def get(name: str) -> DatasetSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise TrainingError(f"unknown data set {name!r}: choose one of {', '.join(REGISTRY)}") from None
