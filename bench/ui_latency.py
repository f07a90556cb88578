"""Click-to-settled-render latency of the app, measured in headless Chromium, beside a bare one-widget Streamlit page
timed the same way in the same run (the machine is shared and noisy: the ratio is the number to read).

    python bench/ui_latency.py [--repeats 5]

It prepares a workspace with two finished Shapes sketch runs (zero-shot and UEO, 1 epoch), starts the app and the
baseline page itself on free ports, and drives Chromium. "Settled" = Streamlit is idle and the page has not changed
for 500 ms; the latency is from the input event (pointer or key, captured in the page) to the last change.
The first Explore of the run (features, PCA, UMAP) is timed separately. Not a test: it never fails CI.
Last line: ``median_ms=<n> worst_ms=<n> baseline_median_ms=<n>``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import appserver  # noqa: E402
from appserver import ARGS, CHROMIUM  # noqa: E402
QUIET_MS = 500

WATCH = """() => {
  window.__last = performance.now(); window.__t0 = null;
  new MutationObserver(() => { window.__last = performance.now(); })
    .observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
  for (const ev of ['pointerdown', 'keydown'])
    document.addEventListener(ev, () => { window.__t0 = performance.now(); }, true);
}"""
SETTLED = f"""() => !document.querySelector('[data-testid="stStatusWidget"]')
  && performance.now() - window.__last > {QUIET_MS}"""


def serve(script: Path, env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    try:
        return appserver.serve(script, env, log)
    except RuntimeError as err:
        raise SystemExit(str(err))


def prepare(ws_root: Path) -> tuple[str, list[str]]:
    """A workspace token and two finished run ids in it (as the app names them)."""
    from ueo_core.config import RunConfig
    from ueo_core.train import Trainer
    token = uuid.uuid4().hex
    runs = ws_root / token / "runs"
    ids = []
    for method, epochs in (("zero_shot", 0), ("ueo", 1)):
        rid = f"{time.strftime('%Y%m%d-%H%M%S')}-{method}-{uuid.uuid4().hex[:6]}"
        Trainer(RunConfig(data="shapes:sketch", method=method, epochs=epochs, lr_prompt=0.05, lr_visual=0.05,
                          run_dir=str(runs / rid))).run()
        ids.append(rid)
    (ws_root / token / "uploads").mkdir(parents=True, exist_ok=True)
    return token, ids


def settle(page, timeout_ms: int = 120_000) -> None:
    page.wait_for_timeout(50)
    page.wait_for_function(SETTLED, timeout=timeout_ms, polling=50)


def timed(page, act) -> float:
    """ms from the input event that ``act`` causes to the page's last change before it settled."""
    settle(page)
    page.evaluate("() => { window.__t0 = null; }")
    act()
    page.wait_for_function("() => window.__t0 !== null", timeout=10_000)
    page.wait_for_timeout(QUIET_MS + 50)
    settle(page)
    return page.evaluate("() => window.__last - window.__t0")


def nav(page, name: str):
    return lambda: page.locator('[data-testid="stSidebarNavLink"]', has_text=name).first.click()


