"""The studio's web page end to end, in headless Chromium driven by selenium.

One studio server (``python -m neurofabric studio``) runs for the module on a free port with
its runs in a temporary folder. The page is used as a person would: upload a text file through
the drop zone's file input, train a tiny character model, cancel, resume, cancel, export, then
generate text from it; a bad parameter must show the API's message next to its field.

Needs Debian's chromium and chromedriver (/usr/bin); skipped without them. Selenium Manager is
never used (both paths are given), so nothing is downloaded. With NEUROFABRIC_SCREENSHOTS=1 the
screenshots of each page land in docs/figures/studio_<page>.png (else in the test's tmp_path).
"""

import json
import os
import random
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 120  # the longest any single wait may take

if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
    pytest.skip(
        f"needs Debian's chromium ({CHROMIUM}) and chromedriver ({CHROMEDRIVER}): "
        "apt-get install chromium chromium-driver",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

SMALL = {
    "arch": "rwkv",
    "layers": 1,
    "dim": 16,
    "steps": 3000,
    "batch_size": 8,
    "seq_len": 32,
    "eval_every": 20,
    "max_time": 120,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _studio_command(port: int, runs: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "neurofabric",
        "studio",
        "--port",
        str(port),
        "--runs",
        str(runs),
        "--no-browser",
    ]


def _get(url: str, timeout: float = 60) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as res:
        return res.status, res.read()


def _post_json(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """The base URL of a studio server started for this module, stopped after it."""
    folder = tmp_path_factory.mktemp("studio")
    port = _free_port()
    log = (folder / "studio.log").open("wb")
    proc = subprocess.Popen(
        _studio_command(port, folder / "runs"),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "NEUROFABRIC_PROGRESS": "0"},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"the studio exited with {proc.returncode}:\n"
                    + (folder / "studio.log").read_text(errors="replace")[-3000:]
                )
            try:
                if _get(f"{base}/api/info", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    "the studio did not answer /api/info within 60 s:\n"
                    + (folder / "studio.log").read_text(errors="replace")[-3000:]
                )
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


@pytest.fixture
def driver(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chrome-profile'}",
    ):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(tmp_path / "downloads")}
    )
    drv = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()


def _shot(drv, name: str, tmp_path: Path) -> None:
    if os.environ.get("NEUROFABRIC_SCREENSHOTS") == "1":
        path = ROOT / "docs" / "figures" / f"studio_{name}.png"
    else:
        path = tmp_path / f"studio_{name}.png"
    drv.save_screenshot(str(path))


def _until(drv, what: str, test, timeout: float = WAIT_S):
    """Wait (bounded) until ``test(drv)`` is truthy; the failure names ``what``."""
    return WebDriverWait(drv, timeout, poll_frequency=0.2).until(
        lambda d: test(d), message=f"waited {timeout} s for {what}"
    )


def _by_id(drv, name: str):
    return drv.find_element(By.ID, name)


def _visible(drv, name: str):
    found = drv.find_elements(By.ID, name)
    return found[0] if found and found[0].is_displayed() else None


def _status(drv) -> str:
    return _by_id(drv, "run-status").text.strip()


def _points(drv) -> int:
    return int(_by_id(drv, "chart-loss").get_attribute("data-points") or 0)


def _text(n_bytes: int = 3000) -> str:
    rng = random.Random(0)
    words = "the of and a to in is you that it he was for on are as with his they at be".split()
    out = []
    while sum(len(w) + 1 for w in out) < n_bytes:
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(4, 12)))
        out.append(sentence.capitalize() + ".")
    return " ".join(out) + "\n"


def _open_template(drv, base: str, template: str) -> None:
    drv.get(base + "/")
    card = _until(drv, f"the {template} card", lambda d: _visible(d, f"template-{template}"))
    card.click()
    _until(drv, "the parameter form", lambda d: _visible(d, "template-form"))


def _set_param(drv, name: str, value) -> None:
    field = _by_id(drv, f"param-{name}")
    if field.tag_name == "select":
        Select(field).select_by_value(str(value))
    elif field.get_attribute("type") == "checkbox":
        if field.is_selected() != bool(value):
            field.click()
    else:
        field.clear()
        field.send_keys(str(value))


