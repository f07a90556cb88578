"""A class on one server, measured: K browser sessions press Start on the default quick run (UEO, Shapes · sketch,
built-in model) at the same moment, while one more session switches pages the whole time.

In the same run it also measures one run alone (serial_s = K x that) and the observer with nothing training, so
that every ratio compares numbers taken side by side on the same machine. It starts its own app (a free port, its
own workspaces) and its own local Ray (UEO_SLOTS run slots; default ueo_core.cluster.default_slots()), and stops both
(``--quick`` uses the Ray that UEO_RAY_ADDRESS names, when set: a test's).

    python bench/classroom.py --k 8            # one K
    python bench/classroom.py --k 1 4 8 16     # a table, one line each
    python bench/classroom.py --series 20      # 20 runs in a row in one session: web server RSS after 1st vs 20th
    python bench/classroom.py --quick          # smoke run: K=1, 1 epoch, no warm-up run (tests/test_benches.py)

A line per K: classroom K=<k> lost=<n> all_done_s=<s> serial_s=<s> observer_median_ms=<ms>
idle_median_ms=<ms> server_rss_mb=<mb>; at the end, the same as a table, one row per K.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from appserver import ARGS, CHROMIUM, free_port, serve  # noqa: E402,F401  (free_port: for bench/nothing_lost.py)
from quick import QUICK_NOTE  # noqa: E402
PAGES = ["Data", "Model", "Compare", "Learn"]  # the observer's round
RUN_TIMEOUT_S = 1800
EPOCHS = None  # the Epochs box as the app proposes it; --quick: 1


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory in MB: VmRSS (all of it), or RssAnon (without the pages of shared libraries and
    files, which the Ray workers importing the same torch share with it)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssPeak:
    """The web server's largest RSS while it runs (sampled every 0.25 s)."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.anon_peak, self._stop = pid, 0.0, 0.0, threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            self.anon_peak = max(self.anon_peak, rss_mb(self.pid, "RssAnon"))
            time.sleep(0.25)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()


def start_app(tmp: Path, ray_address: str, port: int | None = None):
    """The app on ``port`` (default a free one), its workspaces and caches in ``tmp``, its runs on ``ray_address``;
    returns (process, url) once it answers."""
    env = {**os.environ, "UEO_WORKSPACES": str(tmp / "ws"), "UEO_CACHE": str(tmp / "cache"),
           "HF_HUB_OFFLINE": "1", "UEO_RAY_ADDRESS": ray_address}
    try:
        return serve("app.py", env, tmp / f"streamlit-{time.time():.0f}.log", port=port)
    except RuntimeError as err:
        raise SystemExit(str(err))


async def settle(page, quiet_ms: int = 300):
    await page.wait_for_timeout(100)
    await page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                                 timeout=120_000)
    await page.wait_for_timeout(quiet_ms)


async def goto(page, name: str) -> float:
    """Switch page by the sidebar; returns ms until its heading is shown and the script has finished."""
    t0 = time.perf_counter()
    await page.locator('[data-testid="stSidebarNavLink"]', has_text=name).first.click()
    await page.get_by_role("heading", name=name).first.wait_for(timeout=120_000)
    await page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                                 timeout=120_000)
    return (time.perf_counter() - t0) * 1000


async def new_session(browser, url: str):
    ctx = await browser.new_context(viewport={"width": 1300, "height": 1000})
    page = await ctx.new_page()
    page.set_default_timeout(120_000)
    await page.goto(url)
    await page.get_by_role("heading", name="UEO Studio").wait_for()
    await settle(page)
    return ctx, page


async def ready_to_start(page):
    await goto(page, "Adapt")
    await settle(page)
    if EPOCHS:
        box = page.get_by_label("Epochs")
        await box.fill(str(EPOCHS))
        await box.press("Tab")
        await settle(page)


async def press_start_and_wait(page, t0: float) -> float | None:
    """Start, then the seconds from ``t0`` until the run says it is done (None when it never does)."""
    done = page.get_by_text("Done in")
    had = await done.count()  # the page's last run (in a series) says "Done in" until the new one replaces it
    await page.get_by_role("button", name="▶ Start").click()
    try:
        if had:
            await done.first.wait_for(state="detached", timeout=120_000)
        await done.first.wait_for(timeout=RUN_TIMEOUT_S * 1000)
    except Exception:
        return None
    return time.perf_counter() - t0


