"""Using a run's trained model from the studio: export, generate, classify, query, compare.

Models are loaded from the run's ``model`` folder through each engine's own ``load`` (which
verifies checksums) and kept in a small cache keyed by the folder's modification time, so a
resumed run's newer model replaces the old one.
"""

from __future__ import annotations

import copy
import io
import logging
import os
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from neurofabric.core.errors import ConfigError, DataError, NotFittedError
from neurofabric.core.validation import check_int

log = logging.getLogger(__name__)

__all__ = ["ModelCache", "compare", "export_zip", "quantize_run"]


def model_folder(folder: Path, kind: str = "model") -> Path:
    path = folder / ("model" if kind == "model" else "model-int4")
    if not path.exists():
        raise NotFittedError(
            f"this run has no {'4-bit ' if kind == 'int4' else ''}model yet: it is saved when "
            "training ends or is cancelled"
        )
    return path


def export_zip(folder: Path, run_id: str, kind: str) -> tuple[bytes, str]:
    """The model folder zipped (deflated: a field's unused pages are zeros)."""
    path = model_folder(folder, kind)
    buf = io.BytesIO()
    name = f"{run_id}-{kind}"
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for f in sorted(path.rglob("*")):
            if f.is_file() and not f.name.startswith("."):
                zf.write(f, f"{name}/{f.relative_to(path)}")
    return buf.getvalue(), f"{name}.zip"


class ModelCache:
    """Loaded models by run folder, newest model file wins; a handful at most."""

    def __init__(self, size: int = 6) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str], tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, folder: Path, engine: str, kind: str = "model") -> Any:
        path = model_folder(folder, kind)
        stamp = max(f.stat().st_mtime for f in [path, *path.iterdir()])
        key = (str(folder), kind)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] == stamp:
                self._items.move_to_end(key)
                return hit[1]
        model = _load(path, engine)
        with self._lock:
            self._items[key] = (stamp, model)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return model


def _load(path: Path, engine: str) -> Any:
    if engine == "seq":
        from neurofabric.seq.io import load_model
        from neurofabric.seq.tokenizers import load_tokenizer

        tok = path / "tokenizer.json"
        if not tok.exists():
            tok = path.parent / "model" / "tokenizer.json"
        return load_model(path).eval(), load_tokenizer(tok)
    if engine == "guard":
        from neurofabric.guard import TextGuardClassifier

        return TextGuardClassifier.load(path)
    raise ConfigError(f"engine {engine!r} has no loaded-model use in the studio")


# ---------------------------------------------------------------------- sequence models
def check_generate(max_tokens: int, temperature: float, top_k: int, top_p: float) -> None:
    from neurofabric.seq.generate import _check

    check_int("max_tokens", max_tokens, min_value=1, max_value=5000)
    _check(temperature, top_k or None, top_p if top_p < 1.0 else None, max_tokens)


def stream_tokens(model: Any, tok: Any, prompt: str, **kw: Any) -> Iterator[dict[str, Any]]:
    """{"text": piece} per token, then {"tokens": n, "tokens_per_s": rate}."""
    from neurofabric.seq.generate import generate

    n, t0 = 0, time.perf_counter()
    for piece in generate(model, tok, prompt, **kw):
        n += 1
        yield {"text": piece}
    dt = max(time.perf_counter() - t0, 1e-9)
    yield {"tokens": n, "tokens_per_s": n / dt, "done": True}


def prompt_loss(model: Any, tok: Any, text: str) -> float:
    """Mean cross-entropy (nats per token) of ``text`` under the model, teacher-forced."""
    import torch

    ids = tok.encode(text)
    if len(ids) < 2:
        raise ConfigError("`prompt` must encode to at least 2 tokens to measure a loss")
    from neurofabric.seq.train import token_loss

    x = torch.tensor([ids[:-1]], dtype=torch.long)
    y = torch.tensor([ids[1:]], dtype=torch.long)
    return token_loss(model, x, y)


def state_bytes(model: Any, n_tokens: int) -> tuple[int, float]:
    """(bytes of the state decoding carries after ``n_tokens``, bytes added per token): a
    recurrent model's state is constant; a GPT's KV cache grows with the context."""
    from neurofabric.seq.decode import MambaDecoder, RWKVDecoder
    from neurofabric.seq.gpt import GPT
    from neurofabric.seq.mamba import Mamba

    if isinstance(model, GPT):
        per = model.cache_bytes_per_token()
        return per * min(n_tokens, model.config.block_size), float(per)

    dec = (MambaDecoder if isinstance(model, Mamba) else RWKVDecoder).from_model(model)
    st = dec.init_state()
    return int(sum(a.nbytes for a in st) if isinstance(st, tuple) else st.nbytes), 0.0


