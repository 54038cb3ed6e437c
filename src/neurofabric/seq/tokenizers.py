"""Tokenizers: byte-level BPE, WordPiece and Unigram trained by HF ``tokenizers``, and a
character-level tokenizer, all saved as ``tokenizer.json``.

>>> from neurofabric.seq.tokenizers import CharTokenizer, train_tokenizer
>>> char = CharTokenizer.from_text("hello world")
>>> char.decode(char.encode("low hello"))
'low hello'
>>> bpe = train_tokenizer("bpe", ["the cat sat on the mat"] * 50, vocab_size=300)
>>> bpe.decode(bpe.encode("the cat"))
'the cat'
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from neurofabric.core.checkpoint import atomic_write
from neurofabric.core.errors import CheckpointError, ShapeError
from neurofabric.core.validation import check_choice, check_int

__all__ = ["KINDS", "CharTokenizer", "HFTokenizer", "load_tokenizer", "train_tokenizer"]

KINDS = ("bpe", "wordpiece", "unigram", "char")
DEFAULT_SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
#: the key and version that mark a saved :class:`CharTokenizer`
CHAR_FORMAT = "neurofabric_char_tokenizer"
CHAR_VERSION = 1


class CharTokenizer:
    """One id per character seen in training, plus special tokens (ids 0..len(specials)-1)."""

    kind = "char"

    def __init__(self, chars: Iterable[str], specials: Iterable[str] = ("<unk>",)) -> None:
        self.specials = list(specials)
        self.chars = sorted(set(chars) - set(self.specials))
        self.itos = self.specials + self.chars
        self.stoi = {c: i for i, c in enumerate(self.itos)}

    @classmethod
    def from_text(cls, text: str, specials: Iterable[str] = ("<unk>",)) -> CharTokenizer:
        if not text:
            raise ShapeError("cannot build a character vocabulary from an empty text")
        return cls(set(text), specials)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str, *, strict: bool = False) -> list[int]:
        unk = self.stoi.get("<unk>")
        out = []
        for ch in text:
            i = self.stoi.get(ch)
            if i is None:
                if strict or unk is None:
                    raise ShapeError(
                        f"character {ch!r} is not in the vocabulary ({self.vocab_size} symbols)"
                    )
                i = unk
            out.append(i)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        ids = list(ids)
        bad = [i for i in ids if not 0 <= i < len(self.itos)]
        if bad:
            raise ShapeError(
                f"token ids {bad[:5]} are outside the vocabulary [0, {self.vocab_size})"
            )
        return "".join(self.itos[i] for i in ids if self.itos[i] not in self.specials)

    def save(self, path: str | os.PathLike[str]) -> Path:
        obj = {CHAR_FORMAT: CHAR_VERSION, "specials": self.specials, "chars": self.chars}
        return atomic_write(path, json.dumps(obj, ensure_ascii=False))


class HFTokenizer:
    """A trained HF ``tokenizers.Tokenizer`` with the same small interface."""

    def __init__(self, tok: Any, kind: str) -> None:
        self.tok = tok
        self.kind = kind

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def decode(self, ids: Iterable[int]) -> str:
        ids = list(ids)
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ShapeError(
                f"token ids {bad[:5]} are outside the vocabulary [0, {self.vocab_size})"
            )
        if self.kind == "wordpiece":
            pieces = [self.tok.id_to_token(i) for i in ids]
            text = "".join(p[2:] if p.startswith("##") else p for p in pieces)
            return text.replace("▁", " ")
        # special tokens are text too (WikiText writes "<unk>" literally): keep them
        return self.tok.decode(ids, skip_special_tokens=False)

    def save(self, path: str | os.PathLike[str]) -> Path:
        return atomic_write(path, self.tok.to_str())


def train_tokenizer(
    kind: str,
    texts: Iterable[str],
    *,
    vocab_size: int = 8000,
    specials: Iterable[str] = DEFAULT_SPECIALS,
    min_frequency: int = 2,
):
    """Train a tokenizer of ``kind`` ("bpe" byte-level, "wordpiece", "unigram", "char")."""
    check_choice("kind", kind, KINDS)
    check_int("vocab_size", vocab_size, min_value=1)
    check_int("min_frequency", min_frequency, min_value=0)
    texts = list(texts)
    if not any(t.strip() for t in texts):
        raise ShapeError("cannot train a tokenizer on an empty corpus")
    specials = list(specials)
    if kind == "char":
        return CharTokenizer.from_text(
            "".join(texts), specials=[s for s in specials if s == "<unk>"] or ["<unk>"]
        )
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    elif kind == "wordpiece":
        # spaces kept as "▁" (Metaspace, nothing prepended) so decoding is exact: HFTokenizer
        # joins the pieces, drops "##" and turns "▁" back into spaces
        tok = Tokenizer(models.WordPiece(unk_token="<unk>", continuing_subword_prefix="##"))
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials
        )
    else:
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
        tok.decoder = decoders.Metaspace(prepend_scheme="never")
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>"
        )
    tok.train_from_iterator(texts, trainer=trainer)
    return HFTokenizer(tok, kind)


def load_tokenizer(path: str | os.PathLike[str]):
    """A tokenizer saved by ``save`` (a char vocabulary or an HF ``tokenizer.json``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a tokenizer JSON file ({exc})") from exc
    if isinstance(obj, dict) and CHAR_FORMAT in obj:
        return _char_from_json(path, obj)
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        raise CheckpointError(
            f"{path}: not a tokenizer file (neither a neurofabric character vocabulary nor a "
            f"tokenizers JSON with a `model`); save one with `tokenizer.save(path)`"
        )
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_str(json.dumps(obj))
    except Exception as exc:  # tokenizers raises its own exception type
        raise CheckpointError(f"{path}: not a tokenizers JSON file ({exc})") from exc
    model = str(obj["model"].get("type", "")).lower()
    kind = {"bpe": "bpe", "wordpiece": "wordpiece", "unigram": "unigram"}.get(model, model)
    return HFTokenizer(tok, kind)


def _char_from_json(path: Path, obj: dict) -> CharTokenizer:
    version = obj[CHAR_FORMAT]
    if version != CHAR_VERSION:
        raise CheckpointError(
            f"{path}: character tokenizer format version {version!r} is not supported by this "
            f"neurofabric (reads version {CHAR_VERSION}); upgrade neurofabric"
        )
    chars, specials = obj.get("chars"), obj.get("specials")
    for name, value in (("chars", chars), ("specials", specials)):
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise CheckpointError(
                f"{path}: a character tokenizer needs `{name}`, a list of strings, got {value!r}"
            )
    return CharTokenizer(chars, specials)
