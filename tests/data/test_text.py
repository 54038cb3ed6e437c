"""Text loaders: every row counted, malformed rows named by file and line."""

import io
import json
import tarfile

import numpy as np
import pytest

from neurofabric.core.errors import DataError
from neurofabric.data.text import (
    load_20newsgroups,
    load_text_csv,
    load_text_dataset,
    load_text_jsonl,
    load_zhang_csv,
)


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_zhang_csv_reads_every_row_including_the_first(tmp_path):
    p = _write(tmp_path / "t.csv", '"3","Wall St.","Bears claw back\\nagain"\n"1","A","b"\n')
    data = load_zhang_csv(p, n_classes=4, expected_rows=2)
    assert len(data) == 2 and data.labels.tolist() == [2, 0]
    assert data.texts[0] == "Wall St. Bears claw back again"


def test_zhang_csv_errors_name_file_and_line(tmp_path):
    header = _write(tmp_path / "h.csv", "class,title,description\n1,a,b\n")
    with pytest.raises(DataError, match=r"h\.csv:1: class_index 'class' is not an integer"):
        load_zhang_csv(header, n_classes=4)
    out = _write(tmp_path / "o.csv", "1,a,b\n5,c,d\n")
    with pytest.raises(DataError, match=r"o\.csv:2: class_index 5 is outside 1\.\.4"):
        load_zhang_csv(out, n_classes=4)
    short = _write(tmp_path / "s.csv", "1,a,b\n2,c,d\n")
    with pytest.raises(DataError, match="read 2 rows, the canonical file has 3"):
        load_zhang_csv(short, n_classes=4, expected_rows=3)
    bad = _write(tmp_path / "b.csv", "1,a,b\n2\n")
    with pytest.raises(DataError, match=r"b\.csv:2: expected 3 fields"):
        load_zhang_csv(bad, n_classes=4)
    unbalanced = _write(tmp_path / "u.csv", "1,a,b\n1,c,d\n2,e,f\n")
    with pytest.raises(DataError, match="balanced"):
        load_zhang_csv(unbalanced, n_classes=2, balanced=True)


def test_ag_news_needs_the_canonical_count(tmp_path):
    folder = tmp_path / "ag_news"
    folder.mkdir()
    _write(folder / "test.csv", "1,a,b\n2,c,d\n3,e,f\n4,g,h\n")
    with pytest.raises(DataError, match="7600"):
        load_text_dataset("ag_news", "test", data_dir=tmp_path)
    with pytest.raises(DataError, match="download=True"):
        load_text_dataset("ag_news", "train", data_dir=tmp_path)


def test_generic_csv_and_jsonl(tmp_path):
    p = _write(tmp_path / "d.csv", "id,text,label\n1,hello there,pos\n2,go away,neg\n")
    data = load_text_csv(p)
    assert data.texts == ["hello there", "go away"] and data.classes == ("neg", "pos")
    assert data.labels.tolist() == [1, 0]
    with pytest.raises(DataError, match="no column 'body'"):
        load_text_csv(p, text_column="body")
    short = _write(tmp_path / "e.csv", "text,label\nfine,a\nonly\n")
    with pytest.raises(DataError, match=r"e\.csv:3"):
        load_text_csv(short)
    j = _write(
        tmp_path / "d.jsonl", json.dumps({"text": "x", "label": 1}) + "\n\n" + '{"text": "y"}\n'
    )
    with pytest.raises(DataError, match=r"d\.jsonl:3: needs an object"):
        load_text_jsonl(j)
    j2 = _write(
        tmp_path / "f.jsonl", '{"text": "a", "label": 2}\n{"text": "b", "label": 10}\nnot json\n'
    )
    with pytest.raises(DataError, match=r"f\.jsonl:3: not valid JSON"):
        load_text_jsonl(j2)


def _fake_newsgroups(path, per_split):
    with tarfile.open(path, "w:gz") as tar:
        for split, n in per_split.items():
            for i in range(n):
                group = ["alt.atheism", "sci.space"][i % 2]
                data = f"From: x\n\ndocument {i} caf\xe9".encode("latin-1")
                info = tarfile.TarInfo(f"20news-bydate-{split}/{group}/{1000 + i}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_20newsgroups_checks_the_canonical_totals(tmp_path):
    folder = tmp_path / "20newsgroups"
    folder.mkdir()
    _fake_newsgroups(folder / "20news-bydate.tar.gz", {"train": 6, "test": 4})
    with pytest.raises(DataError, match="6 train documents, the canonical split has 11314"):
        load_20newsgroups("train", data_dir=tmp_path)


def test_20newsgroups_reads_latin1_in_order(tmp_path, monkeypatch):
    import neurofabric.data.text as text

    folder = tmp_path / "20newsgroups"
    folder.mkdir()
    _fake_newsgroups(folder / "20news-bydate.tar.gz", {"train": 6, "test": 4})
    monkeypatch.setitem(text.NEWSGROUPS_COUNTS, "test", 4)
    data = load_20newsgroups("test", data_dir=tmp_path)
    assert data.classes == ("alt.atheism", "sci.space")
    assert np.bincount(data.labels).tolist() == [2, 2]
    assert data.texts[0].endswith("caf\xe9")
