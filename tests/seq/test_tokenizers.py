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


def test_wrong_tokenizer_files_are_checkpoint_errors(tmp_path):
    from neurofabric.seq.tokenizers import CharTokenizer

    path = CharTokenizer.from_text("abc").save(tmp_path / "ok.json")
    assert load_tokenizer(path).encode("cab") == [3, 1, 2]
    assert not [p.name for p in tmp_path.iterdir() if p.name != "ok.json"]  # no temporary left
    cases = {
        "garbage.json": b"\xff\x00 not json",
        "list.json": b"[1, 2, 3]",
        "foreign.json": b'{"format": "something-else", "data": 1}',
        "version.json": b'{"neurofabric_char_tokenizer": 2, "specials": [], "chars": ["a"]}',
        "fields.json": b'{"neurofabric_char_tokenizer": 1, "specials": ["<unk>"], "chars": "ab"}',
    }
    expected = {
        "garbage.json": "not a tokenizer JSON file",
        "list.json": "not a tokenizer file",
        "foreign.json": "not a tokenizer file",
        "version.json": "format version 2 is not supported",
        "fields.json": "`chars`, a list of strings",
    }
    for name, raw in cases.items():
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(CheckpointError, match=expected[name]):
            load_tokenizer(tmp_path / name)
    with pytest.raises(CheckpointError, match="not found"):
        load_tokenizer(tmp_path / "missing.json")


def test_training_parameters_are_checked_by_name():
    with pytest.raises(ConfigError, match="`kind` must be one of"):
        train_tokenizer("sentencepiece", ["abc"])
    with pytest.raises(ConfigError, match="`vocab_size` must be >= 1"):
        train_tokenizer("bpe", ["abc"], vocab_size=0)
    with pytest.raises(ConfigError, match="`min_frequency` must be an integer"):
        train_tokenizer("bpe", ["abc"], min_frequency=None)