async def observe(page, stop: asyncio.Event, out: list[float]):
    i = 0
    while not stop.is_set():
        out.append(await goto(page, PAGES[i % len(PAGES)]))
        i += 1
        await page.wait_for_timeout(200)


async def observer_alone(browser, url: str, n: int = 12) -> float:
    ctx, page = await new_session(browser, url)
    times = [await goto(page, PAGES[i % len(PAGES)]) for i in range(n)]
    await ctx.close()
    return statistics.median(times[2:])  # the first round loads each page's imports once


async def one_run_alone(browser, url: str) -> float:
    ctx, page = await new_session(browser, url)
    await ready_to_start(page)
    t = await press_start_and_wait(page, time.perf_counter())
    await ctx.close()
    if t is None:
        raise SystemExit("the single run did not finish")
    return t


async def classroom(browser, url: str, k: int, observer_browser=None) -> dict:
    sessions = [await new_session(browser, url) for _ in range(k)]
    for _, page in sessions:
        await ready_to_start(page)
    octx, opage = await new_session(observer_browser or browser, url)
    stop, switches = asyncio.Event(), []
    watcher = asyncio.create_task(observe(opage, stop, switches))
    t0 = time.perf_counter()
    done = await asyncio.gather(*(press_start_and_wait(page, t0) for _, page in sessions))
    stop.set()
    await watcher
    for ctx, _ in sessions:
        await ctx.close()
    await octx.close()
    finished = [d for d in done if d is not None]
    return {"lost": k - len(finished), "all_done_s": max(finished) if finished else float("nan"),
            "observer_median_ms": statistics.median(switches) if switches else float("nan"),
            "observer_worst_ms": max(switches) if switches else float("nan")}


async def series(browser, url: str, n: int, pid: int) -> None:
    ctx, page = await new_session(browser, url)
    rss = []
    for i in range(n):
        await ready_to_start(page)
        t = await press_start_and_wait(page, time.perf_counter())
        await settle(page, 1000)
        rss.append(rss_mb(pid))
        print(f"run {i + 1}/{n}: {t:.1f} s · web server RSS {rss[-1]:.0f} MB (anonymous "
              f"{rss_mb(pid, 'RssAnon'):.0f} MB)", flush=True)
        await goto(page, "Data")
    await ctx.close()
    print(f"series n={n} rss_first_mb={rss[0]:.0f} rss_last_mb={rss[-1]:.0f} growth_mb={rss[-1] - rss[0]:.0f}")


