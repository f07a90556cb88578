"""Click-to-settled-render latency of the app, measured in headless Chromium, beside a bare one-widget Streamlit page
timed the same way in the same run (the machine is shared and noisy: the ratio is the number to read).

    python bench/ui_latency.py [--repeats 5]
    python bench/ui_latency.py --quick       # every interaction once: a smoke run (tests/test_benches.py)

It prepares a workspace with two finished Shapes sketch runs (zero-shot and UEO, 1 epoch), starts the app and the
baseline page itself on free ports (and a local Ray for Explore's embeddings job, unless UEO_RAY_ADDRESS names one),
and drives Chromium. "Settled" = Streamlit is idle and the page has not changed for 500 ms; the latency is from the
input event (pointer or key, captured in the page) to the last change.
The first Explore of the run (features, PCA, UMAP) is timed separately. Not a test: it never fails CI; but its
quick mode does, and a widget it looks for (by role and label) that is gone stops it at once, naming the widget.
Last line: ``median_ms=<n> worst_ms=<n> baseline_median_ms=<n>``.
"""
from __future__ import annotations

import argparse
import os
import re
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
from quick import QUICK_NOTE, shapes_spec  # noqa: E402
QUIET_MS = 500
FIND_MS = 20_000  # a widget of a settled page that has not shown by then is gone (renamed), not slow

WATCH = """() => {
  window.__last = performance.now(); window.__t0 = null;
  new MutationObserver(() => { window.__last = performance.now(); })
    .observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
  for (const ev of ['pointerdown', 'keydown'])
    document.addEventListener(ev, () => { window.__t0 = performance.now(); }, true);
}"""
SETTLED = f"""() => !document.querySelector('[data-testid="stStatusWidget"]')
  && performance.now() - window.__last > {QUIET_MS}"""
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'  # what the app shows when it fails


