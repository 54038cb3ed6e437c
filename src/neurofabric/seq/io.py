"""Model and optimizer files: safetensors tensors + JSON, written atomically, never pickled.

A model directory::

    config.json        {"format": "neurofabric-seq", "format_version": 1, "arch": "rwkv4" | "mamba" | ...,
                        "config": {...}, "sha256": {"model.safetensors": ...}}
    model.safetensors  the weights (our parameter names)

A training checkpoint adds ``optimizer.safetensors`` (AdamW moments, flattened),
``trainer.json`` (step, schedule, RNG state, metrics summary, the optimizer's param groups)
and ``manifest.json``, written last::

    {"format": "neurofabric-seq-checkpoint", "format_version": 1,
     "arch": ..., "model_config": {...}, "train_config": {...}, "data": {...digests...},
     "sha256": {"config.json": ..., "model.safetensors": ..., "optimizer.safetensors": ...,
                "trainer.json": ...}}

:func:`read_checkpoint_manifest` verifies every listed file before anything is loaded.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from neurofabric.core.checkpoint import (
    atomic_directory,
    read_manifest,
    recover_directory,
    sha256_file,
)
from neurofabric.core.errors import CheckpointError, ConfigError

__all__ = [
    "ARCHS",
    "build_model",
    "load_model",
    "load_quantized",
    "read_checkpoint_manifest",
    "save_model",
    "save_quantized",
]

FORMAT = "neurofabric-seq"
VERSION = 1
QUANT_FORMAT = "neurofabric-seq-quant"
QUANT_VERSION = 1
CHECKPOINT_FORMAT = "neurofabric-seq-checkpoint"
CHECKPOINT_VERSION = 1


def _archs():
    from neurofabric.seq.gpt import GPT, GPTConfig
    from neurofabric.seq.mamba import Mamba, MambaConfig
    from neurofabric.seq.mamba2 import Mamba2, Mamba2Config
    from neurofabric.seq.rwkv import RWKV4, RWKVConfig
    from neurofabric.seq.rwkv7 import RWKV7, RWKV7Config

    return {
        "rwkv4": (RWKV4, RWKVConfig),
        "rwkv7": (RWKV7, RWKV7Config),
        "mamba": (Mamba, MambaConfig),
        "mamba2": (Mamba2, Mamba2Config),
        "gpt": (GPT, GPTConfig),
    }


ARCHS = ("rwkv4", "rwkv7", "mamba", "mamba2", "gpt")


def arch_of(model: Any) -> str:
    for name, (cls, _) in _archs().items():
        if isinstance(model, cls):
            return name
    raise CheckpointError(f"{type(model).__name__} is not a neurofabric sequence model")


def build_model(arch: str, config: dict, *, seed: Any = 0):
    archs = _archs()
    if arch not in archs:
        raise CheckpointError(f"unknown architecture {arch!r}; known: {sorted(archs)}")
    cls, cfg_cls = archs[arch]
    return cls(cfg_cls(**config), seed=seed)


#: the short names :func:`build_lm` (and ``neurofabric seq train --arch``) takes
LM_ARCHS = ("rwkv", "rwkv7", "mamba", "mamba2", "gpt")


def build_lm(
    arch: str,
    vocab_size: int,
    *,
    layers: int,
    width: int,
    seq_len: int,
    seed: Any = 0,
    scan: str = "auto",
):
    """A language model by its short name, as ``neurofabric seq train`` and the studio build
    it: ``"rwkv"`` (RWKV-4), ``"rwkv7"`` (RWKV-7: heads of up to 64 channels), ``"mamba"``
    (Mamba-1), ``"mamba2"`` (Mamba-2: heads of up to 32 channels, d_state 64, one group,
    chunks of 32) or ``"gpt"`` (the baseline, 4 heads, a context of ``seq_len``). ``scan``: the
    training kernel, "auto", "numba" or "chunked" (the WKV of RWKV-4 and RWKV-7, the scan of
    Mamba-1 and Mamba-2); the GPT has none, so it takes only "auto"."""
    if arch == "gpt" and scan != "auto":
        raise ConfigError(
            f"the GPT has no training kernel to choose: `scan` must be 'auto', got {scan!r}"
        )
    if arch == "rwkv":
        config = {"vocab_size": vocab_size, "n_layer": layers, "n_embd": width, "wkv": scan}
        return build_model("rwkv4", config, seed=seed)
    if arch == "rwkv7":
        config = {"vocab_size": vocab_size, "n_layer": layers, "n_embd": width, "wkv": scan}
        config["head_size"] = math.gcd(width, 64)  # RWKV-7's heads of 64 where the width allows
        return build_model("rwkv7", config, seed=seed)
    if arch == "mamba":
        config = {"vocab_size": vocab_size, "n_layer": layers, "d_model": width, "scan": scan}
        return build_model("mamba", config, seed=seed)
    if arch == "mamba2":
        config = {"vocab_size": vocab_size, "n_layer": layers, "d_model": width, "scan": scan}
        config["head_dim"] = math.gcd(2 * width, 32)  # heads of 32 channels where 2 width allows
        return build_model("mamba2", config, seed=seed)
    if arch == "gpt":
        config = {
            "vocab_size": vocab_size,
            "n_layer": layers,
            "n_embd": width,
            "block_size": seq_len,
        }
        return build_model("gpt", config, seed=seed)
    raise ConfigError(f"`arch` must be one of {', '.join(LM_ARCHS)}, got {arch!r}")


def write_model_files(model: Any, folder: Path) -> dict:
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, folder / "model.safetensors")
    meta = {
        "format": FORMAT,
        "format_version": VERSION,
        "arch": arch_of(model),
        "config": model.config.as_dict(),
        "sha256": {"model.safetensors": sha256_file(folder / "model.safetensors")},
    }
    (folder / "config.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return meta


def save_model(model: Any, path: str | os.PathLike[str]) -> Path:
    """Save weights and config to ``path`` (a directory, replaced atomically)."""
    with atomic_directory(path) as tmp:
        write_model_files(model, tmp)
    return Path(path)


def _checked_weights(path: Path, meta: dict, arch: str | None, verify: bool) -> Path:
    """``path/model.safetensors`` after checking the architecture and (``verify``) the
    sha256 that ``meta`` lists; a CheckpointError names what is wrong."""
    if arch is not None and meta.get("arch") != arch:
        raise CheckpointError(f"{path} holds a {meta.get('arch')!r} model, not {arch!r}")
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{path}: model.safetensors is missing")
    if verify and sha256_file(weights) != meta["sha256"]["model.safetensors"]:
        raise CheckpointError(f"{weights}: sha256 mismatch, the file is corrupt")
    return weights


def read_meta(path: Path) -> dict:
    """The checked ``config.json`` of a saved model (a CheckpointError for any other file)."""
    return read_manifest(path, format_name=FORMAT, version=VERSION, filename="config.json")


def load_model(path: str | os.PathLike[str], *, arch: str | None = None, verify: bool = True):
    """The model saved at ``path``; ``arch`` (if given) must match what is saved."""
    from safetensors.torch import load_file

    path = Path(path)
    if _format_of(path) == QUANT_FORMAT:
        return load_quantized(path, arch=arch, verify=verify)
    meta = read_meta(path)
    weights = _checked_weights(path, meta, arch, verify)
    try:
        model = build_model(meta["arch"], meta["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: config does not build a model ({exc})") from exc
    state = load_file(weights)
    own = model.state_dict()
    bad = [k for k in own if k not in state or state[k].shape != own[k].shape]
    if bad or set(state) - set(own):
        raise CheckpointError(
            f"{weights}: tensors do not match the config ({(bad or sorted(set(state) - set(own)))[:3]})"
        )
    model.load_state_dict(state)
    return model


def _format_of(path: Path) -> Any:
    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8")).get("format")
    except (OSError, ValueError, AttributeError):
        return None  # read_meta reports what is wrong


LAYOUTS = ("packed", "autoawq-gemm")


def save_quantized(
    model: Any,
    path: str | os.PathLike[str],
    *,
    quant: dict | None = None,
    layout: str = "packed",
) -> Path:
    """Save a model quantized by :func:`neurofabric.quant.awq.quantize_model` to ``path`` (a
    directory, replaced atomically)::

        config.json        {"format": "neurofabric-seq-quant", "format_version": 1, "arch",
                            "config", "quant": {"layers": {name: {bits, group_size, shape}},
                            ...``quant``}, "sha256": {"model.safetensors": ...}}
        model.safetensors  the float parameters, and per quantized layer ``NAME.qweight``
                           (uint8 codes), ``NAME.scales`` (float16), ``NAME.qzeros`` (uint8
                           zero points), ``NAME.in_scale`` (float16, when the layer has one)

    ``layout="autoawq-gemm"`` writes the quantized layers as AutoAWQ's ``WQLinear_GEMM``
    tensors instead (``NAME.qweight`` int32 (in, out / 8), ``NAME.qzeros`` int32,
    ``NAME.scales`` float16 (groups, out); 4-bit layers without input scale only), so the
    codes can go to tools that read that layout. Nothing is pickled; :func:`load_model` reads
    either back."""
    from neurofabric.core.validation import check_choice
    from neurofabric.quant.awq import to_autoawq_gemm

    check_choice("layout", layout, LAYOUTS)
    import numpy as np
    from safetensors.numpy import save_file

    from neurofabric.quant.awq import quantized_layers

    layers = dict(quantized_layers(model))
    if not layers:
        raise CheckpointError(
            "the model has no quantized layer; quantize it first "
            "(neurofabric.quant.awq.quantize_model) or save it with save_model"
        )
    arrays = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    for name, layer in layers.items():
        if layout == "packed":
            arrays.update(layer.packed.arrays(name))
            continue
        arrays.update({f"{name}.{k}": v for k, v in to_autoawq_gemm(layer.packed).items()})
        if layer.packed.bias is not None:
            arrays[f"{name}.bias"] = layer.packed.bias
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    with atomic_directory(path) as tmp:
        save_file(arrays, tmp / "model.safetensors")
        meta = {
            "format": QUANT_FORMAT,
            "format_version": QUANT_VERSION,
            "arch": arch_of(model),
            "config": model.config.as_dict(),
            "quant": {
                **(quant or {}),
                "layout": layout,
                "layers": {n: m.packed.meta() for n, m in layers.items()},
            },
            "sha256": {"model.safetensors": sha256_file(tmp / "model.safetensors")},
        }
        (tmp / "config.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return Path(path)


def load_quantized(path: str | os.PathLike[str], *, arch: str | None = None, verify: bool = True):
    """The quantized model saved by :func:`save_quantized` (its linear layers are
    :class:`~neurofabric.quant.awq.QuantLinear`); every inconsistency is a CheckpointError."""
    from safetensors.numpy import load_file

    from neurofabric.core.errors import ShapeError
    from neurofabric.quant.awq import PackedLinear, QuantLinear, from_autoawq_gemm

    path = Path(path)
    meta = read_manifest(
        path, format_name=QUANT_FORMAT, version=QUANT_VERSION, filename="config.json"
    )
    weights = _checked_weights(path, meta, arch, verify)
    try:
        with torch.device("meta"):  # no float weights are made for the quantized layers
            model = build_model(meta["arch"], meta["config"])
        layers = meta["quant"]["layers"]
        layout = meta["quant"].get("layout", "packed")
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; known: {LAYOUTS}")
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: config does not build a model ({exc})") from exc
    arrays = load_file(weights)
    for name, lmeta in layers.items():
        try:
            if layout == "autoawq-gemm":
                tensors = {k: arrays[f"{name}.{k}"] for k in ("qweight", "qzeros", "scales")}
                bias = arrays.get(f"{name}.bias")
                packed = from_autoawq_gemm(tensors, int(lmeta["group_size"]), bias=bias)
            else:
                packed = PackedLinear.from_arrays(arrays, name, lmeta)
            old = model.get_submodule(name)
        except (ShapeError, AttributeError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{weights}: quantized layer {name!r}: {exc}") from exc
        if tuple(old.weight.shape) != packed.shape:
            raise CheckpointError(
                f"{name}: quantized shape {packed.shape}, the model needs {tuple(old.weight.shape)}"
            )
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, QuantLinear(packed))
    own = model.state_dict()
    bad = [k for k in own if k not in arrays or tuple(arrays[k].shape) != tuple(own[k].shape)]
    if bad:
        raise CheckpointError(f"{weights}: tensors do not match the config ({bad[:3]})")
    model.load_state_dict({k: torch.from_numpy(arrays[k]) for k in own}, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # pragma: no cover - every tensor of our models is in the state dict
        raise CheckpointError(f"{weights}: no values for {left[:3]}")
    return model


def optimizer_to_files(opt: torch.optim.Optimizer, folder: Path) -> dict:
    """AdamW state as safetensors (per-parameter tensors) + JSON (groups, scalars)."""
    from safetensors.torch import save_file

    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for name, val in st.items():
            if torch.is_tensor(val) and val.ndim > 0:
                tensors[f"{idx}.{name}"] = val.contiguous().cpu()
            else:
                scalars[f"{idx}.{name}"] = float(val)
    save_file(tensors, folder / "optimizer.safetensors")
    return {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_files(opt: torch.optim.Optimizer, folder: Path, meta: dict) -> None:
    from safetensors.torch import load_file

    tensors = load_file(folder / "optimizer.safetensors")
    state: dict[int, dict] = {}
    for key, val in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = val
    for key, val in meta["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = torch.tensor(val)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def write_checkpoint_manifest(folder: Path, meta: dict) -> dict:
    """Write ``manifest.json`` into ``folder``: ``meta`` plus the format, its version and the
    sha256 of every other file in the folder. Call it last, after every file is written."""
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != "manifest.json")
    manifest = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        **meta,
        "sha256": {name: sha256_file(folder / name) for name in files},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


def read_checkpoint_manifest(folder: str | os.PathLike[str], *, verify: bool = True) -> dict:
    """The manifest of a training checkpoint, after checking that every file it lists is
    present and (``verify``) matches its sha256; a problem raises ``CheckpointError`` naming
    the file."""
    folder = Path(folder)
    recover_directory(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no training checkpoint there (the folder is missing)")
    path = folder / "manifest.json"
    if not path.is_file():
        raise CheckpointError(
            f"{path} is missing: {folder} is not a training checkpoint, or one written before "
            f"checkpoints carried checksums; it cannot be verified. Start a new run folder "
            f"(or delete this one) to train from scratch"
        )
    manifest = read_manifest(folder, format_name=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION)
    digests = manifest.get("sha256")
    needed = {"config.json", "model.safetensors", "optimizer.safetensors", "trainer.json"}
    if not isinstance(digests, dict) or not needed <= set(digests):
        raise CheckpointError(f"{path}: `sha256` must list {sorted(needed)}")
    for name, digest in digests.items():
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise CheckpointError(f"{path}: `sha256` lists {name!r}, not a file name")
        file = folder / name
        if not file.is_file():
            raise CheckpointError(f"{file} is missing from the checkpoint")
        if verify and sha256_file(file) != digest:
            raise CheckpointError(f"{file}: sha256 mismatch, the file is corrupt")
    return manifest
