"""``neurofabric guard``: event-driven text classification, a rhythm tracker, an expert router."""

from __future__ import annotations

import re
import time
from contextlib import nullcontext
from decimal import Decimal
from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from neurofabric.cli.common import BACKEND_OPTION, JSON_OPTION, ProgressView, emit, handles_errors
from neurofabric.cli.render import console, err_console, print_report
from neurofabric.core.errors import ConfigError

guard_app = typer.Typer(
    help="The event-driven classifier: a neuron field trained by local error feedback.",
    no_args_is_help=True,
)


def load_split(
    dataset: str | None,
    csv: Path | None,
    jsonl: Path | None,
    data_dir,
    split: str,
    text_column: str = "text",
    label_column: str = "label",
):
    """A named dataset's split, or a CSV / JSONL file (the file is the whole set)."""
    from neurofabric.data.text import load_text_csv, load_text_dataset, load_text_jsonl

    given = [x is not None for x in (dataset, csv, jsonl)]
    if sum(given) != 1:
        raise ConfigError("give exactly one of --dataset, --csv or --jsonl")
    if csv is not None:
        return load_text_csv(csv, text_column=text_column, label_column=label_column)
    if jsonl is not None:
        return load_text_jsonl(jsonl, text_key=text_column, label_key=label_column)
    return load_text_dataset(dataset, split, data_dir=data_dir)


def train_text(
    *,
    train,
    test,
    out: Path | None,
    rule: str,
    epochs: int,
    n_features: int,
    word_ngrams: int,
    char_ngrams: tuple[int, int] | None,
    n_jobs: int,
    weights: str,
    seed: int,
    plot: Path | None,
    backend: str = "auto",
    show_progress: bool = True,
) -> dict:
    """Fit, evaluate and save a text classifier with a progress bar; returns a summary."""
    from neurofabric.core.figures import plot_confusion
    from neurofabric.core.metrics import classification_report
    from neurofabric.guard import TextGuardClassifier, saved_bytes

    kw = {"rule": rule, "epochs": epochs, "n_features": n_features, "n_jobs": n_jobs, "seed": seed}
    if rule != "neuronguard":
        kw.update(word_ngrams=word_ngrams, char_ngrams=char_ngrams)
    clf = TextGuardClassifier(**kw, backend=backend)
    t0 = time.perf_counter()
    with ProgressView(
        "training", show=show_progress, info=lambda p: f"feedback on {p['update_rate']:.1%}"
    ) as view:
        classes = np.asarray(train.classes)
        clf.fit(train.texts, classes[train.labels], callback=view.callback, classes=classes)
    fit_s = time.perf_counter() - t0
    summary = {
        "train_docs": len(train),
        "fit_seconds": fit_s,
        "rule": rule,
        "backend": clf.backend_,
        "synapses": clf.guard.field_.n_synapses(),
        "classes": list(train.classes),
    }
    if test is not None:
        events = clf.transform(test.texts)
        t0 = time.perf_counter()
        pred_names = clf.guard.predict(events)
        summary["predict_docs_per_s"] = len(test) / max(time.perf_counter() - t0, 1e-9)
        index = {c: i for i, c in enumerate(train.classes)}
        pred = np.array([index[p] for p in pred_names.tolist()], dtype=np.int64)
        summary["report"] = classification_report(test.labels, pred, n_classes=len(train.classes))
        summary["test_docs"] = len(test)
        if plot is not None:
            labels = list(train.classes)
            title = f"guard ({rule})"
            plot_confusion(summary["report"]["confusion"], plot, title=title, labels=labels)
    if out is not None:
        clf.save(out, weights=weights)
        summary["bytes_on_disk"] = saved_bytes(out)
        summary["model"] = str(out)
    return summary


def summary_table(s: dict) -> Table:
    t = Table(title=f"guard text classifier (rule {s['rule']})")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("training documents", f"{s['train_docs']:,}")
    t.add_row("training time (features included)", f"{s['fit_seconds']:.2f} s")
    t.add_row("synapses", f"{s['synapses']:,}")
    if "report" in s:
        t.add_row("test accuracy", f"{s['report']['accuracy']:.4f}")
        t.add_row("test macro-F1", f"{s['report']['macro_f1']:.4f}")
        t.add_row("prediction (features built)", f"{s['predict_docs_per_s']:,.0f} docs/s")
    if "bytes_on_disk" in s:
        t.add_row("model on disk", f"{s['bytes_on_disk']:,} bytes")
    return t


