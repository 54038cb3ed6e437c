"""NIR benchmark: networks exported by snnTorch and Norse, run there and here.

    python benchmarks/snn_nir.py                        # 1000 -> 2000 -> 100, 1,000 steps
    python benchmarks/snn_nir.py --sizes 200 400 20 --steps 300

The peer script (``benchmarks/peers/nir_export.py --bench``, in ``.venv-peers``) builds
feed-forward networks in snnTorch (``Leaky``, ``Synaptic``) and Norse (``LIFBoxCell``), runs
each over the same random input spikes step by step (float64, no autograd, batch 1), times
that (median of ``--repeats``), and exports the network with the framework's NIR exporter.
Here each graph is read with :func:`neurofabric.snn.nir.from_nir` (``convention="euler"``),
run over the same input (median of ``--repeats`` after one warm-up run) and its output
spikes compared with the framework's, step for step. Same machine, same thread count for
every system (``--threads``, default 1), both sides timing the run only (not the import or
the build). Prints a markdown table and one JSON line per network.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _record import record
from _threads import limit_loaded, pin_threads, thread_env, threads_line

THREADS = pin_threads(1)

import numpy as np  # noqa: E402

from neurofabric.snn.nir import from_nir  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MACHINE = f"{platform.machine()}, {platform.processor() or 'cpu'}, threads {THREADS}"


def peers(python: Path, out: Path, args) -> dict:
    cmd = [
        str(python),
        str(ROOT / "benchmarks" / "peers" / "nir_export.py"),
        "--bench",
        "--out",
        str(out),
        "--steps",
        str(args.steps),
        "--repeats",
        str(args.repeats),
        "--sizes",
        *map(str, args.sizes),
    ]
    done = subprocess.run(
        cmd, capture_output=True, text=True, env=thread_env(THREADS), timeout=3600
    )
    if done.returncode != 0:
        sys.exit(f"the peer script failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ours(path: Path, repeats: int) -> dict:
    data = np.load(path.with_suffix(".npz"))
    meta = json.loads(str(data["meta"]))
    t0 = time.perf_counter()
    net = from_nir(path, dt=meta["dt"], convention=meta["convention"])
    net.network.build()
    build_s = time.perf_counter() - t0
    keys = [k for k in data.files if k.startswith("spikes:")]
    record = tuple(k.split(":", 1)[1] for k in keys)
    net.run(data["x"], record=record)  # warm-up: compiles or loads the kernels
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = net.run(data["x"], record=record)
        times.append(time.perf_counter() - t0)
    mismatch = {k: int((out[k.split(":", 1)[1]] != data[k]).sum()) for k in keys}
    return {
        "neurons": net.network.n_neurons,
        "synapses": net.network.n_synapses,
        "build_s": build_s,
        "wall_s": statistics.median(times),
        "spikes": {k: int(data[k].sum()) for k in keys},
        "mismatched_spikes": mismatch,
        "steps": int(data["x"].shape[0]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers-python", type=Path, default=ROOT / ".venv-peers" / "bin" / "python")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--sizes", type=int, nargs=3, default=(1000, 2000, 100))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    limit_loaded(THREADS)
    if not args.peers_python.exists():
        sys.exit(f"no peer interpreter at {args.peers_python}: run `make peers` first")
    print(f"machine: {MACHINE}; {threads_line()}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        peer = peers(args.peers_python, out, args)
        print(f"peers: {peer['versions']}")
        print(
            "| network | framework | neurons | synapses | steps | framework s | "
            "neurofabric s | ratio | spikes | mismatched |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for row in peer["peers"]:
            name = row["network"]
            mine = ours(out / f"{name}.nir", args.repeats)
            ratio = row["wall_s"] / mine["wall_s"]
            framework = name.split("_")[0]
            print(
                f"| {name} | {framework} | {mine['neurons']:,} | {mine['synapses']:,} | "
                f"{mine['steps']:,} | {row['wall_s']:.3f} | {mine['wall_s']:.3f} | "
                f"x{ratio:.1f} | {sum(mine['spikes'].values()):,} | "
                f"{sum(mine['mismatched_spikes'].values())} |"
            )
            workload = {
                "network": name,
                "sizes": list(args.sizes),
                "neurons": mine["neurons"],
                "synapses": mine["synapses"],
                "steps": mine["steps"],
                "threads": THREADS,
            }
            record(
                "snn_nir",
                framework,
                variant=peer["versions"].get(framework, ""),
                workload=workload,
                figures={"wall_s": row["wall_s"]},
            )
            record(
                "snn_nir",
                "neurofabric",
                variant="numba",
                workload=workload,
                figures={
                    "wall_s": mine["wall_s"],
                    "build_s": mine["build_s"],
                    "speedup_x": ratio,
                    "spikes_count": sum(mine["spikes"].values()),
                    "mismatched_spikes_count": sum(mine["mismatched_spikes"].values()),
                },
                headline=("wall_s", "speedup_x", "mismatched_spikes_count"),
            )
        print(
            "ratio = framework s / neurofabric s (the run over the input, median of "
            f"{args.repeats}); mismatched = spikes that differ step for step"
        )


if __name__ == "__main__":
    main()
