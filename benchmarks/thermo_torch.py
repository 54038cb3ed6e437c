"""Many chains on torch against one chain in numba: proposals per second on the same network,
the same minibatch and the same moves (weights and biases), one thread each.

    python benchmarks/thermo_torch.py                  # MNIST 784-64-10, minibatch 2,000
    python benchmarks/thermo_torch.py --quick          # digits 64-32-10
    python benchmarks/thermo_torch.py --device cuda    # on a GPU (float32 rows matter there)

numba runs one ``Chain`` (the incremental kernel: a weight move touches the samples where its
input is non-zero, then the cone above); torch runs ``TorchChains`` with C chains in lock
step (a rank-one update of every chain's logits per proposal). Both start from the same
He-initialised network at the same temperature; the figure is proposals per second summed
over the chains, after a warm-up run.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from _record import record
from _threads import limit_loaded, pin_threads, threads_line

THREADS = pin_threads(1)

import numpy as np  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="digits, small runs")
    ap.add_argument("--data-dir", default=os.environ.get("NEUROFABRIC_DATA", "../shared/datasets"))
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument("--chains", default="1,16,64,256")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=200, help="torch steps per timed run")
    ap.add_argument("--proposals", type=int, default=100_000, help="numba proposals per run")
    ap.add_argument("--temperature", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=THREADS)
    ap.add_argument("--only-quality", action="store_true", help="skip the speed rows")
    ap.add_argument(
        "--quality-seconds",
        type=float,
        default=60.0,
        help="budget of the accuracy rows on digits (0 skips them)",
    )
    args = ap.parse_args()
    if args.quick:
        args.dataset, args.hidden, args.batch_size = "digits", 32, 500
        args.chains, args.steps, args.proposals = "1,16,64", 100, 40_000
        args.quality_seconds = min(args.quality_seconds, 10.0)

    import torch

    from neurofabric.core import backend as backends
    from neurofabric.data import load_classification
    from neurofabric.thermo import Moves, NeuralFabric
    from neurofabric.thermo.chain import Chain, EnergySpec
    from neurofabric.thermo.population import TorchChains

    limit_loaded(THREADS)
    torch.set_num_threads(THREADS)
    Xtr, _, ytr, _ = load_classification(args.dataset, data_dir=args.data_dir)
    rng = np.random.default_rng(0)
    rows = rng.choice(len(Xtr), min(args.batch_size, len(Xtr)), replace=False)
    X, y = Xtr[rows], ytr[rows]
    fabric = NeuralFabric.layered([X.shape[1], args.hidden, 10], seed=0)
    spec = EnergySpec(w_max=2.0)
    cum = Moves(weight=0.8, bias=0.2, birth=0.0, death=0.0, all=0.0).cumulative()
    sigma = np.array([0.05, 0.05, 0.0, 0.0, 0.0])
    scale = len(Xtr) / len(X)
    device = args.device
    print(
        f"# {args.dataset} {X.shape[1]}-{args.hidden}-10, minibatch {len(X)}, "
        f"{fabric.n_edges:,} weights; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus; device {device}; {threads_line()}",
        flush=True,
    )
    results = []
    if not args.only_quality:
        _, kernels = backends.resolve("thermo", "numba")
        ch = Chain(fabric, spec, kernels)
        ch.set_batch(X, y, scale)
        ch.run(2000, temperature=args.temperature, move_cum=cum, sigma=sigma, rng=rng)  # compile
        best = []
        for _ in range(3):
            t = time.perf_counter()
            ch.run(args.proposals, temperature=args.temperature, move_cum=cum, sigma=sigma, rng=rng)
            best.append(args.proposals / (time.perf_counter() - t))
        numba_rate = float(np.median(best))
        results.append(("numba", "float64", 1, numba_rate))
        print(f"#   numba, one chain: {numba_rate:,.0f} proposals/s", flush=True)
        for dtype in (torch.float64, torch.float32):
            for C in (int(c) for c in args.chains.split(",")):
                tc = TorchChains(fabric, C, spec, device=device, dtype=dtype)
                tc.set_batch(X, y, scale)
                tc.run(10, temperature=args.temperature, move_cum=cum, sigma=sigma, rng=rng)
                rates = []
                for _ in range(3):
                    if device.startswith("cuda"):
                        torch.cuda.synchronize()
                    t = time.perf_counter()
                    tc.run(
                        args.steps, temperature=args.temperature, move_cum=cum, sigma=sigma, rng=rng
                    )
                    if device.startswith("cuda"):
                        torch.cuda.synchronize()
                    rates.append(C * args.steps / (time.perf_counter() - t))
                rate = float(np.median(rates))
                name = str(dtype).replace("torch.", "")
                results.append(("torch", name, C, rate))
                print(f"#   torch {name}, {C} chains: {rate:,.0f} proposals/s", flush=True)
    results_q = quality(args) if args.quality_seconds > 0 else []
    if not args.only_quality:
        print()
        print("| system | dtype | chains | proposals/s | vs numba (one chain) |")
        print("|---|---|---:|---:|---:|")
        for system, dtype, C, rate in results:
            print(f"| {system} | {dtype} | {C} | {rate:,.0f} | {rate / numba_rate:.2f}x |")
        for system, dtype, C, rate in results:
            record(
                "thermo_torch",
                "neurofabric",
                variant=f"{system}-{dtype}-{C}chains" + ("" if system == "numba" else f"-{device}"),
                workload={
                    "dataset": args.dataset,
                    "hidden": args.hidden,
                    "batch": len(X),
                    "chains": C,
                    "device": device if system == "torch" else "cpu",
                    "threads": THREADS,
                },
                figures={"proposals_per_s": rate, "vs_numba_x": rate / numba_rate},
                headline=("proposals_per_s", "vs_numba_x"),
            )
    if args.quality_seconds > 0:
        print()
        print(f"digits 64-32-10, {args.quality_seconds:.0f} s each, weights and biases only:")
        print("| trainer | test accuracy | proposals (all chains) |")
        print("|---|---:|---:|")
        for name, variant, acc, props in results_q:
            print(f"| {name} | {acc:.4f} | {props:,} |")
            record(
                "thermo_torch",
                "neurofabric",
                variant=variant,
                workload={"dataset": "digits", "hidden": 32, "budget_s": args.quality_seconds},
                figures={"accuracy_pct": 100 * acc, "proposals_count": props},
                headline=("accuracy_pct",),
            )


def quality(args) -> list[tuple[str, str, float, int]]:
    """Test accuracy on digits at the same wall-clock budget: one numba chain (simulated
    annealing) against population annealing of 16 torch chains (float32), the same moves
    (weights and biases), minibatches and schedule."""
    from neurofabric.data import load_classification
    from neurofabric.thermo import Geometric, Moves, ThermoClassifier
    from neurofabric.thermo.population import PopulationAnnealer

    Xtr, Xte, ytr, yte = load_classification("digits")
    fixed = Moves(weight=0.8, bias=0.2, birth=0.0, death=0.0, all=0.0)
    # w_max 2 as the CLI's default: unbounded weights of rarely active pixels random-walk
    common = dict(batch_size=500, max_time=args.quality_seconds, seed=0, w_max=2.0)
    out = []
    m = ThermoClassifier(
        hidden=(32,),
        moves=fixed,
        n_proposals=10**9,
        generation=20_000,
        schedule=Geometric(0.5, 0.005),
        **common,
    )
    m.fit(Xtr, ytr)
    out.append(("numba, one chain", "quality-numba-1chain", m.score(Xte, yte), m.n_proposals_done_))
    print(f"#   numba, one chain: {out[-1]}", flush=True)
    for chains in (16, 64):
        p = PopulationAnnealer(
            hidden=(32,),
            n_chains=chains,
            n_proposals=10**9,
            generation=200,
            dtype="float32",
            schedule=Geometric(0.5, 0.005),
            **common,
        )
        p.fit(Xtr, ytr)
        name = f"torch population annealing, {chains} chains"
        variant = f"quality-torch-{chains}chains"
        out.append((name, variant, p.score(Xte, yte), int(p.n_proposals_done_) * chains))
        last = p.history_.rows[-1]
        print(f"#   {name}: {out[-1]}, final T {last['temperature']:.3g}", flush=True)
    return out


if __name__ == "__main__":
    main()
