"""Networks built, run and exported to NIR by snnTorch and by Norse (run in .venv-peers).

Each network is made in float64 with fixed seeds, driven by random input spikes, run step by
step in its own framework (every neuron layer's spikes, or an LI layer's potential, kept), and
exported with the framework's own NIR exporter. Written per network: ``<name>.nir`` (the
graph, ``nir.write``) and ``<name>.npz`` (``x``: the input spikes (T, n_in); ``spikes:<node>``
or ``v:<node>``: what the framework computed for each NIR neuron node; ``meta``: JSON with the
framework's version, ``dt``, the convention to read it with and the layer names).

    .venv-peers/bin/python benchmarks/peers/nir_export.py --out tests/snn/data/nir
    .venv-peers/bin/python benchmarks/peers/nir_export.py --bench --out /tmp/nir-bench

``--bench`` makes larger feed-forward networks instead and times their forward pass over the
input (one thread, float64, no autograd) as the peer figures of ``benchmarks/snn_nir.py``.

Two things of the exporters are worked around here, and said in ``meta``:
- snnTorch's ``Leaky``/``Synaptic`` write a scalar ``beta`` as a 0-d parameter that fails
  NIR's type check, so the layers are given one ``beta`` and ``threshold`` per neuron;
  its default reset (``subtract``, one step late) is not NIR's reset to ``v_reset``, so the
  layers use ``reset_mechanism="zero", reset_delay=False``, which is.
- Norse 1.1.0 writes ``tau = dt / tau_inv`` (``norse/torch/utils/export_nir.py``), which is
  ``dt * tau``, not the time constant in seconds; its own importer reads ``tau_inv = 1 / tau``,
  so a Norse graph does not survive its own round trip. The graphs written here carry
  ``tau = 1 / tau_inv`` (the value the exporter writes, divided by ``dt``).
- Norse's ``LIFCell`` adds each input straight to its current ``i`` (a jump of ``x``), where
  NIR's CubaLIF adds ``dt / tau_syn * w_in * x`` in an Euler step; the exporter leaves
  ``w_in = 1``. snnTorch writes ``w_in = tau_syn / dt`` for the same dynamics, and so do the
  graphs written here for Norse (Norse's own importer, like NIR, reads ``w_in`` that way).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import nir
import numpy as np
import torch

SNNTORCH_DT = 1e-4  # snnTorch 0.9-1.0 export with this dt, hard-coded
NORSE_DT = 1e-3  # Norse's default dt


def _numpy_nodes(graph):
    """Torch tensors in the nodes (Norse leaves them there) as numpy, recursively."""
    for node in graph.nodes.values():
        if isinstance(node, nir.NIRGraph):
            _numpy_nodes(node)
            continue
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if isinstance(value, torch.Tensor):
                setattr(node, f.name, value.detach().cpu().numpy().astype(np.float64))
    return graph


def _inputs(steps, n, p, seed):
    rng = np.random.default_rng(seed)
    return (rng.random((steps, n)) < p).astype(np.uint8)


def _linear(n_in, n_out, scale, shift, bias, gen):
    layer = torch.nn.Linear(n_in, n_out, bias=bias)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(n_out, n_in, generator=gen) * scale + shift)
        if bias:
            layer.bias.copy_(torch.randn(n_out, generator=gen) * 0.05)
    return layer


# ------------------------------------------------------------------ snnTorch
def _heaviside(x):
    return (x > 0).to(x.dtype)


def snntorch_nets(n_in, hidden, n_out, seed):
    import snntorch as snn

    gen = torch.Generator().manual_seed(seed)
    kw = {
        "reset_mechanism": "zero",
        "reset_delay": False,
        "init_hidden": True,
        # the Heaviside of snnTorch's surrogates returns float32 spikes (`.float()`); this
        # one keeps float64, so the next layer runs in float64 (forward only, no gradient)
        "spike_grad": _heaviside,
    }

    def leaky(n, beta):
        return snn.Leaky(beta=torch.full((n,), beta), threshold=torch.ones(n), **kw)

    def synaptic(n, alpha, beta):
        return snn.Synaptic(
            alpha=torch.full((n,), alpha),
            beta=torch.full((n,), beta),
            threshold=torch.ones(n),
            **kw,
        )

    ff = torch.nn.Sequential(
        _linear(n_in, hidden, 0.35, 0.12, True, gen),
        leaky(hidden, 0.9),
        _linear(hidden, n_out, 0.35, 0.15, False, gen),
        leaky(n_out, 0.8),
    )

    class Recurrent(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = _linear(n_in, hidden, 0.35, 0.1, True, gen)
            self.lif1 = snn.RLeaky(
                beta=torch.full((hidden,), 0.9),
                threshold=torch.ones(hidden),
                linear_features=hidden,
                **kw,
            )
            with torch.no_grad():
                self.lif1.recurrent.weight.copy_(torch.randn(hidden, hidden, generator=gen) * 0.2)
                self.lif1.recurrent.bias.zero_()
            self.fc2 = _linear(hidden, n_out, 0.35, 0.15, False, gen)
            self.lif2 = leaky(n_out, 0.8)

        def forward(self, x):
            return self.lif2(self.fc2(self.lif1(self.fc1(x))))

    syn = torch.nn.Sequential(
        _linear(n_in, hidden, 0.3, 0.08, False, gen),
        synaptic(hidden, 0.7, 0.9),
        _linear(hidden, n_out, 0.3, 0.1, False, gen),
        synaptic(n_out, 0.7, 0.85),
    )
    return {
        "snntorch_ff": (ff, {"1": ff[1], "3": ff[3]}),
        "snntorch_recurrent": (rec := Recurrent(), {"lif1.lif": rec.lif1, "lif2": rec.lif2}),
        "snntorch_synaptic": (syn, {"1": syn[1], "3": syn[3]}),
    }


def run_snntorch(model, layers, x):
    """Step by step; every layer's spikes. ``init_hidden`` layers keep their own state."""
    for layer in layers.values():
        layer.reset_hidden()
    record = {name: [] for name in layers}
    hooks = [
        layer.register_forward_hook(
            lambda _m, _i, out, name=name: record[name].append(
                (out[0] if isinstance(out, tuple) else out).detach().numpy().copy()
            )
        )
        for name, layer in layers.items()
    ]
    with torch.no_grad():
        for t in range(x.shape[0]):
            model(torch.as_tensor(x[t : t + 1], dtype=torch.float64))
    for h in hooks:
        h.remove()
    return {f"spikes:{k}": np.concatenate(v).astype(np.uint8) for k, v in record.items()}


