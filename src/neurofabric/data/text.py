"""Text classification datasets: 20 Newsgroups "bydate", the Zhang et al. CSVs, CSV and JSONL.

>>> from neurofabric.data import load_text_dataset
>>> train = load_text_dataset("20newsgroups", "train", data_dir="../shared/datasets")  # doctest: +SKIP
>>> len(train), train.n_classes                                                    # doctest: +SKIP
(11314, 20)

Every loader counts what it read: a row that does not parse gives a ``DataError`` naming the
file and line, and where the canonical totals are known (20 Newsgroups 11,314 / 7,532; AG News
120,000 / 7,600; DBpedia-14 560,000 / 70,000, balanced) they are checked, so a truncated copy
or a loader that drops a row (the proof of concept took AG News' first row for a header) fails
loudly. Local copies are read first; ``download=True`` fetches the canonical archive.
"""

from __future__ import annotations

import csv
import json
import os
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurofabric.core.checkpoint import atomic_write
from neurofabric.core.errors import DataError
from neurofabric.core.validation import check_choice
from neurofabric.data.datadir import download as fetch
from neurofabric.data.datadir import resolve_data_dir

__all__ = [
    "TEXT_SETS",
    "TextDataset",
    "load_20newsgroups",
    "load_text_csv",
    "load_text_dataset",
    "load_text_jsonl",
    "load_zhang_csv",
]


