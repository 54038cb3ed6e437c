"""What each template's run does, through the engines' public API, in the worker process.

Every job gets a :class:`neurofabric.studio.worker.Context`: the run's folder, its
parameters, its data, ``resume``, ``ctx.callback`` (the engines' progress contract: it records
the metrics and answers the studio's cancel) and ``ctx.image(name, draw)`` (a PNG replaced
atomically). A job saves its model under ``folder/model`` (also when cancelled, so a stopped
run can be exported and tried) and returns a summary for the run's record.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from neurofabric.core.checkpoint import write_json
from neurofabric.core.config import get_config
from neurofabric.core.errors import DataError
from neurofabric.core.progress import Progress

log = logging.getLogger(__name__)

__all__ = ["JOBS"]


# ---------------------------------------------------------------------- sequence models
def seq_char(ctx: Any) -> dict[str, Any]:
    from neurofabric.seq.io import build_lm, save_model
    from neurofabric.seq.train import TextData, Trainer
    from neurofabric.studio.templates import seq_train_config

    p = ctx.params
    text = ctx.read_text()
    data = TextData.from_text(text)
    model = build_lm(
        p["arch"],
        data.vocab_size,
        layers=p["layers"],
        width=p["dim"],
        seq_len=p["seq_len"],
        seed=p["seed"],
    )
    cfg = seq_train_config(p)
    trainer = Trainer(model, data, cfg, out_dir=ctx.folder / "train", resume=ctx.resume)
    res = trainer.fit(callback=ctx.callback)
    model_dir = ctx.folder / "model"
    save_model(model, model_dir)
    data.tokenizer.save(model_dir / "tokenizer.json")
    ctx.image("loss", trainer.plot)
    return {
        "params": sum(q.numel() for q in model.parameters()),
        "step": res["step"],
        "val_loss": res.get("val_loss"),
        "best_val_loss": res.get("best_val_loss"),
        "vocab_size": data.vocab_size,
    }


# ---------------------------------------------------------------------- guard classifier
def _text_dataset(ctx: Any):
    from neurofabric.data.text import load_text_csv, load_text_dataset

    if ctx.upload_path is not None:
        return load_text_csv(ctx.upload_path)
    data_dir = get_config().data_dir
    if ctx.dataset == "ag_news":
        return load_text_dataset("ag_news", "test", data_dir=data_dir)
    return load_text_dataset("20newsgroups", "train", data_dir=data_dir)


def guard_text(ctx: Any) -> dict[str, Any]:
    from neurofabric.core.figures import plot_confusion
    from neurofabric.core.metrics import classification_report
    from neurofabric.guard import TextGuardClassifier

    p = ctx.params
    data = _text_dataset(ctx)
    if len(data) < 4 or data.n_classes < 2:
        raise DataError(
            f"the data has {len(data)} rows and {data.n_classes} classes; need >= 4 and >= 2"
        )
    order = np.random.default_rng(p["seed"]).permutation(len(data))
    n_test = max(1, int(round(p["test_fraction"] * len(data))))
    train, test = data.subset(np.sort(order[n_test:])), data.subset(np.sort(order[:n_test]))
    classes = np.asarray(train.classes)
    state = ctx.folder / "resume.json"
    if ctx.resume and state.exists():  # continue the saved model for the epochs left
        from neurofabric.core.progress import ProgressReporter

        clf = TextGuardClassifier.load(ctx.folder / "model")
        done = int(json.loads(state.read_text(encoding="utf-8"))["epochs_done"])
        report = ProgressReporter("guard.fit", p["epochs"], "epoch", ctx.callback)
        for epoch in range(done, p["epochs"]):
            clf.partial_fit(train.texts, classes[train.labels], classes=classes)
            done = epoch + 1
            acc = float(np.mean(clf.predict(test.texts) == classes[test.labels]))
            if report.update(done, epoch=done, eval_accuracy=acc):
                break
    else:
        clf = TextGuardClassifier(
            rule=p["rule"],
            epochs=p["epochs"],
            n_features=1 << p["log2_features"],
            seed=p["seed"],
            **({} if p["rule"] == "neuronguard" else {"word_ngrams": p["word_ngrams"]}),
        )
        clf.fit(
            train.texts,
            classes[train.labels],
            classes=classes,
            eval_set=(test.texts, classes[test.labels]),
            callback=ctx.callback,
        )
        done = len(clf.history_)
    write_json(state, {"epochs_done": done})
    index = {c: i for i, c in enumerate(train.classes)}
    pred = np.array([index[c] for c in clf.predict(test.texts).tolist()], dtype=np.int64)
    rep = classification_report(test.labels, pred, n_classes=len(classes))
    ctx.image(
        "confusion",
        lambda path: plot_confusion(rep["confusion"], path, title="guard", labels=list(classes)),
    )
    clf.save(ctx.folder / "model")
    ctx.metric(done=done, test_accuracy=rep["accuracy"])
    return {"train_docs": len(train), "test_docs": len(test), "test_accuracy": rep["accuracy"]}


# ---------------------------------------------------------------------- Diehl & Cook
def snn_mnist(ctx: Any) -> dict[str, Any]:
    from neurofabric.core.metrics import classification_report
    from neurofabric.data import load_mnist
    from neurofabric.snn.diehl_cook import DiehlCookClassifier
    from neurofabric.snn.plots import plot_confusion, plot_receptive_fields

    p = ctx.params
    data_dir = get_config().data_dir
    x, y = load_mnist("train", dataset=ctx.dataset, data_dir=data_dir)
    xt, yt = load_mnist("test", dataset=ctx.dataset, data_dir=data_dir)
    x, y = x[: p["images"]], y[: p["images"]]
    clf = DiehlCookClassifier(n_neurons=p["neurons"], seed=p["seed"])
    last = [0.0]

    def callback(progress) -> bool:
        if time.monotonic() - last[0] > 5.0 or progress.done == progress.total:
            last[0] = time.monotonic()
            ctx.image(
                "receptive_fields",
                lambda path: plot_receptive_fields(clf.input_weights_, path, image_shape=(28, 28)),
            )
        return ctx.callback(progress)

    clf.fit(
        x,
        y,
        label_images=0,
        checkpoint=ctx.folder / "checkpoint",
        checkpoint_every=p["checkpoint_every"],
        resume=ctx.resume,
        callback=callback,
    )
    n_label = min(p["label_images"], len(x))
    xl, yl = load_mnist("train", dataset=ctx.dataset, data_dir=data_dir)
    clf.relabel(xl[:n_label], yl[:n_label])
    rep = classification_report(
        yt[: p["test_images"]], clf.predict(xt[: p["test_images"]]), n_classes=10
    )
    ctx.image(
        "receptive_fields",
        lambda path: plot_receptive_fields(
            clf.input_weights_, path, image_shape=(28, 28), labels=clf.assignments_
        ),
    )
    ctx.image("confusion", lambda path: plot_confusion(rep["confusion"], path, title=ctx.dataset))
    clf.save(ctx.folder / "model")
    ctx.image("raster", lambda path: _raster(clf, xt[0], int(yt[0]), path))
    ctx.metric(done=len(x), test_accuracy=rep["accuracy"])
    return {"images": len(x), "label_images": n_label, "test_accuracy": rep["accuracy"]}


def _raster(clf: Any, image: np.ndarray, label: int, path: Path) -> Path:
    """Every neuron's spikes while the trained network (learning and thresholds frozen) sees
    one test image: inputs, excitatory and inhibitory layers."""
    from neurofabric.snn.monitors import SpikeMonitor
    from neurofabric.snn.plots import plot_raster

    net = clf.net_
    net.set_learning(False)
    net.freeze_homeostasis(True)
    try:
        net.set_input_rates("pixels", image.reshape(-1) * clf.scale_ * clf.max_rate)
        res = net.run(clf.t_present, monitors=[SpikeMonitor()])
        net.set_input_rates("pixels", 0.0)
        net.run(clf.t_rest)
    finally:
        net.set_learning(True)
        net.freeze_homeostasis(False)
    return plot_raster(res, path, title=f"response to a test image of a {label}")


# ---------------------------------------------------------------------- thermodynamic trainer
def thermo_digits(ctx: Any) -> dict[str, Any]:
    from neurofabric.data import load_classification
    from neurofabric.thermo import ThermoClassifier, plot_history
    from neurofabric.thermo.schedules import make_schedule

    p = ctx.params
    Xtr, Xte, ytr, yte = load_classification("digits")
    n_gen = -(-p["proposals"] // p["generation"])
    state = ctx.folder / "resume.json"
    done = {"proposals": 0, "generations": 0}
    init = None
    if ctx.resume and state.exists():
        done = json.loads(state.read_text(encoding="utf-8"))
        init = ThermoClassifier.load(ctx.folder / "model", mmap=False).fabric_
    # the geometric schedule from the generation where the run stopped: the same
    # temperatures as an uninterrupted run (T_g = t_start (t_end / t_start)^(g / (n - 1)))
    g0 = done["generations"]
    t0 = p["t_start"] * (p["t_end"] / p["t_start"]) ** (g0 / max(n_gen - 1, 1))
    model = ThermoClassifier(
        hidden=(p["hidden"],),
        n_proposals=p["proposals"] - done["proposals"],
        generation=p["generation"],
        lambda_l0=p["lambda_l0"],
        lambda_l1=0.5,
        w_prune=0.05,
        schedule=make_schedule("geometric", t_start=t0, t_end=p["t_end"]),
        seed=p["seed"] + 7919 * (ctx.attempt - 1),  # a resumed chain draws anew
    )

    def callback(progress) -> bool:  # generations counted from the run's start
        return ctx.callback(
            Progress(
                progress.task,
                progress.done + g0,
                n_gen,
                progress.unit,
                progress.elapsed_s,
                progress.metrics,
            )
        )

    model.fit(Xtr, ytr, init=init, eval_set=(Xte, yte), callback=callback)
    done = {
        "proposals": done["proposals"] + int(model.n_proposals_done_),
        "generations": g0 + len(model.history_),
    }
    write_json(state, done)
    acc = float(np.mean(model.predict(Xte) == yte))
    ctx.image("history", lambda path: plot_history(model.history_, path, title="digits"))
    model.save(ctx.folder / "model")
    ctx.metric(done=done["generations"], test_accuracy=acc)
    return {
        "test_accuracy": acc,
        "connections": int(model.fabric_.n_edges),
        "proposals": done["proposals"],
    }


# ---------------------------------------------------------------------- neural field
def field_image(ctx: Any) -> dict[str, Any]:
    from neurofabric.core.progress import ProgressReporter
    from neurofabric.field import DemandPagedField, HashGridSpec, TierConfig
    from neurofabric.field.signals import image_signal, psnr, sample_image

    p = ctx.params
    if ctx.upload_path is not None:
        img = read_image(ctx.upload_path, grey=not p["colour"])
    else:
        img = sample_image(ctx.dataset, grey=not p["colour"])
    coords, target, shape = image_signal(img)
    spec = HashGridSpec(
        n_dims=2,
        n_levels=p["levels"],
        n_features=2,
        log2_table=p["log2_table"],
        base_resolution=16,
        per_level_scale=1.4,
    )
    tiers = TierConfig(dram_pages=3 * spec.n_rows * 8 // 4096 + 1024)
    path = ctx.folder / "model"
    if ctx.resume and path.exists():
        f = DemandPagedField.open(path, tiers=tiers)
    else:
        shutil.rmtree(path, ignore_errors=True)
        # sized to what it holds (table, Adam's two moments, decoder), so that an export
        # reads megabytes, not a terabyte of holes
        h, C = p["hidden"], shape[2]
        need = 3 * spec.n_rows * spec.n_features * 4 + 12 * (spec.n_outputs * h + h + h * C + C)
        size = -(-(need + (1 << 20)) // (1 << 20)) << 20
        f = DemandPagedField.create(
            path,
            spec=spec,
            hidden=(h,),
            out_dim=C,
            logical_bytes=size,
            shard_bytes=size,
            tiers=tiers,
            seed=p["seed"],
        )
    rng = np.random.default_rng([p["seed"], ctx.attempt])
    check = rng.integers(0, len(coords), 16384)
    reporter = ProgressReporter("field.learn", None, "step", ctx.callback)
    steps, t0, last_rep, losses = 0, time.perf_counter(), 0.0, []
    last_img = t0

    def draw(out: Path) -> Path:
        return _draw_reconstruction(f, coords, target, shape, out)

    try:
        while time.perf_counter() - t0 < p["seconds"]:
            i = rng.integers(0, len(coords), p["batch"])
            losses.append(f.learn(coords[i], target[i], lr=p["lr"]))
            steps += 1
            now = time.perf_counter()
            if now - last_rep >= 0.5:
                last_rep = now
                quality = psnr(f.query(coords[check]), target[check])
                if reporter.update(steps, loss=float(np.mean(losses)), psnr_db=quality):
                    break
                losses = []
            if now - last_img >= 3.0:
                last_img = now
                ctx.image("reconstruction", draw)
        quality = psnr(_query_all(f, coords), target)
        ctx.image("reconstruction", draw)
        ctx.metric(done=steps, psnr_db=quality, full_image=True)
        f.flush()
    finally:
        f.close()
    return {"steps": steps, "psnr_db": quality, "shape": list(shape)}


def _query_all(f: Any, coords: np.ndarray) -> np.ndarray:
    return np.concatenate([f.query(coords[j : j + 65536]) for j in range(0, len(coords), 65536)])


def _draw_reconstruction(f, coords, target, shape, out: Path) -> Path:
    from neurofabric.core.figures import pyplot, save_figure
    from neurofabric.field.signals import psnr

    recon = _query_all(f, coords)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    H, W, C = shape
    for ax, img, title in (
        (axes[0], target, "target"),
        (axes[1], np.clip(recon, 0, 1), f"field: {psnr(recon, target):.1f} dB"),
    ):
        ax.imshow(img.reshape(H, W, C).squeeze(), cmap="gray" if C == 1 else None, vmin=0, vmax=1)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, out)


def read_image(path: Path, *, grey: bool) -> np.ndarray:
    """An uploaded PNG or JPEG as float32 in [0, 1] ((H, W) grey or (H, W, 3))."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L" if grey else "RGB")
        return np.asarray(im, dtype=np.float32) / 255.0


JOBS = {
    "seq-char": seq_char,
    "guard-text": guard_text,
    "snn-mnist": snn_mnist,
    "thermo-digits": thermo_digits,
    "field-image": field_image,
}
