"""NEST peer for the Vogels & Abbott CUBA benchmark (benchmarks/snn_cuba.py).

Run with the peers venv (``make peers``), e.g.::

    .venv-peers/bin/python benchmarks/peers/nest_cuba.py --neurons 4000 --duration 1.0

Prints exactly one JSON line on stdout; NEST's banner and messages go to stderr.

Model: the same network as Brian2's CUBA example, with ``iaf_psc_exp``
(exponential post-synaptic currents): N neurons, first 80 % excitatory,
C_m 250 pF, tau_m 20 ms, E_L -49 mV, V_th -50 mV, V_reset -60 mV, t_ref 5 ms,
I_e 0, tau_syn_ex 5 ms, tau_syn_in 10 ms, V_m uniform in [-60, -50) mV.
Brian2's ``dv/dt = (ge+gi-(v-El))/taum`` with ``ge += we`` (mV) equals NEST's
``dV/dt = -(V-E_L)/tau_m + I/C_m`` with a current jump of w = we * C_m / tau_m,
so we = 1.62 mV -> 20.25 pA and wi = -9 mV -> -112.5 pA. Connectivity:
``pairwise_bernoulli`` with p = K/N from each source group to all N neurons
(NEST draws one random number per pair, O(N^2), unlike Brian2's sampling),
``static_synapse``, delay 0.1 ms (NEST's minimum = dt; Brian2 uses 0).
Resolution 0.1 ms, ``local_num_threads`` = ``--threads`` (default 1, the value
benchmarks/snn_cuba.py passes to every system; OMP/BLAS variables are set to it before NEST
loads), ``print_time`` False, verbosity QUIET.

Spike counting: every neuron is connected (delay 0.1 ms) to one
``parrot_neuron``, which re-emits each spike (with its multiplicity) to a
``spike_recorder`` whose window is (0, duration + 0.1 ms]; after the timed run,
an untimed 0.2 ms ``Run`` flushes the last spikes through the parrot. Reason:
connecting a ``spike_recorder`` directly to N neurons costs NEST ~30 KB *per
neuron* (a per-source device connector whose first block holds 1024
connections): +1.2 GB at N = 40,000, which would swamp the network's own
memory. The parrot path costs one extra (neuron-side) connection per neuron,
i.e. ~1/80 more spike deliveries in ``run_s``, and gives the same count as a
direct recorder (checked: 22,567 spikes both ways at N = 4000, seed 1).
These N parrot connections are excluded from ``synapses``.

Timings (wall clock, ``time.perf_counter``):

* ``build_s`` = ``Create`` + ``Connect`` (including the small spike-counting
  setup) + ``Prepare`` (where NEST builds its presynaptic connection
  infrastructure from the connections; that is network construction, so it is
  timed here rather than in the run -- a second ``Run`` takes as long as the
  first). ``connect_s`` and ``prepare_s`` are reported as extra keys.
* ``compile_s`` = 0 (nothing is compiled).
* ``run_s`` = ``nest.Run(duration)``; ``nest.Cleanup()`` is not timed.

Memory:

* ``peak_rss_mb`` = ``getrusage(RUSAGE_SELF).ru_maxrss`` of this process,
  which simulates (the peak over the whole process, including the import).
* ``bytes_per_synapse`` = (peak RSS from the start of ``Connect`` to the end of
  the run - RSS just before ``Connect``) / synapses. The kernel's peak counter
  is reset (``/proc/self/clear_refs``, value 5) just before ``Connect`` and
  VmHWM is read after the run (fallback when that is not allowed:
  ``ru_maxrss``, which can only overstate). This includes the connection
  objects, the source/target tables built in ``Prepare`` (and their transient
  copies), and -- a small, not-synapse part -- the N neuron->parrot
  connections and the spike recorder's buffer.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time


def _threads_from_argv() -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", type=int, default=1)
    return max(1, pre.parse_known_args()[0].threads)


for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(_threads_from_argv())
os.environ["PYNEST_QUIET"] = "1"

C_M_PF = 250.0
TAU_M_MS = 20.0


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def log(msg: str) -> None:
    print(f"[nest_cuba] {msg}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--neurons", type=int, default=4000)
    ap.add_argument("--duration", type=float, default=1.0, help="biological seconds")
    ap.add_argument("--synapses-per-neuron", type=float, default=80.0, help="K; p = K/N")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--model", choices=("cuba",), default="cuba")
    ap.add_argument("--threads", type=int, default=1, help="NEST local_num_threads")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    if args.neurons < 5:
        ap.error("--neurons must be >= 5")
    if not 0 <= args.synapses_per_neuron <= args.neurons:
        ap.error("--synapses-per-neuron must be in [0, N]")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    # Keep stdout for the single JSON line; send everything else (incl. C++ output) to stderr.
    json_fd = os.dup(1)
    sys.stdout.flush()
    os.dup2(2, 1)

    import nest

    n = args.neurons
    ne = int(0.8 * n)
    p = args.synapses_per_neuron / n
    we_mv = 60 * 0.27 / 10
    wi_mv = -20 * 4.5 / 10
    w_ex = we_mv * C_M_PF / TAU_M_MS  # pA
    w_in = wi_mv * C_M_PF / TAU_M_MS  # pA
    log(f"N={n} p={p:.6g} duration={args.duration}s w_ex={w_ex} pA w_in={w_in} pA")

    nest.ResetKernel()
    nest.verbosity = nest.VerbosityLevel.QUIET
    nest.SetKernelStatus(
        {
            "resolution": 0.1,
            "local_num_threads": args.threads,
            "print_time": False,
            "rng_seed": args.seed,
        }
    )

    t0 = time.perf_counter()
    neurons = nest.Create(
        "iaf_psc_exp",
        n,
        params={
            "C_m": C_M_PF,
            "tau_m": TAU_M_MS,
            "tau_syn_ex": 5.0,
            "tau_syn_in": 10.0,
            "E_L": -49.0,
            "V_th": -50.0,
            "V_reset": -60.0,
            "t_ref": 5.0,
            "I_e": 0.0,
            "V_m": nest.random.uniform(-60.0, -50.0),
        },
    )
    exc, inh = neurons[:ne], neurons[ne:]

    peak_before_kb = _status_kb("VmHWM")
    rss_before_kb = _status_kb("VmRSS")
    reset_ok = _reset_peak_rss()
    t1 = time.perf_counter()
    if p > 0:
        conn = {"rule": "pairwise_bernoulli", "p": p}
        nest.Connect(
            exc, neurons, conn, {"synapse_model": "static_synapse", "weight": w_ex, "delay": 0.1}
        )
        nest.Connect(
            inh, neurons, conn, {"synapse_model": "static_synapse", "weight": w_in, "delay": 0.1}
        )
    connect_s = time.perf_counter() - t1
    # Spike counting (see docstring), created after the network so that the
    # network's node ids and random draws do not depend on it.
    duration_ms = args.duration * 1000.0
    parrot = nest.Create("parrot_neuron")
    rec = nest.Create("spike_recorder", params={"stop": duration_ms + 0.1})
    nest.Connect(neurons, parrot, syn_spec={"delay": 0.1})
    nest.Connect(parrot, rec)
    t1 = time.perf_counter()
    nest.Prepare()
    prepare_s = time.perf_counter() - t1
    build_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    nest.Run(duration_ms)
    run_s = time.perf_counter() - t0
    nest.Run(0.2)  # untimed: deliver the spikes of the last step through the parrot
    nest.Cleanup()

    syn_peak_kb = (
        _status_kb("VmHWM") if reset_ok else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    )
    peak_kb = max(
        peak_before_kb, _status_kb("VmHWM"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    )
    # Synapses among the neurons only (neurons->parrot and parrot->recorder excluded).
    synapses = int(nest.GetKernelStatus("num_connections")) - n - 1
    spikes = int(rec.get("n_events"))
    growth_b = max(0, syn_peak_kb - rss_before_kb) * 1024

    out = {
        "system": "nest",
        "target": "nest",
        "model": args.model,
        "neurons": n,
        "synapses": synapses,
        "duration_s": args.duration,
        "spikes": spikes,
        "rate_hz": spikes / n / args.duration,
        "build_s": build_s,
        "compile_s": 0.0,
        "run_s": run_s,
        "s_per_bio_s": run_s / args.duration,
        "peak_rss_mb": peak_kb / 1024,
        "bytes_per_synapse": growth_b / synapses if synapses else None,
        "version": nest.__version__,
        "threads": int(nest.GetKernelStatus("local_num_threads")),
        "env_threads": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "seed": args.seed,
        "synapses_per_neuron": args.synapses_per_neuron,
        "rss_before_connect_mb": rss_before_kb / 1024,
        "connect_s": connect_s,
        "prepare_s": prepare_s,
        "peak_reset": reset_ok,
    }
    os.write(json_fd, (json.dumps(out) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
