"""Brian2 peer for the Vogels & Abbott CUBA benchmark (benchmarks/snn_cuba.py).

Run with the peers venv (``make peers``), e.g.::

    .venv-peers/bin/python benchmarks/peers/brian2_cuba.py --neurons 4000 --duration 1.0

Prints exactly one JSON line on stdout; everything else (Brian2 logs, compiler
output, the standalone binary's output) goes to stderr or to files in the build
directory.

Model (Brian2's CUBA example, ``examples/CUBA.py``): N neurons, the first 80 %
excitatory, ``dv/dt = (ge+gi-(v-El))/taum`` (unless refractory),
``dge/dt = -ge/taue``, ``dgi/dt = -gi/taui``, taum 20 ms, taue 5 ms, taui 10 ms,
Vt -50 mV, Vr -60 mV, El -49 mV, threshold ``v>Vt``, reset ``v=Vr``,
refractory 5 ms, method 'exact', dt 0.1 ms, ``v = Vr + rand()*(Vt-Vr)``,
ge = gi = 0, ``ge += we`` with we = 60*0.27/10 mV from the excitatory and
``gi += wi`` with wi = -20*4.5/10 mV from the inhibitory group, each source
group connected to all N neurons with p = K/N (subgroups, so Brian2 uses its
O(synapses) ``sample()`` generator instead of testing all N^2 pairs), delay 0.
``--model coba`` is the COBA network of Brette et al. (2007) as in Brian2's
benchmarks (El -60 mV, Erev_exc 0 mV, Erev_inh -80 mV, I 20 mV, we 0.6, wi 6.7,
dimensionless conductances, method 'euler'), same sizes and connectivity.

Threads: ``--threads N`` (default 1, the value benchmarks/snn_cuba.py passes to every
system). At 1 OpenMP is compiled out (``devices.cpp_standalone.openmp_threads = 0``), so the
simulation is single-threaded; at N > 1 the C++ standalone project is built with OpenMP and
``openmp_threads = N``. The Cython runtime target has no threads (N must be 1). The OMP/BLAS
thread variables are set to N before Brian2 loads. The C++ compile itself uses
``make -j<--make-jobs>``.

Timings (wall clock, ``time.perf_counter``):

``cpp_standalone``
    Brian2 only records the network in Python; code generation, compilation,
    synapse creation and simulation happen later.
    * ``build_s`` = Python-side construction of the groups/synapses objects
      and the ``connect()`` calls (extra key ``python_setup_s``; this includes
      generating the initialisation/synapse-creation code objects) + the time
      the compiled binary spends in the two ``connect()`` calls (``connect_s``,
      measured inside the binary with ``clock_gettime`` through
      ``device.insert_code``).
    * ``compile_s`` = the recording ``Network.run`` call (code generation of
      the run's code objects, ``run_codegen_s``) + ``device.build(compile=True,
      run=False)`` (writing the project + ``make``).
    * ``run_s`` = the simulation loop inside the binary (Brian2's own
      ``last_run_info.txt`` timer, i.e. ``Network.run`` in C++), excluding
      process start-up, synapse creation and writing results.
      ``binary_wall_s`` (extra key) is the whole ``device.run()`` wall time.

``cython`` (runtime mode)
    * ``compile_s`` = a warm-up pass that builds, connects and runs (1 ms) a
      200-neuron copy of the same network with the same object names and the
      same p, so every code object is generated and Cython-compiled once into a
      fresh cache inside the build directory; plus the code generation that
      ``Network.run`` does again in its ``before_run`` for the real network
      (cache hits, no compilation).
    * ``build_s`` = construction + ``connect()`` of the real network.
    * ``run_s`` = ``Network.run`` wall time minus its ``before_run`` part.

Memory:

* ``peak_rss_mb`` is the peak resident set of the process that simulated.
  For ``cpp_standalone`` that is the ``main`` binary: it is launched through a
  tiny Python wrapper (``run_cmd_unix``) whose
  ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` covers only that binary -- the
  benchmark process's own RUSAGE_CHILDREN would also include ``cc1plus`` from
  the compile. For ``cython`` it is ``getrusage(RUSAGE_SELF)`` of this process.
* ``bytes_per_synapse`` = (peak RSS from the start of ``connect()`` to the end
  of the run - RSS just before ``connect()``) / synapses. So it counts
  everything that appears with the synapses: index arrays (and the transient
  copy when a ``std::vector`` grows), spike-queue structures built at the start
  of the run, and -- a small, not-synapse part -- the spike monitor's buffers
  and the per-run state (~3 % at N=4000, 1 s). No K=0 build is needed. For
  ``cpp_standalone`` the RSS before ``connect()`` is read from
  ``/proc/self/status`` inside the binary and the peak is the binary's
  ``ru_maxrss``; for ``cython`` the kernel's peak counter is reset
  (``/proc/self/clear_refs``, value 5) just before ``connect()`` and VmHWM is
  read after the run (fallback when that is not allowed: ``ru_maxrss``, which
  can only overstate).

Build directory: ``<--build-dir>/<model>-<target>-n<N>-k<K>-d<duration>-s<seed>``,
deleted and re-created on every run, so each size gets a fresh project (and,
for cython, a cold compile cache).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import time


def _threads_from_argv() -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", type=int, default=1)
    return max(1, pre.parse_known_args()[0].threads)


for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(_threads_from_argv())

# The wrapper that launches the standalone binary and reports its peak RSS.
_RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[1:])\n"
    "ru = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "open('nf_child_maxrss_kb.txt', 'w').write(str(ru.ru_maxrss))\n"
    "sys.exit(rc)\n"
)

# C++ inserted into main() around the connect() calls (runs in the build dir).
_PROBE_CPP = """{
    struct timespec _nf_ts;
    clock_gettime(CLOCK_MONOTONIC, &_nf_ts);
    long _nf_rss_kb = -1;
    std::ifstream _nf_status("/proc/self/status");
    std::string _nf_line;
    while (std::getline(_nf_status, _nf_line))
        if (_nf_line.compare(0, 6, "VmRSS:") == 0) _nf_rss_kb = std::stol(_nf_line.substr(6));
    std::ofstream _nf_out("nf_probe.txt", std::ios::app);
    _nf_out.precision(17);
    _nf_out << "%s " << (_nf_ts.tv_sec + 1e-9 * _nf_ts.tv_nsec) << " " << _nf_rss_kb << "\\n";
}"""


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
    print(f"[brian2_cuba] {msg}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--neurons", type=int, default=4000)
    ap.add_argument("--duration", type=float, default=1.0, help="biological seconds")
    ap.add_argument("--synapses-per-neuron", type=float, default=80.0, help="K; p = K/N")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--model", choices=("cuba", "coba"), default="cuba")
    ap.add_argument("--target", choices=("cpp_standalone", "cython"), default="cpp_standalone")
    ap.add_argument("--build-dir", default=os.path.join("build", "peers"))
    ap.add_argument("--make-jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--threads", type=int, default=1, help="OpenMP threads (cpp_standalone)")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    if args.target == "cython" and args.threads != 1:
        ap.error("--threads must be 1 for --target cython (Brian2's runtime mode has no threads)")
    if args.neurons < 5:
        ap.error("--neurons must be >= 5")
    if not 0 <= args.synapses_per_neuron <= args.neurons:
        ap.error("--synapses-per-neuron must be in [0, N]")
    return args


def build_network(b2, n, p, model, names_suffix=""):
    """Create groups, synapses and monitor. Returns (objects, connect_fn)."""
    ms, mV = b2.ms, b2.mV
    ne = int(0.8 * n)
    if model == "cuba":
        ns = dict(
            taum=20 * ms,
            taue=5 * ms,
            taui=10 * ms,
            Vt=-50 * mV,
            Vr=-60 * mV,
            El=-49 * mV,
            we=(60 * 0.27 / 10) * mV,
            wi=(-20 * 4.5 / 10) * mV,
        )
        eqs = """
        dv/dt  = (ge+gi-(v-El))/taum : volt (unless refractory)
        dge/dt = -ge/taue : volt
        dgi/dt = -gi/taui : volt
        """
        method = "exact"
    else:
        ns = dict(
            taum=20 * ms,
            taue=5 * ms,
            taui=10 * ms,
            Vt=-50 * mV,
            Vr=-60 * mV,
            El=-60 * mV,
            Erev_exc=0 * mV,
            Erev_inh=-80 * mV,
            I=20 * mV,
            we=0.6,
            wi=6.7,
        )
        eqs = """
        dv/dt  = (ge*(Erev_exc-v)+gi*(Erev_inh-v)-(v-El)+I)*(1./taum) : volt (unless refractory)
        dge/dt = -ge/taue : 1
        dgi/dt = -gi/taui : 1
        """
        method = "euler"
    P = b2.NeuronGroup(
        n,
        eqs,
        threshold="v>Vt",
        reset="v = Vr",
        refractory=5 * ms,
        method=method,
        namespace=ns,
        name="neurons" + names_suffix,
    )
    P.v = "Vr + rand() * (Vt - Vr)"
    P.ge = 0
    P.gi = 0
    Pe, Pi = P[:ne], P[ne:]
    Ce = b2.Synapses(Pe, P, on_pre="ge += we", namespace=ns, name="syn_exc" + names_suffix)
    Ci = b2.Synapses(Pi, P, on_pre="gi += wi", namespace=ns, name="syn_inh" + names_suffix)
    mon = b2.SpikeMonitor(P, name="spikes" + names_suffix)

    def connect():
        if p > 0:
            Ce.connect(p=p)
            Ci.connect(p=p)

    return (P, Ce, Ci, mon), connect


def run_cpp_standalone(b2, args, project_dir, p):
    from brian2 import device, prefs

    b2.set_device("cpp_standalone", directory=project_dir, build_on_run=False)
    prefs.devices.cpp_standalone.openmp_threads = args.threads if args.threads > 1 else 0
    prefs.devices.cpp_standalone.extra_make_args_unix = [f"-j{max(1, args.make_jobs)}"]
    prefs.devices.cpp_standalone.run_cmd_unix = [sys.executable, "-c", _RSS_WRAPPER, "./main"]
    b2.defaultclock.dt = 0.1 * b2.ms
    b2.seed(args.seed)

    t0 = time.perf_counter()
    (P, Ce, Ci, mon), connect = build_network(b2, args.neurons, p, args.model)
    device.insert_code("main", _PROBE_CPP % "before_connect")
    connect()
    device.insert_code("main", _PROBE_CPP % "after_connect")
    net = b2.Network(P, Ce, Ci, mon)
    py_setup_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    # build_on_run=False: this only generates the code objects of the run and records it.
    net.run(args.duration * b2.second)
    codegen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    device.build(directory=project_dir, compile=True, run=False, with_output=False)
    compile_s = codegen_s + time.perf_counter() - t0

    t0 = time.perf_counter()
    device.run(directory=project_dir, with_output=False)
    binary_wall_s = time.perf_counter() - t0
    run_s = float(device._last_run_time)

    probes = {}
    with open(os.path.join(project_dir, "nf_probe.txt")) as fh:
        for line in fh:
            name, t, rss = line.split()
            probes[name] = (float(t), int(rss))
    connect_s = probes["after_connect"][0] - probes["before_connect"][0]
    rss_before_kb = probes["before_connect"][1]
    with open(os.path.join(project_dir, "nf_child_maxrss_kb.txt")) as fh:
        peak_kb = int(fh.read())

    synapses = int(len(Ce) + len(Ci)) if p > 0 else 0
    return dict(
        spikes=int(mon.num_spikes),
        synapses=synapses,
        build_s=py_setup_s + connect_s,
        compile_s=compile_s,
        run_s=run_s,
        peak_kb=peak_kb,
        syn_peak_kb=peak_kb,
        rss_before_connect_kb=rss_before_kb,
        extra=dict(
            python_setup_s=py_setup_s,
            connect_s=connect_s,
            run_codegen_s=codegen_s,
            binary_wall_s=binary_wall_s,
            rss_after_connect_mb=probes["after_connect"][1] / 1024,
        ),
    )


def run_cython(b2, args, project_dir, p):
    from brian2 import prefs

    prefs.codegen.target = "cython"
    prefs.codegen.runtime.cython.cache_dir = os.path.join(project_dir, "cython_cache")
    b2.defaultclock.dt = 0.1 * b2.ms
    cache_dir = prefs.codegen.runtime.cython.cache_dir

    def n_compiled():
        return sum(f.endswith(".so") for _, _, fs in os.walk(cache_dir) for f in fs)

    # Warm-up: same code (same names, same p), tiny size -> generate + compile everything.
    t0 = time.perf_counter()
    b2.seed(args.seed)
    objs, connect = build_network(b2, min(args.neurons, 200), p, args.model)
    connect()
    warm = b2.Network(*objs)
    warm.run(1 * b2.ms)
    del warm, objs, connect
    gc.collect()
    warmup_s = time.perf_counter() - t0
    compiled_warm = n_compiled()

    peak_before_kb = _status_kb("VmHWM")
    b2.seed(args.seed)
    t0 = time.perf_counter()
    (P, Ce, Ci, mon), connect = build_network(b2, args.neurons, p, args.model)
    rss_before_kb = _status_kb("VmRSS")
    reset_ok = _reset_peak_rss()
    connect()
    net = b2.Network(P, Ce, Ci, mon)
    build_s = time.perf_counter() - t0

    before_run_s = [0.0]
    orig_before_run = net.before_run

    def timed_before_run(*a, **kw):
        tb = time.perf_counter()
        try:
            return orig_before_run(*a, **kw)
        finally:
            before_run_s[0] += time.perf_counter() - tb

    net.before_run = timed_before_run
    t0 = time.perf_counter()
    net.run(args.duration * b2.second)
    run_wall = time.perf_counter() - t0
    run_s = run_wall - before_run_s[0]
    compiled_after = n_compiled()
    if compiled_after != compiled_warm:
        log(f"warning: {compiled_after - compiled_warm} code objects compiled after the warm-up")

    if reset_ok:
        syn_peak_kb = _status_kb("VmHWM")
    else:
        import resource

        syn_peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_kb = max(peak_before_kb, _status_kb("VmHWM"))
    synapses = int(len(Ce) + len(Ci)) if p > 0 else 0
    return dict(
        spikes=int(mon.num_spikes),
        synapses=synapses,
        build_s=build_s,
        compile_s=warmup_s + before_run_s[0],
        run_s=run_s,
        peak_kb=peak_kb,
        syn_peak_kb=syn_peak_kb,
        rss_before_connect_kb=rss_before_kb,
        extra=dict(warmup_s=warmup_s, before_run_s=before_run_s[0], peak_reset=reset_ok),
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    # Keep stdout for the single JSON line; send everything else (incl. C-level output) to stderr.
    json_fd = os.dup(1)
    sys.stdout.flush()
    os.dup2(2, 1)

    import brian2 as b2

    b2.prefs.logging.console_log_level = "WARNING"
    b2.prefs.logging.file_log = False
    b2.prefs.logging.delete_log_on_exit = True

    n = args.neurons
    p = args.synapses_per_neuron / n
    tag = f"{args.model}-{args.target}-n{n}-k{args.synapses_per_neuron:g}-d{args.duration:g}-s{args.seed}"
    project_dir = os.path.join(args.build_dir, tag)
    shutil.rmtree(project_dir, ignore_errors=True)
    os.makedirs(project_dir)
    log(f"N={n} p={p:.6g} duration={args.duration}s target={args.target} dir={project_dir}")

    if args.target == "cpp_standalone":
        r = run_cpp_standalone(b2, args, project_dir, p)
    else:
        r = run_cython(b2, args, project_dir, p)

    syn = r["synapses"]
    growth_b = max(0, r["syn_peak_kb"] - r["rss_before_connect_kb"]) * 1024
    out = {
        "system": "brian2",
        "target": args.target,
        "model": args.model,
        "neurons": n,
        "synapses": syn,
        "duration_s": args.duration,
        "spikes": r["spikes"],
        "rate_hz": r["spikes"] / n / args.duration,
        "build_s": r["build_s"],
        "compile_s": r["compile_s"],
        "run_s": r["run_s"],
        "s_per_bio_s": r["run_s"] / args.duration,
        "peak_rss_mb": r["peak_kb"] / 1024,
        "bytes_per_synapse": growth_b / syn if syn else None,
        "version": b2.__version__,
        "threads": args.threads,
        "openmp_threads": args.threads
        if args.target == "cpp_standalone" and args.threads > 1
        else 0,
        "env_threads": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "seed": args.seed,
        "synapses_per_neuron": args.synapses_per_neuron,
        "rss_before_connect_mb": r["rss_before_connect_kb"] / 1024,
        **r["extra"],
    }
    os.write(json_fd, (json.dumps(out) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
