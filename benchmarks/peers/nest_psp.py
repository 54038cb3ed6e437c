"""NEST peer of benchmarks/snn_nest_timing.py: one iaf_psc_exp neuron (the microcircuit's
parameters) receives one spike at 1.0 ms through a synapse of 87.8085 pA with a 1.5 ms delay;
prints one JSON line with its membrane potential every 0.1 ms (multimeter, 10 ms)."""

import json
import sys


def main() -> None:
    out, sys.stdout = sys.stdout, sys.stderr  # NEST's banner
    import nest

    nest.set_verbosity("M_ERROR")
    nest.ResetKernel()
    nest.SetKernelStatus({"resolution": 0.1})
    params = {"C_m": 250.0, "tau_m": 10.0, "tau_syn_ex": 0.5, "tau_syn_in": 0.5, "t_ref": 2.0}
    params |= {"E_L": -65.0, "V_reset": -65.0, "V_th": -50.0, "V_m": -65.0, "I_e": 0.0}
    neuron = nest.Create("iaf_psc_exp", params=params)
    gen = nest.Create("spike_generator", params={"spike_times": [1.0]})
    nest.Connect(gen, neuron, syn_spec={"weight": 87.8085, "delay": 1.5})
    meter = nest.Create("multimeter", params={"record_from": ["V_m"], "interval": 0.1})
    nest.Connect(meter, neuron)
    nest.Simulate(10.0)
    ev = meter.get("events")
    line = {"version": nest.__version__, "t_ms": list(map(float, ev["times"]))}
    print(json.dumps(line | {"v_mv": list(map(float, ev["V_m"]))}), file=out)


if __name__ == "__main__":
    main()
