"""Other tokenizer formats: GPT-2's `vocab.json` + `merges.txt`, tiktoken rank files and
`tiktoken.Encoding`, HuggingFace `tokenizer.json`.

Everything here builds a `_core.CoreTokenizer` with `from_parts` (token bytes by id, merges
as id pairs in rank order, special tokens, pattern) or reads those parts back out of one.
Files are written atomically: a temporary file in the same folder, then `os.replace`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Optional, Union

from pybpe import _core
from pybpe.errors import ConfigError, FileError, TokenizerFileError

PathLike = Union[str, "os.PathLike[str]"]
SpecialTokens = Union[Mapping[str, int], Iterable[str]]


def _gpt2_byte_to_unicode() -> list[str]:
    """GPT-2's table from bytes to printable characters: printable Latin-1 bytes stand for
    themselves, the others are moved to U+0100 and up (so a space is "Ġ", a newline "Ċ")."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    table, moved = [], 0
    for byte in range(256):
        if byte in printable:
            table.append(chr(byte))
        else:
            table.append(chr(256 + moved))
            moved += 1
    return table


BYTE_TO_UNICODE: list[str] = _gpt2_byte_to_unicode()
UNICODE_TO_BYTE: dict[str, int] = {c: b for b, c in enumerate(BYTE_TO_UNICODE)}


def bytes_to_gpt2_string(token: bytes) -> str:
    return "".join(BYTE_TO_UNICODE[b] for b in token)


def gpt2_string_to_bytes(text: str) -> Optional[bytes]:
    """The bytes a GPT-2 byte-to-unicode string stands for; None if it is not one."""
    try:
        return bytes(UNICODE_TO_BYTE[c] for c in text)
    except KeyError:
        return None


# -- writing files ---------------------------------------------------------------------


def check_output_path(path: PathLike) -> Path:
    """FileError unless `path` can be a new file: not a folder, in a folder that exists."""
    path = Path(path)
    if path.is_dir():
        raise FileError(f"{path}: is a directory; give a file name for the output")
    if not path.parent.is_dir():
        raise FileError(f"{path}: the directory {path.parent} does not exist")
    return path


def write_atomically(path: PathLike, data: bytes) -> None:
    """Writes `data` to a temporary file beside `path`, then renames it into place."""
    path = check_output_path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise FileError(f"{path}: {e.strerror or e}") from None
        raise


def _read_bytes(path: PathLike) -> bytes:
    path = Path(path)
    if path.is_dir():
        raise FileError(f"{path}: is a directory, not a tokenizer file")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileError(f"{path}: no such file") from None
    except OSError as e:
        raise FileError(f"{path}: {e.strerror or e}") from None


def _read_text(path: PathLike, what: str) -> str:
    try:
        return _read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as e:
        raise TokenizerFileError(f"{path}: not a {what} (not UTF-8 text at byte {e.start})") from None


# -- building a tokenizer from parts ---------------------------------------------------


