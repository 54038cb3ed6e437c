"""Uploaded files: size-capped, checked before anything is written, kept inside the runs folder.

An upload is stored as ``<runs>/uploads/<id>/data.<ext>`` with ``upload.json`` beside it (the
original name, kind, size, sha256 and a line of what was found). The original file name is
only shown, never used as a path, so no name (``../../etc/passwd``, ``C:\\x``, a NUL byte)
can place a file outside. A file that fails its check (not UTF-8 text, a CSV without a text
and a label column, an image Pillow cannot decode, or over the cap) is refused with the
reason and leaves nothing on disk.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from neurofabric.core.checkpoint import atomic_directory
from neurofabric.core.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_MAX_UPLOAD", "UploadStore", "sniff"]

DEFAULT_MAX_UPLOAD = 64 << 20
_EXT = {"text": "txt", "csv": "csv", "image": "img"}
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8", b"BM")


def _kind_of(name: str, payload: bytes) -> str:
    lower = name.lower()
    if payload.startswith(_IMAGE_MAGIC) or lower.endswith(
        (".png", ".jpg", ".jpeg", ".gif", ".bmp")
    ):
        return "image"
    if lower.endswith((".csv", ".tsv")):
        return "csv"
    return "text"


def sniff(name: str, payload: bytes) -> tuple[str, str]:
    """(kind, what was found) of an upload, or a :class:`DataError` saying why it is refused."""
    if not payload:
        raise DataError(f"{name!r} is empty; upload a file with some content")
    kind = _kind_of(name, payload)
    if kind == "image":
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(payload)) as im:
                im.verify()
            with Image.open(io.BytesIO(payload)) as im:
                w, h = im.size
                mode = im.mode
                fmt = im.format
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DataError(
                f"{name!r} is not an image Pillow can read ({exc}); upload a PNG or JPEG"
            ) from exc
        if w * h > 16_000_000:
            raise DataError(f"{name!r} is {w} x {h} pixels; the studio takes up to 16 megapixels")
        return kind, f"{fmt} image, {w} x {h}, {mode}"
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{name!r} is not UTF-8 text (byte {exc.start} is {payload[exc.start]:#04x}); "
            "save it as UTF-8 and upload it again"
        ) from exc
    if "\x00" in text:
        raise DataError(f"{name!r} holds NUL characters: it is a binary file, not text")
    if kind == "csv":
        return kind, _check_csv(name, text)
    return kind, f"UTF-8 text, {len(text):,} characters, {len(set(text))} distinct"


def _check_csv(name: str, text: str) -> str:
    rows = csv.reader(io.StringIO(text, newline=""))
    header = next(rows, None)
    if not header or not {"text", "label"} <= {h.strip() for h in header}:
        raise DataError(
            f"{name!r}: the first row must name a `text` and a `label` column, got {header}; "
            "add that header row"
        )
    cols = [h.strip() for h in header]
    need = max(cols.index("text"), cols.index("label")) + 1
    n, labels = 0, set()
    for row in rows:
        if not row:
            continue
        if len(row) < need:
            raise DataError(
                f"{name!r} line {rows.line_num}: {len(row)} fields, the header asks for {need}"
            )
        labels.add(row[cols.index("label")].strip())
        n += 1
    if n < 4 or len(labels) < 2:
        raise DataError(
            f"{name!r}: {n} rows and {len(labels)} labels; need >= 4 rows and >= 2 labels"
        )
    return f"CSV, {n:,} rows, {len(labels)} labels"


class UploadStore:
    """The uploads under ``root/uploads``."""

    def __init__(self, root: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_UPLOAD) -> None:
        self.root = Path(root).resolve() / "uploads"
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)

    def add(self, name: str, payload: bytes) -> dict[str, Any]:
        from neurofabric.studio.runs import new_id

        name = os.path.basename(str(name).replace("\\", "/")).strip() or "upload"
        name = "".join(c for c in name if c.isprintable())[:200] or "upload"
        if len(payload) > self.max_bytes:
            raise DataError(
                f"{name!r} is {len(payload):,} bytes, over the studio's cap of "
                f"{self.max_bytes:,}; start the studio with a larger --max-upload-mb"
            )
        kind, info = sniff(name, payload)
        up_id = new_id()
        rec = {
            "id": up_id,
            "name": name,
            "kind": kind,
            "bytes": len(payload),
            "info": info,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "created": time.time(),
        }
        with atomic_directory(self.root / up_id) as tmp:
            (tmp / f"data.{_EXT[kind]}").write_bytes(payload)
            (tmp / "upload.json").write_text(json.dumps(rec, indent=1), encoding="utf-8")
        return rec

    def get(self, up_id: Any) -> dict[str, Any]:
        from neurofabric.studio.runs import RUN_ID

        if not isinstance(up_id, str) or not RUN_ID.match(up_id):
            raise DataError(f"no upload {up_id!r}")
        path = self.root / up_id / "upload.json"
        if not path.is_file():
            raise DataError(f"no upload {up_id!r}")
        return json.loads(path.read_text(encoding="utf-8"))

    def file(self, up_id: str) -> Path:
        rec = self.get(up_id)
        path = self.root / up_id / f"data.{_EXT[rec['kind']]}"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != rec["sha256"]:
            raise DataError(f"upload {up_id} ({rec['name']!r}) changed on disk; upload it again")
        return path

    def list(self) -> list[dict[str, Any]]:
        out = []
        for d in sorted(self.root.iterdir(), reverse=True):
            if (d / "upload.json").is_file():
                try:
                    out.append(self.get(d.name))
                except (DataError, ValueError, OSError) as exc:
                    log.warning("studio: skipping upload %s: %s", d.name, exc)
        return out

    def remove(self, up_id: str) -> None:
        self.get(up_id)
        shutil.rmtree(self.root / up_id)
