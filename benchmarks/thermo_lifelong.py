"""Life-long learning, measured: learn MNIST digits 0-4, then 5-9 from new data only, and
report how much of the old classes each method keeps.

    python benchmarks/thermo_lifelong.py [--mh-time 300] [--plot docs/figures/thermo_lifelong.png]
    python benchmarks/thermo_lifelong.py --quick          # digits, a minute

The protocol (class-incremental: one 10-way output layer, no task label at test time):
  phase 1   a 784-H-10 ReLU network trained by Adam (torch) on the images of digits 0-4;
  phase 2   from that network, each method learns digits 5-9 from their images only:
    Adam fine-tuning        the same Adam settings on the new images (the usual baseline)
    Adam + EWC              plus the elastic weight consolidation penalty (Kirkpatrick et al.
                            2017): (lambda / 2) sum_i F_i (w_i - w_A,i)^2 with F the diagonal
                            Fisher information of phase 1 (from the model's own predictive
                            distribution on 1,000 old images); lambda picked from a grid by
                            the mean accuracy on a validation split of both halves' training
                            images (the best case for EWC)
    Adam + rehearsal        the new images plus a buffer of --buffer old images per class
    MH                      ThermoClassifier warm-started from the phase-1 network, energy on
                            the new images only, annealed over --mh-time seconds
    MH + rehearsal          the same with the rehearsal buffer
    Adam on both (bound)    Adam on all images of 0-9 from the phase-1 network: the upper bound
Accuracy on the test images of 0-4 and of 5-9 (10-way) after each phase. Goal (issue 23): MH
keeps the old classes within 2 points of phase 1 while reaching on the new ones at least 90 %
of what fine-tuning reaches. One thread for every method.
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


class Net:
    """A ReLU MLP in torch with named parameters (so EWC can address them)."""

    def __init__(self, sizes, seed):
        import torch

        g = torch.Generator().manual_seed(seed)
        self.params = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            bound = (6.0 / a) ** 0.5 / 2  # He-uniform
            w = (torch.rand(b, a, generator=g) * 2 - 1) * bound
            self.params += [torch.nn.Parameter(w), torch.nn.Parameter(torch.zeros(b))]

    def __call__(self, x):
        import torch

        for k in range(0, len(self.params), 2):
            x = x @ self.params[k].T + self.params[k + 1]
            if k + 2 < len(self.params):
                x = torch.relu(x)
        return x

    def copy(self):
        other = Net.__new__(Net)
        other.params = [torch_param(p.detach().clone()) for p in self.params]
        return other

    def to_fabric(self):
        from neurofabric.thermo import NeuralFabric

        mats = [p.detach().numpy().T.astype(np.float64) for p in self.params[0::2]]
        biases = [p.detach().numpy().astype(np.float64) for p in self.params[1::2]]
        return NeuralFabric.from_dense(mats, biases, activation="relu")

    def accuracy(self, X, y):
        import torch

        with torch.no_grad():
            pred = self(torch.tensor(X, dtype=torch.float32)).argmax(1).numpy()
        return float(np.mean(pred == y))


def torch_param(t):
    import torch

    return torch.nn.Parameter(t)


def adam(net, X, y, *, epochs, lr, seed, penalty=None):
    """Minibatch Adam (batches of 128) on cross-entropy (+ ``penalty()``)."""
    import torch

    opt = torch.optim.Adam(net.params, lr=lr)
    Xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(Xt), generator=gen).split(128):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(Xt[idx]), yt[idx])
            if penalty is not None:
                loss = loss + penalty()
            loss.backward()
            opt.step()
    return net


def fisher_diagonal(net, X, seed, n=1000):
    """The diagonal Fisher information: E_x E_{y ~ p(y|x)} (d log p(y|x) / dw)^2, from ``n``
    images, labels drawn from the model's own predictive distribution."""
    import torch

    g = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(X), generator=g)[:n]
    Xt = torch.tensor(X[rows.numpy()], dtype=torch.float32)
    F = [torch.zeros_like(p) for p in net.params]
    for x in Xt:
        logp = torch.log_softmax(net(x[None]), 1)[0]
        label = torch.multinomial(logp.exp().detach(), 1, generator=g)[0]
        grads = torch.autograd.grad(logp[label], net.params)
        for f, gr in zip(F, grads, strict=True):
            f += gr * gr / len(Xt)
    return F


