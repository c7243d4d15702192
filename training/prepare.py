"""`python -m training prepare NAME --out DIR`: a data set's text -> DIR/train.bin, DIR/val.bin
(with the sidecars `pybpe encode` writes), the tokenizer file and DIR/dataset.json.

The pipeline: rows (from the Hub through `datasets`, or from local files) -> documents (the
data set's row layout, see training/datasets.py) -> optionally shuffled with a buffer (with
--max-tokens) -> split (the data set's validation split, --val-files, or documents held out)
-> each split's documents written as `doc<|endoftext|>doc<|endoftext|>...` to a temporary
text file -> the tokenizer (given, or trained on the train text) -> encoded by pybpe's
parallel file encoder. Everything is built in a temporary folder beside DIR and renamed
into place at the end, so a failed run leaves nothing.

No torch here: preparing data does not import the training code.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import mmap
import os
import random
import re
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

from training import datasets as registry
from training.errors import TrainingError

EOT = "<|endoftext|>"
EOT_BYTES = EOT.encode()
READ_BLOCK = 8 << 20  # bytes of a local text file read at a time
SHUFFLE_BUFFER = 10_000  # documents
COUNT_BATCH_CHARS = 1 << 20
WORD_COUNT_BLOCK = 4 << 20  # bytes of documents whose words are counted at once  # documents gathered before counting their tokens in parallel
SAMPLE_BYTES_PER_TOKEN = 8  # train:VOCAB with --max-tokens: bytes of text to train the tokenizer on, per token
DATA_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
WIKITEXT_TITLE = re.compile(r"^ = [^=].* = $")
PARAGRAPH_BREAK = re.compile(r"\n[ \t\r]*\n")


@dataclass
class Options:
    name: str
    out: str
    tokenizer: Optional[str] = None
    max_tokens: Optional[int] = None
    val_tokens: Optional[int] = None
    val_fraction: Optional[float] = None
    seed: int = 1337
    from_files: list[str] = field(default_factory=list)
    val_files: list[str] = field(default_factory=list)
    threads: Optional[int] = None
    dtype: str = "auto"
    command: str = ""
    progress: Optional[bool] = None  # None: a bar when stderr is a terminal


# -- tokenizers -----------------------------------------------------------------------


@dataclass
class TokenizerChoice:
    """What --tokenizer SPEC names: a ready tokenizer, `char` (built from the text) or
    `train:VOCAB` (trained on the train split)."""
    spec: str
    kind: str  # ready | char | train
    tokenizer: object = None
    train_vocab: int = 0
    source_file: Optional[str] = None  # a tokenizer file given by path


def resolve_tokenizer(spec: str) -> TokenizerChoice:
    """--tokenizer SPEC: `char`, `train:VOCAB`, a tokenizer file (pybpe BPE or character
    vocabulary), or a named encoding (`gpt2`, tiktoken's names: `pybpe.Tokenizer.from_name`)."""
    import pybpe

    if spec == "char":
        return TokenizerChoice(spec, "char")
    if spec.startswith("train:"):
        try:
            vocab = int(spec[len("train:"):])
        except ValueError:
            raise TrainingError(f"--tokenizer {spec}: train:VOCAB takes a whole number, e.g. train:10000") from None
        if vocab < 257:
            raise TrainingError(f"--tokenizer {spec}: the vocabulary holds the 256 bytes and <|endoftext|>: at least 257")
        return TokenizerChoice(spec, "train", train_vocab=vocab)
    path = Path(spec)
    if not path.is_file():
        from pybpe import interop

        if not interop.is_encoding_name(spec):
            raise TrainingError(f"--tokenizer {spec}: no such file, and not char, train:VOCAB or a named encoding "
                                f"({', '.join(interop.encoding_names())})")
        try:
            return TokenizerChoice(spec, "ready", pybpe.Tokenizer.from_name(spec))
        except pybpe.PybpeError as e:
            raise TrainingError(f"--tokenizer {spec}: {e}") from None
    from pybpe.tokenizer_files import load_any

    try:
        return TokenizerChoice(spec, "ready", load_any(path), source_file=str(path))
    except pybpe.PybpeError as e:
        raise TrainingError(f"--tokenizer {spec}: {e}") from None


# -- rows and documents ----------------------------------------------------------------


def import_datasets():
    """`datasets`, kept from importing torch (seconds, and unused here) when torch is not
    loaded yet: its iterable data sets otherwise make a torch tensor for DataLoader workers."""
    import datasets

    if "torch" not in sys.modules:
        datasets.config.TORCH_AVAILABLE = False
    return datasets


def hub_rows(spec: registry.DatasetSpec, split: str) -> Iterator[str]:
    """The text field of each row of a Hub split, through `datasets.load_dataset`."""
    def failed(e: BaseException) -> TrainingError:
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        return TrainingError(f"{spec.name}: cannot load {spec.hub_id} from the Hugging Face Hub ({detail}); "
                             f"without network, give the text as local files: --from-files FILE ...")

    try:
        datasets = import_datasets()
        import huggingface_hub

        # Retries and warnings would print many lines; a failure is reported as one.
        datasets.logging.set_verbosity_error()
        huggingface_hub.utils.logging.set_verbosity_error()
        ds = datasets.load_dataset(spec.hub_id, spec.config, split=split, streaming=spec.streaming,
                                   revision=spec.revision)
        rows = iter(ds)
    except Exception as e:
        raise failed(e) from None
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as e:
            raise failed(e) from None
        yield _text_field(row, spec.text_field, spec.hub_id)


def _text_field(row: dict, name: str, where: str) -> str:
    try:
        text = row[name]
    except KeyError:
        raise TrainingError(f"{where}: the rows have no {name!r} field (fields: {', '.join(map(str, row)) or 'none'})") from None
    if not isinstance(text, str):
        raise TrainingError(f"{where}: the {name!r} field is {type(text).__name__}, not text")
    return text


def check_files(files: list[str], flag: str) -> list[dict]:
    """Each file's path, size and sha256; one-line TrainingError for a missing or unreadable one."""
    out = []
    for name in files:
        path = Path(name)
        if path.is_dir():
            raise TrainingError(f"{flag} {name}: is a directory, not a file")
        if not path.is_file():
            raise TrainingError(f"{flag} {name}: no such file")
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                while block := f.read(READ_BLOCK):
                    digest.update(block)
        except OSError as e:
            raise TrainingError(f"{flag} {name}: {e.strerror or e}") from None
        out.append({"path": os.path.abspath(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()})
    return out


def file_rows(spec: registry.DatasetSpec, files: list[str]) -> Iterator[str]:
    """Rows of local files: .jsonl/.json/.parquet through `datasets` (their text field), other
    files as text in the data set's .txt layout."""
    for name in files:
        builder = DATA_SUFFIXES.get(Path(name).suffix.lower())
        if builder is not None:
            yield from datasets_file_rows(builder, name, spec.text_field)
        elif spec.txt_layout == "eot":
            yield from txt_documents(name)
        elif spec.txt_layout == "lines":
            yield from txt_lines(name)
        else:
            yield Path(name).read_bytes().decode("utf-8", "replace")


def datasets_file_rows(builder: str, name: str, text_field: str) -> Iterator[str]:
    """The text field of each row of a local .jsonl or .parquet file, read by `datasets`
    (streamed, so nothing is cached and memory stays bounded)."""
    try:
        datasets = import_datasets()
        rows = iter(datasets.load_dataset(builder, data_files=[name], split="train", streaming=True))
        for row in rows:
            yield _text_field(row, text_field, name)
    except TrainingError:
        raise
    except Exception as e:
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise TrainingError(f"{name}: cannot read it as {builder} ({detail})") from None


def _read_blocks(name: str) -> Iterator[str]:
    with open(name, "rb") as f:
        pending = b""
        while block := f.read(READ_BLOCK):
            block = pending + block
            # Cut at the last newline so that no UTF-8 sequence (or separator line) is split.
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                pending = block
                continue
            pending = block[cut:]
            yield block[:cut].decode("utf-8", "replace")
        if pending:
            yield pending.decode("utf-8", "replace")


def _has_eot(name: str) -> bool:
    with open(name, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return False
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return m.find(EOT_BYTES) >= 0


def txt_documents(name: str) -> Iterator[str]:
    """The pieces of a text file between `<|endoftext|>` separators; a file without any is
    cut at blank lines (one document per paragraph)."""
    separator = EOT if _has_eot(name) else PARAGRAPH_BREAK
    pending = ""
    for block in _read_blocks(name):
        pieces = block.split(separator) if isinstance(separator, str) else separator.split(block)
        pieces[0] = pending + pieces[0]
        pending = pieces.pop()
        yield from pieces
    if pending:
        yield pending


def txt_lines(name: str) -> Iterator[str]:
    for block in _read_blocks(name):
        lines = block.split("\n")
        if lines[-1] == "":
            lines.pop()
        yield from lines


def documents(spec: registry.DatasetSpec, rows: Iterable[str]) -> Iterator[str]:
    """The documents the rows make, by the data set's row layout. No document holds
    `<|endoftext|>`: in a row it separates documents, as in the .txt format."""
    if spec.rows == "documents":
        for row in rows:
            for piece in row.split(EOT) if EOT in row else (row,):
                piece = piece.strip()
                if piece:
                    yield piece
    elif spec.rows == "wikitext":
        # A title line " = Title = " stands between blank lines; an equation line such as
        # " = 1 m / s = " inside a paragraph does not start an article.
        article: list[str] = []
        held: Optional[str] = None  # a possible title, waiting for the line after it
        for row in rows:
            for line in row.split(EOT):
                line = line.rstrip("\n")
                line = (line if line.strip() else " ") + "\n"
                if held is not None:
                    if line.strip() == "" and any(l.strip() for l in article):
                        yield "".join(article)
                        article = []
                    article.append(held)
                    held = None
                if WIKITEXT_TITLE.match(line[:-1]) and (not article or not article[-1].strip()):
                    held = line
                else:
                    article.append(line)
        if held is not None:
            article.append(held)
        if any(l.strip() for l in article):
            yield "".join(article)
    elif spec.rows == "lines":
        group: list[str] = []
        for row in rows:
            for line in row.split(EOT):
                group.append(line.rstrip("\n") + "\n")
                if len(group) == registry.LINES_PER_DOCUMENT:
                    if any(l.strip() for l in group):
                        yield "".join(group)
                    group = []
        if any(l.strip() for l in group):
            yield "".join(group)
    else:  # one_text
        text = "".join(rows).replace(EOT, "")
        if text:
            yield text


def shuffled(docs: Iterable[str], seed: int, buffer_size: int = SHUFFLE_BUFFER) -> Iterator[str]:
    """The documents in an order drawn with a buffer of `buffer_size` (as `datasets`'
    IterableDataset.shuffle): bounded memory, the same order for the same seed."""
    rng = random.Random(seed)
    buffer: list[str] = []
    for doc in docs:
        if len(buffer) < buffer_size:
            buffer.append(doc)
            continue
        i = rng.randrange(buffer_size)
        yield buffer[i]
        buffer[i] = doc
    rng.shuffle(buffer)
    yield from buffer


# -- splits ----------------------------------------------------------------------------


def count_words(data: bytes) -> int:
    """len(data.split()) without building the list: the starts of runs of non-whitespace."""
    import numpy as np

    if not data:
        return 0
    arr = np.frombuffer(data, dtype=np.uint8)
    space = (arr == 32) | ((arr >= 9) & (arr <= 13))
    return int(np.count_nonzero(~space[1:] & space[:-1])) + int(not space[0])


class SplitText:
    """One split's documents written as `doc<|endoftext|>...` to a text file, with counts."""

    def __init__(self, path: Path, separator: bool):
        self.path = path
        self.separator = separator
        self.file = open(path, "wb", buffering=1 << 22)
        self.documents = self.bytes = self.tokens = 0
        self._words = 0
        self._uncounted: list[bytes] = []  # documents whose words are not counted yet
        self._uncounted_bytes = 0
        self._last: Optional[tuple[str, int, int]] = None  # document, file offset before it, its tokens

    def add(self, doc: str, tokens: int = 0) -> None:
        data = doc.encode("utf-8", "replace")
        self._last = (doc, self.file.tell(), tokens)
        self.file.write(data)
        if self.separator:
            self.file.write(EOT_BYTES)
        self.documents += 1
        self.bytes += len(data)
        self.tokens += tokens
        self._uncounted.append(data)
        self._uncounted_bytes += len(data)
        if self._uncounted_bytes >= WORD_COUNT_BLOCK:
            self._count_words()

    @property
    def words(self) -> int:
        """Whitespace-separated words (as `bytes.split()`) of the documents, summed."""
        self._count_words()
        return self._words

    def _count_words(self) -> None:
        if self._uncounted:
            self._words += count_words(b"\n".join(self._uncounted))
            self._uncounted, self._uncounted_bytes = [], 0

    def pop_last(self) -> tuple[str, int]:
        """Takes the last document back out (once); returns it and its token count."""
        doc, offset, tokens = self._last
        self._last = None
        self.file.seek(offset)
        self.file.truncate()
        data = doc.encode("utf-8", "replace")
        self._count_words()
        self.documents -= 1
        self.bytes -= len(data)
        self._words -= len(data.split())
        self.tokens -= tokens
        return doc, tokens

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


class TokenCounter:
    """Token counts of documents (with the end-of-text id after each), in parallel batches."""

    def __init__(self, tokenizer, separator: bool, threads: Optional[int]):
        self.tokenizer, self.extra, self.threads = tokenizer, int(separator), threads

    def counts(self, docs: list[str]) -> list[int]:
        if self.tokenizer is None:  # `char`: one id per character
            return [len(d) + self.extra for d in docs]
        ids = self.tokenizer.encode_batch(docs, allowed_special="all", threads=self.threads)
        return [len(i) + self.extra for i in ids]

    def counted(self, docs: Iterable[str]) -> Iterator[tuple[str, int]]:
        batch: list[str] = []
        size = 0
        for doc in docs:
            batch.append(doc)
            size += len(doc)
            if size >= COUNT_BATCH_CHARS:
                yield from zip(batch, self.counts(batch))
                batch, size = [], 0
        if batch:
            yield from zip(batch, self.counts(batch))


class ReadProgress:
    """A bar on stderr (when it is a terminal): documents, MB/s read, tokens counted."""

    def __init__(self, enabled: Optional[bool], desc: str):
        self.bar = None
        if enabled if enabled is not None else sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(desc=desc, unit="B", unit_scale=True, unit_divisor=1000, leave=False)
        self._last = 0.0

    def update(self, splits: list[SplitText]) -> None:
        if self.bar is None:
            return
        now = time.monotonic()
        if now - self._last < 0.2:
            return
        self._last = now
        tokens = sum(s.tokens for s in splits)
        postfix = {"docs": f"{sum(s.documents for s in splits):,}"}
        if tokens:
            postfix["tokens"] = f"{tokens:,}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(sum(s.bytes for s in splits) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- the pipeline ----------------------------------------------------------------------


def check_options(o: Options, spec: registry.DatasetSpec) -> None:
    if spec.hub_id is None and not o.from_files:
        raise TrainingError(f"{spec.name} reads local files only: give them with --from-files FILE ...")
    if o.val_files and not o.from_files:
        raise TrainingError("--val-files needs --from-files (the train text as local files)")
    for flag, value in (("--max-tokens", o.max_tokens), ("--val-tokens", o.val_tokens)):
        if value is not None and value < 1:
            raise TrainingError(f"{flag} must be at least 1, not {value}")
    if o.val_tokens is not None and o.val_fraction is not None:
        raise TrainingError("give --val-tokens or --val-fraction, not both")
    if o.val_fraction is not None and not 0.0 < o.val_fraction < 1.0:
        raise TrainingError(f"--val-fraction must lie between 0 and 1, not {o.val_fraction}")
    if o.threads is not None and o.threads < 1:
        raise TrainingError(f"--threads must be at least 1, not {o.threads}")
    if o.dtype not in ("auto", "uint16", "uint32"):
        raise TrainingError(f"--dtype must be auto, uint16 or uint32, not {o.dtype!r}")
    out = Path(o.out)
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "dataset.json").is_file():
        raise TrainingError(f"--out {out}: a non-empty directory that holds no prepared data set; choose another")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise TrainingError(f"--out {out}: the directory {out.parent} does not exist")


def check_dtype(dtype: str, vocab_size: int, what: str) -> str:
    if dtype == "uint16" and vocab_size > 1 << 16:
        raise TrainingError(f"--dtype uint16 holds ids below 65536, but {what} has {vocab_size:,} tokens: "
                            f"use --dtype uint32 or auto")
    if dtype == "auto":
        return "uint16" if vocab_size <= 1 << 16 else "uint32"
    return dtype


def prepare(o: Options) -> dict:
    """Runs the pipeline; returns what DIR/dataset.json holds."""
    spec = registry.get(o.name)
    check_options(o, spec)
    choice = resolve_tokenizer(o.tokenizer or spec.default_tokenizer)
    if choice.kind == "train":
        check_dtype(o.dtype, choice.train_vocab, f"train:{choice.train_vocab}")
    elif choice.kind == "ready":
        check_dtype(o.dtype, choice.tokenizer.vocab_size, f"the tokenizer {choice.spec}")
    one_text = spec.rows == "one_text"
    has_val_split = bool(o.val_files) or (spec.val_split is not None and not o.from_files)
    if has_val_split and o.val_fraction is not None:
        raise TrainingError(f"{spec.name} has a validation split: --val-fraction holds out documents only where "
                            f"there is none (with --from-files and no --val-files)")
    if choice.kind == "train" and o.val_tokens is not None and not has_val_split:
        raise TrainingError("--val-tokens on held-out documents needs a tokenizer before training one: "
                            "with train:VOCAB use --val-fraction (or give --val-files)")
    if choice.kind == "ready" and not one_text and EOT not in choice.tokenizer.special_tokens:
        raise TrainingError(f"the tokenizer {choice.spec} has no {EOT} special token to separate documents")
    if one_text and (o.max_tokens is not None or o.val_tokens is not None) and choice.kind != "char":
        raise TrainingError(f"{spec.name} is one text: --max-tokens and --val-tokens count characters, "
                            f"with --tokenizer char")

    train_files = check_files(o.from_files, "--from-files")
    val_files = check_files(o.val_files, "--val-files")
    out = Path(o.out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent if str(out.parent) else "."))
    splits: list[SplitText] = []
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        started = time.perf_counter()
        separator = not one_text
        train = SplitText(tmp / "train.txt", separator)
        val = SplitText(tmp / "val.txt", separator)
        splits += [train, val]
        tokenizer = choice.tokenizer
        counter = None if choice.kind == "train" else TokenCounter(tokenizer, separator, o.threads)
        progress = ReadProgress(o.progress, "read")
        fraction = o.val_fraction if o.val_fraction is not None else spec.default_val_fraction

        def train_rows() -> Iterator[str]:
            if o.from_files:
                return file_rows(spec, o.from_files)
            return itertools.chain.from_iterable(hub_rows(spec, s) for s in spec.train_splits)

        def val_rows() -> Iterator[str]:
            return file_rows(spec, o.val_files) if o.val_files else hub_rows(spec, spec.val_split)

        docs = documents(spec, train_rows())
        if o.max_tokens is not None and not one_text:
            docs = shuffled(docs, o.seed)

        if one_text:
            text = next(iter(docs), "")
            if not text:
                raise TrainingError(f"{spec.name}: the text is empty")
            if o.val_files:
                train_text, val_text = text, next(iter(documents(spec, val_rows())), "")
                if not val_text:
                    raise TrainingError(f"{spec.name}: the --val-files text is empty")
            else:
                cut = min(len(text) - 1, max(1, int(len(text) * (1 - fraction))))
                train_text, val_text = text[:cut], text[cut:]
            if o.max_tokens is not None:
                train_text = train_text[:o.max_tokens]
            if o.val_tokens is not None and choice.kind == "char":
                val_text = val_text[:o.val_tokens]
            train.add(train_text, len(train_text) if choice.kind == "char" else 0)
            val.add(val_text, len(val_text) if choice.kind == "char" else 0)
            val_from = "--val-files" if o.val_files else f"the last {fraction:g} of the characters"
        else:
            held_out = not has_val_split
            rng = random.Random(o.seed)

            def route(stream: Iterable[str]) -> Iterator[str]:
                """Train documents; held-out ones go to `val` on the way."""
                for doc in stream:
                    if held_out:
                        if o.val_tokens is not None:
                            if val.tokens < o.val_tokens:
                                val.add(doc, counter.counts([doc])[0])
                                continue
                        elif rng.random() < fraction:
                            val.add(doc)
                            continue
                    yield doc
                    progress.update(splits)

            stream = route(docs)
            if choice.kind == "train" and o.max_tokens is not None:
                tokenizer, stream = train_on_sample(choice, stream, o, tmp)
                counter = TokenCounter(tokenizer, separator, o.threads)
            if o.max_tokens is not None:
                for doc, n in counter.counted(stream):
                    if train.tokens >= o.max_tokens:
                        break
                    train.add(doc, n)
            else:
                for doc in stream:
                    train.add(doc)
            (tmp / "sample.txt").unlink(missing_ok=True)
            if train.documents == 0:
                raise TrainingError(f"{spec.name}: no documents in the train text")
            if held_out and val.documents == 0:
                if train.documents < 2:
                    raise TrainingError(f"{spec.name}: one document only; nothing to hold out for validation")
                doc, n = train.pop_last()
                val.add(doc, n)
            train.file.flush()
            if choice.kind == "train" and tokenizer is None:
                tokenizer = train_tokenizer(choice, train.path, o, tmp)
                counter = TokenCounter(tokenizer, separator, o.threads)
            if not held_out:
                vdocs = documents(spec, val_rows())
                if o.val_tokens is not None:
                    for doc, n in counter.counted(vdocs):
                        if val.tokens >= o.val_tokens:
                            break
                        val.add(doc, n)
                else:
                    for doc in vdocs:
                        val.add(doc)
                        progress.update(splits)
                if val.documents == 0:
                    raise TrainingError(f"{spec.name}: the validation text holds no documents")
                val_from = "--val-files" if o.val_files else f"the {spec.val_split!r} split"
            elif o.val_tokens is not None:
                val_from = f"held out: the first documents until {o.val_tokens:,} tokens"
            else:
                val_from = f"held out: each document with probability {fraction:g} (seed {o.seed})"
        progress.close()
        for s in splits:
            s.close()
        read_seconds = time.perf_counter() - started

        if choice.kind == "char":
            from pybpe.chartok import CharTokenizer

            chars: set[str] = set()
            for s in splits:
                for block in _read_blocks(str(s.path)):
                    chars.update(block.replace(EOT, ""))
            if not chars:
                raise TrainingError(f"{spec.name}: the text is empty")
            tokenizer = CharTokenizer(chars, [EOT] if separator else [])
        elif choice.kind == "train" and tokenizer is None:
            tokenizer = train_tokenizer(choice, train.path, o, tmp)
        dtype = check_dtype(o.dtype, tokenizer.vocab_size, f"the tokenizer {choice.spec}")

        tok_name = "chars.json" if choice.kind == "char" or type(tokenizer).__name__ == "CharTokenizer" else "tokenizer.json"
        tokenizer.save(tmp / tok_name)
        tok_sha = hashlib.sha256((tmp / tok_name).read_bytes()).hexdigest()
        final_tok = os.path.abspath(out / tok_name)
        sources = ([{"path": f["path"], "bytes": f["bytes"]} for f in train_files] if o.from_files
                   else [{"hub": spec.hub_id, "config": spec.config, "revision": spec.revision}])
        encode_started = time.perf_counter()
        for s, name in ((train, "train"), (val, "val")):
            sidecar = encode_split(tokenizer, s.path, tmp / f"{name}.bin", dtype, o)
            sidecar["tokenizer"] = {"path": final_tok, "sha256": tok_sha}
            sidecar["sources"] = ([{"path": f["path"], "bytes": f["bytes"]} for f in val_files]
                                  if name == "val" and o.val_files else sources)
            (tmp / f"{name}.bin.json").write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
            s.tokens = sidecar["num_tokens"]
            s.path.unlink()
        encode_seconds = time.perf_counter() - encode_started

        report = {
            "format": "pybpe-dataset", "version": 1,
            "name": spec.name,
            "description": spec.description,
            "source": ({"files": {"train": train_files, "val": val_files}} if o.from_files else
                       {"hub": {"id": spec.hub_id, "config": spec.config, "revision": spec.revision,
                                "revision_note": spec.revision_note, "train_splits": list(spec.train_splits),
                                "val_split": spec.val_split}}),
            "layout": spec.rows,
            "tokenizer": {"spec": choice.spec, "file": tok_name, "vocab_size": tokenizer.vocab_size,
                          "special_tokens": tokenizer.special_tokens, "sha256": tok_sha},
            "dtype": dtype,
            "val_from": val_from,
            "splits": {name: {"documents": s.documents, "bytes": s.bytes, "tokens": s.tokens, "words": s.words,
                              "bytes_per_token": round(s.bytes / s.tokens, 4) if s.tokens else None}
                       for name, s in (("train", train), ("val", val))},
            "words": {"train": train.words, "val": val.words},
            "seed": o.seed, "max_tokens": o.max_tokens, "val_tokens": o.val_tokens,
            "val_fraction": None if has_val_split else fraction,
            "shuffle_buffer": SHUFFLE_BUFFER if o.max_tokens is not None and not one_text else None,
            "lines_per_document": registry.LINES_PER_DOCUMENT if spec.rows == "lines" else None,
            "command": o.command,
        }
        (tmp / "dataset.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        install(tmp, out)
        report["_seconds"] = {"read": read_seconds, "encode": encode_seconds,
                              "total": time.perf_counter() - started}
        return report
    except BaseException:
        for s in splits:
            s.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def train_on_sample(choice: TokenizerChoice, stream: Iterator[str], o: Options, tmp: Path):
    """train:VOCAB with --max-tokens: trains the tokenizer on the first train documents of
    the (shuffled) stream, SAMPLE_BYTES_PER_TOKEN bytes per token asked for, and returns it
    with the stream to continue from (those documents first)."""
    sample = tmp / "sample.txt"
    budget = SAMPLE_BYTES_PER_TOKEN * o.max_tokens
    taken = size = 0
    with open(sample, "wb") as f:
        for doc in stream:
            data = doc.encode("utf-8", "replace")
            f.write(data + EOT_BYTES)
            taken += 1
            size += len(data)
            if size >= budget:
                break
    if not taken:
        raise TrainingError(f"{o.name}: no documents in the train text")
    tokenizer = train_tokenizer(choice, sample, o, tmp)

    def replayed() -> Iterator[str]:
        # No document holds <|endoftext|>, so the sample file splits back into the same documents.
        yield from (doc for doc, _ in txt_documents_raw(sample))
        sample.unlink()
        yield from stream

    return tokenizer, replayed()


def train_tokenizer(choice: TokenizerChoice, text: Path, o: Options, tmp: Path):
    import pybpe
    from pybpe.progress import TrainingProgress

    with warnings.catch_warnings(record=True) as caught, TrainingProgress(o.progress) as progress:
        warnings.simplefilter("always", pybpe.VocabShortfallWarning)
        try:
            tokenizer = pybpe.Tokenizer.train([str(text)], choice.train_vocab, special_tokens=[EOT],
                                              threads=o.threads, progress=progress)
        except pybpe.PybpeError as e:
            raise TrainingError(f"training the tokenizer ({choice.spec}): {e}") from None
    if caught:
        print(f"warning: the train text ran out of pairs: the tokenizer has {tokenizer.vocab_size:,} tokens, "
              f"not {choice.train_vocab:,}", file=sys.stderr)
    return tokenizer


def encode_split(tokenizer, text: Path, out: Path, dtype: str, o: Options) -> dict:
    """Encodes a split's text file (documents separated by `<|endoftext|>`) to a token file
    and returns its sidecar: pybpe's parallel file encoder, or numpy for characters."""
    from pybpe import tokenfile

    if hasattr(tokenizer, "encode_file"):
        from pybpe.progress import EncodingProgress

        with EncodingProgress(o.progress) as progress:
            sidecar = tokenizer.encode_file([str(text)], out, dtype=dtype, threads=o.threads, progress=progress)
        for key in ("seconds", "bytes_read"):
            sidecar.pop(key, None)
        return sidecar
    import numpy as np

    eot_id = tokenizer.special_tokens.get(EOT)
    np_dtype = np.dtype(dtype).newbyteorder("<")
    n = 0
    try:
        with open(out, "wb") as f:
            for block in txt_documents_raw(text):
                ids = tokenizer.encode_to_numpy(block[0]).astype(np_dtype)
                f.write(ids.tobytes())
                n += len(ids)
                if block[1]:
                    f.write(np.array([eot_id], dtype=np_dtype).tobytes())
                    n += 1
    except Exception as e:
        from pybpe import PybpeError

        if isinstance(e, PybpeError):
            raise TrainingError(str(e)) from None
        raise
    return {"format": tokenfile.FORMAT, "version": tokenfile.VERSION, "dtype": dtype, "num_tokens": n,
            "vocab_size": tokenizer.vocab_size, "special_tokens": tokenizer.special_tokens,
            "tokenizer": None, "sources": [], "invalid_utf8_bytes": 0}


def txt_documents_raw(path: Path) -> Iterator[tuple[str, bool]]:
    """(document, followed by a separator) for a split's text file, exactly as written."""
    pending = ""
    for block in _read_blocks(str(path)):
        pieces = (pending + block).split(EOT)
        pending = pieces.pop()
        for p in pieces:
            yield p, True
    if pending:
        yield pending, False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def install(tmp: Path, out: Path) -> None:
    """Renames the finished folder to `out`, replacing a data set prepared there before."""
    old = None
    if out.is_dir():
        if any(out.iterdir()):
            old = out.with_name(f".{out.name}.old{os.getpid()}")
            os.replace(out, old)
        else:
            out.rmdir()
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def summary(report: dict, out: str) -> list[str]:
    s = report["splits"]
    secs = report.get("_seconds", {})
    lines = [f"prepared {report['name']} -> {out}"]
    for name in ("train", "val"):
        x = s[name]
        lines.append(f"  {name:<6} {x['documents']:>10,} documents {x['bytes']:>14,} bytes {x['tokens']:>13,} tokens"
                     + (f"  {x['bytes_per_token']:.3f} bytes/token" if x["bytes_per_token"] else ""))
    t = report["tokenizer"]
    lines.append(f"  tokenizer {t['spec']} ({t['vocab_size']:,} ids, {report['dtype']}) -> {t['file']}")
    lines.append(f"  validation: {report['val_from']}")
    if secs:
        total_bytes = s["train"]["bytes"] + s["val"]["bytes"]
        lines.append(f"  time {secs['total']:.2f} s (read and split {secs['read']:.2f} s, encode {secs['encode']:.2f} s; "
                     f"{total_bytes / max(secs['total'], 1e-9) / 1e6:.1f} MB/s)")
    lines.append(f"  wrote train.bin, val.bin (+ .json sidecars), {t['file']}, dataset.json")
    return lines
