"""Pure-torch peers of the neural field's fits: PSNR against training seconds on the CPU.

    python benchmarks/peers/torch_fit.py --model hashgrid --signal china [--seconds 60] [--threads 1]
    python benchmarks/peers/torch_fit.py --model siren --signal china-rgb --save-image siren.png
    python benchmarks/peers/torch_fit.py --model hashgrid --signal torus --seconds 10
    python benchmarks/peers/torch_fit.py --check        # torch encoding == neurofabric's, exits

Runs in the project's venv (torch comes with the ``seq`` extra; neurofabric is imported only
for ``HashGridSpec``'s level tables, the torus signal and, under ``--check``,
``HashGrid.encode``). Each model fits one signal: ``china`` is scikit-learn's ``china.jpg`` in
grey (ITU-R 601 luma, 0.299 R + 0.587 G + 0.114 B, /255), 427 x 640, ``china-rgb`` the same
image with 3 outputs in [0, 1]. Pixel (row, col) sits at x = ((col + 0.5) / W, (row + 0.5) / H)
in [0, 1]^2. ``torus`` is a 3-D signed distance, ``neurofabric.field.signals.torus_signal``:
2^18 uniform training points in [0, 1]^3 and 2^16 held out, the distance scaled to [0, 1] over
the cube; the picture saved is the z = 0.5 slice. Each training step draws ``--batch`` training
points (pixels) with replacement from a seeded torch Generator and takes one Adam step on
0.5 * MSE (mean over points and outputs). The clock counts training steps only: every
``--eval-every`` seconds of it the PSNR over the evaluation points (every pixel, or the held-out
points; 10 log10(1 / MSE), predictions clipped to [0, 1], MSE over points and channels) is
printed as one JSON line (with the torus, also ``iou``: ``sdf_iou`` of the insides), evaluation
time excluded; a last line carries ``"final": true``, the parameter count and steps/s.

Models and the sources of their settings:

- ``hashgrid``: Instant-NGP's multiresolution hash encoding (Mueller et al. 2022) written in
  plain torch ops, vectorized over the batch and the levels, with the exact maths of
  ``neurofabric.field`` (and of tiny-cuda-nn's grid.h): p = fmaf(scale_l, x, 0.5) in float32,
  cell floor(p), d-linear weights, a dense row index on the levels whose grid fits the table and
  tiny-cuda-nn's xor-of-primes hash on the others (uint32 products), modulo the level's size,
  plus its offset. The level tables come from ``HashGridSpec``, whose defaults are tiny-cuda-nn's
  documented Grid defaults (DOCUMENTATION.md: 16 levels x 2 features, 2^19 rows per level, base
  resolution 16, per-level scale 2.0). Table init uniform(-1e-4, 1e-4) as in the paper. Decoder
  MLP L*F -> 64 (ReLU) -> out (``--hidden`` repeatable), torch's default init, no output
  activation. Adam with tiny-cuda-nn's hash-grid settings (data/config_hash.json, also the
  paper's): lr 1e-2, betas (0.9, 0.99), eps 1e-15; without its l2_reg 1e-6 (no weight decay)
  and with 0.5 * MSE instead of its RelativeL2 loss, so that every system here minimises the
  same loss. Two optimizers (``--adam``): ``torch`` (the default), ``torch.optim.Adam`` over
  every parameter each step, the table's rows the batch missed moved by their momentum; and
  ``tcnn``, tiny-cuda-nn's own rule (include/tiny-cuda-nn/optimizers/adam.h, ``adam_step``):
  the decoder's weights as torch's Adam, but a table entry whose gradient is exactly zero is
  left alone (its value and both moments), and each entry keeps its own step count for the
  bias correction (``TcnnAdam`` below). tiny-cuda-nn updates the encoding sparsely; the
  default keeps what a torch user writes.
- ``siren``: SIREN (Sitzmann et al. 2020, the authors' explore_siren notebook): sine
  activations with w0 = 30 on every sine layer, first layer weights uniform(-1/in, 1/in), later
  ones uniform(-sqrt(6/in)/30, sqrt(6/in)/30), biases torch's default, a linear output layer;
  3 hidden layers of 256; inputs mapped to [-1, 1] (their get_mgrid); Adam lr 1e-4 (the
  paper's), torch's default betas and eps.
- ``mlp``: a plain ReLU MLP on the raw coordinates (mapped to [-1, 1]), 3 x 256, torch's
  default init, Adam lr 1e-3: the weak baseline.

Every model steps ``torch.optim.Adam(..., fused=True)`` (the hash grid's table under
``--adam tcnn`` excepted): the same update as torch's default
per-tensor loop, in one kernel per tensor (7x faster on the hash table's 11M parameters). The
table is read by advanced indexing, whose backward (index_put_ with accumulate) measured 1.6x
faster than ``F.embedding``'s on one thread.

``--threads`` (default 1) pins BLAS/OpenMP before torch loads (benchmarks/_threads.py) and sets
``torch.set_num_threads``. ``--seed`` seeds the init, the table and the batches. Only the JSON
lines go to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_threads.py

from _field_signals import SLICE, TORUS_EVAL, TORUS_TRAIN, lr_decay  # noqa: E402
from _threads import limit_loaded, pin_threads  # noqa: E402

THREADS = pin_threads()  # before numpy / torch load: their pools size themselves on import

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from neurofabric.field.params import PRIMES, HashGridSpec  # noqa: E402

SIGNALS = ("china", "china-rgb", "torus")
MODELS = ("hashgrid", "siren", "mlp")
DEFAULT_LR = {"hashgrid": 1e-2, "siren": 1e-4, "mlp": 1e-3}
DEFAULT_HIDDEN = {"hashgrid": [64], "siren": [256, 256, 256], "mlp": [256, 256, 256]}
SIREN_W0 = 30.0
EVAL_CHUNK = 65536


# --- the hash-grid encoding in torch ---------------------------------------------------------
class TorchHashGrid(nn.Module):
    """The level tables of a :class:`HashGridSpec` as one trainable (n_rows, F) parameter."""

    def __init__(self, spec: HashGridSpec, seed: int) -> None:
        super().__init__()
        self.spec, D = spec, spec.n_dims
        sizes = spec.level_sizes().astype(np.int64)
        hashed = spec.is_hashed()
        assert all(int(s) & (int(s) - 1) == 0 for s in sizes[hashed]), "hashed sizes are 2^k"
        res = [int(r) for r in spec.resolutions()]
        strides = [[r**d for d in range(D)] for r in res]  # dense: R_l^D fits, no wrap
        self.register_buffer("scales", torch.from_numpy(spec.scales().astype(np.float64)))
        self.register_buffer("sizes", torch.from_numpy(sizes))
        self.register_buffer("offsets", torch.from_numpy(spec.offsets()[:-1].astype(np.int64)))
        self.register_buffer("hashed", torch.from_numpy(hashed))
        self.register_buffer("strides", torch.tensor(strides, dtype=torch.int64))
        self.corner_bits = [[(c >> d) & 1 for d in range(D)] for c in range(1 << D)]
        gen = torch.Generator().manual_seed(seed)
        table = torch.empty(spec.n_rows, spec.n_features).uniform_(-1e-4, 1e-4, generator=gen)
        self.table = nn.Parameter(table)

    def corners(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows (n, L, 2^D) int64 and d-linear weights (n, L, 2^D) float32 of every corner."""
        # fmaf(scale, x, 0.5): the float32 product is exact in float64, one rounding at the end
        pos = (x.double()[:, None, :] * self.scales[None, :, None] + 0.5).float()
        cell = torch.floor(pos)
        frac = pos - cell
        cell = cell.long()
        rows, weights = [], []
        for bits in self.corner_bits:  # 2^D corners, each over the whole batch and all levels
            grid = cell + torch.tensor(bits)
            w = torch.ones_like(frac[..., 0])
            for d in range(self.spec.n_dims):
                w = w * (frac[..., d] if bits[d] else 1.0 - frac[..., d])
            weights.append(w)
            rows.append(self._rows(grid))
        return torch.stack(rows, dim=-1), torch.stack(weights, dim=-1)

    def _rows(self, grid: torch.Tensor) -> torch.Tensor:
        """Table rows of grid points (n, L, D): dense index or prime hash, mod size, + offset.

        A hashed level's size is 2^k (k <= log2_table) and the low k bits of a product do not
        depend on the width it wraps at, so int64 products give tiny-cuda-nn's uint32 hash
        exactly (and the uint64 one of ``hash_bits=64``); a dense index is below 2^32 anyway.
        """
        dense = (grid * self.strides).sum(-1)
        h = grid[..., 0] * PRIMES[0]
        for d in range(1, self.spec.n_dims):
            h = h ^ (grid[..., d] * PRIMES[d])
        index = torch.where(self.hashed, h & (self.sizes - 1), dense % self.sizes)
        return index + self.offsets

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encodings (n, L * F): each level's corner features summed corner by corner."""
        rows, weights = self.corners(x)
        values = self.table[rows]  # (n, L, 2^D, F); its backward (index_put_) beats embedding's
        out = weights[..., 0, None] * values[..., 0, :]
        for c in range(1, rows.shape[-1]):
            out = out + weights[..., c, None] * values[..., c, :]
        return out.reshape(len(x), -1)


