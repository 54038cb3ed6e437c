"""The studio's HTTP API with FastAPI's test client: validation, uploads, runs in real worker
processes (train, cancel, resume, a SIGKILLed worker, a restarted studio), export, try-it and
compare, checked against the engines' own results."""

import hashlib
import io
import json
import time
import zipfile

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from neurofabric.studio.app import create_app  # noqa: E402

TEXT = " ".join(
    f"the {a} {b} on the {c} ."
    for a in ("cat", "dog")
    for b in ("sat", "ran")
    for c in ("mat", "log")
)
TINY = {"layers": 1, "dim": 16, "batch_size": 8, "seq_len": 24, "eval_every": 10}


@pytest.fixture
def runs(tmp_path):
    return tmp_path / "studio"


@pytest.fixture
def client(runs):
    with TestClient(create_app(runs, max_upload=200_000)) as c:
        yield c


def wait(client, run_id, pred, timeout=240.0):
    deadline = time.monotonic() + timeout
    while True:
        run = client.get(f"/api/runs/{run_id}").json()
        if pred(run):
            return run
        if run["status"] == "failed":
            raise AssertionError(f"run {run_id} failed: {run['error']}")
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} never reached the state: {run}")
        time.sleep(0.2)


def finished(client, run_id, timeout=240.0):
    run = wait(client, run_id, lambda r: r["status"] != "running", timeout)
    assert run["status"] == "done", run
    return run


def upload(client, name, payload):
    return client.post(f"/api/uploads?filename={name}", content=payload)


def text_run(client, **params):
    up = upload(client, "corpus.txt", (TEXT * 8).encode()).json()
    r = client.post(
        "/api/runs",
        json={"template": "seq-char", "params": TINY | params, "data": {"upload": up["id"]}},
    )
    assert r.status_code == 201, r.json()
    return r.json()["id"]


# ---------------------------------------------------------------------- catalogue, validation
def test_templates_cover_every_engine_and_validate_with_the_api_messages(client):
    ts = {t["id"]: t for t in client.get("/api/templates").json()}
    assert {t["engine"] for t in ts.values()} == {"seq", "guard", "snn", "thermo", "field"}
    seq = ts["seq-char"]
    assert seq["try"] == "generate" and seq["exports"] == ["model", "int4"]
    assert {p["name"]: p["default"] for p in seq["params"]}["arch"] == "rwkv"

    def bad(tid, params):
        r = client.post(f"/api/templates/{tid}/validate", json={"params": params})
        assert r.status_code == 422, r.json()
        return r.json()

    assert bad("seq-char", {"dim": -1}) == {"error": "`dim` must be >= 4, got -1", "param": "dim"}
    assert bad("seq-char", {"lr": 0})["param"] == "lr"
    assert bad("seq-char", {"arch": "gru"})["param"] == "arch"
    assert bad("seq-char", {"layers": 1.5})["param"] == "layers"
    assert bad("field-image", {"colour": "yes"})["param"] == "colour"
    assert bad("seq-char", {"widht": 3})["param"] == "widht"
    assert bad("thermo-digits", {"t_start": 0.1, "t_end": 0.5})["param"] == "t_end"
    ok = client.post("/api/templates/seq-char/validate", json={"params": {"dim": 32.0}})
    assert ok.status_code == 200 and ok.json()["params"]["dim"] == 32
    assert client.post("/api/templates/nope/validate", json={}).status_code == 422
    # a rejected run leaves nothing behind
    assert (
        client.post("/api/runs", json={"template": "seq-char", "params": {"dim": -1}}).status_code
        == 422
    )
    assert client.get("/api/runs").json() == []


# ---------------------------------------------------------------------- uploads
def _png(w=8, h=6):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.arange(w * h, dtype=np.uint8).reshape(h, w)).save(buf, format="PNG")
    return buf.getvalue()


