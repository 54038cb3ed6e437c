"""Tokenizers: every kind trains, round-trips exactly on its alphabet, saves and loads."""

import pytest

pytest.importorskip("tokenizers")

from neurofabric.core.errors import CheckpointError, ConfigError, ShapeError  # noqa: E402
from neurofabric.seq.tokenizers import KINDS, load_tokenizer, train_tokenizer  # noqa: E402

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    " leading spaces and  double spaces , punctuation !",
    "numbers 12 345 and @-@ symbols <unk> stay text",
] * 30


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_save_and_load(kind, tmp_path):
    tok = train_tokenizer(kind, CORPUS, vocab_size=200, min_frequency=1)
    for line in CORPUS[:3]:
        assert tok.decode(tok.encode(line)) == line
    path = tok.save(tmp_path / "tokenizer.json")
    back = load_tokenizer(path)
    assert back.encode(CORPUS[1]) == tok.encode(CORPUS[1])
    assert back.vocab_size == tok.vocab_size


def test_byte_level_bpe_is_lossless_on_unseen_characters():
    tok = train_tokenizer("bpe", CORPUS, vocab_size=300, min_frequency=1)
    text = "Ünïcode ☃ and tabs\tnewlines\n"
    assert tok.decode(tok.encode(text)) == text


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="kind"):
        train_tokenizer("sentencepiece", CORPUS)
    with pytest.raises(ShapeError, match="empty corpus"):
        train_tokenizer("bpe", ["", "  "])
    char = train_tokenizer("char", CORPUS)
    with pytest.raises(ShapeError, match="not in the vocabulary"):
        char.encode("☃", strict=True)
    with pytest.raises(ShapeError, match="outside the vocabulary"):
        char.decode([10_000])
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a tokenizer"):
        load_tokenizer(tmp_path / "x.json")
