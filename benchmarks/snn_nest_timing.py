"""Does neurofabric's synaptic timing match NEST's? One neuron, one spike, one synapse.

    python benchmarks/snn_nest_timing.py

An ``iaf_psc_exp`` neuron with the cortical microcircuit's parameters (C_m 250 pF, tau_m 10 ms,
tau_syn 0.5 ms, E_L -65 mV) receives one spike at 1.0 ms through a synapse of 87.8085 pA (the
model's J) with a 1.5 ms delay, in NEST 3.10 (``benchmarks/peers/nest_psp.py``) and here (cuba
synapse, weight R x J, R = 40 MOhm), dt 0.1 ms, membrane potential recorded every step. NEST
applies a step's arriving input after that step's membrane update, this simulator before it,
so the same trace needs one more step of delay here (``microcircuit(nest_timing=True)``). The
script prints the PSP's peak and onset in both and the largest difference of the traces with
the delay as given and with one step more.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from _record import record
from _threads import pin_threads

THREADS = pin_threads(1)

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def ours(extra_steps: int) -> tuple[np.ndarray, np.ndarray]:
    from neurofabric.snn import (
        LIFParams,
        OneToOne,
        SpikeArrayInput,
        SpikingNetwork,
        StateMonitor,
        SynapseParams,
    )

    dt = 1e-4
    net = SpikingNetwork(
        1,
        neuron=LIFParams(v_rest=-65e-3, v_th=-50e-3, v_reset=-65e-3, tau_m=10e-3, r_m=4e7),
        synapse=SynapseParams("cuba", tau_e=0.5e-3, tau_i=0.5e-3),
        dt=dt,
        v_init=np.array([-65e-3]),
    )
    net.add_input("spike", SpikeArrayInput(1, indices=[0], times=[1.0e-3]))
    w = 87.8085e-12 * 4e7
    net.connect(OneToOne(), source="spike", weight=w, delay=1.5e-3 + extra_steps * dt)
    r = net.run(10e-3, monitors=[StateMonitor(neurons=[0], every=1)])
    return r.state_times * 1e3, r.state["v"][:, 0] * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers-python", default=str(ROOT / ".venv-peers" / "bin" / "python"))
    args = ap.parse_args()
    script = str(Path(__file__).resolve().parent / "peers" / "nest_psp.py")
    proc = subprocess.run([args.peers_python, script], capture_output=True, text=True)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode or not lines:
        raise SystemExit(f"NEST failed: {proc.stderr.strip()[-800:]}")
    nest = json.loads(lines[-1])
    tn, vn = np.array(nest["t_ms"]), np.array(nest["v_mv"])
    rows = [("NEST " + nest["version"], tn, vn, None)]
    for extra in (0, 1):
        t, v = ours(extra)
        common = np.intersect1d(np.round(tn, 6), np.round(t, 6))
        a = vn[np.isin(np.round(tn, 6), common)]
        b = v[np.isin(np.round(t, 6), common)]
        rows.append((f"neurofabric, delay + {extra} step", t, v, float(np.abs(a - b).max())))
    print(
        "\n| system | PSP peak (mV) | peak at (ms) | first change at (ms) | max abs(V - V_NEST) (mV) |"
    )
    print("|---|---|---|---|---|")
    for name, t, v, diff in rows:
        rise = v - v[0]
        first = t[np.argmax(rise > 1e-9)]
        d = "-" if diff is None else f"{diff:.2e}"
        print(f"| {name} | {rise.max():.6f} | {t[rise.argmax()]:.1f} | {first:.1f} | {d} |")
    for k, (_, t, v, diff) in enumerate(rows):
        rise = v - v[0]
        figures = {
            "psp_peak_mv": float(rise.max()),
            "peak_at_ms": float(t[rise.argmax()]),
            "first_change_at_ms": float(t[np.argmax(rise > 1e-9)]),
        }
        workload = {"neurons": 1, "dt_ms": 0.1, "delay_ms": 1.5, "weight_pa": 87.8085}
        if k == 0:
            system, variant = "nest-simulator", None
            workload["version"] = nest["version"]
        else:  # rows 1, 2: the delay as given and one step more
            system, variant = "neurofabric", f"delay+{k - 1}-step"
            workload["extra_delay_steps"] = k - 1
            figures["max_diff_mv"] = diff
        record(
            "snn_nest_timing",
            system,
            variant=variant,
            workload=workload,
            figures=figures,
            headline=("psp_peak_mv", "max_diff_mv") if k else ("psp_peak_mv",),
        )


if __name__ == "__main__":
    main()