def quantize_run(folder: Path, text: str, *, bits: int = 4) -> Path:
    """AWQ 4-bit of the run's model, saved beside it as ``model-int4`` (once per model)."""
    import torch

    from neurofabric.quant.awq import AWQConfig, quantize_model
    from neurofabric.seq.io import load_model, save_quantized
    from neurofabric.seq.tokenizers import load_tokenizer
    from neurofabric.seq.train import TextData

    src = model_folder(folder)
    dst = folder / "model-int4"
    if dst.exists() and dst.stat().st_mtime >= (src / "model.safetensors").stat().st_mtime:
        return dst
    model = load_model(src).eval()
    tok = load_tokenizer(src / "tokenizer.json")
    data = TextData.from_text(text, tok)
    dims = [m.in_features for m in model.modules() if isinstance(m, torch.nn.Linear)]
    group = next((g for g in (128, 64, 32, 16, 8) if all(d % g == 0 for d in dims)), None)
    if group is None:
        raise ConfigError(
            f"the model's layer widths {sorted(set(dims))} share no group size of 8 or more; "
            "train with a `dim` that is a multiple of 8 to quantize it"
        )
    rng = np.random.default_rng(0)
    seq_len = min(64, getattr(model.config, "block_size", 64), max(2, len(data.train) // 20))
    calib = torch.stack([data.batch("train", 8, seq_len, rng)[0] for _ in range(4)]).flatten(0, 1)
    q = copy.deepcopy(model)
    report = quantize_model(q, calib, AWQConfig(bits=bits, group_size=group))
    save_quantized(q, dst, quant=report.config)
    import shutil

    shutil.copy2(src / "tokenizer.json", dst / "tokenizer.json")
    return dst


def compare(
    items: list[tuple[str, Path]], prompt: str, max_tokens: int, cache: ModelCache
) -> list[dict]:
    """One row per model (and its 4-bit version where exported): size, speed, memory, loss."""
    rows = []
    for run_id, folder in items:
        sb, n_params, per_token = 0, 0, 0.0
        for kind in ("model", "int4"):
            if kind == "int4" and not (folder / "model-int4").exists():
                continue
            model, tok = cache.get(folder, "seq", kind)
            files = model_folder(folder, kind)
            # warm the decoder (numba compiles on first use), then the median of 3 timings
            for _ in stream_tokens(model, tok, prompt, max_new_tokens=2, seed=0):
                pass
            rates = []
            for _ in range(3):
                *_, last = stream_tokens(model, tok, prompt, max_new_tokens=max_tokens, seed=0)
                rates.append(last["tokens_per_s"])
            if kind == "model":  # the 4-bit model carries the same state
                sb, per_token = state_bytes(model, len(tok.encode(prompt)) + max_tokens)
                n_params = int(sum(p.numel() for p in model.parameters()))
            rows.append(
                {
                    "run": run_id,
                    "arch": type(model).__name__,
                    "variant": "float32" if kind == "model" else "int4",
                    "params": n_params,
                    "file_bytes": int(os.path.getsize(files / "model.safetensors")),
                    "tokens_per_s": float(np.median(rates)),
                    "state_bytes": sb,
                    # recurrent models: 0 (the state does not grow with the text); a GPT's KV
                    # cache grows by 2 x layers x width x 4 bytes per token
                    "bytes_per_token": per_token,
                    "loss_nats": prompt_loss(model, tok, prompt),
                }
            )
    if not rows:
        raise DataError("no finished seq-char run to compare: train one first")
    return rows


# ---------------------------------------------------------------------- neural field
def field_query(folder: Path, points: Any) -> list[list[float]]:
    """The field's values at ``points`` (a list of [x, y] in [0, 1]), opened read-only."""
    from neurofabric.field import DemandPagedField

    pts = np.asarray(points, dtype=np.float32) if isinstance(points, list) else None
    if pts is None or pts.ndim != 2 or pts.shape[1] != 2 or not 0 < len(pts) <= 65536:
        raise DataError("`points` must be a list of 1 to 65,536 [x, y] pairs")
    if not np.all(np.isfinite(pts)) or pts.min() < 0 or pts.max() > 1:
        raise DataError("`points` must lie in [0, 1] x [0, 1] (x across, y down the image)")
    with DemandPagedField.open(model_folder(folder), readonly=True) as f:
        return np.asarray(f.query(pts), dtype=np.float64).round(6).tolist()


def field_image(folder: Path, shape: Any) -> bytes:
    """What the field answers at every pixel, as a PNG (the shape the run learned)."""
    from PIL import Image

    from neurofabric.field import DemandPagedField
    from neurofabric.field.signals import image_signal

    if not (isinstance(shape, list) and len(shape) == 3):
        raise NotFittedError("the field's image is drawn once its run has finished")
    H, W, C = (int(v) for v in shape)
    coords, _, _ = image_signal(np.zeros((H, W, C), np.float32))
    with DemandPagedField.open(model_folder(folder), readonly=True) as f:
        vals = np.concatenate(
            [f.query(coords[j : j + 65536]) for j in range(0, len(coords), 65536)]
        )
    img = (np.clip(vals.reshape(H, W, C), 0, 1) * 255 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img.squeeze(-1) if C == 1 else img).save(buf, format="PNG")
    return buf.getvalue()