# --- the models ------------------------------------------------------------------------------
def relu_mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class HashGridModel(nn.Module):
    def __init__(self, spec: HashGridSpec, hidden: list[int], out_dim: int, seed: int) -> None:
        super().__init__()
        self.encoding = TorchHashGrid(spec, seed)
        self.decoder = relu_mlp([spec.n_outputs, *hidden, out_dim])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoding(x))


class Siren(nn.Module):
    """Sine layers sin(w0 (W h + b)) and a linear output, the authors' init."""

    def __init__(self, in_dim: int, hidden: list[int], out_dim: int) -> None:
        super().__init__()
        sizes = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        with torch.no_grad():
            for i, layer in enumerate(self.layers):
                n_in = layer.in_features
                bound = 1.0 / n_in if i == 0 else float(np.sqrt(6.0 / n_in)) / SIREN_W0
                layer.weight.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = 2.0 * x - 1.0
        for layer in self.layers[:-1]:
            h = torch.sin(SIREN_W0 * layer(h))
        return self.layers[-1](h)


class CoordMLP(nn.Module):
    def __init__(self, in_dim: int, hidden: list[int], out_dim: int) -> None:
        super().__init__()
        self.net = relu_mlp([in_dim, *hidden, out_dim])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(2.0 * x - 1.0)