@dataclass(frozen=True)
class TextDataset:
    """Documents with integer labels 0..n_classes-1 and the class names."""

    texts: list[str]
    labels: np.ndarray
    classes: tuple[str, ...]
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise DataError(f"{self.source}: {len(self.texts)} texts but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def subset(self, index: np.ndarray) -> TextDataset:
        index = np.asarray(index)
        return TextDataset(
            [self.texts[i] for i in index], self.labels[index], self.classes, self.source
        )


@dataclass(frozen=True)
class ZhangSet:
    folder: str
    archive_url: str
    archive_folder: str
    classes: tuple[str, ...]
    counts: dict[str, int]


TEXT_SETS: dict[str, ZhangSet] = {
    "ag_news": ZhangSet(
        "ag_news",
        "https://s3.amazonaws.com/fast-ai-nlp/ag_news_csv.tgz",
        "ag_news_csv",
        ("World", "Sports", "Business", "Sci/Tech"),
        {"train": 120_000, "test": 7_600},
    ),
    "dbpedia": ZhangSet(
        "dbpedia",
        "https://s3.amazonaws.com/fast-ai-nlp/dbpedia_csv.tgz",
        "dbpedia_csv",
        (
            "Company",
            "EducationalInstitution",
            "Artist",
            "Athlete",
            "OfficeHolder",
            "MeanOfTransportation",
            "Building",
            "NaturalPlace",
            "Village",
            "Animal",
            "Plant",
            "Album",
            "Film",
            "WrittenWork",
        ),
        {"train": 560_000, "test": 70_000},
    ),
}
NEWSGROUPS_URL = "http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz"
NEWSGROUPS_COUNTS = {"train": 11_314, "test": 7_532}


def _zhang_text(title: str, description: str) -> str:
    # The CSVs escape newlines as the two characters "\n" and write "\\" for a backslash.
    text = f"{title} {description}" if title else description
    return text.replace("\\n", " ").replace('\\"', '"').replace("\\\\", "\\")


def load_zhang_csv(
    path: str | os.PathLike[str],
    *,
    n_classes: int,
    expected_rows: int | None = None,
    balanced: bool = False,
    classes: tuple[str, ...] | None = None,
) -> TextDataset:
    """A headerless ``class_index,title,description`` CSV (class 1..n_classes), every row checked."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found")
    texts: list[str] = []
    labels: list[int] = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        for row in reader:
            line = reader.line_num
            if len(row) not in (2, 3):
                raise DataError(
                    f"{path}:{line}: expected 3 fields (class_index,title,description), "
                    f"got {len(row)}"
                )
            try:
                label = int(row[0])
            except ValueError:
                raise DataError(
                    f"{path}:{line}: class_index {row[0]!r} is not an integer "
                    "(these CSVs have no header row)"
                ) from None
            if not 1 <= label <= n_classes:
                raise DataError(f"{path}:{line}: class_index {label} is outside 1..{n_classes}")
            labels.append(label - 1)
            texts.append(_zhang_text(row[1], row[2]) if len(row) == 3 else row[1])
    if expected_rows is not None and len(texts) != expected_rows:
        raise DataError(
            f"{path}: read {len(texts)} rows, the canonical file has {expected_rows}; "
            "the copy is truncated or not the canonical file"
        )
    y = np.asarray(labels, dtype=np.int64)
    if balanced and len(y):
        counts = np.bincount(y, minlength=n_classes)
        if counts.min() != counts.max():
            raise DataError(f"{path}: classes should be balanced, got counts {counts.tolist()}")
    names = classes if classes is not None else tuple(str(i + 1) for i in range(n_classes))
    return TextDataset(texts, y, names, str(path))


def _zhang(name: str, split: str, data_dir, download: bool) -> TextDataset:
    spec = TEXT_SETS[name]
    folder = resolve_data_dir(data_dir, spec.folder)
    path = folder / f"{split}.csv"
    if not path.is_file():
        if not download:
            raise DataError(
                f"{path} not found; point data_dir (or NEUROFABRIC_DATA) at the folder that "
                f"holds {spec.folder}/{split}.csv, or pass download=True"
            )
        archive = fetch(spec.archive_url, folder / Path(spec.archive_url).name)
        with tarfile.open(archive) as tar:
            member = tar.getmember(f"{spec.archive_folder}/{split}.csv")
            data = tar.extractfile(member)
            if data is None:
                raise DataError(f"{archive}: {member.name} is not a file")
            atomic_write(path, data.read())
    return load_zhang_csv(
        path,
        n_classes=len(spec.classes),
        expected_rows=spec.counts[split],
        balanced=True,
        classes=spec.classes,
    )


def load_20newsgroups(
    split: str = "train",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> TextDataset:
    """The canonical "bydate" split (11,314 / 7,532 documents, 20 groups, latin-1), full text."""
    check_choice("split", split, ("train", "test"))
    folder = resolve_data_dir(data_dir, "20newsgroups")
    archive = folder / "20news-bydate.tar.gz"
    if not archive.is_file():
        if not download:
            raise DataError(
                f"{archive} not found; point data_dir (or NEUROFABRIC_DATA) at the folder that "
                "holds 20newsgroups/20news-bydate.tar.gz, or pass download=True"
            )
        fetch(NEWSGROUPS_URL, archive)
    prefix = f"20news-bydate-{split}/"
    docs: list[tuple[str, str, str]] = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if not member.isfile() or not member.name.startswith(prefix):
                    continue
                parts = member.name[len(prefix) :].split("/")
                if len(parts) != 2:
                    raise DataError(f"{archive}: unexpected member {member.name}")
                fh = tar.extractfile(member)
                assert fh is not None
                docs.append((parts[0], parts[1], fh.read().decode("latin-1")))
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{archive}: not a readable tar.gz ({exc})") from exc
    expected = NEWSGROUPS_COUNTS[split]
    if len(docs) != expected:
        raise DataError(
            f"{archive}: {len(docs)} {split} documents, the canonical split has {expected}"
        )
    docs.sort(key=lambda d: (d[0], int(d[1]) if d[1].isdigit() else 0, d[1]))
    classes = tuple(sorted({d[0] for d in docs}))
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[d[0]] for d in docs], dtype=np.int64)
    return TextDataset([d[2] for d in docs], labels, classes, str(archive))


def _label_table(raw: list[str], classes: tuple[str, ...] | None):
    names = classes if classes is not None else tuple(sorted(set(raw), key=_natural))
    index = {c: i for i, c in enumerate(names)}
    return names, index


def _natural(label: str):
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


def _finish(texts, raw, lines, source, classes) -> TextDataset:
    names, index = _label_table(raw, classes)
    labels = np.empty(len(raw), dtype=np.int64)
    for i, (label, line) in enumerate(zip(raw, lines, strict=True)):
        if label not in index:
            raise DataError(f"{source}:{line}: label {label!r} is not one of {list(names)}")
        labels[i] = index[label]
    return TextDataset(texts, labels, names, source)


def load_text_csv(
    path: str | os.PathLike[str],
    *,
    text_column: str | int = "text",
    label_column: str | int = "label",
    header: bool = True,
    delimiter: str = ",",
    classes: tuple[str, ...] | None = None,
) -> TextDataset:
    """Any CSV with a text and a label column (by name with a header, else by index)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found")
    texts: list[str] = []
    raw: list[str] = []
    lines: list[int] = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        if header:
            names = next(reader, None)
            if names is None:
                raise DataError(f"{path}: empty file, expected a header row")
            cols = []
            for col in (text_column, label_column):
                if isinstance(col, int):
                    cols.append(col)
                elif col in names:
                    cols.append(names.index(col))
                else:
                    raise DataError(f"{path}:1: no column {col!r} in the header {names}")
        else:
            if not all(isinstance(c, int) for c in (text_column, label_column)):
                raise DataError(
                    f"{path}: header=False needs integer text_column / label_column, got "
                    f"{text_column!r} / {label_column!r}"
                )
            cols = [int(text_column), int(label_column)]
        need = max(cols) + 1
        for row in reader:
            if len(row) < need:
                raise DataError(
                    f"{path}:{reader.line_num}: {len(row)} fields, need at least {need}"
                )
            texts.append(row[cols[0]])
            raw.append(row[cols[1]].strip())
            lines.append(reader.line_num)
    return _finish(texts, raw, lines, str(path), classes)


def load_text_jsonl(
    path: str | os.PathLike[str],
    *,
    text_key: str = "text",
    label_key: str = "label",
    classes: tuple[str, ...] | None = None,
) -> TextDataset:
    """One JSON object per line with a text and a label field; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found")
    texts: list[str] = []
    raw: list[str] = []
    lines: list[int] = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict) or text_key not in obj or label_key not in obj:
                raise DataError(f"{path}:{n}: needs an object with {text_key!r} and {label_key!r}")
            if not isinstance(obj[text_key], str):
                raise DataError(f"{path}:{n}: {text_key!r} must be a string")
            texts.append(obj[text_key])
            raw.append(str(obj[label_key]))
            lines.append(n)
    return _finish(texts, raw, lines, str(path), classes)


def load_text_dataset(
    name: str,
    split: str = "train",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> TextDataset:
    """One of "20newsgroups", "ag_news", "dbpedia" by name."""
    check_choice("name", name, ("20newsgroups", *TEXT_SETS))
    check_choice("split", split, ("train", "test"))
    if name == "20newsgroups":
        return load_20newsgroups(split, data_dir=data_dir, download=download)
    return _zhang(name, split, data_dir, download)


def class_counts(dataset: TextDataset) -> dict[str, int]:
    counts = Counter(dataset.labels.tolist())
    return {dataset.classes[k]: v for k, v in sorted(counts.items())}