def test_train_cancel_resume_export_and_generate(studio, driver, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(_text(), encoding="utf-8")

    _open_template(driver, studio, "seq-char")
    assert _by_id(driver, "version").text.strip(), "the header shows no version"

    # upload through the drop zone's file input; the new upload is listed and chosen
    _by_id(driver, "file-input").send_keys(str(corpus))
    radio = _until(
        driver,
        "the uploaded corpus.txt in the uploads list",
        lambda d: d.find_elements(By.CSS_SELECTOR, '#uploads-list input[data-name="corpus.txt"]'),
    )[0]
    if not radio.is_selected():
        radio.click()
    assert not _visible(driver, "upload-error")

    for name, value in SMALL.items():
        _set_param(driver, name, value)
    _shot(driver, "new", tmp_path)

    _by_id(driver, "start-run").click()
    run_id = _until(driver, "the run view", lambda d: _visible(d, "run-view")).get_attribute(
        "data-run"
    )
    assert _visible(driver, "page-runs"), "starting a run did not switch to the runs page"
    _until(driver, "at least 2 points on the loss chart", lambda d: _points(d) >= 2)
    assert _status(driver) == "running"
    _shot(driver, "runs", tmp_path)

    _by_id(driver, "btn-cancel").click()
    _until(driver, 'status "cancelled"', lambda d: _status(d) == "cancelled")
    before = _points(driver)
    _until(driver, "the resume button", lambda d: _visible(d, "btn-resume")).click()
    _until(driver, f"more than {before} loss points after resuming", lambda d: _points(d) > before)
    _until(driver, "the cancel button", lambda d: _visible(d, "btn-cancel")).click()
    _until(driver, 'status "cancelled" again', lambda d: _status(d) == "cancelled")

    link = _until(driver, "the export link", lambda d: _visible(d, "export-model"))
    href = link.get_attribute("href")
    link.click()
    status, body = _get(href)
    assert status == 200 and body[:2] == b"PK", f"{href} answered {status}, {body[:40]!r}"
    _until(
        driver,
        "the downloaded zip",
        lambda d: list((tmp_path / "downloads").glob("*.zip")),
        timeout=60,
    )
    int4 = _visible(driver, "export-int4")
    assert int4, "a seq-char run offers no 4-bit export"
    status, body = _get(int4.get_attribute("href"), timeout=WAIT_S)
    assert status == 200 and body[:2] == b"PK", f"the 4-bit export answered {status}"

    _until(driver, "the try-it button", lambda d: _visible(d, "btn-try")).click()
    _until(driver, "the generate panel", lambda d: _visible(d, "try-generate"))
    prompt = _by_id(driver, "prompt")
    prompt.clear()
    prompt.send_keys("The ")
    tokens = _by_id(driver, "max-tokens")
    tokens.clear()
    tokens.send_keys("40")
    _by_id(driver, "btn-generate").click()
    rate = _until(
        driver,
        "the tokens/s readout",
        lambda d: re.search(r"\d", _by_id(d, "gen-rate").text) and _by_id(d, "gen-rate"),
    )
    assert float(rate.get_attribute("data-rate")) > 0
    assert "tokens/s" in rate.text
    assert int(_by_id(driver, "gen-output").get_attribute("data-tokens")) > 0
    assert not _visible(driver, "gen-error")
    _shot(driver, "try", tmp_path)

    _by_id(driver, "tab-compare").click()
    box = _until(
        driver, f"run {run_id} on the compare page", lambda d: _visible(d, f"compare-{run_id}")
    )
    box.click()
    tokens = _by_id(driver, "compare-max-tokens")
    tokens.clear()
    tokens.send_keys("20")
    _by_id(driver, "btn-compare").click()
    _until(
        driver,
        "the comparison table or its error",
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, "#compare-table tbody tr")
            or _visible(d, "compare-error")
        ),
    )
    assert not _visible(driver, "compare-error"), _by_id(driver, "compare-error").text
    rows = driver.find_elements(By.CSS_SELECTOR, "#compare-table tbody tr")
    heads = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#compare-table thead th")]
    variants = sorted(r.find_elements(By.TAG_NAME, "td")[heads.index("variant")].text for r in rows)
    assert variants == ["float32", "int4"], [r.text for r in rows]
    assert driver.find_elements(By.CSS_SELECTOR, "#compare-table td.best")
    _shot(driver, "compare", tmp_path)


def test_bad_parameter_shows_the_api_message_and_starts_nothing(studio, driver, tmp_path):
    runs_before = [r["id"] for r in json.loads(_get(f"{studio}/api/runs")[1])]
    template = next(
        t for t in json.loads(_get(f"{studio}/api/templates")[1]) if t["id"] == "seq-char"
    )
    params = {p["name"]: p["default"] for p in template["params"]} | {"dim": -1}
    code, answer = _post_json(f"{studio}/api/templates/seq-char/validate", {"params": params})
    assert code == 422 and answer["param"] == "dim", answer

    _open_template(driver, studio, "seq-char")
    _set_param(driver, "dim", -1)
    _by_id(driver, "start-run").click()
    shown = _until(driver, "the error next to dim", lambda d: _visible(d, "error-dim"))
    assert shown.text == answer["error"]
    assert "invalid" in _by_id(driver, "param-dim").get_attribute("class")
    assert not _visible(driver, "form-error")
    time.sleep(1)  # a run started by mistake would be listed by now
    assert not _visible(driver, "run-view")
    assert [r["id"] for r in json.loads(_get(f"{studio}/api/runs")[1])] == runs_before
    _shot(driver, "new_error", tmp_path)