def export_snntorch(model, n_in):
    from snntorch.export_nir import export_to_nir

    return export_to_nir(model, torch.zeros(1, n_in), ignore_dims=[0])


# ------------------------------------------------------------------ Norse
def norse_nets(n_in, hidden, n_out, seed):
    import norse.torch as norse

    gen = torch.Generator().manual_seed(seed + 1)
    box = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(100.0), v_th=torch.tensor(1.0))
    cuba = norse.LIFParameters(
        tau_syn_inv=torch.tensor(200.0), tau_mem_inv=torch.tensor(100.0), v_th=torch.tensor(1.0)
    )
    li = norse.LIBoxParameters(tau_mem_inv=torch.tensor(50.0))
    return {
        "norse_ff": [
            _linear(n_in, hidden, 3.0, 1.2, True, gen),
            norse.LIFBoxCell(box),
            _linear(hidden, n_out, 3.0, 1.5, True, gen),
            norse.LIFBoxCell(box),
        ],
        "norse_cuba": [
            _linear(n_in, hidden, 2.0, 0.5, False, gen),
            norse.LIFCell(cuba),
            _linear(hidden, n_out, 1.5, 0.6, False, gen),
            norse.LIFCell(cuba),
        ],
        "norse_readout": [
            _linear(n_in, hidden, 3.0, 1.2, True, gen),
            norse.LIFBoxCell(box),
            _linear(hidden, n_out, 1.0, 0.2, True, gen),
            norse.LIBoxCell(li),
        ],
    }


def run_norse(layers, x):
    import norse.torch as norse

    states = [None] * len(layers)
    record = {}
    with torch.no_grad():
        for t in range(x.shape[0]):
            h = torch.as_tensor(x[t : t + 1], dtype=torch.float64)
            for k, layer in enumerate(layers):
                if isinstance(layer, torch.nn.Linear):
                    h = layer(h)
                    continue
                h, states[k] = layer(h, states[k])
                if h.is_sparse:
                    h = h.to_dense()
                key = f"v:{k}" if isinstance(layer, norse.LIBoxCell) else f"spikes:{k}"
                record.setdefault(key, []).append(h.numpy().copy())
    return {
        k: np.concatenate(v).astype(np.float64 if k.startswith("v:") else np.uint8)
        for k, v in record.items()
    }


def export_norse(layers, n_in):
    import norse.torch as norse

    graph = _numpy_nodes(norse.to_nir(norse.SequentialState(*layers), torch.zeros(1, n_in)))
    for node in graph.nodes.values():  # the exporter's two slips, see the docstring
        for attr in ("tau", "tau_mem", "tau_syn"):
            if hasattr(node, attr) and isinstance(getattr(node, attr), np.ndarray):
                setattr(node, attr, getattr(node, attr) / NORSE_DT)
        if isinstance(node, nir.CubaLIF):
            node.w_in = np.asarray(node.tau_syn / NORSE_DT, np.float64)
    return graph