def build(
    vocab: Mapping[int, bytes],
    merges: Iterable[tuple[bytes, bytes]],
    special_tokens: SpecialTokens,
    pattern: str,
    source: str,
    merge_names: Optional[list[str]] = None,
) -> _core.CoreTokenizer:
    """A core tokenizer from token bytes by id and merges as byte pairs, in rank order.

    `special_tokens` is a list of strings or a dict string -> id. A listed special token
    takes the id of the token of the vocabulary holding its bytes, if there is one, else
    the next free id. `source` names where the parts came from, and `merge_names` each
    merge (else "merge i"), for error messages. The merges must rebuild the vocabulary:
    the core checks that, and refuses naming the first merge that does not.
    """
    if not isinstance(vocab, Mapping):
        raise ConfigError(f"the vocab must be a dict of id -> token bytes, not {type(vocab).__name__}")
    for id, token in vocab.items():
        if not isinstance(id, int) or isinstance(id, bool) or id < 0:
            raise TokenizerFileError(f"{source}: the token {token!r} has id {id!r}; ids are whole numbers from 0")
    vocab = dict(vocab)
    specials: list[tuple[str, int]] = []
    if isinstance(special_tokens, Mapping):
        for name, id in special_tokens.items():
            _check_special_name(name, source)
            if not isinstance(id, int) or isinstance(id, bool) or id < 0:
                raise ConfigError(f"special token {name!r} has id {id!r}; ids are whole numbers from 0")
            held = vocab.get(id)
            if held is not None and held != name.encode("utf-8"):
                raise ConfigError(f"special token {name!r} has id {id}, which {source} gives to the token {held!r}")
            vocab[id] = name.encode("utf-8")
            specials.append((name, id))
    else:
        if isinstance(special_tokens, str):
            raise ConfigError(f"special_tokens must be a list or a dict, not the string {special_tokens!r}")
        id_of = {token: id for id, token in sorted(vocab.items(), reverse=True)}
        next_id = max(vocab, default=-1) + 1
        for name in special_tokens:
            _check_special_name(name, source)
            id = id_of.get(name.encode("utf-8"))
            if id is None:
                id, next_id = next_id, next_id + 1
                vocab[id] = name.encode("utf-8")
            specials.append((name, id))
    if len({name for name, _ in specials}) < len(specials):
        raise ConfigError(f"a special token is given twice: {[name for name, _ in specials]}")
    if len({id for _, id in specials}) < len(specials):
        raise ConfigError(f"two special tokens share an id: {specials}")

    # Ids left out are unused (cl100k leaves some between its special tokens), but not
    # more of them than tokens: an id far past the others is a damaged file.
    size = max(vocab, default=-1) + 1
    if size - len(vocab) > max(len(vocab), 1 << 16):
        raise TokenizerFileError(
            f"{source}: its ids go up to {size - 1}, which leaves {size - len(vocab)} ids unused among "
            f"{len(vocab)} tokens")
    tokens = [vocab.get(i, b"") for i in range(size)]
    special_ids = {id for _, id in specials}
    id_of_token = {token: id for id, token in enumerate(tokens) if token and id not in special_ids}
    merge_ids = []
    for rank, (left, right) in enumerate(merges):
        a, b = id_of_token.get(left), id_of_token.get(right)
        if a is None or b is None:
            unknown = left if a is None else right
            name = merge_names[rank] if merge_names else f"merge {rank}"
            raise TokenizerFileError(
                f"{source}: {name} ({bytes_to_gpt2_string(left)} {bytes_to_gpt2_string(right)}) uses "
                f"{bytes_to_gpt2_string(unknown)!r}, which is not in the vocabulary")
        merge_ids.append((a, b))
    try:
        return _core.CoreTokenizer.from_parts(tokens, merge_ids, specials, pattern, merge_names)
    except TokenizerFileError as e:
        raise TokenizerFileError(f"{source}: {e}") from None


def _check_special_name(name, source: str) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"special tokens are non-empty strings, not {name!r}")


# -- GPT-2: vocab.json + merges.txt ----------------------------------------------------


