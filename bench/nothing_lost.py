"""Nothing lost, shown in a browser: two students on one server (1 run slot), one training, one queued; then
kill -9 of the web server and a restart; then kill -9 of a run's worker and Resume. Prints a transcript and saves
screenshots (queued run, lost run) to artifacts/screenshots/ (or UEO_SCREENSHOTS).

    python bench/nothing_lost.py
"""
from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from classroom import ARGS, CHROMIUM, free_port, start_app  # noqa: E402

SHOTS = Path(os.environ.get("UEO_SCREENSHOTS", ROOT / "artifacts" / "screenshots"))


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def settle(page, ms=800):
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
    page.wait_for_timeout(ms)


def adapt(page, url, epochs):
    page.goto(url)
    page.get_by_role("heading", name="UEO Studio").wait_for()
    page.locator('[data-testid="stSidebarNavLink"]', has_text="Adapt").first.click()
    page.get_by_role("heading", name="Adapt").first.wait_for()
    settle(page)
    box = page.get_by_label("Epochs")
    box.fill(str(epochs))
    box.press("Tab")
    settle(page, 300)
    page.get_by_role("button", name="▶ Start").click()
    settle(page)


def run_dir(tmp: Path, page) -> Path:
    from urllib.parse import parse_qs, urlparse
    q = parse_qs(urlparse(page.url).query)
    return tmp / "ws" / q["ws"][0] / "runs" / q["run"][0]


def main() -> None:
    from playwright.sync_api import sync_playwright
    from ueo_core import cluster, jobs
    from ueo_core.runs import RunFolder
    SHOTS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ueo-lost-"))
    temp_dir = tempfile.mkdtemp(prefix="ueo-ray-l", dir="/tmp")
    address = cluster.start_local_head(state_dir=Path(temp_dir) / "state", slots=1, temp_dir=temp_dir)
    os.environ["UEO_RAY_ADDRESS"] = address  # this script asks the same Ray as the app about the runs
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server, _ = start_app(tmp, address, port)
    say(f"web server pid {server.pid} on {url}; local Ray at {address}, 1 run slot")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            a = browser.new_context(viewport={"width": 1300, "height": 1200}).new_page()
            b = browser.new_context(viewport={"width": 1300, "height": 1200}).new_page()
            for pg in (a, b):
                pg.set_default_timeout(120_000)
            adapt(a, url, epochs=25)
            adapt(b, url, epochs=3)
            ra, rb = run_dir(tmp, a), run_dir(tmp, b)
            b.get_by_text("in line").first.wait_for()
            settle(b)
            b.screenshot(path=str(SHOTS / "issue19_queued_run.png"), full_page=True)
            say(f"student A: {jobs.job_state(ra, tmp / 'ws').words}; student B: {jobs.job_state(rb, tmp / 'ws').words}")
            while len(RunFolder(ra).read_jsonl("epochs.jsonl")) < 2:  # zero-shot and epoch 1 evaluated
                time.sleep(0.5)
            say(f"kill -9 {server.pid} (the web server), A at epoch "
                f"{json.loads((ra / 'epochs.jsonl').read_text().splitlines()[-1])['epoch']}")
            os.kill(server.pid, signal.SIGKILL)
            server.wait()
            time.sleep(2)
            say(f"while the server is down: A {jobs.job_state(ra, tmp / 'ws').words}, "
                f"B {jobs.job_state(rb, tmp / 'ws').words}")
            server, _ = start_app(tmp, address, port)
            say(f"web server restarted: pid {server.pid}")
            for name, pg in (("A", a), ("B", b)):
                pg.reload()
                pg.get_by_role("heading", name="Adapt").first.wait_for()
                settle(pg)
                side = " ".join(pg.locator('[data-testid="stSidebar"]').inner_text().split())
                say(f"student {name} refreshed: sidebar says: …{side[side.find('Run '):][:90]}")
            a.get_by_text("Done in").first.wait_for(timeout=900_000)
            say(f"A finished: {json.loads((ra / 'ended.json').read_text())['status']}, "
                f"{len((ra / 'epochs.jsonl').read_text().splitlines()) - 1} epochs evaluated")
            b.get_by_text("in line").first.wait_for(state="detached", timeout=300_000)
            wpid = None
            for _ in range(600):
                w = jobs.read(rb, jobs.WORKER)
                if w and (rb / "checkpoint.safetensors").exists():
                    wpid = w["pid"]
                    break
                time.sleep(0.2)
            say(f"B is training (worker pid {wpid}, first checkpoint written): kill -9 {wpid}")
            os.kill(wpid, signal.SIGKILL)
            b.get_by_text("The process running it stopped").first.wait_for(timeout=120_000)
            settle(b)
            b.screenshot(path=str(SHOTS / "issue19_lost_run_resume.png"), full_page=True)
            say(f"B's page says: {b.get_by_text('The process running it stopped').first.inner_text()}")
            b.get_by_role("button", name="↻ Resume from the last checkpoint").click()
            b.get_by_text("Done in").first.wait_for(timeout=600_000)
            say(f"B resumed and finished: {json.loads((rb / 'ended.json').read_text())['status']}; epochs "
                f"evaluated: {[json.loads(x)['epoch'] for x in (rb / 'epochs.jsonl').read_text().splitlines()]}")
            browser.close()
    finally:
        server.terminate()
        cluster.stop_local_head(temp_dir)


if __name__ == "__main__":
    main()
