"""Does the field forget? Learn region A of an image, then only region B; A's PSNR before and
after, against a dense MLP trained the same way.

    python benchmarks/field_forget.py                  # 400 steps per phase, 1 thread
    python benchmarks/field_forget.py --steps 200 --threads 2

The image is scikit-learn's ``china.jpg`` in grey (427 x 640). Region A is the left half
(x < 0.5), region B the right half. Each system takes ``--steps`` Adam steps of ``--batch``
random pixels of A, then ``--steps`` steps on B only, and reports the PSNR of A and of B after
each phase:

* ``field``: ``DemandPagedField`` (16 levels x 2 features, 2^18 rows per level, base
  resolution 16, scale 1.4, one hidden layer of 64, Adam lr 1e-2). Its fine levels give each
  region its own table rows; the coarse levels and the small decoder are shared, so some
  interference is expected and measured;
* ``field, decoder frozen in B``: the same, with ``learn(..., decoder=False)`` in phase B: only
  table rows learn B, so A changes only through the table rows the two regions share (the
  coarse levels and hash collisions);
* ``mlp``: a dense network in torch: 10-frequency Fourier features of (x, y), 3 ReLU layers of
  256, Adam lr 1e-3 (a positional-encoding MLP, NeRF-style). Every weight serves every pixel,
  so learning B overwrites A.

Prints a table and one JSON line per system.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from _record import record
from _threads import pin_threads, threads_info

THREADS = pin_threads(1)

import numpy as np  # noqa: E402

from neurofabric.field.signals import image_signal, psnr, sample_image  # noqa: E402


def regions():
    coords, target, shape = image_signal(sample_image("china.jpg"))
    a = coords[:, 0] < 0.5
    return coords, target, a


def run_field(args, coords, target, in_a, *, freeze_in_b: bool = False) -> dict:
    from neurofabric.field import DemandPagedField, HashGridSpec, TierConfig

    spec = HashGridSpec(
        n_dims=2, n_levels=16, n_features=2, log2_table=18, base_resolution=16, per_level_scale=1.4
    )
    folder = Path(tempfile.mkdtemp(prefix="nf-forget-"))
    try:
        tiers = TierConfig(dram_pages=3 * spec.n_rows * 8 // 4096 + 1024)
        f = DemandPagedField.create(folder / "f", spec=spec, hidden=(64,), seed=0, tiers=tiers)

        def score():
            pred = np.concatenate(
                [f.query(coords[j : j + 65536]) for j in range(0, len(coords), 65536)]
            )
            return psnr(pred[in_a], target[in_a]), psnr(pred[~in_a], target[~in_a])

        phase = {"n": 0}

        def learn(x, y):
            phase["n"] += 1  # the decoder learns in phase A; with freeze_in_b, not in B
            f.learn(x, y, lr=1e-2, decoder=not (freeze_in_b and phase["n"] > args.steps))

        out = phases(args, coords, target, in_a, learn, score)
        f.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


def run_mlp(args, coords, target, in_a) -> dict:
    import torch

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    freqs = 2.0 ** torch.arange(10) * torch.pi

    def features(x):
        z = x[:, :, None] * freqs
        return torch.cat([x, torch.sin(z).flatten(1), torch.cos(z).flatten(1)], dim=1)

    net = torch.nn.Sequential(
        torch.nn.Linear(2 + 40, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 1),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def learn(x, y):
        opt.zero_grad()
        loss = 0.5 * torch.mean((net(features(torch.from_numpy(x))) - torch.from_numpy(y)) ** 2)
        loss.backward()
        opt.step()

    def score():
        with torch.no_grad():
            pred = np.concatenate(
                [
                    net(features(torch.from_numpy(coords[j : j + 65536]))).numpy()
                    for j in range(0, len(coords), 65536)
                ]
            )
        return psnr(pred[in_a], target[in_a]), psnr(pred[~in_a], target[~in_a])

    return phases(args, coords, target, in_a, learn, score)


def phases(args, coords, target, in_a, learn, score) -> dict:
    rng = np.random.default_rng(args.seed)
    idx_a, idx_b = np.nonzero(in_a)[0], np.nonzero(~in_a)[0]
    out = {}
    for name, idx in (("a", idx_a), ("b", idx_b)):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            i = idx[rng.integers(0, len(idx), args.batch)]
            learn(coords[i], target[i])
        out[f"seconds_{name}"] = time.perf_counter() - t0
        out[f"after_{name}"] = dict(zip(("psnr_a", "psnr_b"), score(), strict=True))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=THREADS, help="(pinned on import)")
    args = ap.parse_args()
    coords, target, in_a = regions()
    results = {"field": run_field(args, coords, target, in_a)}
    results["field, decoder frozen in B"] = run_field(args, coords, target, in_a, freeze_in_b=True)
    results["mlp"] = run_mlp(args, coords, target, in_a)
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {THREADS} thread(s)"
    )
    print(f"Threads: {threads_info()}")
    print(f"Command: python benchmarks/field_forget.py --steps {args.steps} --batch {args.batch}\n")
    print("| system | A after learning A | A after learning B | A lost | B after learning B |")
    print("|---|---|---|---|---|")
    for system, r in results.items():
        a1, a2 = r["after_a"]["psnr_a"], r["after_b"]["psnr_a"]
        print(
            f"| {system} | {a1:.2f} dB | {a2:.2f} dB | {a1 - a2:.2f} dB | "
            f"{r['after_b']['psnr_b']:.2f} dB |"
        )
    names = {  # each row's (system, variant)
        "field": ("neurofabric", "field"),
        "field, decoder frozen in B": ("neurofabric", "field-decoder-frozen-in-b"),
        "mlp": ("torch", "fourier-relu-mlp"),
    }
    for system, r in results.items():
        name, variant = names[system]
        a1, a2 = r["after_a"]["psnr_a"], r["after_b"]["psnr_a"]
        record(
            "field_forget",
            name,
            variant=variant,
            workload={
                "signal": "china",
                "steps": args.steps,
                "batch": args.batch,
                "seed": args.seed,
                "threads": THREADS,
            },
            figures={
                "psnr_a_after_a_db": a1,
                "psnr_b_after_a_db": r["after_a"]["psnr_b"],
                "psnr_a_after_b_db": a2,
                "psnr_b_after_b_db": r["after_b"]["psnr_b"],
                "psnr_a_lost_db": a1 - a2,
                "learn_a_s": r["seconds_a"],
                "learn_b_s": r["seconds_b"],
            },
            headline=("psnr_a_lost_db", "psnr_a_after_b_db", "psnr_b_after_b_db"),
        )


if __name__ == "__main__":
    main()