def read_gpt2(vocab_json: PathLike, merges_txt: PathLike, special_tokens: Iterable[str], pattern: str):
    """Reads GPT-2's `vocab.json` (token string -> id) and `merges.txt` ("a b" per line,
    an optional "#version" first line), both in byte-to-unicode form."""
    special_tokens = list(special_tokens)
    if isinstance(special_tokens, str):
        raise ConfigError(f"special_tokens must be a list of strings, not the string {special_tokens!r}")
    try:
        doc = json.loads(_read_text(vocab_json, "GPT-2 vocab.json"))
    except json.JSONDecodeError as e:
        raise TokenizerFileError(f"{vocab_json}: not a GPT-2 vocab.json (not valid JSON: {e})") from None
    if not isinstance(doc, dict) or not doc:
        raise TokenizerFileError(f"{vocab_json}: not a GPT-2 vocab.json (not a JSON object of token -> id)")
    if doc.get("format") == "pybpe":
        raise TokenizerFileError(f"{vocab_json}: a pybpe tokenizer file, not a GPT-2 vocab.json: use Tokenizer.load")
    if "model" in doc and "pre_tokenizer" in doc:
        raise TokenizerFileError(f"{vocab_json}: a HuggingFace tokenizer.json, not a GPT-2 vocab.json")
    vocab: dict[int, bytes] = {}
    special_ids: dict[str, int] = {}
    for token, id in doc.items():
        if not isinstance(id, int) or isinstance(id, bool) or id < 0:
            raise TokenizerFileError(
                f"{vocab_json}: token {token!r} has id {json.dumps(id)}; ids are whole numbers from 0")
        if token in special_tokens:
            special_ids[token] = id
            continue
        token_bytes = gpt2_string_to_bytes(token)
        if token_bytes is None:
            raise TokenizerFileError(f"{vocab_json}: token {token!r} is not in GPT-2 byte-to-unicode form")
        if id in vocab:
            raise TokenizerFileError(f"{vocab_json}: id {id} is given to two tokens")
        vocab[id] = token_bytes
    merges, merge_names = [], []
    lines = _read_text(merges_txt, "GPT-2 merges.txt").split("\n")
    file_name = Path(merges_txt).name
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if not line or (number == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        pair = [gpt2_string_to_bytes(p) for p in parts]
        if len(parts) != 2 or not all(pair):
            raise TokenizerFileError(
                f"{merges_txt}: line {number} is not a merge (two tokens in byte-to-unicode form): {line[:60]!r}")
        merges.append((pair[0], pair[1]))
        merge_names.append(f"{file_name} line {number}")
    # Specials found in vocab.json keep their ids; the others come after the largest id.
    for name in special_tokens:
        if name not in special_ids:
            special_ids[name] = max([*vocab, *special_ids.values()], default=-1) + 1
    return build(vocab, merges, special_ids, pattern, source=f"{vocab_json} + {merges_txt}", merge_names=merge_names)


def save_gpt2(core: _core.CoreTokenizer, vocab_json: PathLike, merges_txt: PathLike) -> None:
    """Writes GPT-2's `vocab.json` (special tokens as themselves) and `merges.txt`."""
    specials = dict(core.special_tokens())
    special_ids = {id: name for name, id in specials.items()}
    vocab = {(special_ids[id] if id in special_ids else bytes_to_gpt2_string(token)): id
             for id, token in _tokens(core).items()}
    merges = "".join(f"{bytes_to_gpt2_string(a)} {bytes_to_gpt2_string(b)}\n" for a, b in core.merges())
    vocab_data = json.dumps(vocab, ensure_ascii=False).encode("utf-8")
    merges_data = ("#version: 0.2\n" + merges).encode("utf-8")
    check_output_path(vocab_json)
    check_output_path(merges_txt)
    write_atomically(vocab_json, vocab_data)
    write_atomically(merges_txt, merges_data)


def _tokens(core: _core.CoreTokenizer) -> dict[int, bytes]:
    """Token bytes by id, in the order of the ids (unused ids left out)."""
    return dict(sorted(core.vocab().items()))


# -- tiktoken --------------------------------------------------------------------------


def read_tiktoken_file(path: PathLike, special_tokens: SpecialTokens, pattern: str) -> _core.CoreTokenizer:
    """Reads a tiktoken rank file ("base64(token) rank" per line): ids are the ranks, and
    the merges are derived from them (see `merges_of_ranks`)."""
    ranks: dict[bytes, int] = {}
    vocab: dict[int, bytes] = {}
    for number, line in enumerate(_read_bytes(path).split(b"\n"), start=1):
        line = line.rstrip(b"\r")
        if not line:
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            token, rank = base64.b64decode(parts[0], validate=True), int(parts[1])
            if rank < 0 or not token:
                raise ValueError
        except (ValueError, binascii.Error):
            raise TokenizerFileError(
                f"{path}: not a tiktoken rank file: line {number} is not \"base64-token rank\": {line[:60]!r}"
            ) from None
        if token in ranks:
            raise TokenizerFileError(f"{path}: line {number}: the token {token!r} is listed twice")
        if rank in vocab:
            raise TokenizerFileError(f"{path}: line {number}: rank {rank} is given to two tokens")
        ranks[token] = rank
        vocab[rank] = token
    if not ranks:
        raise TokenizerFileError(f"{path}: not a tiktoken rank file (no tokens)")
    return build(vocab, merges_of_ranks(ranks, str(path)), special_tokens, pattern, source=str(path))


def merges_of_ranks(ranks: Mapping[bytes, int], source: str) -> list[tuple[bytes, bytes]]:
    """The merges of tiktoken ranks, in rank order: the merge making the token of rank r is
    the split of its bytes that BPE with the tokens of lower rank ends at, as tiktoken
    encodes it. Where that BPE ends in more than two parts (a token tiktoken makes only
    from neighbouring text, if ever), the merge is its split into two tokens of lower rank
    whose later part has the lowest rank; a token with no such split is refused."""
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) < 2:
            continue
        parts = bpe_with_lower_ranks(token, ranks, rank)
        if len(parts) != 2:
            splits = [(max(ranks[token[:i]], ranks[token[i:]]), i) for i in range(1, len(token))
                      if ranks.get(token[:i], rank) < rank and ranks.get(token[i:], rank) < rank]
            if not splits:
                raise TokenizerFileError(
                    f"{source}: the token {token!r} (rank {rank}) is not two tokens of lower rank joined, "
                    f"so no merge can make it")
            cut = min(splits)[1]
            parts = [token[:cut], token[cut:]]
        merges.append((parts[0], parts[1]))
    return merges


