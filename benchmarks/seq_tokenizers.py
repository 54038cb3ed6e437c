"""Tokenizer training throughput and exact round trips on WikiText-2 (validation + test).

    python benchmarks/seq_tokenizers.py [--data-dir ../shared/datasets] [--vocab 8000]

Trains each kind (byte-level BPE, WordPiece, Unigram with HF ``tokenizers``; our char
tokenizer) on the validation + test text, reports MB/s of training and of encoding, and the
share of lines that decode back to exactly the same text (a line with a character the
vocabulary lacks cannot, except with byte-level BPE). Prints a table and JSON lines.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _record import record
from _threads import pin_threads, threads_info, threads_line

THREADS = pin_threads(1)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-dir", default=os.environ.get("NEUROFABRIC_DATA", "../shared/datasets"))
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument(
        "--threads",
        type=int,
        default=THREADS,
        help="threads for every system (pinned before numpy loads)",
    )
    args = ap.parse_args()
    from neurofabric.seq.tokenizers import KINDS, train_tokenizer

    folder = Path(args.data_dir) / "wikitext2"
    text = (folder / "valid.txt").read_text(encoding="utf-8") + (folder / "test.txt").read_text(
        encoding="utf-8"
    )
    lines = text.splitlines()
    mb = len(text.encode("utf-8")) / 1e6
    rows = []
    for kind in KINDS:
        t0 = time.perf_counter()
        tok = train_tokenizer(kind, lines, vocab_size=args.vocab)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        encoded = [tok.encode(line) for line in lines]
        enc_s = time.perf_counter() - t0
        exact = sum(tok.decode(ids) == line for ids, line in zip(encoded, lines, strict=True))
        row = {
            "kind": kind,
            "vocab": tok.vocab_size,
            "train_mb_per_s": mb / train_s,
            "encode_mb_per_s": mb / enc_s,
            "exact_lines": exact,
            "lines": len(lines),
            "tokens": sum(map(len, encoded)),
        }
        rows.append(row)
        record(
            "seq_tokenizers",
            "neurofabric" if kind == "char" else "tokenizers",  # HF tokenizers trains the rest
            variant=kind,
            workload={
                "corpus": "wikitext2 valid+test",
                "corpus_mb": mb,
                "lines": row["lines"],
                "vocab_requested": args.vocab,
                "vocab": row["vocab"],
                "threads": THREADS,
                "thread_pools": threads_info(),
            },
            figures={
                "train_mb_per_s": row["train_mb_per_s"],
                "encode_mb_per_s": row["encode_mb_per_s"],
                "exact_lines_count": row["exact_lines"],
                "exact_lines_frac": row["exact_lines"] / row["lines"],
                "tokens_count": row["tokens"],
            },
            headline=("train_mb_per_s", "encode_mb_per_s", "exact_lines_frac"),
        )
    print(f"\nWikiText-2 valid + test: {mb:.2f} MB, {len(lines):,} lines; {threads_line()}\n")
    print("| kind | vocab | train MB/s | encode MB/s (line by line) | tokens | exact round trips |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['kind']} | {r['vocab']:,} | {r['train_mb_per_s']:.2f} | {r['encode_mb_per_s']:.2f} | "
            f"{r['tokens']:,} | {r['exact_lines']:,} / {r['lines']:,} |"
        )


if __name__ == "__main__":
    main()
