"""The Potjans & Diesmann (2014) cortical microcircuit: neurofabric beside NEST, same parameters.

    python benchmarks/snn_microcircuit.py                          # scale 0.1, k_scale 0.1
    python benchmarks/snn_microcircuit.py --scale 0.1 --k-scale 1 --seeds 1,2,3
    python benchmarks/snn_microcircuit.py --skip-peers --out docs/figures

Both simulators build the model from ``neurofabric.snn.microcircuit.microcircuit_spec`` (the
benchmark writes it to a JSON file that ``benchmarks/peers/nest_microcircuit.py`` reads in the
``.venv-peers`` interpreter), run ``--presim`` + ``--duration`` seconds, one thread each
(neurofabric in this process, the seeds one after another; NEST in a fresh process per
seed), and are measured alike: per-population mean rate over the
last ``--duration`` seconds (silent neurons included), ISI CV and synchrony (Fano factor of
3 ms counts over 1,000 neurons), computed by ``neurofabric.snn.analysis`` for both. Also
printed: NEST's published single-run full-scale rates (``network_params.py``; one run each,
not a reference on their own), build and run seconds, and neurofabric's peak resident memory
(``ru_maxrss`` of this process, over all its seeds). With ``--out``: a raster by population
of neurofabric's run (the paper's Fig. 6).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from _record import record
from _threads import pin_threads, thread_env

THREADS = pin_threads(1)

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PEERS_DIR = Path(__file__).resolve().parent / "peers"


def params_json(spec, dt_ms: float) -> dict:
    from neurofabric.snn import microcircuit as mc

    return {
        "dt_ms": dt_ms,
        "neuron": mc.NEURON,
        "n_neurons": spec.n_neurons.tolist(),
        "n_synapses": spec.n_synapses.tolist(),
        "weight_pa": spec.weight_pa.tolist(),
        "weight_rel_sd": mc.WEIGHT_REL_SD,
        "delay_ms": spec.delay_ms.tolist(),
        "delay_sd_ms": spec.delay_sd_ms.tolist(),
        "background": spec.background,
        "bg_rate_hz": spec.bg_rate_hz.tolist(),
        "weight_ext_pa": spec.weight_ext_pa,
        "dc_pa": spec.dc_pa.tolist(),
        "v0_mean_mv": spec.v0_mean_mv.tolist(),
        "v0_sd_mv": spec.v0_sd_mv.tolist(),
    }


def ours(args, seed: int) -> dict:
    from neurofabric.snn import SpikeMonitor
    from neurofabric.snn.microcircuit import microcircuit, microcircuit_spec

    t0 = time.perf_counter()
    net = microcircuit(
        args.scale, args.k_scale, args.background, seed, backend=args.backend, device=args.device
    ).build()
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = net.run(args.presim + args.duration, monitors=[SpikeMonitor()])
    run_s = time.perf_counter() - t0
    groups = microcircuit_spec(args.scale, args.k_scale).groups()
    return {
        "system": "neurofabric",
        "backend": net.backend_,
        "seed": seed,
        "build_s": build_s,
        "run_s": run_s,
        "synapses": int(net.csr_.n_synapses),
        "result": result,
        "groups": groups,
    }


def nest(args, seed: int, params: Path, folder: Path) -> dict | None:
    out = folder / f"nest_{seed}.npz"
    cmd = [args.peers_python, str(PEERS_DIR / "nest_microcircuit.py"), "--params", str(params)]
    cmd += ["--out", str(out), "--duration", str(args.presim + args.duration)]
    cmd += ["--seed", str(seed), "--threads", str(THREADS)]
    env = dict(os.environ, **thread_env(THREADS))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode or not lines:
        raise SystemExit(f"NEST failed: {proc.stderr.strip()[-1500:]}")
    row = json.loads(lines[-1])
    data = np.load(out)
    row["seed"] = seed
    row["result"] = SimpleNamespace(  # what snn.analysis reads of a RunResult
        spike_indices=data["spike_indices"],
        spike_times=data["spike_times"],
        t_start=0.0,
        duration=args.presim + args.duration,
        n_spikes=len(data["spike_times"]),
    )
    return row


def stats(row, args) -> dict:
    from neurofabric.snn.analysis import population_stats
    from neurofabric.snn.microcircuit import microcircuit_spec

    groups = microcircuit_spec(args.scale, args.k_scale).groups()
    t1 = args.presim + args.duration
    return population_stats(row["result"], groups, t_start=args.presim, t_stop=t1)


def _finite(values: dict) -> dict:
    """NaN (no ISI to measure) as null: JSON has no NaN."""
    return {k: (v if np.isfinite(v) else None) for k, v in values.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--k-scale", type=float, default=0.1)
    ap.add_argument("--background", default="poisson", choices=("poisson", "dc"))
    ap.add_argument("--duration", type=float, default=1.0)
    ap.add_argument("--presim", type=float, default=0.5)
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--threads", type=int, default=THREADS, help="(pinned on import)")
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--peers-python", default=str(ROOT / ".venv-peers" / "bin" / "python"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--backend", default="numba", help="numba, reference or torch (ours)")
    ap.add_argument("--device", default="cpu", help="the torch backend's device")
    args = ap.parse_args()
    from neurofabric.snn import microcircuit as mc

    seeds = [int(s) for s in args.seeds.split(",")]
    spec = mc.microcircuit_spec(args.scale, args.k_scale, background=args.background)
    folder = Path(tempfile.mkdtemp(prefix="nf-microcircuit-"))
    params = folder / "params.json"
    params.write_text(json.dumps(params_json(spec, 0.1)))
    rows = {"neurofabric": [], "nest": []}
    for seed in seeds:
        rows["neurofabric"].append(ours(args, seed))
        if not args.skip_peers:
            rows["nest"].append(nest(args, seed, params, folder))
    table = {system: [stats(r, args) for r in rs] for system, rs in rows.items() if rs}

    def mean(system, key):
        return {p: float(np.nanmean([s[p][key] for s in table[system]])) for p in mc.POPULATIONS}

    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {THREADS} thread(s)"
    )
    print(
        f"Command: python benchmarks/snn_microcircuit.py --scale {args.scale:g} --k-scale "
        f"{args.k_scale:g} --background {args.background} --duration {args.duration:g} "
        f"--presim {args.presim:g} --seeds {args.seeds} --backend {args.backend} "
        f"--device {args.device}\n"
    )
    print(
        f"{int(spec.n_neurons.sum()):,} neurons, {int(spec.n_synapses.sum()):,} synapses; "
        f"rates over [{args.presim:g}, {args.presim + args.duration:g}) s, mean of "
        f"{len(seeds)} seed(s)\n"
    )
    systems = list(table)
    head = "| population | " + " | ".join(f"{s} rate (Hz)" for s in systems)
    head += " | NEST published, full scale, one run | "
    head += " | ".join(f"{s} ISI CV | {s} synchrony" for s in systems) + " |"
    print(head)
    print("|---" * (2 + 3 * len(systems)) + "|")
    rates = {s: mean(s, "rate_hz") for s in systems}
    cvs = {s: mean(s, "isi_cv") for s in systems}
    syncs = {s: mean(s, "synchrony") for s in systems}
    for k, p in enumerate(mc.POPULATIONS):
        cells = [f"{rates[s][p]:.3f}" for s in systems]
        cells.append(f"{mc.FULL_MEAN_RATES[k]:.3f}")
        for s in systems:
            cells += [f"{cvs[s][p]:.2f}", f"{syncs[s][p]:.2f}"]
        print(f"| {p} | " + " | ".join(cells) + " |")
    import resource

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    bio = args.presim + args.duration
    speed = {}
    print(
        "\n| system | build (s) | run (s) | s per biological s | real-time factor | peak RSS (MB) |"
    )
    print("|---|---|---|---|---|---|")
    for s in systems:
        b = float(np.median([r["build_s"] for r in rows[s]]))
        r_ = float(np.median([r["run_s"] for r in rows[s]]))
        mem = peak_mb if s == "neurofabric" else max(r["peak_rss_mb"] for r in rows[s])
        speed[s] = (b, r_ / bio, mem)
        print(f"| {s} | {b:.1f} | {r_:.1f} | {r_ / bio:.2f} | {bio / r_:.3f} | {mem:,.0f} |")
    if "nest" in speed:
        (b0, s0, m0), (b1, s1, m1) = speed["neurofabric"], speed["nest"]
        print(
            f"\nNEST / neurofabric: run {s1 / s0:.1f}x, build {b1 / b0:.1f}x, "
            f"peak RSS {m1 / m0:.2f}x"
        )
    if "nest" in rates:
        within = {
            p: abs(rates["neurofabric"][p] - rates["nest"][p]) <= max(0.1 * rates["nest"][p], 0.3)
            for p in mc.POPULATIONS
        }
        print(f"\nwithin 10 % (or 0.3 Hz) of NEST on this machine: {within}")
    for s in systems:
        b, per_bio, mem = speed[s]
        figures = {
            "build_s": b,
            "run_s": float(np.median([r["run_s"] for r in rows[s]])),
            "s_per_bio_s": per_bio,
            "peak_rss_mb": mem,
            **{f"rate_{p.lower()}_hz": rates[s][p] for p in mc.POPULATIONS},
        }
        headline = ["s_per_bio_s", "peak_rss_mb"]
        if s == "neurofabric" and "nest" in speed:
            (b0, s0, m0), (b1, s1, m1) = speed["neurofabric"], speed["nest"]
            figures.update(speedup_x=s1 / s0, build_speedup_x=b1 / b0, nest_rss_ratio_x=m1 / m0)
            headline.insert(1, "speedup_x")
        variant = None
        if s == "neurofabric":
            variant = rows[s][0]["backend"]
            if args.device != "cpu":
                variant += f"-{args.device}"
        record(
            "snn_microcircuit",
            "neurofabric" if s == "neurofabric" else "nest-simulator",
            variant=variant,
            workload={
                "scale": args.scale,
                "k_scale": args.k_scale,
                "background": args.background,
                "neurons": int(spec.n_neurons.sum()),
                "synapses": int(spec.n_synapses.sum()),
                "presim_s": args.presim,
                "duration_s": args.duration,
                "seeds": seeds,
                "threads": THREADS,
                "isi_cv_by_population": _finite(cvs[s]),
                "synchrony_by_population": _finite(syncs[s]),
                "build_s_by_seed": [r["build_s"] for r in rows[s]],
                "run_s_by_seed": [r["run_s"] for r in rows[s]],
            },
            figures=figures,
            headline=headline,
        )
    if args.out is not None:
        from neurofabric.snn.plots import plot_raster_groups

        r = rows["neurofabric"][0]
        t1 = args.presim + args.duration
        names = [("L2/3E", "L2/3I", "L4E", "L4I", "L5E", "L5I", "L6E", "L6I")[k] for k in range(8)]
        groups = [(n, a, b) for n, (_, a, b) in zip(names, r["groups"], strict=True)]
        path = plot_raster_groups(
            r["result"],
            groups,
            args.out / "snn_microcircuit_raster.png",
            t_start=max(args.presim, t1 - 0.1),
            t_stop=t1,
            title=f"microcircuit, scale {args.scale:g}, k_scale {args.k_scale:g} (neurofabric)",
        )
        print(f"raster: {path}")


if __name__ == "__main__":
    main()