def bpe_with_lower_ranks(token: bytes, ranks: Mapping[bytes, int], max_rank: int) -> list[bytes]:
    """The parts BPE splits `token` into using only the tokens of rank below `max_rank`:
    tiktoken's merge loop (lowest-ranked adjacent pair first)."""
    parts = [token[i:i + 1] for i in range(len(token))]
    while len(parts) > 1:
        best_rank, best = max_rank, -1
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < best_rank:
                best_rank, best = rank, i
        if best < 0:
            break
        parts[best:best + 2] = [parts[best] + parts[best + 1]]
    return parts


def mergeable_ranks(core: _core.CoreTokenizer) -> dict[bytes, int]:
    """The non-special tokens by id: tiktoken's ranks (the core holds every tokenizer to
    merges that make tokens in the order of their ids)."""
    special_ids = {id for _, id in core.special_tokens()}
    return {token: id for id, token in _tokens(core).items() if id not in special_ids}


def save_tiktoken(core: _core.CoreTokenizer, path: PathLike) -> None:
    """Writes the non-special tokens as a tiktoken rank file (the special tokens, the
    pattern and the merges are not part of that format)."""
    ranks = mergeable_ranks(core)
    lines = [base64.b64encode(token) + b" " + str(rank).encode() + b"\n"
             for token, rank in sorted(ranks.items(), key=lambda item: item[1])]
    write_atomically(path, b"".join(lines))


def to_tiktoken(core: _core.CoreTokenizer, name: str = "pybpe"):
    """A `tiktoken.Encoding` with the same pattern, ranks (= ids) and special tokens."""
    try:
        import tiktoken
    except ImportError:
        raise ConfigError("to_tiktoken needs the tiktoken package: pip install tiktoken") from None
    ranks, specials = mergeable_ranks(core), dict(core.special_tokens())
    # tiktoken's explicit_n_vocab counts tokens, so it is given only when no id is unused.
    contiguous = len(ranks) + len(specials) == core.vocab_size()
    return tiktoken.Encoding(
        name,
        pat_str=core.pattern_regex(),
        mergeable_ranks=ranks,
        special_tokens=specials,
        explicit_n_vocab=core.vocab_size() if contiguous else None,
    )


# -- HuggingFace tokenizers: tokenizer.json --------------------------------------------


def huggingface_json(core: _core.CoreTokenizer) -> dict:
    """A `tokenizers` tokenizer.json document: a byte-level BPE model with the same ids.

    The GPT-2 pattern is the ByteLevel pre-tokenizer's own regex; any other pattern is a
    Split on that regex (pieces isolated) followed by a ByteLevel mapping without regex.
    """
    specials = core.special_tokens()
    special_ids = {id for _, id in specials}
    vocab = {bytes_to_gpt2_string(token): id for id, token in _tokens(core).items() if id not in special_ids}
    # The special tokens are in the model's vocabulary too, as in GPT-2's own tokenizer.json:
    # an added token found there keeps its id; one that is not gets the next id after the
    # vocabulary's, which is wrong where ids are unused.
    for name, id in specials:
        vocab.setdefault(name, id)
    merges = [f"{bytes_to_gpt2_string(a)} {bytes_to_gpt2_string(b)}" for a, b in core.merges()]
    if core.pattern() == "gpt2":
        pre_tokenizer = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    else:
        pre_tokenizer = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": core.pattern_regex()}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ]}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": id, "content": name, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for name, id in sorted(specials, key=lambda s: s[1])
        ],
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merges,
        },
    }