def slider_key(page, label: str, key: str):
    def act():
        page.get_by_role("slider", name=label).first.press(key)
    return act


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="ueo-latency-"))
    env = {**os.environ, "UEO_WORKSPACES": str(tmp / "ws"), "UEO_CACHE": str(tmp / "cache"), "HF_HUB_OFFLINE": "1"}
    os.environ.update(UEO_CACHE=env["UEO_CACHE"])
    print("preparing two finished runs (zero-shot, UEO 1 epoch) on Shapes sketch…", flush=True)
    token, ids = prepare(tmp / "ws")
    bare = tmp / "bare.py"
    bare.write_text("import streamlit as st\nv = st.slider('value', 0, 100, 50)\nst.write(f'value {v}')\n")
    app, app_url = serve(ROOT / "app.py", env, tmp / "app.log")
    base, base_url = serve(bare, env, tmp / "bare.log")
    results: dict[str, list[float]] = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.set_default_timeout(120_000)

            # the baseline: a bare page's slider, by keyboard
            page.goto(base_url)
            page.get_by_role("slider").first.wait_for()
            page.evaluate(WATCH)
            results["baseline: bare page slider"] = [
                timed(page, slider_key(page, "value", "ArrowRight" if i % 2 else "ArrowLeft"))
                for i in range(2 * args.repeats)]

            page.goto(f"{app_url}/?ws={token}")  # (a deep link as the server's very first request meets
            page.get_by_role("heading", name="UEO Studio").wait_for()  # Streamlit's "Page not found" dialog)
            page.goto(f"{app_url}/explore?ws={token}&run={ids[1]}")
            page.get_by_role("heading", name="Explore").wait_for()
            page.evaluate(WATCH)
            t0 = time.time()
            page.locator(".js-plotly-plot", has_text="PCA · after").wait_for(timeout=600_000)
            first_pca = time.time() - t0
            page.locator(".js-plotly-plot", has_text="UMAP · after").wait_for(timeout=600_000)
            first_umap = time.time() - t0
            settle(page)

            pages = ["Data", "Adapt", "Explore", "Inspect", "Compare", "Learn"]
            for name in pages:  # warm every page once (first visits load models, thumbnails: timed below apart)
                nav(page, name)()
                page.get_by_role("heading", name=name).first.wait_for()
                settle(page)
            for _ in range(args.repeats):
                for name in pages:
                    results.setdefault(f"page switch → {name}", []).append(timed(page, nav(page, name)))

            nav(page, "Explore")()
            settle(page)
            modes = ["predicted class", "confidence", "true class", "predicted known/unknown"]
            results["Explore colour mode"] = [
                timed(page, lambda m=modes[i % 4]: page.get_by_text(m, exact=True).first.click())
                for i in range(args.repeats + 1)]

            nav(page, "Inspect")()
            settle(page)
            results["Inspect threshold"] = [
                timed(page, slider_key(page, "Known/unknown threshold on confidence", "ArrowRight" if i % 2 else "ArrowLeft"))
                for i in range(args.repeats + 1)]

            nav(page, "Learn")()
            settle(page)
            results["Learn slider"] = [
                timed(page, slider_key(page, "λ (weight of the marginal-entropy term)",
                                       "ArrowRight" if i % 2 else "ArrowLeft")) for i in range(args.repeats + 1)]

            nav(page, "Compare")()
            settle(page)
            picks = []
            for i in range(args.repeats + 1):
                if i % 2 == 0:  # remove the first chosen run (its tag's delete button)
                    act = lambda: page.locator('[data-testid="stMultiSelect"] button[aria-label^="Remove"]') \
                        .first.click()  # noqa: E731
                else:           # and choose it again from the list
                    def act():
                        page.get_by_role("combobox", name="Runs").first.click()
                        page.get_by_role("option").first.click()
                picks.append(timed(page, act))
            results["Compare selection"] = picks
            browser.close()
    finally:
        app.terminate()
        base.terminate()

    print(f"\nfirst Explore of the {ids[1]} run (540 images): PCA maps after {first_pca:.1f} s, "
          f"UMAP maps after {first_umap:.1f} s")
    print(f"\n| interaction | n | median ms | worst ms |\n|---|---|---|---|")
    app_all = []
    for name, xs in results.items():
        print(f"| {name} | {len(xs)} | {statistics.median(xs):.0f} | {max(xs):.0f} |")
        if not name.startswith("baseline"):
            app_all += xs
    base_med = statistics.median(results["baseline: bare page slider"])
    med, worst = statistics.median(app_all), max(app_all)
    print(f"\napp: median {med:.0f} ms = {med / base_med:.1f}x the bare page; worst {worst:.0f} ms "
          f"(goal: median <= 300 ms and <= 2.5x the bare page, worst <= 800 ms)")
    print(f"median_ms={med:.0f} worst_ms={worst:.0f} baseline_median_ms={base_med:.0f}")


if __name__ == "__main__":
    main()