def browser_command(nice: int) -> str:
    """Chromium, or a wrapper that starts it in a session of its own at ``nice``: in a classroom the students'
    browsers run on their own machines; here they share the server's 2 cores. Linux groups CPU time by session
    (sched_autogroup), so a plain ``nice`` would only rank Chromium against the bench and the web server in the
    same group; the wrapper gives Chromium its own group (``setsid``) and sets that group's niceness
    (``/proc/self/autogroup``). Measured on one live Adapt page at nice 0: Chromium ~45 % of a core, the web server
    ~12 %, the run ~85 %."""
    if not nice:
        return CHROMIUM
    wrapper = Path(tempfile.mkdtemp(prefix="ueo-chromium-")) / "chromium"
    wrapper.write_text("#!/bin/sh\n"
                       f"exec setsid -w sh -c 'echo {int(nice)} > /proc/self/autogroup 2>/dev/null; "
                       f"exec nice -n {int(nice)} \"$0\" \"$@\"' \"{CHROMIUM}\" \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


async def main_async(args, url: str, pid: int) -> None:
    from playwright.async_api import async_playwright
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=browser_command(args.browser_nice), args=ARGS)
        # the observer's own browser at normal priority: what it measures is the server's answer plus its own
        # drawing, which in a class happens on the student's machine, not behind the K students' browsers here
        observer = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        if args.series:
            await series(browser, url, args.series, pid)
            await browser.close()
            await observer.close()
            return
        if not args.quick:
            await one_run_alone(browser, url)  # warm-up: the Shapes world is made once, imports are loaded
        alone = await one_run_alone(browser, url)
        idle = await observer_alone(observer, url, n=4 if args.quick else 12)
        print(f"one run alone: {alone:.1f} s · observer idle median {idle:.0f} ms", flush=True)
        rows = []
        for k in args.k:
            with RssPeak(pid) as peak:
                r = await classroom(browser, url, k, observer)
            print(f"  K={k}: all done {r['all_done_s']:.1f} s (serial {k * alone:.1f} s, ratio "
                  f"{r['all_done_s'] / (k * alone):.2f}) · observer median {r['observer_median_ms']:.0f} ms, worst "
                  f"{r['observer_worst_ms']:.0f} ms ({r['observer_median_ms'] / idle:.2f}x idle) · RSS peak "
                  f"{peak.peak:.0f} MB (anonymous {peak.anon_peak:.0f} MB)", flush=True)
            print(f"classroom K={k} lost={r['lost']} all_done_s={r['all_done_s']:.1f} serial_s={k * alone:.1f} "
                  f"observer_median_ms={r['observer_median_ms']:.0f} idle_median_ms={idle:.0f} "
                  f"server_rss_mb={peak.peak:.0f}", flush=True)
            if args.quick and r["lost"]:
                raise SystemExit(f"bench/classroom.py: {r['lost']} of {k} runs never said 'Done in'")
            rows.append((k, r, peak.peak))
        print(f"\none run alone {alone:.1f} s; observer idle median {idle:.0f} ms\n\n| K | lost | all done s | "
              "serial s | ratio | observer median ms | x idle | server RSS peak MB |\n"
              "|---|---|---|---|---|---|---|---|")
        for k, r, rss in rows:
            print(f"| {k} | {r['lost']} | {r['all_done_s']:.1f} | {k * alone:.1f} | "
                  f"{r['all_done_s'] / (k * alone):.2f} | {r['observer_median_ms']:.0f} | "
                  f"{r['observer_median_ms'] / idle:.2f} | {rss:.0f} |")
        await browser.close()
        await observer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, nargs="+", default=[8], help="students pressing Start together (default 8)")
    ap.add_argument("--series", type=int, default=0, help="instead: this many runs in a row in one session")
    ap.add_argument("--slots", type=int, default=None, help="run slots of the local Ray (default UEO_SLOTS or "
                                                            "ueo_core.cluster.default_slots())")
    ap.add_argument("--browser-nice", type=int, default=19,
                    help="niceness of the K students' Chromium, which stands in for their own machines (default "
                         "19; 0: the browsers compete with the server as equals); the observer's is at 0")
    ap.add_argument("--quick", action="store_true", help="smoke run: K=1, runs of 1 epoch, no warm-up run")
    args = ap.parse_args()
    if args.quick:
        global EPOCHS, RUN_TIMEOUT_S
        print(QUICK_NOTE, flush=True)
        args.k, args.series, EPOCHS, RUN_TIMEOUT_S = [1], 0, 1, 300
        args.browser_nice = 0  # at nice 19 on a busy 2-core machine the students' Chromium barely ran (timeouts)
    from ueo_core import cluster
    slots = args.slots or cluster.slots_from_env()
    tmp = Path(tempfile.mkdtemp(prefix="ueo-classroom-"))
    temp_dir = None
    if args.quick and os.environ.get("UEO_RAY_ADDRESS"):  # a smoke run may use a test's Ray (slots: its own)
        address = os.environ["UEO_RAY_ADDRESS"]
    else:
        temp_dir = tempfile.mkdtemp(prefix="ueo-ray-b", dir="/tmp")
        address = cluster.start_local_head(state_dir=Path(temp_dir) / "state", slots=slots, temp_dir=temp_dir)
        os.environ["UEO_RAY_ADDRESS"] = address
    print(f"{'local' if temp_dir else 'given'} Ray at {address} with {slots if temp_dir else 'its'} slot(s); "
          f"{os.cpu_count()} CPU cores; the students' Chromium at nice {args.browser_nice}, the observer's at 0",
          flush=True)
    proc = None
    try:
        proc, url = start_app(tmp, address)
        asyncio.run(main_async(args, url, proc.pid))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        if temp_dir:
            cluster.stop_local_head(temp_dir)
    if args.quick:
        print(QUICK_NOTE)


if __name__ == "__main__":
    main()
