"""Where datasets live: an explicit folder, else ``NEUROFABRIC_DATA`` (``config_context``)."""

from __future__ import annotations

import logging
import os
import shutil
import urllib.request
from pathlib import Path

from neurofabric.core.checkpoint import atomic_file, sha256_file
from neurofabric.core.config import get_config
from neurofabric.core.errors import DataError

log = logging.getLogger(__name__)


def resolve_data_dir(data_dir: str | os.PathLike[str] | None, subdir: str) -> Path:
    """``data_dir/subdir`` (or the configured data dir's); a clear error when unset."""
    base = Path(data_dir) if data_dir is not None else get_config().data_dir
    if base is None:
        raise DataError(
            f"no data directory for {subdir!r}: pass `data_dir=` (CLI: --data-dir) "
            "or set NEUROFABRIC_DATA to the folder that holds it"
        )
    return base / subdir


def download(url: str, dest: Path, sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` atomically (temp file, checksum, rename)."""
    log.info("downloading %s -> %s", url, dest)
    with atomic_file(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as exc:
            raise DataError(
                f"download of {url} failed ({exc}); place the file at {dest} yourself and load "
                "again"
            ) from exc
        if sha256 is not None and sha256_file(tmp) != sha256:
            raise DataError(
                f"{url}: sha256 mismatch, the download is corrupt or not the canonical file"
            )
    return dest