class TcnnAdam:
    """tiny-cuda-nn's Adam on a hash grid: torch's fused Adam for the decoder; for the table,
    per entry with a non-zero gradient g only (the others untouched)::

        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  k = steps[entry] += 1
        w -= lr sqrt(1 - b2^k) / (1 - b1^k) * m / (sqrt(v) + eps)

    as ``adam_step`` does for the parameters after the MLP's matrices (no l2_reg there)."""

    def __init__(self, model: HashGridModel, lr: float, betas: tuple[float, float], eps: float):
        self.table = model.encoding.table
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m = torch.zeros_like(self.table).view(-1)
        self.v = torch.zeros_like(self.table).view(-1)
        self.steps = torch.zeros(self.table.numel(), dtype=torch.int32)
        self.decoder = torch.optim.Adam(
            model.decoder.parameters(), lr=lr, betas=betas, eps=eps, fused=True
        )
        self.param_groups = self.decoder.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.decoder.zero_grad(set_to_none=set_to_none)
        self.table.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.decoder.step()
        g_all = self.table.grad.view(-1)
        idx = torch.nonzero(g_all).view(-1)
        g = g_all[idx]
        m = self.m[idx].mul_(self.b1).add_(g, alpha=1.0 - self.b1)
        v = self.v[idx].mul_(self.b2).addcmul_(g, g, value=1.0 - self.b2)
        k = self.steps[idx].add_(1)
        self.m[idx], self.v[idx], self.steps[idx] = m, v, k
        kf = k.to(torch.float32)
        rate = self.lr * torch.sqrt(1.0 - self.b2**kf) / (1.0 - self.b1**kf)
        w = self.table.view(-1)
        w[idx] = w[idx] - rate * m / (torch.sqrt(v) + self.eps)


