"""The package as people install it: a wheel with its data and license, installed into a
fresh virtual environment, runs ``neurofabric --version`` and a short simulation."""

import json
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def build_dists(out: Path, *kinds: str) -> None:
    """``python -m build`` (the PyPA frontend), with this venv's setuptools (no isolated
    environment, so nothing is downloaded)."""
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", *kinds, "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )


def build_wheel(out: Path) -> Path:
    build_dists(out, "--wheel")
    (wheel,) = out.glob("neurofabric-*.whl")
    return wheel


def test_the_sdist_holds_the_sources_the_license_and_the_build_config(tmp_path):
    build_dists(tmp_path, "--sdist")
    (sdist,) = tmp_path.glob("neurofabric-*.tar.gz")
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for name in (
        "LICENSE",
        "pyproject.toml",
        "README.md",
        "src/neurofabric/__init__.py",
        "src/neurofabric/snn/nir.py",
        "src/neurofabric/studio/static/index.html",
    ):
        assert name in names, name


def test_the_wheel_holds_the_studio_page_the_license_and_the_command(tmp_path):
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = zf.read(meta_name).decode()
        entry = zf.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
        license_text = zf.read(meta_name.replace("METADATA", "licenses/LICENSE")).decode()
    for page in ("index.html", "app.js", "style.css"):
        assert f"neurofabric/studio/static/{page}" in names
    assert "License-Expression: Apache-2.0" in meta.splitlines()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "neurofabric = neurofabric.cli:main" in entry
    extras = {ln.split(": ")[1] for ln in meta.splitlines() if ln.startswith("Provides-Extra")}
    assert {"seq", "mpi", "studio", "peers", "docs", "dev", "nir"} <= extras
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_simulates(tmp_path):
    wheel = build_wheel(tmp_path / "dist")
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    py = env / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=1200)
    exe = env / "bin" / "neurofabric"
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == "neurofabric 0.1.0"
    run = subprocess.run(
        [str(exe), "snn", "run", "cuba", "--neurons", "400", "--duration", "0.05", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        cwd=tmp_path,
    )
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["spikes"] > 0
    # the studio is an extra: without it the command says how to get it, no traceback
    studio = subprocess.run([str(exe), "studio", "--no-browser"], capture_output=True, text=True)
    assert studio.returncode == 2
    assert "pip install 'neurofabric[studio]'" in studio.stderr
    assert "Traceback" not in studio.stderr


def test_the_peers_extra_pins_what_make_peers_installs():
    import tomllib

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["peers"]
    reqs = (ROOT / "benchmarks" / "peers" / "requirements.txt").read_text().splitlines()
    pinned = {ln.split("#")[0].strip() for ln in reqs} - {""}
    assert set(extra) <= pinned, set(extra) - pinned
