"""The studio's web application (FastAPI): the HTTP API of ``docs/studio.md`` and the page.

:func:`create_app` builds it over a runs folder; ``neurofabric studio`` serves it with uvicorn
on 127.0.0.1. Every request that names a run or an upload goes through an id check (the ids
the studio makes, nothing else), so no request reaches a file outside the runs folder, and a
run's files are only reached through its own id. Errors are JSON ``{"error", "param"}``: the
engine's :class:`NeurofabricError` message, with the parameter it names.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

from neurofabric import __version__
from neurofabric.core.config import get_config
from neurofabric.core.errors import BackendUnavailableError, DataError, NeurofabricError

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from fastapi.staticfiles import StaticFiles
except ImportError as exc:  # pragma: no cover - the studio extra is missing
    raise BackendUnavailableError(
        "the studio needs FastAPI and uvicorn: pip install 'neurofabric[studio]'"
    ) from exc

from neurofabric.studio import serving
from neurofabric.studio.runs import RunStore
from neurofabric.studio.templates import TEMPLATES, get_template, resolve_data, validate
from neurofabric.studio.uploads import DEFAULT_MAX_UPLOAD, UploadStore

log = logging.getLogger(__name__)

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"
_IMAGE = re.compile(r"^[a-z_]{1,40}$")


def _error(exc: Exception, status: int = 422) -> JSONResponse:
    param = getattr(exc, "param", None)
    return JSONResponse({"error": str(exc), "param": param}, status_code=status)


def _status_of(exc: NeurofabricError) -> int:
    msg = str(exc)
    if isinstance(exc, DataError) and msg.startswith(("no run", "no upload")):
        return 404
    return 422


def _data_text(rec: dict, uploads: UploadStore) -> str:
    """The text a seq run learned (for calibrating its 4-bit version)."""
    from neurofabric.studio.templates import dataset_path

    data = rec.get("data") or {}
    if "upload" in data:
        return uploads.file(data["upload"]).read_text(encoding="utf-8")
    for d in TEMPLATES["seq-char"].datasets:
        if d.id == data.get("dataset"):
            return dataset_path(d).read_text(encoding="utf-8")
    raise DataError("the run's data is gone; it cannot be quantized")


def create_app(runs_dir: str | Path, *, max_upload: int = DEFAULT_MAX_UPLOAD) -> FastAPI:
    """The studio over ``runs_dir`` (created if missing)."""
    store = RunStore(runs_dir)
    uploads = UploadStore(runs_dir, max_upload)
    cache = serving.ModelCache()
    app = FastAPI(title="neurofabric studio", version=__version__)
    app.state.store, app.state.uploads = store, uploads

    @app.exception_handler(NeurofabricError)
    async def _neurofabric_error(request: Request, exc: NeurofabricError) -> JSONResponse:
        return _error(exc, _status_of(exc))

    def view(rec: dict) -> dict[str, Any]:
        t = TEMPLATES[rec["template"]]
        folder = store.runs / rec["id"]
        images = sorted(p.stem for p in (folder / "images").glob("*.png") if p.stem[0] != ".")
        progress = rec.get("progress")
        if rec["status"] == "running" and (folder / "progress.json").exists():
            try:
                progress = json.loads((folder / "progress.json").read_text(encoding="utf-8"))
            except ValueError:  # pragma: no cover - replaced atomically, so never half-written
                pass
        ckpt = {
            "seq": folder / "train" / "checkpoint",
            "snn": folder / "checkpoint",
            "field": folder / "model",
            "guard": folder / "resume.json",  # the model and the epochs it has learned
            "thermo": folder / "resume.json",  # the model and the proposals it has run
        }.get(t.engine)
        has_ckpt = ckpt is not None and ckpt.exists()
        return {
            **{k: rec.get(k) for k in ("id", "template", "title", "status", "params", "data")},
            **{k: rec.get(k) for k in ("created", "updated", "error", "summary")},
            "engine": t.engine,
            "progress": progress,
            "checkpoint": has_ckpt or (folder / "model").exists(),
            "images": images,
            "exports": [e for e in t.exports if e != "int4" or (folder / "model").exists()],
            "try": t.try_kind,
            "can_resume": t.resumable and has_ckpt and rec["status"] in ("cancelled", "failed"),
        }

    # ------------------------------------------------------------------ page and catalogue
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        data_dir = get_config().data_dir
        return {
            "version": __version__,
            "runs_dir": str(store.root),
            "data_dir": None if data_dir is None else str(data_dir),
            "max_upload_bytes": uploads.max_bytes,
        }

    @app.get("/api/templates")
    def templates() -> list[dict[str, Any]]:
        return [t.as_dict() for t in TEMPLATES.values()]

    @app.post("/api/templates/{template_id}/validate")
    async def validate_params(template_id: str, request: Request) -> dict[str, Any]:
        body = await _json(request)
        return {"params": validate(template_id, body.get("params"))}

    # ------------------------------------------------------------------ uploads
    @app.get("/api/uploads")
    def list_uploads() -> list[dict[str, Any]]:
        return uploads.list()

    @app.post("/api/uploads", status_code=201)
    async def upload(request: Request, filename: str = "upload") -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > uploads.max_bytes:
            return _error(
                DataError(
                    f"{filename!r} is {int(declared):,} bytes, over the studio's cap of "
                    f"{uploads.max_bytes:,}; start the studio with a larger --max-upload-mb"
                ),
                413,
            )
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > uploads.max_bytes:
                return _error(
                    DataError(
                        f"{filename!r} is over the studio's cap of {uploads.max_bytes:,} bytes; "
                        "start the studio with a larger --max-upload-mb"
                    ),
                    413,
                )
        try:
            return uploads.add(filename, bytes(body))
        except DataError as exc:  # a refused file: 400, nothing stored
            return _error(exc, 413 if "over the studio's cap" in str(exc) else 400)

    # ------------------------------------------------------------------ runs
    @app.post("/api/runs", status_code=201)
    async def create_run(request: Request) -> dict[str, Any]:
        body = await _json(request)
        t = get_template(body.get("template"))
        params = validate(t.id, body.get("params"))
        data = resolve_data(t, body.get("data"), uploads)
        return view(store.create(t.id, params, data, t.title))

    @app.get("/api/runs")
    def list_runs() -> list[dict[str, Any]]:
        store.reap()
        return [view(r) for r in store.list()]

    @app.get("/api/runs/{run_id}")
    def get_run(run_id: str) -> dict[str, Any]:
        return view(store.read(run_id))

    @app.get("/api/runs/{run_id}/metrics")
    def metrics(run_id: str) -> list[dict[str, Any]]:
        return store.metrics(run_id)

    @app.post("/api/runs/{run_id}/cancel")
    def cancel(run_id: str) -> dict[str, Any]:
        return view(store.cancel(run_id))

    @app.post("/api/runs/{run_id}/resume")
    def resume(run_id: str) -> dict[str, Any]:
        rec = store.read(run_id)
        v = view(rec)
        if not v["can_resume"]:
            why = (
                "its template restarts rather than resumes"
                if not TEMPLATES[rec["template"]].resumable
                else f"it is {rec['status']}" + ("" if v["checkpoint"] else " with no checkpoint")
            )
            raise DataError(f"run {run_id} cannot be resumed: {why}")
        return view(store.resume(run_id))

    @app.get("/api/runs/{run_id}/events")
    async def events(run_id: str, request: Request) -> StreamingResponse:
        store.read(run_id)

        async def stream():
            offset, last_status = 0, None
            while True:
                rec = view(store.read(run_id))
                records, offset = store.metrics_since(run_id, offset)
                for m in records:
                    yield f"event: progress\ndata: {json.dumps(m)}\n\n"
                if (rec["status"], rec["updated"]) != last_status:
                    last_status = (rec["status"], rec["updated"])
                    yield f"event: status\ndata: {json.dumps(rec)}\n\n"
                if rec["status"] != "running" or await request.is_disconnected():
                    return
                await asyncio.sleep(0.5)

        return StreamingResponse(stream(), media_type="text/event-stream", headers=_NO_CACHE)

    @app.get("/api/runs/{run_id}/images/{name}.png")
    def image(run_id: str, name: str) -> Any:
        folder = store.folder(run_id)
        path = folder / "images" / f"{name}.png"
        if not _IMAGE.match(name) or not path.is_file():
            return _error(DataError(f"run {run_id} has no image {name!r}"), 404)
        return Response(path.read_bytes(), media_type="image/png", headers=_NO_CACHE)

    @app.get("/api/runs/{run_id}/export")
    async def export(run_id: str, kind: str = "model") -> Response:
        rec = store.read(run_id)
        t = TEMPLATES[rec["template"]]
        if kind not in t.exports:
            raise DataError(f"`kind` must be one of {t.exports} for {t.id}, got {kind!r}")
        folder = store.folder(run_id)
        if kind == "int4":
            text = _data_text(rec, uploads)
            await asyncio.to_thread(serving.quantize_run, folder, text)
        payload, name = await asyncio.to_thread(serving.export_zip, folder, run_id, kind)
        return Response(
            payload,
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    # ------------------------------------------------------------------ try it
    def finished(run_id: str, engine: str) -> tuple[dict, Path]:
        rec = store.read(run_id)
        if TEMPLATES[rec["template"]].engine != engine:
            raise DataError(f"run {run_id} is a {rec['template']} run, not a {engine} model")
        return rec, store.folder(run_id)

    @app.get("/api/runs/{run_id}/generate")
    def generate(
        run_id: str,
        prompt: str = "",
        max_tokens: int = 100,
        temperature: float = 0.8,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
    ) -> StreamingResponse:
        _, folder = finished(run_id, "seq")
        serving.check_generate(max_tokens, temperature, top_k, top_p)
        model, tok = cache.get(folder, "seq")
        kw = {
            "max_new_tokens": max_tokens,
            "temperature": temperature,
            "top_k": top_k or None,
            "top_p": top_p if top_p < 1.0 else None,
            "seed": seed,
        }

        def stream():
            try:
                for item in serving.stream_tokens(model, tok, prompt, **kw):
                    kind = "done" if item.get("done") else "token"
                    yield f"event: {kind}\ndata: {json.dumps(item)}\n\n"
            except NeurofabricError as exc:
                yield f"event: error\ndata: {json.dumps({'error': str(exc)})}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream", headers=_NO_CACHE)

    @app.post("/api/runs/{run_id}/classify")
    async def classify(run_id: str, request: Request) -> dict[str, Any]:
        _, folder = finished(run_id, "guard")
        body = await _json(request)
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise DataError("`text` must be a non-empty string")
        clf = cache.get(folder, "guard")
        proba = clf.predict_proba([text])[0]
        classes = [str(c) for c in clf.classes_]
        return {
            "label": classes[int(proba.argmax())],
            "scores": {c: float(p) for c, p in zip(classes, proba, strict=True)},
        }

    @app.post("/api/runs/{run_id}/query")
    async def query(run_id: str, request: Request) -> dict[str, Any]:
        rec, folder = finished(run_id, "field")
        body = await _json(request)
        return {"values": await asyncio.to_thread(serving.field_query, folder, body.get("points"))}

    @app.get("/api/runs/{run_id}/field.png")
    async def field_png(run_id: str) -> Response:
        rec, folder = finished(run_id, "field")
        shape = (rec.get("summary") or {}).get("shape")
        png = await asyncio.to_thread(serving.field_image, folder, shape)
        return Response(png, media_type="image/png", headers=_NO_CACHE)

    @app.post("/api/compare")
    async def compare(request: Request) -> dict[str, Any]:
        body = await _json(request)
        ids = body.get("runs")
        if not isinstance(ids, list) or not ids:
            raise DataError("`runs` must be a non-empty list of finished seq-char run ids")
        prompt = body.get("prompt") or ""
        max_tokens = body.get("max_tokens", 100)
        serving.check_generate(max_tokens, 1.0, 0, 1.0)
        items = [(i, finished(i, "seq")[1]) for i in ids]
        rows = await asyncio.to_thread(serving.compare, items, prompt, max_tokens, cache)
        return {"rows": rows}

    return app


_NO_CACHE = {"Cache-Control": "no-store"}


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise DataError(f"the request body must be JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise DataError(f"the request body must be a JSON object, got {type(body).__name__}")
    return body
