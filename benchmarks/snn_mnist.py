"""Diehl & Cook (2015) unsupervised STDP on MNIST: accuracy and training speed.

    python benchmarks/snn_mnist.py --data-dir ../shared/datasets --neurons 100 --save runs/dc100
    python benchmarks/snn_mnist.py --train 10000 --test 2000      # a shorter run
    python benchmarks/snn_mnist.py --load runs/dc100 --stp "0.2,0.1,0,1;0.5,0.5,0,1"
    python benchmarks/snn_mnist.py --weight-bits 4 --quantize ''  # 4-bit aware learning

Trains on the first ``--train`` training images (one pass; ``--checkpoint DIR`` writes a
checkpoint every 1,000 images and a rerun resumes from it), labels the neurons from the first
``--label`` of them with learning frozen, evaluates on the first ``--test`` test images;
prints a table and one JSON line. Float32 weights are also evaluated after INT8 / INT4 / INT2
quantization of the learned input weights (per neuron, symmetric), and with each post-training
short-term-plasticity setting of ``--stp`` ("U,tau_rec,tau_facil,k" with times in seconds,
efficacy w + k w r(t), weights frozen, neurons relabelled with it). Every row is reported: no
setting is chosen on the test set.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from _record import record
from _threads import limit_loaded, pin_threads, threads_info, threads_line

THREADS = pin_threads(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("NEUROFABRIC_DATA", "../shared/datasets"))
    ap.add_argument("--neurons", type=int, default=100)
    ap.add_argument("--train", type=int, default=60000)
    ap.add_argument("--label", type=int, default=10000)
    ap.add_argument("--test", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--rule",
        choices=("paper", "code"),
        default="code",
        help="code: the rule of the authors' published code (TripletSTDP, A2+ = 0, "
        "A3+ = 0.01, A2- = 1e-4, nearest); paper: DiehlCookSTDP (x_tar form)",
    )
    ap.add_argument(
        "--a2-plus",
        type=float,
        default=0.0,
        help="code rule plus pair potentiation A2+ on every postsynaptic spike (0: the code)",
    )
    ap.add_argument("--weight-bits", type=int, default=None, help="quantization-aware learning")
    ap.add_argument("--quantize", default="8,4,2", help="bit widths to evaluate ('' for none)")
    ap.add_argument("--stp", default="", help="post-training STP settings, ';'-separated")
    ap.add_argument("--save", default=None, help="save the trained classifier here")
    ap.add_argument("--load", default=None, help="evaluate a saved classifier (no training)")
    ap.add_argument("--checkpoint", default=None, help="checkpoint folder (resumed if present)")
    ap.add_argument(
        "--threads",
        type=int,
        default=THREADS,
        help="threads for every system (pinned before numpy loads)",
    )
    args = ap.parse_args()

    from neurofabric.data import load_mnist
    from neurofabric.snn.diehl_cook import DiehlCookClassifier
    from neurofabric.snn.stp import ShortTermPlasticity

    limit_loaded(THREADS)

    x_tr, y_tr = load_mnist("train", data_dir=args.data_dir)
    x_te, y_te = load_mnist("test", data_dir=args.data_dir)
    x_tr, y_tr = x_tr[: args.train], y_tr[: args.train]
    x_te, y_te = x_te[: args.test], y_te[: args.test]
    train_s = label_s = float("nan")
    if args.load:
        clf = DiehlCookClassifier.load(args.load)
        args.neurons, args.weight_bits = clf.n_neurons, clf.weight_bits
    else:
        rule = DiehlCookClassifier.code_rule(args.a2_plus) if args.rule == "code" else "paper"
        clf = DiehlCookClassifier(
            n_neurons=args.neurons, seed=args.seed, rule=rule, weight_bits=args.weight_bits
        )
        t0 = time.perf_counter()
        last = [t0]

        def progress(p) -> None:
            if p.done % 1000 == 0 or p.done == p.total:
                now = time.perf_counter()
                acc = "" if p["accuracy"] is None else f", running acc ~{p['accuracy']:.3f}"
                print(
                    f"# {p.done}/{p.total} images, {p['images_per_s']:.1f} img/s "
                    f"({now - last[0]:.0f} s for the last chunk{acc})",
                    flush=True,
                )
                last[0] = now

        clf.fit(
            x_tr,
            y_tr,
            label_images=0,
            callback=progress,
            checkpoint=args.checkpoint,
            resume=args.checkpoint is not None,
        )
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        clf.relabel(x_tr[: args.label], y_tr[: args.label])
        label_s = time.perf_counter() - t1
        if args.save:
            clf.save(args.save)
    rows = []
    t2 = time.perf_counter()
    weights = "float32" if not args.weight_bits else f"int{args.weight_bits} (aware learning)"
    rows.append((weights, clf.score(x_te, y_te)))
    test_s = time.perf_counter() - t2
    base = "float32" if not args.weight_bits else f"int{args.weight_bits}-aware"
    tags = [(base, {})]  # the schema's variant and extra workload of each row
    print(f"# {weights}: {rows[-1][1]:.4f} ({args.test / test_s:.1f} img/s evaluation)", flush=True)
    assignments = clf.assignments_.copy()
    csr = clf.net_.input_csr_
    learned = csr.weights.copy()
    for bits in [int(b) for b in args.quantize.split(",") if b]:
        clf.quantize_input_weights(bits)
        clf.relabel(x_tr[: args.label], y_tr[: args.label])
        rows.append((f"int{bits} (per neuron, after training)", clf.score(x_te, y_te)))
        tags.append((f"int{bits}-post-training", {"quantize_bits": bits}))
        print(f"# {rows[-1][0]}: {rows[-1][1]:.4f}", flush=True)
        csr.weights[:] = learned
    for setting in [s for s in args.stp.split(";") if s.strip()]:
        u, tau_rec, tau_facil, k = (float(v) for v in setting.split(","))
        clf.set_stp(
            ShortTermPlasticity(U=u, tau_rec=tau_rec, tau_facil=tau_facil, mode="modulate", k=k)
        )
        clf.relabel(x_tr[: args.label], y_tr[: args.label])
        rows.append((f"{weights} + STP U={u} rec={tau_rec} facil={tau_facil} k={k}", None))
        rows[-1] = (rows[-1][0], clf.score(x_te, y_te))
        stp = {"stp_u": u, "stp_tau_rec_s": tau_rec, "stp_tau_facil_s": tau_facil, "stp_k": k}
        tags.append((f"{base}+stp", stp))
        print(f"# {rows[-1][0]}: {rows[-1][1]:.4f}", flush=True)
        clf.set_stp(None)
    clf.assignments_ = assignments
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(
        f"Command: python benchmarks/snn_mnist.py --neurons {args.neurons} --train "
        f"{args.train} --label {args.label} --test {args.test} --quantize '{args.quantize}' "
        f"--rule {args.rule}"
        + (f" --a2-plus {args.a2_plus}" if args.a2_plus else "")
        + (f" --weight-bits {args.weight_bits}" if args.weight_bits else "")
        + (f" --stp '{args.stp}'" if args.stp else "")
        + (f" --load {args.load}" if args.load else "")
        + "\n"
    )
    print(f"# {threads_line()}")
    print("| system | neurons | train images | weights | test accuracy | train img/s |")
    print("|---|---|---|---|---|---|")
    for name, a in rows:
        print(
            f"| neurofabric | {args.neurons} | {args.train} | {name} | {a:.4f} | "
            f"{args.train / train_s:.1f} |"
        )
    model = f"diehl_cook/{args.rule}" + (f"+a2_plus={args.a2_plus}" if args.a2_plus else "")
    for i, ((name, a), (variant, extra)) in enumerate(zip(rows, tags, strict=True)):
        record(
            "snn_mnist",
            "neurofabric",
            variant=variant,
            workload={
                "dataset": "mnist",
                "model": model,
                "neurons": args.neurons,
                "train_images": args.train,
                "label_images": args.label,
                "test_images": args.test,
                "weight_bits": args.weight_bits,
                "weights": name,
                **extra,
                "seed": args.seed,
                "loaded": args.load,
                "threads": THREADS,
                "thread_pools": threads_info(),
            },
            figures={
                "accuracy_frac": a,
                "train_s": train_s,
                "images_per_s": args.train / train_s,
                "label_s": label_s,
                **({"test_s": test_s} if i == 0 else {}),
            },
            headline=("accuracy_frac", "images_per_s"),
        )


if __name__ == "__main__":
    main()