_DATASET = typer.Option(None, help="20newsgroups, ag_news or dbpedia (their canonical splits).")
_DATA_DIR = typer.Option(None, help="Folder holding the dataset folders (or NEUROFABRIC_DATA).")
_CSV = typer.Option(None, help="A CSV file with a header (see --text-column, --label-column).")
_JSONL = typer.Option(None, help="A JSONL file, one object per line.")
_TEXT_COLUMN = typer.Option("text", help="Text column / key of --csv / --jsonl.")
_LABEL_COLUMN = typer.Option("label", help="Label column / key of --csv / --jsonl.")


@guard_app.command("train")
@handles_errors
def guard_train(
    out: Path = typer.Option(..., help="Folder to save the model in."),
    dataset: str | None = _DATASET,
    data_dir: Path | None = _DATA_DIR,
    csv: Path | None = _CSV,
    jsonl: Path | None = _JSONL,
    text_column: str = _TEXT_COLUMN,
    label_column: str = _LABEL_COLUMN,
    rule: str = typer.Option("pa1", help="pa1, pa2, perceptron or neuronguard (the PoC's rule)."),
    epochs: int = typer.Option(5, help="Passes over the training set."),
    n_features: int = typer.Option(1 << 18, help="Hashed input neurons."),
    word_ngrams: int = typer.Option(1, help="1: words, 2: adds word bigrams, ..."),
    char_ngrams: str | None = typer.Option(None, help="minn,maxn character n-grams, e.g. 3,6."),
    n_jobs: int = typer.Option(1, help="1: deterministic; -1: Hogwild on every thread."),
    int8: bool = typer.Option(False, help="Save the weights as int8 (per output scale)."),
    seed: int = typer.Option(0, help="Seed of the sample order."),
    plot: Path | None = typer.Option(None, help="Confusion matrix PNG of the test split."),
    backend: str = BACKEND_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Train on a dataset's training split (evaluated on its test split) or on a file."""
    cg = None
    if char_ngrams:
        parts = char_ngrams.split(",")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ConfigError(f"--char-ngrams must be 'minn,maxn', got {char_ngrams!r}")
        cg = (int(parts[0]), int(parts[1]))
    train = load_split(dataset, csv, jsonl, data_dir, "train", text_column, label_column)
    test = load_split(dataset, None, None, data_dir, "test") if dataset else None
    s = train_text(
        train=train,
        test=test,
        out=out,
        rule=rule,
        epochs=epochs,
        n_features=n_features,
        word_ngrams=word_ngrams,
        char_ngrams=cg,
        n_jobs=n_jobs,
        weights="int8" if int8 else "float32",
        seed=seed,
        plot=plot,
        backend=backend,
        show_progress=not json_out,
    )
    if json_out:
        emit(s, True, None)
        return
    console.print(summary_table(s))
    if "report" in s:
        print_report(console, s["report"], "test split", names=s["classes"])


@guard_app.command("eval")
@handles_errors
def guard_eval(
    model: Path = typer.Option(..., help="A folder written by `guard train`."),
    dataset: str | None = _DATASET,
    data_dir: Path | None = _DATA_DIR,
    csv: Path | None = _CSV,
    jsonl: Path | None = _JSONL,
    split: str = typer.Option("test", help="Split of --dataset."),
    plot: Path | None = typer.Option(None, help="Confusion matrix PNG."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Accuracy, macro-F1, per-class precision/recall and the confusion matrix of a model."""
    from neurofabric.core.figures import plot_confusion
    from neurofabric.core.metrics import classification_report
    from neurofabric.guard import TextGuardClassifier

    clf = TextGuardClassifier.load(model)
    data = load_split(dataset, csv, jsonl, data_dir, split)
    names = [str(c) for c in clf.classes_]
    index = {c: i for i, c in enumerate(names)}
    missing = sorted(set(data.classes) - set(index))
    if missing:
        raise ConfigError(f"labels {missing} are not classes of the model ({names})")
    truth = np.array([index[data.classes[y]] for y in data.labels], dtype=np.int64)
    pred = np.array([index[str(p)] for p in clf.predict(data.texts)], dtype=np.int64)
    rep = classification_report(truth, pred, n_classes=len(names))
    if plot is not None:
        plot_confusion(rep["confusion"], plot, title=model.name, labels=names)
    if json_out:
        emit(
            {"model": str(model), "documents": len(truth), "classes": names, "report": rep},
            True,
            None,
        )
        return
    print_report(console, rep, f"{model.name} on {dataset or csv or jsonl}", names=names)
    if plot is not None:
        console.print(f"figure: {plot}")


@guard_app.command("predict")
@handles_errors
def guard_predict(
    texts: list[str] = typer.Argument(..., help="Documents to classify."),
    model: Path = typer.Option(..., help="A folder written by `guard train`."),
    json_out: bool = JSON_OPTION,
) -> None:
    """The predicted class and its probability for each document."""
    from neurofabric.guard import TextGuardClassifier

    clf = TextGuardClassifier.load(model)
    proba = clf.predict_proba(texts)
    best = np.argmax(proba, axis=1)
    if json_out:
        rows = [
            {"text": text, "class": str(clf.classes_[k]), "p": float(p[k])}
            for text, p, k in zip(texts, proba, best, strict=True)
        ]
        emit({"predictions": rows}, True, None)
        return
    t = Table("document", "class", "p")
    for text, p, k in zip(texts, proba, best, strict=True):
        t.add_row(text[:60], str(clf.classes_[k]), f"{p[k]:.3f}")
    console.print(t)


_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9}
_SIZE_UNITS |= {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}
_BITS_OF = {"float32": 32, "int8": 8, "int4": 4, "int2": 2}


def parse_size(text: str, option: str = "--max-bytes") -> int:
    """Bytes in a size such as "123456", "100KB", "1.5MB" or "64KiB" (KB = 1000, KiB = 1024)."""
    m = _SIZE.fullmatch(text.strip())
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _SIZE_UNITS:
        raise ConfigError(
            f"{option} must be a size in bytes such as 123456, 100KB, 1.5MB or 64KiB "
            f"(KB = 1000 bytes, KiB = 1024), got {text!r}"
        )
    n = int(Decimal(m.group(1)) * _SIZE_UNITS[unit])
    if n < 1:
        raise ConfigError(f"{option} must be at least 1 byte, e.g. 100KB, got {text!r}")
    return n


def model_labels(clf, data) -> np.ndarray:
    """``data``'s labels as the model's class values (matched by name)."""
    index = {str(c): c for c in clf.classes_.tolist()}
    missing = sorted(set(data.classes) - set(index))
    if missing:
        raise ConfigError(f"labels {missing} are not classes of the model ({list(index)})")
    return np.array([index[data.classes[y]] for y in data.labels])


def compress_text(
    model: Path,
    out: Path,
    *,
    train=None,
    test=None,
    max_bytes: int | None = None,
    max_features: int | None = None,
    bits: int = 4,
    epochs: int | None = None,
    importance: str = "norm",
) -> dict:
    """Compress a saved model into ``out`` (retrained on ``train``, both scored on ``test``)."""
    from neurofabric.core.checkpoint import read_manifest
    from neurofabric.guard import TextGuardClassifier, saved_bytes
    from neurofabric.guard.compress import compress

    clf = TextGuardClassifier.load(model)
    weights = read_manifest(model)["meta"]["field"].get("weights", "float32")
    original = {
        "bytes": saved_bytes(model),
        "inputs": clf.featurizer_.n_inputs,
        "weights": weights,
        "bits": _BITS_OF.get(weights),
    }
    if test is not None:
        original["accuracy"] = clf.score(test.texts, model_labels(clf, test))
    texts = labels = None
    if train is not None:
        texts, labels = train.texts, model_labels(clf, train)
    t0 = time.perf_counter()
    small = compress(
        clf,
        max_features=max_features,
        max_bytes=max_bytes,
        bits=bits,
        texts=texts,
        labels=labels,
        epochs=epochs,
        importance_kind=importance,
    )
    seconds = time.perf_counter() - t0
    small.save(out)
    compressed = {
        "bytes": saved_bytes(out),
        "inputs": small.featurizer_.n_inputs,
        "weights": f"int{bits}",
        "bits": bits,
    }
    if test is not None:
        compressed["accuracy"] = small.score(test.texts, model_labels(small, test))
    return {
        "model": str(model),
        "out": str(out),
        "max_bytes": max_bytes,
        "max_features": max_features,
        "importance": importance,
        "retrained": train is not None,
        "train_docs": len(train) if train is not None else 0,
        "test_docs": len(test) if test is not None else 0,
        "seconds": seconds,
        "original": original,
        "compressed": compressed,
        "ratio": original["bytes"] / max(compressed["bytes"], 1),
    }


def compress_table(s: dict) -> Table:
    t = Table(title=f"guard compress: {Path(s['model']).name} -> {Path(s['out']).name}")
    t.add_column("figure")
    t.add_column("original", justify="right")
    t.add_column("compressed", justify="right")
    a, b = s["original"], s["compressed"]
    t.add_row("model on disk", f"{a['bytes']:,} bytes", f"{b['bytes']:,} bytes")
    t.add_row("inputs kept", f"{a['inputs']:,}", f"{b['inputs']:,}")
    t.add_row("weights", a["weights"], b["weights"])
    if "accuracy" in a:
        docs = f"test accuracy ({s['test_docs']:,} docs)"
        t.add_row(docs, f"{a['accuracy']:.4f}", f"{b['accuracy']:.4f}")
    t.add_row("size ratio", "1", f"1/{s['ratio']:.1f}")
    how = f"retrained on {s['train_docs']:,} docs" if s["retrained"] else "not retrained"
    t.caption = f"{how}, in {s['seconds']:.1f} s"
    return t


@guard_app.command("compress")
@handles_errors
def guard_compress(
    model: Path = typer.Argument(..., help="A folder written by `guard train`."),
    out: Path = typer.Argument(..., help="Folder to save the compressed model in."),
    max_bytes: str | None = typer.Option(
        None,
        help="Size budget on disk: bytes (123456) or 100KB, 1.5MB, 64KiB (KB = 1000, KiB = 1024).",
    ),
    max_features: int | None = typer.Option(None, min=1, help="Inputs (hashed n-grams) to keep."),
    bits: int = typer.Option(4, help="Bits per weight: 4 or 2."),
    dataset: str | None = _DATASET,
    data_dir: Path | None = _DATA_DIR,
    csv: Path | None = _CSV,
    jsonl: Path | None = _JSONL,
    text_column: str = _TEXT_COLUMN,
    label_column: str = _LABEL_COLUMN,
    epochs: int | None = typer.Option(
        None, min=1, help="Retraining passes (default: the model's)."
    ),
    importance: str = typer.Option("norm", help="Input ranking: norm (default) or mass."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Prune a model's inputs by importance, retrain them on data if given, quantize to 4/2 bits.

    Give --max-bytes, --max-features or both (the tighter wins). With --dataset (or --csv /
    --jsonl) the kept inputs are retrained on its training split, and a dataset's test split
    scores the original and the compressed model.
    """
    if max_bytes is None and max_features is None:
        raise ConfigError("give --max-bytes (e.g. 100KB) or --max-features (e.g. 20000), or both")
    budget = parse_size(max_bytes) if max_bytes is not None else None
    if bits not in (2, 4):
        raise ConfigError(f"--bits must be 4 or 2, got {bits}")
    if importance not in ("norm", "mass"):
        raise ConfigError(f"--importance must be norm or mass, got {importance!r}")
    train = test = None
    if dataset is not None or csv is not None or jsonl is not None:
        train = load_split(dataset, csv, jsonl, data_dir, "train", text_column, label_column)
        test = load_split(dataset, None, None, data_dir, "test") if dataset else None
    elif epochs is not None:
        raise ConfigError("--epochs retrains the model: give --dataset, --csv or --jsonl too")
    status = nullcontext() if json_out else err_console.status(f"compressing {model}")
    with status:
        s = compress_text(
            model,
            out,
            train=train,
            test=test,
            max_bytes=budget,
            max_features=max_features,
            bits=bits,
            epochs=epochs,
            importance=importance,
        )
    emit(s, json_out, compress_table)


def run_rhythm(
    pattern: list[int],
    then: list[int],
    repeats: int,
    context: int,
    seed: int,
    plot: Path | None,
    backend: str = "auto",
) -> dict:
    from neurofabric.core.figures import pyplot, save_figure
    from neurofabric.guard.rhythm import RhythmTracker

    first, second = pattern * repeats, then * repeats
    n_symbols = max(pattern + then) + 1
    tracker = RhythmTracker(n_symbols, context=context, seed=seed, backend=backend)
    result = tracker.run(first + second)
    k = len(first)
    c = result.correct
    summary = {
        "neurons": tracker.n_neurons,
        "first_pattern_last_20": float(np.mean(c[k - 20 : k])),
        "after_change_first_10": float(np.mean(c[k : k + 10])),
        "second_pattern_last_20": float(np.mean(c[-20:])),
        "steps_to_recover": _recover(c[k:]),
        "backend": tracker.classifier.backend_,
    }
    if plot is not None:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(8, 3))
        ax.plot(np.arange(9, len(c)), result.running_accuracy(10))
        ax.axvline(k, color="red", ls="--", label="pattern changes")
        ax.set_xlabel("event")
        ax.set_ylabel("accuracy (last 10)")
        ax.legend()
        fig.tight_layout()
        save_figure(fig, plot)
        summary["plot"] = str(plot)
    return summary


def _recover(correct: np.ndarray, run: int = 10) -> int:
    """Events after the change until ``run`` correct predictions in a row (-1: never)."""
    streak = 0
    for i, ok in enumerate(correct):
        streak = streak + 1 if ok else 0
        if streak == run:
            return i + 1 - run
    return -1


@guard_app.command("rhythm")
@handles_errors
def guard_rhythm(
    pattern: str = typer.Option("0,1", help="The first periodic pattern of events."),
    then: str = typer.Option("0,1,2,2", help="The pattern it changes to."),
    repeats: int = typer.Option(30, help="Repetitions of each pattern."),
    context: int = typer.Option(4, help="Past events the field sees."),
    seed: int = typer.Option(0),
    plot: Path | None = typer.Option(None, help="Running-accuracy PNG."),
    backend: str = BACKEND_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """A tiny field learns a periodic event pattern, then a changed one."""
    try:
        a = [int(x) for x in pattern.split(",")]
        b = [int(x) for x in then.split(",")]
    except ValueError:
        raise ConfigError(
            f"patterns are comma-separated integers, got {pattern!r} / {then!r}"
        ) from None
    s = run_rhythm(a, b, repeats, context, seed, plot, backend=backend)
    emit(s, json_out, rhythm_table)


def rhythm_table(s: dict) -> Table:
    t = Table(title=f"rhythm tracker ({s['neurons']} neurons)")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("accuracy, last 20 events of pattern 1", f"{s['first_pattern_last_20']:.0%}")
    t.add_row("accuracy, first 10 events after the change", f"{s['after_change_first_10']:.0%}")
    t.add_row("events until 10 right in a row", str(s["steps_to_recover"]))
    t.add_row("accuracy, last 20 events of pattern 2", f"{s['second_pattern_last_20']:.0%}")
    return t


def run_router(n_train: int, n_test: int, seed: int, backend: str = "auto") -> dict:
    from neurofabric.guard.router import ExpertRouter, make_requests

    train = make_requests(n_train, seed=seed)
    test = make_requests(n_test, seed=seed + 1)
    router = ExpertRouter(seed=seed, backend=backend)
    untrained = router.untrained_score(test.requests, test.experts)
    router.fit(train.requests, train.experts)
    return {
        "neurons": router.n_neurons,
        "held_out": router.score(test.requests, test.experts),
        "untrained": untrained,
        "chance": 1 / 5,
        "example": test.requests[0],
        "example_route": int(router.route(test.requests[:1])[0]),
        "backend": router.classifier.backend_,
    }


@guard_app.command("router")
@handles_errors
def guard_router(
    n_train: int = typer.Option(600, help="Labelled training requests."),
    n_test: int = typer.Option(400, help="Held-out requests."),
    seed: int = typer.Option(0),
    backend: str = BACKEND_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """100 word neurons and 5 expert neurons learn to route requests."""
    emit(run_router(n_train, n_test, seed, backend=backend), json_out, router_table)


def router_table(s: dict) -> Table:
    from neurofabric.guard.router import EXPERTS

    t = Table(title=f"expert router ({s['neurons']} neurons), held-out routing accuracy")
    t.add_column("field")
    t.add_column("accuracy", justify="right")
    t.add_row("trained", f"{s['held_out']:.3f}")
    t.add_row("untrained", f"{s['untrained']:.3f}")
    t.add_row("chance", f"{s['chance']:.3f}")
    t.caption = f"e.g. {s['example']!r} -> {EXPERTS[s['example_route']]}"
    return t


@guard_app.command("compile")
def guard_compile() -> None:
    """Compile (and cache) the numba kernels, so the first run does not pay for it."""
    from neurofabric.guard import TextGuardClassifier

    t0 = time.perf_counter()
    for rule in ("pa1", "neuronguard"):
        TextGuardClassifier(rule=rule, n_features=64, epochs=1).fit(["a b", "c d"], [0, 1]).predict(
            ["a"]
        )
    console.print(f"guard kernels compiled in {time.perf_counter() - t0:.1f} s")