def test_uploads_are_checked_capped_and_stay_inside_the_runs_folder(client, runs):
    up = upload(client, "../../escape.txt", b"hello there")
    assert up.status_code == 201
    rec = up.json()
    assert rec["name"] == "escape.txt" and rec["kind"] == "text"
    stored = list((runs / "uploads").rglob("data.*"))
    assert len(stored) == 1 and stored[0].read_bytes() == b"hello there"
    assert not (runs.parent / "escape.txt").exists()
    assert rec["sha256"] == hashlib.sha256(b"hello there").hexdigest()
    img = upload(client, "pic.png", _png()).json()
    assert img["kind"] == "image" and "8 x 6" in img["info"]

    refused = {
        "latin1.txt": b"caf\xe9",
        "nul.txt": b"a\x00b",
        "empty.txt": b"",
        "noheader.csv": b"a,b\n1,2\n",
        "onelabel.csv": b"text,label\n" + b"x,1\n" * 5,
        "fake.png": b"\x89PNG\r\n\x1a\nnot really",
    }
    for name, payload in refused.items():
        r = upload(client, name, payload)
        assert r.status_code == 400, (name, r.json())
        assert name in r.json()["error"]
    at_cap = upload(client, "cap.txt", b"a" * 200_000)
    assert at_cap.status_code == 201, at_cap.json()
    big = upload(client, "big.txt", b"a" * 200_001)
    assert big.status_code == 413 and "200,000" in big.json()["error"]
    assert len(client.get("/api/uploads").json()) == 3  # nothing of the refused files stored
    assert len(list((runs / "uploads").iterdir())) == 3
    # an upload of the wrong kind for a template
    r = client.post(
        "/api/runs",
        json={"template": "seq-char", "params": TINY, "data": {"upload": img["id"]}},
    )
    assert r.status_code == 422 and "image" in r.json()["error"]


def test_requests_cannot_reach_files_outside_a_run(client):
    run_id = text_run(client, steps=10)
    finished(client, run_id)
    assert client.get("/api/runs/20990101-000000-abcdef").status_code == 404
    assert client.get("/api/runs/..%2F..%2Fetc").status_code == 404
    assert client.get(f"/api/runs/{run_id}/images/run.json.png").status_code == 404
    assert client.get(f"/api/runs/{run_id}/images/..%2Frun.png").status_code == 404
    assert client.get(f"/api/runs/{run_id}/images/loss.png").status_code == 200
    other = text_run(client, steps=10)
    finished(client, other)
    # a name that would climb into another run's folder (a client normalizes a plain "../" in
    # the URL itself, so only the encoded form reaches the server)
    sneaky = f"..%2F..%2F{other}%2Fimages%2Floss"
    assert client.get(f"/api/runs/{run_id}/images/{sneaky}.png").status_code == 404
    assert client.post(f"/api/runs/{run_id}/classify", json={"text": "x"}).status_code == 422
    assert client.get(f"/api/runs/{run_id}/export?kind=../../x").status_code == 422


