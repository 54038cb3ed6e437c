"""Mutation testing of one engine's kernels and shell with mutmut 3 (not a project dependency).

Works in a throw-away copy of the committed tree, never in the working tree:

    .venv/bin/python -m pip install --target "$MUTMUT_DIR" mutmut==3.8.1
    # then delete from $MUTMUT_DIR the packages the venv already has (pytest, pluggy, ...)
    PYTHONPATH="$MUTMUT_DIR" nice -n 15 .venv/bin/python tools/mutation.py --engine thermo \
        --work "$WORK" --sample 60 --seed 0 --timeout 420

(docs/testing.md has the whole recipe and the results.)

Steps: ``git archive HEAD`` into ``<work>/<engine>``, write a ``[tool.mutmut]`` section that
mutates only the engine's reference kernels and shell modules and runs only the engine's own
tests (``-m "not slow" -x -p no:cacheprovider``), generate every mutant, draw ``--sample`` of
them with ``random.Random(seed)`` (all when ``--sample 0``), run those with one worker and
write a JSON summary (counts per status and the surviving mutant names) to
``<work>/<engine>.json``. numba-decorated kernels are not mutated (mutmut skips decorated
functions); they are covered by the numba-vs-reference parity tests instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger("mutation")

# The reference kernels (the numpy spec) and the public shell of each engine.
TARGETS = {
    "snn": ["snn/kernels/reference.py", "snn/network.py"],
    "guard": ["guard/kernels/reference.py", "guard/guard.py"],
    "thermo": ["thermo/kernels/reference.py", "thermo/thermo.py", "thermo/chain.py"],
    "seq": ["seq/kernels/reference.py", "seq/rwkv.py", "seq/mamba.py", "seq/memory.py"],
    "field": ["field/kernels/reference.py", "field/field.py", "field/encoding.py"],
}

PYTEST_ARGS = ["-m", "not slow", "-x", "-p", "no:cacheprovider", "-q"]


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def prepare_copy(repo: Path, work: Path, engine: str) -> Path:
    """Export the committed tree into ``work/engine`` and add the mutmut config."""
    dest = work / engine
    if dest.exists():
        raise FileExistsError(f"work copy {dest} exists; remove it or pick another --work")
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "HEAD"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (dest / "HEAD").write_text(head + "\n", encoding="utf-8")
    only = [f"src/neurofabric/{path}" for path in TARGETS[engine]]
    config = (
        "\n[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        f"only_mutate = {_toml_list(only)}\n"
        f"pytest_add_cli_args = {_toml_list(PYTEST_ARGS)}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list([f'tests/{engine}'])}\n"
        'process_isolation = "forkserver"\n'
    )
    with open(dest / "pyproject.toml", "a", encoding="utf-8") as handle:
        handle.write(config)
    return dest


def generated_mutants(copy: Path) -> list[str]:
    """Generate every mutant in ``copy/mutants`` and return their names, sorted."""
    os.chdir(copy)
    from mutmut.__main__ import create_mutants
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.utils.file_utils import (
        copy_also_copy_files,
        copy_src_dir,
        setup_source_paths,
        walk_mutatable_files,
    )

    Path("mutants").mkdir(exist_ok=True)
    copy_src_dir()
    copy_also_copy_files()
    setup_source_paths()
    create_mutants(1)
    names = []
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        names.extend(data.exit_code_by_key)
    return sorted(names)


def summarize(copy: Path, names: list[str]) -> dict[str, object]:
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.stats import status_by_exit_code
    from mutmut.utils.file_utils import walk_mutatable_files

    os.chdir(copy)
    wanted = set(names)
    status: dict[str, str] = {}
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for key, code in data.exit_code_by_key.items():
            if key in wanted:
                status[key] = status_by_exit_code[code]
    counts: dict[str, int] = {}
    for value in status.values():
        counts[value] = counts.get(value, 0) + 1
    survivors = sorted(k for k, v in status.items() if v in ("survived", "no tests"))
    return {"counts": counts, "survivors": survivors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", required=True, choices=sorted(TARGETS))
    parser.add_argument("--work", required=True, type=Path, help="scratch folder for the copy")
    parser.add_argument("--sample", type=int, default=0, help="mutants to draw (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=int, default=900, help="seconds for the mutmut run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    repo = Path(__file__).resolve().parents[1]
    work = args.work.resolve()
    copy = prepare_copy(repo, work, args.engine)
    names = generated_mutants(copy)
    if args.sample < 0:
        parser.error(f"--sample must be >= 0, got {args.sample}; use 0 to run every mutant")
    if args.sample == 0:
        chosen = names
    else:
        chosen = sorted(random.Random(args.seed).sample(names, min(args.sample, len(names))))
    logger.info("%s: %d mutants generated, %d drawn", args.engine, len(names), len(chosen))
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", "1", *chosen]
    log = work / f"{args.engine}.log"
    with open(log, "wb") as out:
        # own session, so that a time-out ends mutmut's fork server and workers too
        proc = subprocess.Popen(command, cwd=copy, stdout=out, stderr=out, start_new_session=True)
        try:
            proc.wait(timeout=args.timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            timed_out = True
    summary = {
        "engine": args.engine,
        "files": TARGETS[args.engine],
        "generated": len(names),
        "drawn": len(chosen),
        "seed": args.seed,
        "commit": (copy / "HEAD").read_text(encoding="utf-8").strip(),
        "run_timed_out": timed_out,
        **summarize(copy, chosen),
    }
    tmp = work / f"{args.engine}.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    os.replace(tmp, work / f"{args.engine}.json")
    logger.info("%s", json.dumps(summary["counts"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