def serve(script: Path, env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    try:
        return appserver.serve(script, env, log)
    except RuntimeError as err:
        raise SystemExit(str(err))


def prepare(ws_root: Path, small: bool = False) -> tuple[str, list[str], int]:
    """A workspace token, two finished run ids in it (as the app names them) and their number of images, on
    Shapes sketch: all of it, or (``small``, quick mode) a few images per shape, as Explore's first embeddings are
    most of a quick run's time."""
    from ueo_core.config import RunConfig
    from ueo_core.train import Trainer
    data = shapes_spec("sketch", small)
    token = uuid.uuid4().hex
    runs = ws_root / token / "runs"
    ids = []
    for method, epochs in (("zero_shot", 0), ("ueo", 1)):
        rid = f"{time.strftime('%Y%m%d-%H%M%S')}-{method}-{uuid.uuid4().hex[:6]}"
        r = Trainer(RunConfig(data=data, preset="shapes", method=method, epochs=epochs, lr_prompt=0.05,
                              lr_visual=0.05, run_dir=str(runs / rid))).run()
        ids.append(rid)
    (ws_root / token / "uploads").mkdir(parents=True, exist_ok=True)
    return token, ids, len(r.probs)


def names_of(page, role: str) -> list[str]:
    """The accessible names of the page's elements of ``role`` (from its ARIA snapshot): what a missing widget's
    message lists, so that a renamed one is seen at once."""
    try:
        snap = page.locator("body").aria_snapshot(timeout=5_000)
    except Exception:  # noqa: BLE001 (only for the message)
        return []
    return list(dict.fromkeys(re.findall(rf'^\s*- {role} "((?:[^"\\]|\\.)*)"', snap, re.M)))


def need(page, role: str, name: str | re.Pattern, where: str, within=None, exact: bool = False,
         timeout_ms: int = FIND_MS):
    """The element of ``role`` named ``name`` (in ``within``, default the page) once it shows; when it does not
    within ``timeout_ms``, the bench stops at once with a message naming it and listing what the page has of that
    role, instead of a Playwright timeout minutes later."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    if isinstance(name, re.Pattern):  # Playwright passes it on as /…/: a bare "/" in it would end it
        name = re.compile(re.sub(r"(?<!\\)/", r"\\/", name.pattern), name.flags)
    loc = (within or page).get_by_role(role, name=name, exact=exact).first
    try:
        loc.wait_for(timeout=timeout_ms)
    except PlaywrightTimeout:
        shown = name.pattern if isinstance(name, re.Pattern) else name
        raise SystemExit(f"bench/ui_latency.py: the {where} has no {role} named {shown!r} (after "
                         f"{timeout_ms / 1000:.0f} s; renamed or removed?). Its {role}s: "
                         f"{names_of(page, role) or 'none'}") from None
    return loc


def wait_shown(page, loc, what: str, timeout_ms: int) -> None:
    """Wait for ``loc`` (a result that takes long, e.g. a map computed by a job), stopping at once with the app's
    own words when the page shows an error instead."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    try:
        loc.or_(page.locator(ERRORS)).first.wait_for(timeout=timeout_ms)
    except PlaywrightTimeout:
        raise SystemExit(f"bench/ui_latency.py: {what} did not show within {timeout_ms / 1000:.0f} s") from None
    err = page.locator(ERRORS)
    if err.count():
        raise SystemExit(f"bench/ui_latency.py: waiting for {what}, the app showed an error: "
                         f"{err.first.inner_text()[:500]}")


T_START = time.time()


def say(msg: str) -> None:
    """Progress with the seconds since the start: where a slow run spends its time."""
    print(f"[{time.time() - T_START:5.0f} s] {msg}", flush=True)


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
    """Click the sidebar's link to the page ``name`` (checked to be there first)."""
    nav_links = page.get_by_test_id("stSidebarNav")
    link = need(page, "link", re.compile(rf"(^|\s){re.escape(name)}$"), "sidebar", within=nav_links)
    return link.click


def goto(page, name: str) -> None:
    """Switch to the page ``name`` and wait until its heading shows and it has settled."""
    nav(page, name)()
    need(page, "heading", name, f"page reached by the sidebar link {name!r}", exact=True)
    settle(page)


def slider_key(page, label: str | re.Pattern, key: str, where: str):
    slider = need(page, "slider", label, where)
    return lambda: slider.press(key)


def radio_option(page, group: str, option: str, where: str):
    """Click the option ``option`` of the radio group labelled ``group`` (its label: the input itself is hidden)."""
    radios = need(page, "radiogroup", group, where, exact=True)
    radio = need(page, "radio", option, f"{where} ({group!r} radio)", within=radios, exact=True)
    return lambda: radio.locator("xpath=ancestor::label[1]").click()


def local_ray(tmp: Path):
    """UEO_RAY_ADDRESS when set (a test's cluster), else a local Ray of the bench's own: Explore's embeddings are a
    job on Ray. Returns its temp dir to stop it with (None when not ours)."""
    if os.environ.get("UEO_RAY_ADDRESS"):
        return None
    from ueo_core import cluster
    temp_dir = tempfile.mkdtemp(prefix="ueo-ray-u", dir="/tmp")
    os.environ["UEO_RAY_ADDRESS"] = cluster.start_local_head(state_dir=tmp / "ray-state", temp_dir=temp_dir)
    return temp_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="every interaction once: a check that the bench runs")
    args = ap.parse_args()
    if args.quick:
        args.repeats = 1
        print(QUICK_NOTE, flush=True)
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="ueo-latency-"))
    if not (args.quick and os.environ.get("UEO_CACHE")):  # a measurement starts cold; a smoke run may share one
        os.environ["UEO_CACHE"] = str(tmp / "cache")
    say("preparing two finished runs (zero-shot, UEO 1 epoch) on Shapes sketch…")
    token, ids, n_images = prepare(tmp / "ws", small=args.quick)
    ray_dir = local_ray(tmp)
    env = {**os.environ, "UEO_WORKSPACES": str(tmp / "ws"), "HF_HUB_OFFLINE": "1"}
    bare = tmp / "bare.py"
    bare.write_text("import streamlit as st\nv = st.slider('value', 0, 100, 50)\nst.write(f'value {v}')\n")
    app = base = None
    results: dict[str, list[float]] = {}
    try:
        app, app_url = serve(ROOT / "app.py", env, tmp / "app.log")
        base, base_url = serve(bare, env, tmp / "bare.log")
        say(f"the app and the bare page are up (Ray at {os.environ['UEO_RAY_ADDRESS']})")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.set_default_timeout(120_000)

            # the baseline: a bare page's slider, by keyboard
            page.goto(base_url)
            need(page, "slider", "value", "bare page", timeout_ms=60_000)
            page.evaluate(WATCH)
            results["baseline: bare page slider"] = [
                timed(page, slider_key(page, "value", "ArrowRight" if i % 2 else "ArrowLeft", "bare page"))
                for i in range(2 * args.repeats)]
            say("baseline timed; opening Explore (its first embeddings)…")

            page.goto(f"{app_url}/?ws={token}")  # (a deep link as the server's very first request meets
            need(page, "heading", "UEO Studio", "home page", exact=True, timeout_ms=120_000)  # "Page not found")
            page.goto(f"{app_url}/explore?ws={token}&run={ids[1]}")
            need(page, "heading", "Explore", "Explore page (deep link)", exact=True, timeout_ms=120_000)
            page.evaluate(WATCH)
            t0 = time.time()
            wait_shown(page, page.locator(".js-plotly-plot", has_text="PCA · after"), "Explore's PCA map", 600_000)
            first_pca = time.time() - t0
            wait_shown(page, page.locator(".js-plotly-plot", has_text="UMAP · after"), "Explore's UMAP map",
                       600_000)
            first_umap = time.time() - t0
            settle(page)
            say(f"Explore's maps: PCA after {first_pca:.1f} s, UMAP after {first_umap:.1f} s")

            pages = ["Data", "Adapt", "Explore", "Inspect", "Compare", "Learn"]
            for name in pages * (not args.quick):  # warm every page once (first visits load models, thumbnails)
                goto(page, name)
            say("timing the interactions…")
            for _ in range(args.repeats):
                for name in pages:
                    results.setdefault(f"page switch → {name}", []).append(timed(page, nav(page, name)))
                    need(page, "heading", name, f"page reached by the sidebar link {name!r}", exact=True)

            goto(page, "Explore")
            modes = ["predicted class", "score", "true class", "predicted known/unknown"]
            results["Explore colour mode"] = [
                timed(page, radio_option(page, "Colour by", modes[i % 4], "Explore page"))
                for i in range(max(args.repeats + 1, len(modes)))]

            goto(page, "Inspect")
            thr = re.compile("^Known/unknown threshold on")  # "… on <the chosen score>"
            results["Inspect threshold"] = [
                timed(page, slider_key(page, thr, "ArrowRight" if i % 2 else "ArrowLeft", "Inspect page"))
                for i in range(args.repeats + 1)]

            goto(page, "Learn")
            results["Learn slider"] = [
                timed(page, slider_key(page, "λ (weight of the marginal-entropy term)",
                                       "ArrowRight" if i % 2 else "ArrowLeft", "Learn page"))
                for i in range(args.repeats + 1)]

            goto(page, "Compare")
            picks = []
            for i in range(args.repeats + 1):
                if i % 2 == 0:  # remove the first chosen run (its tag's delete button)
                    act = need(page, "button", re.compile(r"^Remove "), "Compare page ('Runs' multiselect)").click
                else:           # and choose it again from the list
                    runs = need(page, "combobox", "Runs", "Compare page", exact=True)

                    def act(runs=runs):
                        runs.click()
                        need(page, "option", re.compile("."), "Compare page's 'Runs' list").click()
                picks.append(timed(page, act))
            results["Compare selection"] = picks
            browser.close()
    finally:
        for proc in (app, base):  # (waited for: a server still stopping would slow what runs next)
            if proc is not None:
                proc.terminate()
                proc.wait(30)
        if ray_dir:
            from ueo_core import cluster
            cluster.stop_local_head(ray_dir)

    print(f"\nfirst Explore of the {ids[1]} run ({n_images} images): PCA maps after {first_pca:.1f} s, "
          f"UMAP maps after {first_umap:.1f} s")
    print("\n| interaction | n | median ms | worst ms |\n|---|---|---|---|")
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
    if args.quick:
        print(QUICK_NOTE)


if __name__ == "__main__":
    main()