def build(args, spec: HashGridSpec, out_dim: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(args.seed)
    hidden = args.hidden or DEFAULT_HIDDEN[args.model]
    lr = DEFAULT_LR[args.model] if args.lr is None else args.lr
    if args.model == "hashgrid":
        model = HashGridModel(spec, hidden, out_dim, args.seed)
        adam = {"betas": (0.9, 0.99), "eps": 1e-15}
        if args.adam == "tcnn":
            return model, TcnnAdam(model, lr, **adam)
    elif args.model == "siren":
        model, adam = Siren(spec.n_dims, hidden, out_dim), {}
    else:
        model, adam = CoordMLP(spec.n_dims, hidden, out_dim), {}
    # fused: the same Adam in one kernel per tensor (7x faster than the default loop on the table)
    return model, torch.optim.Adam(model.parameters(), lr=lr, fused=True, **adam)


# --- the signal, the evaluation, the training loop -------------------------------------------
class Signal(NamedTuple):
    """Training pairs, evaluation pairs, and the points of the picture saved (rows x cols)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    eval_x: torch.Tensor
    eval_y: torch.Tensor
    image_x: torch.Tensor
    image_shape: tuple[int, int]


def load_signal(name: str) -> Signal:
    """An image (coordinates (H*W, 2) in [0, 1]^2, x = (col+.5)/W, y = (row+.5)/H, targets
    (H*W, C); trained and evaluated on every pixel), or ``torus``: neurofabric's
    ``torus_signal`` (TORUS_TRAIN training points, TORUS_EVAL held out, stream seed 0) and the
    z = 0.5 plane (``plane_points(SLICE)``) as its picture."""
    if name == "torus":
        from neurofabric.field.signals import plane_points, torus_signal

        x, y, xe, ye = (torch.from_numpy(a) for a in torus_signal(TORUS_TRAIN, TORUS_EVAL))
        return Signal(x, y, xe, ye, torch.from_numpy(plane_points(SLICE)), (SLICE, SLICE))
    from sklearn.datasets import load_sample_image

    rgb = load_sample_image("china.jpg").astype(np.float64)
    H, W = rgb.shape[:2]
    if name == "china":
        img = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2])[..., None] / 255
    else:
        img = rgb / 255.0
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    xy = torch.from_numpy(np.stack([(cols.ravel() + 0.5) / W, (rows.ravel() + 0.5) / H], 1))
    xy = xy.to(torch.float32)
    target = torch.from_numpy(img.reshape(H * W, -1).astype(np.float32))
    return Signal(xy, target, xy, target, xy, (H, W))


@torch.no_grad()
def predict(model: nn.Module, coords: torch.Tensor) -> torch.Tensor:
    parts = [model(coords[i : i + EVAL_CHUNK]) for i in range(0, len(coords), EVAL_CHUNK)]
    return torch.cat(parts).clamp_(0.0, 1.0)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    mse = torch.mean((pred.double() - target.double()) ** 2).item()
    return float("inf") if mse == 0 else 10.0 * float(np.log10(1.0 / mse))


def train(model, opt, coords, target, args, report) -> tuple[int, float]:
    """Steps until ``--seconds`` of training time or ``--max-steps``; report(step, s) evaluates."""
    gen = torch.Generator().manual_seed(args.seed)
    n, step, train_s, next_eval = len(coords), 0, 0.0, args.eval_every
    decay, lr = lr_decay(args.lr_decay), opt.param_groups[0]["lr"]
    report(step, train_s)
    while train_s < args.seconds and (args.max_steps is None or step < args.max_steps):
        t0 = time.perf_counter()
        if decay is not None:  # tiny-cuda-nn's ExponentialDecay over ``step`` steps taken
            set_lr(opt, lr * decay.factor(step))
        idx = torch.randint(n, (args.batch,), generator=gen)
        loss = 0.5 * F.mse_loss(model(coords[idx]), target[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        train_s += time.perf_counter() - t0
        step += 1
        if train_s >= next_eval:
            report(step, train_s)
            while next_eval <= train_s:
                next_eval += args.eval_every
    return step, train_s


def set_lr(opt, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr
    if isinstance(opt, TcnnAdam):
        opt.lr = lr


def fit(args) -> None:
    sig = load_signal(args.signal)
    D = sig.train_x.shape[1]
    model, opt = build(args, spec_from(args, D), sig.train_y.shape[1])
    base = {"system": "torch", "model": args.model, "signal": args.signal}
    threads = torch.get_num_threads()

    def report(step: int, train_s: float, **extra) -> None:
        pred = predict(model, sig.eval_x)
        line = {**base, "seconds": round(train_s, 4), "step": step}
        line["psnr"] = round(psnr(pred, sig.eval_y), 4)
        if args.signal == "torus":
            from neurofabric.field.signals import sdf_iou, torus_surface

            line["iou"] = round(sdf_iou(pred.numpy(), sig.eval_y.numpy(), torus_surface()), 5)
        print(json.dumps({**line, "threads": threads, **extra}), flush=True)

    steps, train_s = train(model, opt, sig.train_x, sig.train_y, args, report)
    report(
        steps,
        train_s,
        final=True,
        params=sum(p.numel() for p in model.parameters()),
        steps_per_s=round(steps / max(train_s, 1e-9), 3),
        batch=args.batch,
        lr=opt.param_groups[0]["lr"],
        lr_decay=args.lr_decay,
        adam=args.adam if args.model == "hashgrid" else "torch",
        hidden=args.hidden or DEFAULT_HIDDEN[args.model],
        torch_version=torch.__version__,
    )
    if args.save_image:
        H, W = sig.image_shape
        save_image(args.save_image, predict(model, sig.image_x).reshape(H, W, -1).numpy())


def save_image(path: str, img: np.ndarray) -> None:
    from matplotlib.image import imsave

    if img.shape[-1] == 1:
        imsave(path, img[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
    else:
        imsave(path, img)


# --- the self-check against neurofabric.field.HashGrid ---------------------------------------
def check(args) -> int:
    """Encodings and table gradients of TorchHashGrid against HashGrid on 1,000 points."""
    from neurofabric.field import HashGrid

    specs = [
        spec_from(args, 2),
        replace(spec_from(args, 2), hash_bits=64),
        HashGridSpec(n_dims=3, n_levels=8, log2_table=14, per_level_scale=1.5),
    ]
    rng = np.random.default_rng(args.seed)
    failed = 0
    for spec in specs:
        x = rng.random((1000, spec.n_dims), dtype=np.float32)
        x[:8] = rng.integers(0, 2, size=(8, spec.n_dims))  # corners of the unit cube
        table = rng.uniform(-1.0, 1.0, (spec.n_rows, spec.n_features)).astype(np.float32)
        grad_out = rng.standard_normal((len(x), spec.n_outputs)).astype(np.float32)
        ours = TorchHashGrid(spec, args.seed)
        with torch.no_grad():
            ours.table.copy_(torch.from_numpy(table))
        enc = ours(torch.from_numpy(x))
        (enc * torch.from_numpy(grad_out)).sum().backward()
        grid = HashGrid(spec)
        diff = float(np.abs(enc.detach().numpy() - grid.encode(x, table)).max())
        gdiff = float(np.abs(ours.table.grad.numpy() - grid.dense_gradient(x, grad_out)).max())
        ok = diff < 1e-5 and gdiff < 1e-4
        failed += not ok
        line = {"check": spec.as_dict(), "max_abs_diff": diff, "max_grad_diff": gdiff, "ok": ok}
        print(json.dumps(line), flush=True)
    failed += not check_tcnn_adam(args)
    return 1 if failed else 0


def check_tcnn_adam(args) -> bool:
    """TcnnAdam against torch's Adam: equal where every entry has a gradient every step (each
    entry's step count is then the global one); entries with a zero gradient stay as they were."""
    spec = HashGridSpec(n_dims=2, n_levels=2, n_features=2, log2_table=4, base_resolution=2)
    a, b = HashGridModel(spec, [8], 1, args.seed), HashGridModel(spec, [8], 1, args.seed)
    b.load_state_dict(a.state_dict())
    ours = TcnnAdam(a, 1e-2, (0.9, 0.99), 1e-15)
    ref = torch.optim.Adam(b.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-15)
    gen = torch.Generator().manual_seed(args.seed)
    for _ in range(3):
        g = torch.randn(a.encoding.table.shape, generator=gen)
        for model, opt in ((a, ours), (b, ref)):
            opt.zero_grad(set_to_none=True)
            (model(torch.rand(16, 2, generator=gen)) ** 2).sum().backward()
            model.encoding.table.grad = g.clone()
            opt.step()
    same = float((a.encoding.table - b.encoding.table).detach().abs().max())
    before = a.encoding.table.detach().clone()
    a.encoding.table.grad = torch.zeros_like(before)
    a.encoding.table.grad[0, 0] = 1.0
    ours.decoder.zero_grad()
    ours.step()
    moved = (a.encoding.table != before).view(-1).nonzero().view(-1).tolist()
    ok = same < 1e-6 and moved == [0]
    print(
        json.dumps({"check": "tcnn-adam", "max_diff_vs_torch_adam": same, "moved": moved, "ok": ok})
    )
    return ok


def spec_from(args, n_dims: int) -> HashGridSpec:
    return HashGridSpec(
        n_dims=n_dims,
        n_levels=args.levels,
        n_features=args.features,
        log2_table=args.log2_table,
        base_resolution=args.base_resolution,
        per_level_scale=args.per_level_scale,
    )


def parse_args(argv=None) -> argparse.Namespace:
    d = HashGridSpec()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=MODELS, default="hashgrid")
    p.add_argument("--signal", choices=SIGNALS, default="china")
    p.add_argument("--seconds", type=float, default=60.0, help="training seconds (no eval)")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--eval-every", type=float, default=2.0, help="training seconds")
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--lr", type=float, default=None, help="default: 1e-2 / 1e-4 / 1e-3")
    p.add_argument("--hidden", type=int, action="append", help="repeatable; per model default")
    p.add_argument(
        "--lr-decay",
        default=None,
        metavar="START,INTERVAL,BASE",
        help="tiny-cuda-nn's ExponentialDecay: lr times BASE at step START and every INTERVAL",
    )
    p.add_argument(
        "--adam",
        choices=("torch", "tcnn"),
        default="torch",
        help="hashgrid: torch.optim.Adam on every entry, or tiny-cuda-nn's rule (sparse)",
    )
    p.add_argument("--levels", type=int, default=d.n_levels)
    p.add_argument("--features", type=int, default=d.n_features)
    p.add_argument("--log2-table", type=int, default=d.log2_table)
    p.add_argument("--base-resolution", type=int, default=d.base_resolution)
    p.add_argument("--per-level-scale", type=float, default=d.per_level_scale)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--save-image", default=None, metavar="PATH", help="final image (PNG)")
    p.add_argument("--check", action="store_true", help="compare with HashGrid.encode, exit")
    args = p.parse_args(argv)
    for name in ("seconds", "eval_every", "batch"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    limit_loaded(THREADS)
    torch.set_num_threads(THREADS)
    if args.check:
        return check(args)
    fit(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
