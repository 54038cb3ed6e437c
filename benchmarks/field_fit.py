"""How fast the demand-paged field learns an image, against pure-torch peers, same machine.

    python benchmarks/field_fit.py                         # 60 s per system, 1 thread each
    python benchmarks/field_fit.py --seconds 20 --systems field,hashgrid --threads 2

The signal is scikit-learn's ``china.jpg`` (427 x 640) in grey (ITU-R 601 weights) or colour
(``--signal china-rgb``); coordinates are pixel centres in [0, 1]^2 (x = (col + 0.5) / W,
y = (row + 0.5) / H). Every system trains on random batches of ``--batch`` pixels for
``--seconds`` of training time (evaluation excluded) and reports the PSNR over all pixels
(10 log10(1 / MSE), predictions clipped to [0, 1]) every ``--eval-every`` seconds.
``--signal torus`` fits a 3-D signed distance instead, with the same systems in 3-D, evaluated
on held-out points and recorded as ``field_sdf`` (``benchmarks/field_sdf.py`` runs it):

* ``field``: ``DemandPagedField`` (16 levels x 2 features, 2^18 rows per level, base
  resolution 16, scale 1.4, one hidden layer of 64; Adam as tiny-cuda-nn, lr 1e-2), its
  parameters and Adam moments paged through a DRAM tier large enough to hold them;
* ``hashgrid``: the same encoding and MLP in pure torch with torch's Adam (same settings,
  every table entry updated each step), ``benchmarks/peers/torch_fit.py --model hashgrid``;
* ``hashgrid-tcnn``: the same with tiny-cuda-nn's Adam rule for the table (an entry with a zero
  gradient left alone, a step count per entry; ``--adam tcnn``), the optimizer the field's
  sparse update follows (it keeps one step count for the table);
* ``siren``: SIREN (3 x 256, w0 30, Adam 1e-4), ``--model siren``;
* ``mlp``: a ReLU MLP on raw coordinates (3 x 256, Adam 1e-3), ``--model mlp``.

Prints a table (PSNR at fixed times, seconds to 25 and 30 dB, the ratio to the torch hash grid
that reached 25 dB first)
and one JSON line per system; ``--out`` saves the curves (PNG) and the reconstructions side by
side with the target (PNG).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from _field_signals import SLICE, TORUS_EVAL, TORUS_TRAIN, lr_decay
from _record import record
from _threads import pin_threads, threads_info

THREADS = pin_threads(1)

import numpy as np  # noqa: E402

from neurofabric.field.signals import psnr, sdf_iou, torus_surface  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# the torus's IoU mark: the training seconds until the inside is this right
IOU_MARK, IOU_KEY = 0.95, "to_iou_095_s"
# each system's row: (system, variant)
SYSTEMS = {
    "field": ("neurofabric", "field"),
    "hashgrid": ("torch", "hash-grid"),
    "hashgrid-tcnn": ("torch", "hash-grid-tcnn-adam"),
    "siren": ("torch", "siren"),
    "mlp": ("torch", "relu-mlp"),
}


class Signal(NamedTuple):
    """Training pairs, evaluation pairs, and the points of the picture saved (rows x cols)."""

    train_x: np.ndarray
    train_y: np.ndarray
    eval_x: np.ndarray
    eval_y: np.ndarray
    image_x: np.ndarray
    image_shape: tuple[int, int, int]


def load_signal(name: str) -> Signal:
    """The image (trained and evaluated on every pixel), or the torus SDF as the peer builds it
    (``torch_fit.load_signal``: the same points and values) with its z = 0.5 slice."""
    from neurofabric.field.signals import image_signal, plane_points, sample_image, torus_signal

    if name == "torus":
        x, y, xe, ye = torus_signal(TORUS_TRAIN, TORUS_EVAL)
        return Signal(x, y, xe, ye, plane_points(SLICE), (SLICE, SLICE, 1))
    if name not in ("china", "china-rgb"):
        raise SystemExit(f"--signal must be china, china-rgb or torus, got {name!r}")
    coords, target, shape = image_signal(sample_image("china.jpg", grey=name == "china"))
    return Signal(coords, target, coords, target, coords, shape)


def evaluate(f_query, sig: Signal, signal: str) -> dict:
    """PSNR over the evaluation points (and the torus's IoU), predictions made in chunks."""
    chunks = range(0, len(sig.eval_x), 65536)
    pred = np.concatenate([f_query(sig.eval_x[j : j + 65536]) for j in chunks])
    out = {"psnr": psnr(pred, sig.eval_y)}
    if signal == "torus":
        out["iou"] = sdf_iou(pred, sig.eval_y, torus_surface())
    return out


def run_field(args) -> tuple[list[dict], np.ndarray]:
    from neurofabric.field import DemandPagedField, HashGridSpec, TierConfig

    sig = load_signal(args.signal)
    spec = HashGridSpec(
        n_dims=sig.train_x.shape[1],
        n_levels=16,
        n_features=2,
        log2_table=18,
        base_resolution=16,
        per_level_scale=1.4,
    )
    folder = Path(tempfile.mkdtemp(prefix="nf-field-fit-"))
    rows = []
    try:
        # the table and both moments: 3 x 32 MiB; the DRAM tier holds them all
        tiers = TierConfig(dram_pages=3 * spec.n_rows * 8 // 4096 + 1024)
        out_dim = sig.train_y.shape[1]
        f = DemandPagedField.create(
            folder / "f", spec=spec, hidden=(64,), out_dim=out_dim, seed=args.seed, tiers=tiers
        )
        rng = np.random.default_rng(args.seed)
        decay = lr_decay(args.lr_decay)
        train_s, step, next_eval = 0.0, 0, args.eval_every
        while train_s < args.seconds and step < args.max_steps:
            t0 = time.perf_counter()
            i = rng.integers(0, len(sig.train_x), args.batch)
            f.learn(sig.train_x[i], sig.train_y[i], lr=args.lr, lr_decay=decay)
            train_s += time.perf_counter() - t0
            step += 1
            if train_s >= next_eval or train_s >= args.seconds:
                rows.append(
                    {"seconds": train_s, "step": step, **evaluate(f.query, sig, args.signal)}
                )
                print(json.dumps({"system": "field", **rows[-1]}), file=sys.stderr)
                next_eval += args.eval_every
        image = f.query(sig.image_x).reshape(sig.image_shape)
        f.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows, image


def run_peer(model: str, args) -> tuple[list[dict], np.ndarray | None, str | None]:
    peer = ROOT / "benchmarks" / "peers" / "torch_fit.py"
    image = Path(tempfile.mkdtemp(prefix="nf-peer-")) / "recon.png"
    cmd = [sys.executable, str(peer), "--model", model, "--signal", args.signal]
    cmd += ["--seconds", str(args.seconds), "--batch", str(args.batch), "--seed", str(args.seed)]
    cmd += ["--eval-every", str(args.eval_every), "--threads", str(THREADS)]
    cmd += ["--save-image", str(image)]
    if args.lr_decay:
        cmd += ["--lr-decay", args.lr_decay]
    if model == "hashgrid-tcnn":
        cmd[cmd.index("--model") + 1] = "hashgrid"
        cmd += ["--adam", "tcnn"]
    if model.startswith("hashgrid"):  # the field's encoding and decoder
        cmd += ["--levels", "16", "--features", "2", "--log2-table", "18"]
        cmd += ["--base-resolution", "16", "--per-level-scale", "1.4", "--hidden", "64"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        return [], None, proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
    recon = None
    if image.exists():
        from matplotlib.image import imread

        recon = imread(image).astype(np.float32)
        recon = recon[..., :3].mean(axis=-1, keepdims=True) if args.signal != "china-rgb" else recon
        shutil.rmtree(image.parent, ignore_errors=True)
    return [r for r in lines if not r.get("final")], recon, None


def first_time(rows: list[dict], mark: float, key: str = "psnr") -> float | None:
    """Training seconds at the first evaluation whose ``key`` (PSNR, or the torus's IoU)
    reached ``mark``."""
    for r in rows:
        if r[key] >= mark:
            return r["seconds"]
    return None


def at_time(rows: list[dict], s: float) -> float | None:
    """The PSNR of the first evaluation at or after ``s`` training seconds (evaluations come
    right after the step that crosses each ``--eval-every`` mark)."""
    for r in rows:
        if r["seconds"] >= s - 1e-9:
            return r["psnr"]
    return None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--signal", default="china")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument(
        "--lr-decay",
        default=None,
        metavar="START,INTERVAL,BASE",
        help="tiny-cuda-nn's ExponentialDecay for every system (off by default)",
    )
    ap.add_argument("--eval-every", type=float, default=2.0)
    ap.add_argument("--max-steps", type=int, default=10**9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--systems", default="field,hashgrid,hashgrid-tcnn,siren,mlp")
    ap.add_argument("--threads", type=int, default=THREADS, help="(pinned on import)")
    ap.add_argument("--out", type=Path, default=None, help="folder for the PNGs")
    args = ap.parse_args(argv)
    curves, images = {}, {}
    for system in args.systems.split(","):
        if system == "field":
            curves[system], images[system] = run_field(args)
        else:
            rows, recon, err = run_peer(system, args)
            if err:
                print(f"{system}: failed: {err}", file=sys.stderr)
                continue
            curves[system], images[system] = rows, recon
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {THREADS} thread(s) per system"
    )
    print(f"Threads: {threads_info()}")
    print(
        f"Command: python benchmarks/field_fit.py --signal {args.signal} --seconds "
        f"{args.seconds:g} --batch {args.batch} --threads {THREADS}"
        + (f" --lr-decay {args.lr_decay}" if args.lr_decay else "")
        + "\n"
    )
    marks = [m for m in (5, 10, 20, 30, 60) if m <= args.seconds]
    torus = args.signal == "torus"
    head = ["system", "steps", *[f"PSNR at {m} s" for m in marks], "final PSNR"]
    head += ["s to 25 dB", "s to 30 dB"] + (["final IoU", f"s to IoU {IOU_MARK}"] * torus)
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for system, rows in curves.items():
        if not rows:
            continue
        cells = [at_time(rows, m) for m in marks]
        t25, t30 = first_time(rows, 25.0), first_time(rows, 30.0)

        def fmt(v, unit=""):
            return "-" if v is None else f"{v:.1f}{unit}"

        row = [system, str(rows[-1]["step"]), *[fmt(c) for c in cells]]
        row += [f"{rows[-1]['psnr']:.2f}", fmt(t25), fmt(t30)]
        if torus:
            row += [f"{rows[-1]['iou']:.4f}", fmt(first_time(rows, IOU_MARK, "iou"))]
        print("| " + " | ".join(row) + " |")
    # the torch hash grid that reached 25 dB first (either optimizer)
    peers = [first_time(curves.get(s, []), 25.0) for s in ("hashgrid", "hashgrid-tcnn")]
    ref = min((t for t in peers if t is not None), default=None)
    ours = first_time(curves.get("field", []), 25.0)
    if ref and ours:
        print(f"\ntime to 25 dB, the faster torch hash grid / field: {ref / ours:.1f}x")
    for system, rows in curves.items():
        if not rows:
            continue
        figures = {
            "steps": rows[-1]["step"],
            "train_s": rows[-1]["seconds"],
            "final_psnr_db": rows[-1]["psnr"],
            **{f"psnr_{m}s_db": at_time(rows, m) for m in marks},
            "to_25db_s": first_time(rows, 25.0),
            "to_30db_s": first_time(rows, 30.0),
        }
        if torus:
            figures["final_iou_frac"] = rows[-1]["iou"]
            figures[IOU_KEY] = first_time(rows, IOU_MARK, "iou")
        if system == "field":
            figures["to_25db_speedup_x"] = ref / ours if ref and ours else None
        name, variant = SYSTEMS.get(system, ("torch", system))
        record(
            "field_sdf" if torus else "field_fit",
            name,
            variant=variant,
            workload={
                "signal": args.signal,
                "seconds": args.seconds,
                "batch": args.batch,
                "eval_every": args.eval_every,
                "seed": args.seed,
                "threads": THREADS,
                "lr_decay": args.lr_decay,
                # the PSNR curve, one list per column (training seconds, steps, dB)
                "curve": {
                    k: [r[k] for r in rows]
                    for k in ("seconds", "step", "psnr", "iou")
                    if k in rows[0]
                },
            },
            figures=figures,
            headline=("final_psnr_db", "final_iou_frac" if torus else "to_25db_s"),
        )
    if args.out is not None:
        save_figures(args, curves, images)


def save_figures(args, curves, images) -> None:
    from neurofabric.core.figures import pyplot, save_figure
    from neurofabric.field.signals import torus_values

    sig = load_signal(args.signal)
    shape = sig.image_shape
    torus = args.signal == "torus"
    # the picture's target: the image, or the torus's values on the slice
    target = (torus_values(sig.image_x) if torus else sig.eval_y).reshape(shape)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for system, rows in curves.items():
        ax.plot([r["seconds"] for r in rows], [r["psnr"] for r in rows], label=system)
    ax.set_xlabel("training seconds")
    ax.set_ylabel("PSNR (dB)" + (", held-out points" if torus else ""))
    ax.legend()
    fig.tight_layout()
    save_figure(fig, args.out / f"field_fit_{args.signal}_psnr.png")
    shown = [("target", target)] + [(s, im) for s, im in images.items() if im is not None]
    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 3))
    for a, (name, im) in zip(np.atleast_1d(axes), shown, strict=True):
        im = np.clip(im.reshape(shape), 0, 1)
        a.imshow(im[..., 0] if shape[2] == 1 else im, cmap="gray" if shape[2] == 1 else None)
        if torus:  # the surface: where the distance crosses 0
            a.contour(im[..., 0], levels=[torus_surface()], colors="tab:red", linewidths=0.8)
        a.set_title(name if name == "target" else f"{name}: {psnr(im, target):.1f} dB")
        a.axis("off")
    fig.tight_layout()
    save_figure(fig, args.out / f"field_fit_{args.signal}_images.png")


if __name__ == "__main__":
    main()