def ewc_penalty(net, anchor, F, lam):
    def penalty():
        return (
            0.5
            * lam
            * sum((f * (p - a) ** 2).sum() for p, a, f in zip(net.params, anchor, F, strict=True))
        )

    return penalty


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="digits, small budgets")
    ap.add_argument("--data-dir", default=os.environ.get("NEUROFABRIC_DATA", "../shared/datasets"))
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=5, help="Adam epochs of each phase")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--buffer", type=int, default=20, help="old images kept per class")
    ap.add_argument("--mh-time", type=float, default=300.0, help="seconds per MH run")
    ap.add_argument("--batch-size", type=int, default=2000, help="MH minibatch")
    ap.add_argument("--t-start", type=float, default=0.05)
    ap.add_argument("--t-end", type=float, default=0.002)
    ap.add_argument("--lambda-l1", type=float, default=0.0)
    ap.add_argument("--ewc-grid", default="1,10,100,1000,10000,100000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", default="", help="comma list of rows to skip: mh, mh-rehearsal")
    ap.add_argument("--plot", default=None, help="write the accuracy bars PNG here")
    ap.add_argument("--threads", type=int, default=THREADS)
    args = ap.parse_args()
    if args.quick:
        args.dataset, args.epochs, args.hidden = "digits", 30, 32
        args.mh_time = min(args.mh_time, 20.0)
        args.batch_size = 500

    import torch

    from neurofabric.data import load_classification
    from neurofabric.thermo import Geometric, ThermoClassifier

    limit_loaded(THREADS)
    torch.manual_seed(args.seed)
    Xtr, Xte, ytr, yte = load_classification(args.dataset, data_dir=args.data_dir)
    old_tr, new_tr = ytr < 5, ytr >= 5
    old_te, new_te = yte < 5, yte >= 5
    rng = np.random.default_rng(args.seed)
    buffer = np.concatenate(
        [rng.choice(np.flatnonzero(ytr == c), args.buffer, replace=False) for c in range(5)]
    )
    print(
        f"# {args.dataset}: {old_tr.sum()} old / {new_tr.sum()} new training images, "
        f"{len(buffer)} in the rehearsal buffer; {Xtr.shape[1]}-{args.hidden}-10; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus; {threads_line()}",
        flush=True,
    )
    sizes = [Xtr.shape[1], args.hidden, 10]

    def score(net_or_model):
        f = net_or_model.accuracy if isinstance(net_or_model, Net) else net_or_model.score
        return f(Xte[old_te], yte[old_te]), f(Xte[new_te], yte[new_te])

    t = time.perf_counter()
    base = adam(
        Net(sizes, args.seed),
        Xtr[old_tr],
        ytr[old_tr],
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
    )
    phase1_s = time.perf_counter() - t
    a1, b1 = score(base)
    print(f"# phase 1 (Adam on 0-4, {phase1_s:.0f} s): old {a1:.4f}, new {b1:.4f}", flush=True)
    rows = [("phase 1: Adam on 0-4", "torch", "phase1", a1, b1, phase1_s)]

    Xn, yn = Xtr[new_tr], ytr[new_tr]
    Xr = np.concatenate([Xn, Xtr[buffer]])
    yr = np.concatenate([yn, ytr[buffer]])

    def timed(name, system, variant, fn):
        t = time.perf_counter()
        model = fn()
        secs = time.perf_counter() - t
        a, b = score(model)
        rows.append((name, system, variant, a, b, secs))
        print(f"#   {name}: old {a:.4f}, new {b:.4f} ({secs:.0f} s)", flush=True)
        return model

    kw = dict(epochs=args.epochs, lr=args.lr, seed=args.seed + 1)
    timed("Adam fine-tuning", "torch", "adam-finetune", lambda: adam(base.copy(), Xn, yn, **kw))

    # EWC: lambda from a grid, by the mean of old and new accuracy on held-out training images
    F = fisher_diagonal(base, Xtr[old_tr], args.seed)
    anchor = [p.detach().clone() for p in base.params]
    val = rng.random(len(ytr)) < 0.1
    fit_new = new_tr & ~val

    def ewc(lam, X, y):
        net = base.copy()
        return adam(net, X, y, penalty=ewc_penalty(net, anchor, F, lam), **kw)

    best = None
    for lam in (float(v) for v in args.ewc_grid.split(",")):
        net = ewc(lam, Xtr[fit_new], ytr[fit_new])
        va = net.accuracy(Xtr[val & old_tr], ytr[val & old_tr])
        vb = net.accuracy(Xtr[val & new_tr], ytr[val & new_tr])
        print(f"#   EWC lambda {lam:g}: validation old {va:.4f}, new {vb:.4f}", flush=True)
        if best is None or (va + vb) / 2 > best[0]:
            best = ((va + vb) / 2, lam)
    lam = best[1]
    timed(f"Adam + EWC (lambda {lam:g})", "torch", "adam-ewc", lambda: ewc(lam, Xn, yn))
    timed("Adam + rehearsal", "torch", "adam-rehearsal", lambda: adam(base.copy(), Xr, yr, **kw))

    def mh(X, y):
        init = base.to_fabric()
        peak = max(float(np.abs(init.weight).max()), float(np.abs(init.bias).max()))
        m = ThermoClassifier(
            hidden=(args.hidden,),
            n_proposals=2_000_000_000,
            generation=20_000,
            batch_size=min(args.batch_size, len(y)),
            schedule=Geometric(args.t_start, args.t_end),
            max_time=args.mh_time,
            lambda_l1=args.lambda_l1,
            w_max=max(2.0, 1.2 * peak),
            seed=args.seed,
        )
        return m.fit(X, y, init=init, classes=np.arange(10))

    skip = set(filter(None, args.skip.split(",")))
    if "mh" not in skip:
        timed("MH", "neurofabric", "mh", lambda: mh(Xn, yn))
    if "mh-rehearsal" not in skip:
        timed("MH + rehearsal", "neurofabric", "mh-rehearsal", lambda: mh(Xr, yr))
    timed(
        "Adam on both (upper bound)",
        "torch",
        "adam-joint",
        lambda: adam(base.copy(), Xtr, ytr, **kw),
    )

    ft_new = rows[1][4]
    print()
    print(f"after phase 1: old {a1:.4f}. Goal: old within 2 points, new >= 90 % of fine-tuning's")
    print()
    print("| method | old classes 0-4 | change | new classes 5-9 | vs fine-tuning | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, _system, _variant, a, b, secs in rows:
        print(
            f"| {name} | {a:.4f} | {100 * (a - a1):+.1f} | {b:.4f} | "
            f"{b / ft_new:.2f}x | {secs:.1f} |"
        )
    for _name, system, variant, a, b, secs in rows:
        record(
            "thermo_lifelong",
            system,
            variant=variant,
            workload={
                "dataset": args.dataset,
                "hidden": args.hidden,
                "buffer_per_class": args.buffer,
                "mh_budget_s": args.mh_time,
                "threads": THREADS,
            },
            figures={
                "old_accuracy_pct": 100 * a,
                "old_change_pct": 100 * (a - a1),
                "new_accuracy_pct": 100 * b,
                "new_vs_finetune_x": b / ft_new,
                "train_s": secs,
            },
            headline=("old_accuracy_pct", "new_accuracy_pct"),
        )
    if args.plot:
        plot_rows([(r[0], r[3], r[4]) for r in rows], args.dataset, args.plot)
        print(f"# plot: {args.plot}")


def plot_rows(rows, dataset: str, path: str) -> None:
    """Grouped bars: (method, old accuracy, new accuracy) per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.2))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r[1] for r in rows], 0.4, label="old classes 0-4")
    ax.bar(x + 0.2, [r[2] for r in rows], 0.4, label="new classes 5-9")
    ax.set_xticks(x, [r[0] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (10-way)")
    ax.set_ylim(0, 1.18)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_title(f"{dataset}: learning 5-9 after 0-4, from new images only")
    ax.legend(loc="upper center", ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