# ---------------------------------------------------------------------- a sequence model run
def test_seq_run_trains_streams_exports_and_generates_as_the_library_does(client, runs):
    from neurofabric.seq.generate import generate
    from neurofabric.seq.io import load_model
    from neurofabric.seq.tokenizers import load_tokenizer

    run_id = text_run(client, steps=30)
    run = finished(client, run_id)
    assert run["summary"]["step"] == 30 and run["progress"]["done"] == 30
    assert "loss" in run["images"] and run["checkpoint"] and not run["can_resume"]
    records = client.get(f"/api/runs/{run_id}/metrics").json()
    assert records[-1]["done"] == 30 and all(np.isfinite(r["loss"]) for r in records)
    assert any(r.get("val_loss") is not None for r in records)
    assert records[-1]["val_loss"] == pytest.approx(run["summary"]["val_loss"])
    with client.stream("GET", f"/api/runs/{run_id}/events") as r:  # a finished run: replay, end
        events = [ln for ln in r.iter_lines() if ln.startswith("event:")]
    assert events.count("event: progress") == len(records) and events[-1] == "event: status"

    # generation streams exactly what the library generates with the same seed
    with client.stream(
        "GET",
        f"/api/runs/{run_id}/generate",
        params={"prompt": "the ", "max_tokens": 25, "temperature": 0.7, "seed": 3},
    ) as r:
        lines = [json.loads(ln[6:]) for ln in r.iter_lines() if ln.startswith("data: ")]
    model_dir = runs / "runs" / run_id / "model"
    model, tok = load_model(model_dir), load_tokenizer(model_dir / "tokenizer.json")
    want = "".join(generate(model, tok, "the ", max_new_tokens=25, temperature=0.7, seed=3))
    assert "".join(x["text"] for x in lines[:-1]) == want
    assert lines[-1]["tokens"] == 25 and lines[-1]["tokens_per_s"] > 0
    bad = client.get(f"/api/runs/{run_id}/generate", params={"prompt": "x", "temperature": -1})
    assert bad.status_code == 422 and "temperature" in bad.json()["error"]
    with client.stream("GET", f"/api/runs/{run_id}/generate", params={"prompt": "Z"}) as r:
        assert "event: error" in "".join(r.iter_text())  # "Z" is not in the vocabulary

    # the export is the saved model, byte for byte
    z = client.get(f"/api/runs/{run_id}/export?kind=model")
    assert z.status_code == 200 and "attachment" in z.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        got = {n.split("/", 1)[1]: zf.read(n) for n in zf.namelist()}
    assert got["model.safetensors"] == (model_dir / "model.safetensors").read_bytes()
    q = client.get(f"/api/runs/{run_id}/export?kind=int4")
    assert q.status_code == 200
    with zipfile.ZipFile(io.BytesIO(q.content)) as zf:
        cfg = json.loads(zf.read(f"{run_id}-int4/config.json"))
    assert cfg["format"] == "neurofabric-seq-quant" and cfg["quant"]["bits"] == 4

    rows = client.post(
        "/api/compare", json={"runs": [run_id], "prompt": "the cat sat", "max_tokens": 10}
    ).json()["rows"]
    assert [r["variant"] for r in rows] == ["float32", "int4"]
    assert rows[1]["file_bytes"] < rows[0]["file_bytes"]
    assert rows[0]["params"] == rows[1]["params"] == run["summary"]["params"]
    assert rows[0]["state_bytes"] == 5 * 16 * 4  # RWKV-4: 5 vectors of dim per layer, float32
    assert all(np.isfinite(r["loss_nats"]) and r["tokens_per_s"] > 0 for r in rows)


def test_cancel_resume_kill_and_restart_lose_nothing(client, runs):
    run_id = text_run(client, steps=100_000, max_time=300)
    wait(client, run_id, lambda r: (r["progress"] or {}).get("done", 0) >= 12)
    assert client.post(f"/api/runs/{run_id}/resume").status_code == 422  # still running
    client.post(f"/api/runs/{run_id}/cancel")
    run = wait(client, run_id, lambda r: r["status"] != "running", 60)
    assert run["status"] == "cancelled" and run["can_resume"] and run["checkpoint"]
    stopped_at = run["summary"]["step"]
    assert client.get(f"/api/runs/{run_id}/export").status_code == 200  # a cancelled run exports
    assert client.post(f"/api/runs/{run_id}/cancel").status_code == 422

    assert client.post(f"/api/runs/{run_id}/resume").json()["status"] == "running"
    wait(client, run_id, lambda r: (r["progress"] or {}).get("done", 0) > stopped_at + 10)
    records = client.get(f"/api/runs/{run_id}/metrics").json()
    after = [r["done"] for r in records if r["done"] > stopped_at]
    assert after and min(after) == stopped_at + 1  # continued from its checkpoint, not from 0

    client.app.state.store.kill(run_id)  # SIGKILL: the worker cannot say anything
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["status"] == "failed" and "ended without finishing" in run["error"]
    assert run["can_resume"]

    with TestClient(create_app(runs)) as again:  # a restarted studio sees the same runs
        (seen,) = again.get("/api/runs").json()
        assert seen["id"] == run_id and seen["status"] == "failed"
        assert again.post(f"/api/runs/{run_id}/resume").json()["status"] == "running"
        wait(again, run_id, lambda r: (r["progress"] or {}).get("done", 0) > stopped_at + 10)
        again.post(f"/api/runs/{run_id}/cancel")
        assert wait(again, run_id, lambda r: r["status"] != "running", 60)["status"] == "cancelled"


