"""The studio's templates: one training recipe per engine, with its parameters declared once.

A :class:`Template` lists its :class:`Param` s (type, default, bounds, help), the data it takes
(an uploaded file of some kinds, or a named dataset) and what a finished run offers (images,
exports, a "try it" panel). :func:`validate` checks a request's parameters with the same
``core.validation`` checks, and then the same engine constructors, that the Python API uses,
so a bad value gets the API's message. The training itself is in :mod:`neurofabric.studio.jobs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurofabric.core.config import get_config
from neurofabric.core.errors import ConfigError, DataError, NeurofabricError
from neurofabric.core.validation import check_choice, check_int, check_interval

__all__ = ["TEMPLATES", "Dataset", "Param", "Template", "dataset_path", "validate"]


@dataclass(frozen=True)
class Param:
    """One parameter: ``type`` is "int", "float", "choice" or "bool"; ``lo``/``hi`` bound
    numbers (inclusive; ``lo_open`` excludes ``lo``)."""

    name: str
    type: str
    default: Any
    help: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    lo_open: bool = False

    def check(self, value: Any) -> Any:
        if self.type == "int":
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            lo = None if self.lo is None else int(self.lo)
            hi = None if self.hi is None else int(self.hi)
            return check_int(self.name, value, min_value=lo, max_value=hi)
        if self.type == "float":
            lo = -math.inf if self.lo is None else self.lo
            hi = math.inf if self.hi is None else self.hi
            return check_interval(self.name, value, lo, hi, low_open=self.lo_open)
        if self.type == "choice":
            return check_choice(self.name, value, self.choices or ())
        if not isinstance(value, bool):
            raise ConfigError(f"`{self.name}` must be true or false, got {value!r}")
        return value

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "min": self.lo,
            "max": self.hi,
            "choices": list(self.choices) if self.choices else None,
            "help": self.help,
        }


@dataclass(frozen=True)
class Dataset:
    """A dataset a template can use instead of an upload: ``path`` relative to the data dir
    (None: shipped with a package, always there)."""

    id: str
    title: str
    path: str | None = None


@dataclass(frozen=True)
class Template:
    id: str
    engine: str
    title: str
    description: str
    params: tuple[Param, ...]
    kinds: tuple[str, ...] = ()
    datasets: tuple[Dataset, ...] = ()
    images: tuple[str, ...] = ()
    exports: tuple[str, ...] = ("model",)
    try_kind: str | None = None
    resumable: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def needs_data(self) -> bool:
        return bool(self.kinds or self.datasets)

    def available_datasets(self) -> list[Dataset]:
        return [d for d in self.datasets if dataset_path(d) is not None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "engine": self.engine,
            "title": self.title,
            "description": self.description,
            "data": {
                "kinds": list(self.kinds),
                "required": self.needs_data,
                "datasets": [{"id": d.id, "title": d.title} for d in self.available_datasets()],
            },
            "params": [p.as_dict() for p in self.params],
            "images": list(self.images),
            "exports": list(self.exports),
            "try": self.try_kind,
            "resumable": self.resumable,
        }


def dataset_path(d: Dataset) -> Path | None:
    """Where a dataset lies (None when the data dir lacks it); "" for package data."""
    if d.path is None:
        return Path("")
    root = get_config().data_dir
    if root is None:
        return None
    p = Path(root) / d.path
    return p if p.exists() else None


P = Param
SEED = P("seed", "int", 0, "Seed of every random choice (initialization, batches, sampling).", 0)

TEMPLATES: dict[str, Template] = {
    t.id: t
    for t in (
        Template(
            "seq-char",
            "seq",
            "Character-level language model",
            "RWKV-4/7, Mamba-1/2 or a GPT baseline learns a text file character by character "
            "(AdamW, warmup + cosine), checkpointing at every evaluation; then writes.",
            (
                P(
                    "arch",
                    "choice",
                    "rwkv",
                    "rwkv (RWKV-4), rwkv7 (RWKV-7), mamba (Mamba-1), mamba2 (Mamba-2) or gpt "
                    "(the transformer baseline: 4 heads, a context of seq_len).",
                    choices=("rwkv", "rwkv7", "mamba", "mamba2", "gpt"),
                ),
                P("layers", "int", 2, "Residual blocks.", 1, 48),
                P("dim", "int", 64, "Width of the residual stream.", 4, 4096),
                P("steps", "int", 500, "Training steps (batches).", 1, 10_000_000),
                P("batch_size", "int", 16, "Sequences per batch.", 1, 4096),
                P("seq_len", "int", 64, "Characters per training sequence.", 2, 16384),
                P("lr", "float", 3e-3, "Peak learning rate of AdamW.", 0.0, 1.0, lo_open=True),
                P("eval_every", "int", 50, "Steps between validation (and checkpoints).", 1),
                P(
                    "max_time",
                    "float",
                    600.0,
                    "Stop after this many seconds of training.",
                    1.0,
                    7 * 86400.0,
                ),
                SEED,
            ),
            kinds=("text",),
            datasets=(
                Dataset(
                    "tinyshakespeare", "tiny-shakespeare (1.1 MB)", "tinyshakespeare/input.txt"
                ),
                Dataset("wikitext2-valid", "WikiText-2, validation split", "wikitext2/valid.txt"),
            ),
            images=("loss",),
            exports=("model", "int4"),
            try_kind="generate",
        ),
        Template(
            "guard-text",
            "guard",
            "Event-driven text classifier",
            "A field of 16-byte neuron records learns a CSV's text -> label by local error "
            "feedback (the guard rule); a held-out part of the data measures it.",
            (
                P(
                    "rule",
                    "choice",
                    "pa1",
                    "The update rule.",
                    choices=("pa1", "pa2", "perceptron", "neuronguard"),
                ),
                P("epochs", "int", 5, "Passes over the training part.", 1, 1000),
                P("log2_features", "int", 18, "Hashed features: 2**this.", 8, 26),
                P("word_ngrams", "int", 2, "Word n-grams up to this n.", 1, 5),
                P(
                    "test_fraction",
                    "float",
                    0.2,
                    "Share of the data held out for the test.",
                    0.05,
                    0.5,
                ),
                SEED,
            ),
            kinds=("csv",),
            datasets=(
                Dataset("ag_news", "AG News (test split, 7,600 articles)", "ag_news/test.csv"),
                Dataset(
                    "20newsgroups",
                    "20 Newsgroups (train split)",
                    "20newsgroups/20news-bydate.tar.gz",
                ),
            ),
            images=("confusion",),
            try_kind="classify",
        ),
        Template(
            "snn-mnist",
            "snn",
            "Diehl & Cook spiking network",
            "Excitatory LIF neurons with lateral inhibition learn MNIST digits by STDP without "
            "labels; neurons are then labelled by their responses.",
            (
                P("neurons", "int", 100, "Excitatory neurons.", 1, 6400),
                P("images", "int", 1000, "Training images (one pass).", 1, 60000),
                P("label_images", "int", 1000, "Images that label the neurons.", 1, 60000),
                P("test_images", "int", 1000, "Test images for the accuracy.", 1, 10000),
                P("checkpoint_every", "int", 100, "Images between checkpoints.", 1),
                SEED,
            ),
            datasets=(
                Dataset("mnist", "MNIST", "mnist"),
                Dataset("fashion_mnist", "Fashion-MNIST", "fashion_mnist"),
            ),
            images=("receptive_fields", "confusion", "raster"),
        ),
        Template(
            "thermo-digits",
            "thermo",
            "Thermodynamic trainer",
            "A sparse network learns scikit-learn's 8x8 digits by Metropolis-Hastings annealing "
            "alone (no gradients), paying for each connection, so it prunes as it learns.",
            (
                P("hidden", "int", 16, "Hidden neurons.", 1, 1024),
                P(
                    "proposals",
                    "int",
                    150_000,
                    "Metropolis-Hastings proposals in all.",
                    1000,
                    10**9,
                ),
                P("generation", "int", 20_000, "Proposals per generation (one report each).", 100),
                P("lambda_l0", "float", 2.0, "Cost of each connection (nats).", 0.0),
                P("t_start", "float", 1.0, "Starting temperature.", 0.0, lo_open=True),
                P("t_end", "float", 0.005, "Final temperature.", 0.0, lo_open=True),
                SEED,
            ),
            datasets=(Dataset("digits", "scikit-learn digits (1,797 images)"),),
            images=("history",),
        ),
        Template(
            "field-image",
            "field",
            "Neural field fitting an image",
            "A demand-paged multi-resolution hash-grid field learns an image with Adam; only "
            "the pages it touches reach the disk.",
            (
                P("levels", "int", 16, "Resolution levels of the hash grid.", 1, 32),
                P("log2_table", "int", 18, "Rows per level: 2**this.", 8, 24),
                P("hidden", "int", 64, "Hidden units of the decoder.", 1, 1024),
                P("batch", "int", 4096, "Pixels per step.", 1, 1 << 20),
                P("lr", "float", 1e-2, "Adam's learning rate.", 0.0, 1.0, lo_open=True),
                P("seconds", "float", 30.0, "Seconds of learning.", 0.5, 86400.0),
                P("colour", "bool", False, "Learn red, green and blue (else grey)."),
                SEED,
            ),
            kinds=("image",),
            datasets=(
                Dataset("china.jpg", "scikit-learn's china.jpg (427 x 640)"),
                Dataset("flower.jpg", "scikit-learn's flower.jpg (427 x 640)"),
            ),
            images=("reconstruction",),
            try_kind="query",
        ),
    )
}


def get_template(template_id: Any) -> Template:
    if template_id not in TEMPLATES:
        raise ConfigError(f"`template` must be one of {tuple(TEMPLATES)}, got {template_id!r}")
    return TEMPLATES[template_id]


def validate(template_id: Any, raw: Any) -> dict[str, Any]:
    """The parameters of a request, defaults filled in and checked; a :class:`ConfigError`
    naming the first bad one (``exc.param``) otherwise."""
    t = get_template(template_id)
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"`params` must be an object of name: value, got {type(raw).__name__}")
    known = {p.name for p in t.params}
    for name in raw:
        if name not in known:
            raise _bad(name, f"`{name}` is not a parameter of {t.id}; it takes {sorted(known)}")
    out = {}
    for p in t.params:
        try:
            out[p.name] = p.check(raw.get(p.name, p.default))
        except ConfigError as exc:
            exc.param = p.name  # type: ignore[attr-defined]
            raise
    _engine_checks(t, out)
    return out


def seq_train_config(p: dict[str, Any]):
    """The trainer's config of a seq-char run (checked by its constructor)."""
    from neurofabric.seq.train import TrainConfig

    return TrainConfig(
        max_steps=p["steps"],
        batch_size=p["batch_size"],
        seq_len=p["seq_len"],
        lr=p["lr"],
        eval_every=p["eval_every"],
        max_time=p["max_time"],
        seed=p["seed"],
        warmup_steps=min(100, p["steps"] // 10),
    )


def _bad(param: str, message: str) -> ConfigError:
    """A ConfigError that names the parameter the page shows it next to."""
    exc = ConfigError(message)
    exc.param = param  # type: ignore[attr-defined]
    return exc


def _engine_checks(t: Template, p: dict[str, Any]) -> None:
    """The engine's own constructors, so their constraints apply before a run starts."""
    try:
        if t.id == "seq-char":
            from neurofabric.seq.gpt import GPTConfig

            if p["arch"] == "gpt":
                if p["dim"] % 4:
                    raise _bad(
                        "dim",
                        f"`dim` must be a multiple of 4 (the GPT's attention heads) for arch "
                        f"gpt, got {p['dim']}",
                    )
                GPTConfig(n_embd=p["dim"], n_layer=p["layers"], block_size=p["seq_len"])

            seq_train_config(p)
        elif t.id == "thermo-digits":
            if p["t_end"] > p["t_start"]:
                raise _bad(
                    "t_end",
                    f"`t_end` must be <= t_start ({p['t_start']}) for annealing, got {p['t_end']}",
                )
            if p["generation"] > p["proposals"]:
                raise _bad(
                    "generation",
                    f"`generation` must be <= proposals ({p['proposals']}), got {p['generation']}",
                )
        elif t.id == "snn-mnist":
            from neurofabric.snn.diehl_cook import DiehlCookClassifier

            DiehlCookClassifier(n_neurons=p["neurons"], seed=p["seed"])
        elif t.id == "field-image":
            from neurofabric.field import HashGridSpec

            HashGridSpec(
                n_dims=2,
                n_levels=p["levels"],
                n_features=2,
                log2_table=p["log2_table"],
                base_resolution=16,
                per_level_scale=1.4,
            )
    except NeurofabricError as exc:
        if not hasattr(exc, "param"):
            exc.param = _named_param(str(exc), p)  # type: ignore[attr-defined]
        raise


def _named_param(message: str, params: dict[str, Any]) -> str | None:
    for name in params:
        if f"`{name}`" in message:
            return name
    return None


def resolve_data(t: Template, data: Any, uploads: Any) -> dict[str, Any] | None:
    """Check a request's ``data`` ({"upload": id} or {"dataset": id} or None) against the
    template; returns it normalized with the upload's kind."""
    if not t.needs_data:
        if data:
            raise DataError(f"template {t.id} takes no data, got {data!r}")
        return None
    if not data and not t.kinds and t.available_datasets():
        data = {"dataset": t.available_datasets()[0].id}  # no upload possible: the first set
    if not isinstance(data, dict) or len(data) != 1:
        choices = [d.id for d in t.available_datasets()]
        raise DataError(
            f"template {t.id} needs data: an upload of kind {list(t.kinds)} "
            f"or one of the datasets {choices}; give {{'upload': id}} or {{'dataset': id}}"
        )
    if "dataset" in data:
        ids = {d.id: d for d in t.datasets}
        if data["dataset"] not in ids:
            raise DataError(
                f"`dataset` must be one of {tuple(ids)} for {t.id}, got {data['dataset']!r}"
            )
        if dataset_path(ids[data["dataset"]]) is None:
            raise DataError(
                f"dataset {data['dataset']!r} is not in the data dir "
                f"({get_config().data_dir}); start the studio with --data-dir pointing at a "
                "folder that holds it, or upload a file"
            )
        return {"dataset": data["dataset"]}
    if "upload" in data:
        up = uploads.get(data["upload"])
        if up["kind"] not in t.kinds:
            raise DataError(
                f"upload {up['name']!r} is {up['kind']}; template {t.id} takes {list(t.kinds)}"
            )
        return {"upload": up["id"], "name": up["name"], "kind": up["kind"]}
    raise DataError(f"`data` must be {{'upload': id}} or {{'dataset': id}}, got {data!r}")
