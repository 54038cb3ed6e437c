"""NEST peer of the cortical microcircuit (benchmarks/snn_microcircuit.py): the network of
Potjans & Diesmann (2014) as NEST's PyNEST example builds it, from the parameters the
benchmark writes (``neurofabric.snn.microcircuit.microcircuit_spec``, so both simulators get
the same numbers). Run with the peers venv::

    .venv-peers/bin/python benchmarks/peers/nest_microcircuit.py --params p.json --out s.npz

Model, as ``pynest/examples/Potjans_2014/network.py`` (NEST 3): ``iaf_psc_exp`` populations
with their DC as ``I_e`` and normal initial potentials; per projection
``fixed_total_number`` with ``static_synapse`` weights ``redraw(normal(w, 0.1|w|))`` at the
sign boundary and delays ``redraw(normal(d, d/2), min=dt/2)``; one ``poisson_generator`` per
population at 8 Hz x K_ext, ``all_to_all``, delay 1.5 ms. One ``spike_recorder`` per population.

Writes the spikes (neuron index in the benchmark's numbering, time in s) to ``--out`` and one
JSON line with the timings on stdout; NEST's messages go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--duration", type=float, default=1.5, help="seconds, presim included")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    stdout = sys.stdout
    sys.stdout = sys.stderr  # NEST's banner
    import nest
    import numpy as np

    p = json.load(open(args.params))
    nest.set_verbosity("M_ERROR")
    nest.ResetKernel()
    nest.SetKernelStatus(
        {
            "resolution": p["dt_ms"],
            "local_num_threads": args.threads,
            "rng_seed": args.seed,
            "print_time": False,
        }
    )
    t0 = time.perf_counter()
    neuron = p["neuron"]
    pops = []
    for k, n in enumerate(p["n_neurons"]):
        pop = nest.Create(
            "iaf_psc_exp",
            n,
            params={
                "C_m": neuron["C_m"],
                "tau_m": neuron["tau_m"],
                "tau_syn_ex": neuron["tau_syn"],
                "tau_syn_in": neuron["tau_syn"],
                "t_ref": neuron["t_ref"],
                "E_L": neuron["E_L"],
                "V_reset": neuron["V_reset"],
                "V_th": neuron["V_th"],
                "I_e": p["dc_pa"][k],
            },
        )
        pop.set(V_m=nest.random.normal(mean=p["v0_mean_mv"][k], std=p["v0_sd_mv"][k]))
        pops.append(pop)
    dt = p["dt_ms"]
    n_syn = 0
    # one copy of static_synapse per source population: NEST holds at most 134,217,726
    # connections per virtual process and synapse model, and the full-scale model has 299 M
    # on one thread (its largest projection, L2/3E -> L2/3E, has 45.5 M); the copies are the
    # same synapse
    for j in range(len(pops)):
        nest.CopyModel("static_synapse", f"static_synapse_from_{j}")
    for i, target in enumerate(pops):
        for j, source in enumerate(pops):
            k = int(p["n_synapses"][i][j])
            if not k:
                continue
            w = p["weight_pa"][i][j]
            lo, hi = (0.0, np.inf) if w >= 0 else (-np.inf, 0.0)
            d = p["delay_ms"][j]
            nest.Connect(
                source,
                target,
                {"rule": "fixed_total_number", "N": k},
                {
                    "synapse_model": f"static_synapse_from_{j}",
                    "weight": nest.math.redraw(
                        nest.random.normal(mean=w, std=abs(w) * p["weight_rel_sd"]), min=lo, max=hi
                    ),
                    "delay": nest.math.redraw(
                        nest.random.normal(mean=d, std=p["delay_sd_ms"][j]),
                        min=dt - 0.5 * dt,
                        max=np.inf,
                    ),
                },
            )
            n_syn += k
    if p["background"] == "poisson":
        for k, pop in enumerate(pops):
            gen = nest.Create("poisson_generator", params={"rate": p["bg_rate_hz"][k]})
            nest.Connect(gen, pop, "all_to_all", {"weight": p["weight_ext_pa"], "delay": 1.5})
    recorders = []
    for pop in pops:
        rec = nest.Create("spike_recorder")
        nest.Connect(pop, rec)
        recorders.append(rec)
    nest.Prepare()
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    nest.Run(args.duration * 1e3)
    run_s = time.perf_counter() - t0
    nest.Cleanup()
    idx, times = [], []
    start = 0
    for pop, rec, n in zip(pops, recorders, p["n_neurons"], strict=True):
        ev = rec.get("events")
        first = pop.tolist()[0]
        idx.append(np.asarray(ev["senders"], np.int64) - first + start)
        times.append(np.asarray(ev["times"], np.float64) * 1e-3)
        start += n
    np.savez(args.out, spike_indices=np.concatenate(idx), spike_times=np.concatenate(times))
    sys.stdout = stdout
    print(
        json.dumps(
            {
                "system": "nest",
                "version": nest.__version__,
                "threads": args.threads,
                "synapses": n_syn,
                "build_s": build_s,
                "run_s": run_s,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