# ---------------------------------------------------------------------- the other engines
def test_guard_field_and_thermo_runs_answer_like_their_engines(client, runs):
    from neurofabric.field import DemandPagedField
    from neurofabric.guard import TextGuardClassifier

    rows = "".join(f"good happy fine day {i},pos\nbad sad awful day {i},neg\n" for i in range(30))
    csv = upload(client, "reviews.csv", f"text,label\n{rows}".encode()).json()
    assert csv["kind"] == "csv" and "60 rows, 2 labels" in csv["info"]
    ids = {}
    for tid, params, data in (
        ("guard-text", {"log2_features": 12, "epochs": 3}, {"upload": csv["id"]}),
        (
            "field-image",
            {"seconds": 1.0, "log2_table": 12, "levels": 4, "batch": 1024},
            {"upload": upload(client, "p.png", _png(32, 24)).json()["id"]},
        ),
        ("thermo-digits", {"proposals": 4000, "generation": 2000, "hidden": 8}, None),
    ):
        r = client.post("/api/runs", json={"template": tid, "params": params, "data": data})
        assert r.status_code == 201, r.json()
        ids[tid] = r.json()["id"]

    g = finished(client, ids["guard-text"])
    assert g["summary"]["test_docs"] == 12 and "confusion" in g["images"]
    ans = client.post(f"/api/runs/{ids['guard-text']}/classify", json={"text": "happy day"}).json()
    clf = TextGuardClassifier.load(runs / "runs" / ids["guard-text"] / "model")
    want = clf.predict_proba(["happy day"])[0]
    assert ans["scores"] == pytest.approx(dict(zip(map(str, clf.classes_), want, strict=True)))
    assert ans["label"] == "pos"

    f = finished(client, ids["field-image"])
    assert f["summary"]["shape"] == [24, 32, 1] and "reconstruction" in f["images"]
    pts = [[0.25, 0.5], [0.9, 0.1]]
    got = client.post(f"/api/runs/{ids['field-image']}/query", json={"points": pts}).json()
    with DemandPagedField.open(runs / "runs" / ids["field-image"] / "model", readonly=True) as fld:
        want = fld.query(np.array(pts, np.float32))
    assert np.allclose(got["values"], want, atol=1e-5)
    assert (
        client.post(f"/api/runs/{ids['field-image']}/query", json={"points": [[2, 0]]}).status_code
        == 422
    )
    png = client.get(f"/api/runs/{ids['field-image']}/field.png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    size = sum(p.stat().st_size for p in (runs / "runs" / ids["field-image"] / "model").rglob("*"))
    assert size < 64 << 20  # sized to the field, not a terabyte of holes

    t = finished(client, ids["thermo-digits"])
    assert t["summary"]["proposals"] == 4000 and 0.1 < t["summary"]["test_accuracy"] <= 1.0
    assert "history" in t["images"] and not t["can_resume"]


def test_compare_puts_rwkv_mamba_and_the_gpt_baseline_side_by_side(client):
    ids = {arch: text_run(client, steps=12, arch=arch) for arch in ("rwkv", "mamba", "gpt")}
    for run_id in ids.values():
        finished(client, run_id)
    q = client.get(f"/api/runs/{ids['gpt']}/export?kind=int4")
    assert q.status_code == 200, q.json()
    body = {"runs": list(ids.values()), "prompt": "the dog ran", "max_tokens": 8}
    rows = client.post("/api/compare", json=body).json()["rows"]
    arch = {(r["arch"], r["variant"]): r for r in rows}
    assert set(arch) == {
        ("RWKV4", "float32"),
        ("Mamba", "float32"),
        ("GPT", "float32"),
        ("GPT", "int4"),
    }
    gpt = arch["GPT", "float32"]
    assert gpt["bytes_per_token"] == 2 * 1 * 16 * 4  # keys and values, 1 layer of 16 floats
    assert gpt["state_bytes"] == gpt["bytes_per_token"] * (len("the dog ran") + 8)
    assert arch["RWKV4", "float32"]["bytes_per_token"] == 0.0
    assert arch["Mamba", "float32"]["bytes_per_token"] == 0.0
    bad = client.post(
        "/api/templates/seq-char/validate", json={"params": {"arch": "gpt", "dim": 18}}
    ).json()
    assert bad["param"] == "dim" and "multiple of 4" in bad["error"]


def test_the_studio_command_refuses_a_bad_port_and_a_taken_one(tmp_path):
    import socket

    from typer.testing import CliRunner

    from neurofabric.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["studio", "--port", "70000", "--runs", str(tmp_path), "--no-browser"])
    assert r.exit_code == 2 and "`--port` must lie in [0, 65535], got 70000" in r.output
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        args = ["studio", "--port", str(port), "--runs", str(tmp_path), "--no-browser"]
        r = runner.invoke(app, args)
    assert r.exit_code == 2 and f"could not serve on 127.0.0.1:{port}" in r.output


