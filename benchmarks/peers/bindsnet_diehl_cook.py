"""BindsNET peer for the Diehl & Cook (2015) MNIST benchmark (benchmarks/snn_mnist.py).

Run with the peers venv (``make peers``), e.g.::

    .venv-peers/bin/python benchmarks/peers/bindsnet_diehl_cook.py --data-dir ../shared/datasets

Trains BindsNET's ``bindsnet.models.DiehlAndCook2015`` (100 excitatory + 100 inhibitory
neurons, 784 Poisson inputs) for one pass over the first ``--train`` MNIST training images, in
file order, and prints exactly one JSON line on stdout (``system``, ``version``, ``torch``,
``neurons``, ``train_images``, ``train_s``, ``images_per_s``, ``dt_ms``, ``t_present_ms`` and a
few extra keys); progress and warnings go to stderr. Nothing is downloaded: the IDX files
(``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``) are read with numpy from
``<data-dir>/mnist`` (or from ``<data-dir>`` itself when it holds them). ``--data-dir``
defaults to ``$NEUROFABRIC_DATA``, else ``../shared/datasets``.

Model and training loop follow BindsNET's ``examples/mnist/eth_mnist.py`` with its defaults:
``DiehlAndCook2015(n_inpt=784, n_neurons=100, exc=22.5, inh=120, dt=1.0, norm=78.4,
theta_plus=0.05, inpt_shape=(1, 28, 28))`` (the model's other defaults: PostPre STDP on the
input weights with nu = (1e-4, 1e-2), weights in [0, 1], tc_theta_decay 1e7 ms; excitatory
rest -65 / reset -60 / threshold -52 mV, tau 100 ms, refractory 5 ms; inhibitory rest -60 /
reset -45 / threshold -40 mV, tau 10 ms, refractory 2 ms), each image presented for
``time`` = 250 ms at dt = 1.0 ms as ``PoissonEncoder(time=250, dt=1.0)`` of the pixel values
scaled to [0, 1] (torchvision's ``ToTensor``) times ``intensity`` = 128 (so a white pixel fires
at 128 Hz), ``network.run(inputs, time=250, input_time_dim=1)`` then
``network.reset_state_variables()`` per image, the example's monitors (voltages of ``Ae`` and
``Ai``, twice, as the example adds them twice, and spikes of ``X``, ``Ae`` and ``Ai``), and
every ``update_interval`` = 250 images the example's all-activity / proportion-weighting
accuracy on the last window and ``assign_labels``. ``train_s`` times that whole loop,
Poisson encoding included (the example encodes inside its DataLoader, in the same process on
CPU), excluding data loading, network construction (``build_s``) and one warm-up image on a
separate, identically built network (``--warmup``).

Differences from the example: images are taken in file order (the example's DataLoader
shuffles), read with numpy instead of ``bindsnet.datasets.MNIST`` (torchvision), no plotting;
``--monitors minimal`` keeps only the ``Ae`` spike monitor that the label assignment needs.

Differences from the paper (Diehl & Cook 2015, Front. Comput. Neurosci. 9:99), all inherited
from BindsNET's example: each image is shown for 250 ms with dt = 1.0 ms and the state is
reset between images, where the paper shows it for 350 ms followed by 150 ms of no input (to
let the variables decay) with dt = 0.5 ms; the maximum input rate is 128 Hz (paper: 63.75 Hz,
raised by 32 Hz whenever an image evokes fewer than five spikes, which the example does not
do); the synapses are current-based (the paper's are conductance-based); the learning rule is
BindsNET's pair-based PostPre, not the paper's rule with a target trace x_tar; and the
inhibitory weight is 120 (paper: 17).

Import note: ``bindsnet/__init__.py`` imports every subpackage, and ``bindsnet.datasets`` and
``bindsnet.analysis`` import torchvision, which cannot be imported beside torch 2.13.0+cpu (the
only torchvision release for torch 2.13.0, 0.28.0, is on PyPI as a CUDA build only). This
script therefore loads the submodules it uses (``network``, ``models``, ``encoding``,
``evaluation``) from the installed bindsnet package without executing its ``__init__.py``;
their code is BindsNET's, unchanged. See benchmarks/peers/requirements-bindsnet.txt.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
import time as _time
from pathlib import Path

import numpy as np

TORCH_PIN = "2.13.0"


def _load_bindsnet():
    """Import the BindsNET submodules used here without running ``bindsnet/__init__.py``."""
    if "bindsnet" not in sys.modules:
        spec = importlib.util.find_spec("bindsnet")
        if spec is None:
            raise SystemExit("bindsnet is not installed in this interpreter; run `make peers`")
        # A package module with bindsnet's __path__ whose __init__ is not executed.
        sys.modules["bindsnet"] = importlib.util.module_from_spec(spec)
    # bindsnet.network first: bindsnet.models -> bindsnet.learning first hits a circular import.
    import bindsnet.network  # noqa: F401
    import bindsnet.network.monitors
    from bindsnet.encoding import PoissonEncoder
    from bindsnet.evaluation import all_activity, assign_labels, proportion_weighting
    from bindsnet.models import DiehlAndCook2015

    return {
        "DiehlAndCook2015": DiehlAndCook2015,
        "Monitor": bindsnet.network.monitors.Monitor,
        "PoissonEncoder": PoissonEncoder,
        "all_activity": all_activity,
        "assign_labels": assign_labels,
        "proportion_weighting": proportion_weighting,
    }


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise SystemExit(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise SystemExit(f"{path}: header says {dims}, file holds {data.size} bytes of data")
    return data.reshape(dims)


def load_mnist_train(data_dir: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """First ``n`` training images (uint8 [n, 28, 28]) and labels (uint8 [n])."""
    base = Path(data_dir)
    for folder in (base / "mnist", base):
        found = {}
        for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
            for name in (stem + ".gz", stem):
                if (folder / name).is_file():
                    found[stem] = folder / name
                    break
        if len(found) == 2:
            images = _read_idx(found["train-images-idx3-ubyte"])
            labels = _read_idx(found["train-labels-idx1-ubyte"])
            if (
                images.ndim != 3
                or images.shape[1:] != (28, 28)
                or labels.shape != images[:, 0, 0].shape
            ):
                raise SystemExit(f"{folder}: unexpected shapes {images.shape}, {labels.shape}")
            if n > len(images):
                raise SystemExit(f"--train {n}: {folder} holds only {len(images)} images")
            return images[:n].copy(), labels[:n].copy()  # writable, for torch.from_numpy
    raise SystemExit(
        f"no MNIST IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]) in "
        f"{base / 'mnist'} or {base}; pass --data-dir or set NEUROFABRIC_DATA"
    )


def build_network(bn: dict, args: argparse.Namespace):
    """The example's network and monitors; returns (network, Ae spike monitor)."""
    network = bn["DiehlAndCook2015"](
        n_inpt=784,
        n_neurons=args.neurons,
        exc=args.exc,
        inh=args.inh,
        dt=args.dt,
        norm=78.4,
        theta_plus=args.theta_plus,
        inpt_shape=(1, 28, 28),
    )
    monitor = bn["Monitor"]
    steps = int(args.time / args.dt)
    if args.monitors == "example":
        network.add_monitor(monitor(network.layers["Ae"], ["v"], time=steps), name="exc_voltage")
        network.add_monitor(monitor(network.layers["Ai"], ["v"], time=steps), name="inh_voltage")
        spikes = {}
        for layer in set(network.layers):
            spikes[layer] = monitor(network.layers[layer], state_vars=["s"], time=steps)
            network.add_monitor(spikes[layer], name=f"{layer}_spikes")
        for layer in set(network.layers) - {"X"}:
            network.add_monitor(
                monitor(network.layers[layer], state_vars=["v"], time=steps),
                name=f"{layer}_voltages",
            )
        ae_spikes = spikes["Ae"]
    else:
        ae_spikes = monitor(network.layers["Ae"], state_vars=["s"], time=steps)
        network.add_monitor(ae_spikes, name="Ae_spikes")
    return network, ae_spikes