def save_huggingface(core: _core.CoreTokenizer, path: PathLike) -> None:
    data = json.dumps(huggingface_json(core), ensure_ascii=False, indent=1).encode("utf-8")
    write_atomically(path, data)


# -- named encodings ---------------------------------------------------------------------

# tiktoken's OpenAI encodings, named even where tiktoken is not installed. tiktoken may
# know more (plugins); those are named by tiktoken.list_encoding_names().
TIKTOKEN_ENCODINGS = ("r50k_base", "p50k_base", "p50k_edit", "cl100k_base", "o200k_base", "o200k_harmony")
# Their pattern by name, where pybpe has a built-in splitter for it; any other encoding
# runs its own regular expression.
_BUILTIN_PATTERNS = {"gpt2": "gpt2", "r50k_base": "gpt2", "p50k_base": "gpt2", "p50k_edit": "gpt2",
                     "cl100k_base": "gpt4"}
GPT2_FILES = ("cs336/gpt2_vocab.json", "cs336/gpt2_merges.txt")


def encoding_names() -> list[str]:
    """The names `read_named` takes: gpt2, and tiktoken's encodings."""
    try:
        import tiktoken
    except ImportError:
        names = list(TIKTOKEN_ENCODINGS)
    else:
        names = list(tiktoken.list_encoding_names())
    return ["gpt2", *(n for n in names if n != "gpt2")]


def is_encoding_name(name: str) -> bool:
    return name.lower() in encoding_names()


def read_named(name: str) -> _core.CoreTokenizer:
    """The tokenizer of a named encoding (any case): gpt2 from GPT-2's vocab.json and
    merges.txt in the shared data folder when they are there, else, like every other name,
    through tiktoken's own loader and cache, with tiktoken's special tokens and pattern."""
    name = name.lower()
    if name not in encoding_names():
        raise ConfigError(f"{name}: no such named encoding (known: {', '.join(encoding_names())})")
    if name == "gpt2":
        from pybpe.data import data_dir

        vocab_json, merges_txt = (data_dir() / f for f in GPT2_FILES)
        if vocab_json.is_file() and merges_txt.is_file():
            return read_gpt2(vocab_json, merges_txt, ["<|endoftext|>"], "gpt2")
    return read_tiktoken_encoding(name)


def read_tiktoken_encoding(name: str) -> _core.CoreTokenizer:
    try:
        import tiktoken
    except ImportError:
        raise ConfigError(f"{name} is one of tiktoken's named encodings: pip install tiktoken to use it "
                          f"(or pass a tokenizer file)") from None
    try:
        encoding = tiktoken.get_encoding(name)
    except Exception as e:  # tiktoken's loader fails by requests, OSError or ValueError
        cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
        where = f"TIKTOKEN_CACHE_DIR={cache}" if cache else "tiktoken's default cache (TIKTOKEN_CACHE_DIR is not set)"
        network = type(e).__module__.startswith(("requests", "urllib3"))
        reason = type(e).__name__ if network or not str(e) else str(e).splitlines()[0][:160]
        raise FileError(
            f"{name}: tiktoken's files for it are not in {where} and cannot be downloaded ({reason}); set "
            f"TIKTOKEN_CACHE_DIR to a folder holding tiktoken's cached files, or pass a tokenizer file") from None
    ranks = encoding._mergeable_ranks
    vocab = {rank: token for token, rank in ranks.items()}
    pattern = _BUILTIN_PATTERNS.get(name, encoding._pat_str)
    source = f"tiktoken's {name}"
    return build(vocab, merges_of_ranks(ranks, source), dict(encoding._special_tokens), pattern, source=source)