# ------------------------------------------------------------------ main
def _versions():
    import norse
    import snntorch

    return {
        "snntorch": snntorch.__version__,
        "norse": getattr(norse, "__version__", "1.1.0"),
        "nir": nir.version if hasattr(nir, "version") else "",
        "torch": torch.__version__,
    }


def _save(out, name, graph, x, record, meta):
    nir.write(str(out / f"{name}.nir"), graph, compression=None)  # Norse writes 0-d params
    np.savez_compressed(out / f"{name}.npz", x=x, meta=np.array(json.dumps(meta)), **record)


def fixtures(out, steps, seed):
    n_in, hidden, n_out = 20, 40, 10
    x = _inputs(steps, n_in, 0.15, seed)
    versions = _versions()
    for name, (model, layers) in snntorch_nets(n_in, hidden, n_out, seed).items():
        record = run_snntorch(model, layers, x)
        graph = export_snntorch(model, n_in)
        meta = {"dt": SNNTORCH_DT, "convention": "euler", "versions": versions}
        _save(out, name, graph, x, record, meta)
        print(name, {k: int(v.sum()) for k, v in record.items()})
    for name, layers in norse_nets(n_in, hidden, n_out, seed).items():
        record = run_norse(layers, x)
        graph = export_norse(layers, n_in)
        meta = {"dt": NORSE_DT, "convention": "euler", "versions": versions}
        meta["fixes"] = "tau = exported tau / dt; CubaLIF w_in = tau_syn / dt"
        _save(out, name, graph, x, record, meta)
        print(name, {k: round(float(v.sum()), 3) for k, v in record.items()})


def _rescale(layers, seed, gain, rate=0.05):
    """Weights for a fluctuation-driven regime at any size: a layer of fan-in n whose inputs
    fire at ``rate`` gets a mean drive of 0.08 and a spread of 0.13 per step (threshold 1,
    decay 0.9), divided by ``gain`` (the synaptic filter's, for Synaptic layers)."""
    gen = torch.Generator().manual_seed(seed + 2)
    for layer in layers:
        if isinstance(layer, torch.nn.Linear):
            n = layer.weight.shape[1] * rate
            with torch.no_grad():
                w = torch.randn(layer.weight.shape, generator=gen) * 0.13 / np.sqrt(n)
                layer.weight.copy_((w + 0.08 / n) / gain)
                if layer.bias is not None:
                    layer.bias.zero_()


def _timed(name, run, export, x, repeats, meta, out):
    """Median wall time of ``run()`` over ``repeats``; the network exported beside its
    spikes; the row the benchmark reads."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        record = run()
        times.append(time.perf_counter() - t0)
    _save(out, name, export(), x, record, meta)
    return {
        "network": name,
        "wall_s": float(np.median(times)),
        "spikes": {k: int(v.sum()) for k, v in record.items()},
    }


def bench(out, steps, seed, sizes, repeats):
    """Larger feed-forward networks, timed in their framework (forward over ``steps``)."""
    n_in, hidden, n_out = sizes
    torch.set_num_threads(1)
    x = _inputs(steps, n_in, 0.05, seed)
    versions = _versions()
    rows = []
    meta = {"convention": "euler", "versions": versions}
    for name, (model, layers) in snntorch_nets(n_in, hidden, n_out, seed).items():
        if name == "snntorch_recurrent":
            continue
        _rescale(list(model), seed, 1.0 / 0.3 if name == "snntorch_synaptic" else 1.0)
        rows.append(
            _timed(
                name,
                lambda m=model, ls=layers: run_snntorch(m, ls, x),
                lambda m=model: export_snntorch(m, n_in),
                x,
                repeats,
                {"dt": SNNTORCH_DT, **meta},
                out,
            )
        )
    layers = norse_nets(n_in, hidden, n_out, seed)["norse_ff"]
    _rescale(layers, seed, NORSE_DT * 100.0)  # Norse scales the input by dt / tau_mem
    rows.append(
        _timed(
            "norse_ff",
            lambda: run_norse(layers, x),
            lambda: export_norse(layers, n_in),
            x,
            repeats,
            {"dt": NORSE_DT, **meta},
            out,
        )
    )
    print(json.dumps({"peers": rows, "versions": versions}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--sizes", type=int, nargs=3, default=(1000, 2000, 100))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.bench:
        bench(args.out, args.steps, args.seed, args.sizes, args.repeats)
    else:
        fixtures(args.out, args.steps, args.seed)


if __name__ == "__main__":
    main()