def check_install() -> None:
    """Used by `make peers`: versions, imports and a few steps of a small network."""
    import torch

    tv = torch.__version__
    if tv.split("+")[0] != TORCH_PIN:
        raise SystemExit(f"peers venv: torch {tv}, expected {TORCH_PIN}")
    bn = _load_bindsnet()
    torch.manual_seed(0)
    args = argparse.Namespace(
        neurons=4, exc=22.5, inh=120.0, dt=1.0, theta_plus=0.05, time=5, monitors="example"
    )
    network, ae_spikes = build_network(bn, args)
    encoded = bn["PoissonEncoder"](time=5, dt=1.0)(torch.full((1, 28, 28), 128.0))
    network.run(inputs={"X": encoded.view(5, 1, 1, 28, 28)}, time=5, input_time_dim=1)
    assert tuple(ae_spikes.get("s").shape) == (5, 1, 4), ae_spikes.get("s").shape
    print(f"bindsnet {importlib.metadata.version('bindsnet')} on torch {tv}: ok", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("NEUROFABRIC_DATA", "../shared/datasets"))
    ap.add_argument("--train", type=int, default=1000, help="first N training images, one pass")
    ap.add_argument("--neurons", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time", type=int, default=250, help="presentation per image, ms")
    ap.add_argument("--dt", type=float, default=1.0, help="time step, ms")
    ap.add_argument("--intensity", type=float, default=128.0, help="rate of a white pixel, Hz")
    ap.add_argument("--exc", type=float, default=22.5)
    ap.add_argument("--inh", type=float, default=120.0)
    ap.add_argument("--theta-plus", type=float, default=0.05)
    ap.add_argument("--update-interval", type=int, default=250)
    ap.add_argument("--progress-interval", type=int, default=100, help="0: no progress lines")
    ap.add_argument("--monitors", choices=("example", "minimal"), default="example")
    ap.add_argument("--warmup", type=int, default=1, help="untimed images on a separate network")
    ap.add_argument("--check-install", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    if args.check_install:
        check_install()
        return
    if args.train < 1:
        ap.error("--train must be >= 1")

    bn = _load_bindsnet()
    images, labels = load_mnist_train(args.data_dir, args.train)
    steps = int(args.time / args.dt)
    encoder = bn["PoissonEncoder"](time=args.time, dt=args.dt)

    def encode(img: np.ndarray) -> torch.Tensor:
        # torchvision ToTensor(): uint8 HxW -> float32 1xHxW / 255; then * intensity.
        x = torch.from_numpy(img).unsqueeze(0).float().div(255) * args.intensity
        return encoder(x).view(steps, 1, 1, 28, 28)

    # Warm-up on a separate, identically built network (allocator, first-call overheads).
    if args.warmup > 0:
        torch.manual_seed(args.seed + 1)
        warm, _ = build_network(bn, args)
        for i in range(args.warmup):
            warm.run(
                inputs={"X": encode(images[i % len(images)])}, time=args.time, input_time_dim=1
            )
            warm.reset_state_variables()
        del warm

    torch.manual_seed(args.seed)
    t0 = _time.perf_counter()
    network, ae_spikes = build_network(bn, args)
    build_s = _time.perf_counter() - t0

    n_classes = 10
    upd = args.update_interval
    spike_record = torch.zeros(upd, steps, args.neurons)
    assignments = -torch.ones(args.neurons)
    proportions = torch.zeros(args.neurons, n_classes)
    rates = torch.zeros(args.neurons, n_classes)
    accuracy = {"all": [], "proportion": []}
    window_labels: list[int] = []

    t0 = _time.perf_counter()
    for step in range(args.train):
        inputs = {"X": encode(images[step])}
        if step % upd == 0 and step > 0:
            label_tensor = torch.tensor(window_labels)
            all_pred = bn["all_activity"](
                spikes=spike_record, assignments=assignments, n_labels=n_classes
            )
            prop_pred = bn["proportion_weighting"](
                spikes=spike_record,
                assignments=assignments,
                proportions=proportions,
                n_labels=n_classes,
            )
            n_win = len(label_tensor)
            accuracy["all"].append(100 * torch.sum(label_tensor.long() == all_pred).item() / n_win)
            accuracy["proportion"].append(
                100 * torch.sum(label_tensor.long() == prop_pred).item() / n_win
            )
            assignments, proportions, rates = bn["assign_labels"](
                spikes=spike_record, labels=label_tensor, n_labels=n_classes, rates=rates
            )
            window_labels = []
        window_labels.append(int(labels[step]))
        network.run(inputs=inputs, time=args.time, input_time_dim=1)
        spike_record[step % upd] = ae_spikes.get("s").squeeze()
        network.reset_state_variables()
        if args.progress_interval and (step + 1) % args.progress_interval == 0:
            el = _time.perf_counter() - t0
            print(
                f"{step + 1}/{args.train} images, {el:.1f} s, {(step + 1) / el:.2f} img/s",
                file=sys.stderr,
            )
    train_s = _time.perf_counter() - t0

    print(
        json.dumps(
            {
                "system": "bindsnet",
                "version": importlib.metadata.version("bindsnet"),
                "torch": torch.__version__,
                "dataset": "mnist",
                "model": "diehl_cook_2015",
                "neurons": args.neurons,
                "train_images": args.train,
                "train_s": round(train_s, 4),
                "images_per_s": round(args.train / train_s, 4),
                "ms_per_image": round(1000 * train_s / args.train, 3),
                "build_s": round(build_s, 4),
                "dt_ms": args.dt,
                "t_present_ms": args.time,
                "t_rest_ms": 0,
                "intensity_hz": args.intensity,
                "monitors": args.monitors,
                "threads": args.threads,
                "seed": args.seed,
                "window_accuracy_all": accuracy["all"],
                "window_accuracy_proportion": accuracy["proportion"],
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