def test_guard_and_thermo_runs_resume_where_they_were_cancelled(client):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(300)]
    rows = "".join(
        f"{' '.join(rng.choice(words[:150] if k % 2 else words[150:], 12))},{k % 2}\n"
        for k in range(2500)
    )
    csv = upload(client, "big.csv", f"text,label\n{rows}".encode()).json()
    requests = {  # cancelled as soon as started: the worker stops after its first unit
        "guard": {
            "template": "guard-text",
            "params": {"epochs": 20, "log2_features": 12, "word_ngrams": 1},
            "data": {"upload": csv["id"]},
        },
        "thermo": {
            "template": "thermo-digits",
            "params": {"proposals": 30_000, "generation": 1_000, "hidden": 8},
        },
    }
    for name, request in requests.items():
        run_id = client.post("/api/runs", json=request).json()["id"]
        client.post(f"/api/runs/{run_id}/cancel")  # before the worker has even imported numpy
        run = wait(client, run_id, lambda r: r["status"] != "running", 120)
        assert run["status"] == "cancelled" and run["can_resume"], (name, run)
        stopped = run["progress"]["done"]
        assert stopped == 1 < run["progress"]["total"]
        client.post(f"/api/runs/{run_id}/resume")
        run = finished(client, run_id)
        records = client.get(f"/api/runs/{run_id}/metrics").json()
        after = [r["done"] for r in records if "elapsed_s" in r and r["done"] > stopped]
        assert min(after) == stopped + 1  # counted on from where it stopped, not from 0
        if name == "thermo":
            assert run["summary"]["proposals"] == 30_000  # the budget, not twice it
            temps = {r["done"]: r["temperature"] for r in records if "temperature" in r}
            assert min(temps) <= stopped < max(temps) == 30  # before and after the resume
            for done, t in temps.items():  # the uninterrupted geometric schedule throughout
                assert t == pytest.approx(0.005 ** ((done - 1) / 29), rel=1e-9)
        else:
            assert run["summary"]["test_accuracy"] > 0.9
