"""Explore's map at 3,000, 10,000 and 100,000 points, in headless Chromium: each candidate tool side by side in one
run, on the same synthetic points (Gaussian clusters; 6 kinds) and the same thumbnails (made once by
``ueo_core.thumbs``, as the exploration job makes them; cached between runs of this bench).

    python bench/map_scale.py [--sizes 3000,10000,100000] [--tools canvas,plotly,atlas]
    python bench/map_scale.py --quick          # tiny sizes, canvas and Plotly: a smoke run (tests/test_benches.py)
    python bench/map_scale.py --page [--sizes 10000,100000] [--baseline /path/to/another/checkout]

``--page`` measures the real Explore page instead: a fake finished run per size (predictions over the bench's
synthetic images, both prediction files, clustered maps, the thumbnails linked from the bench's own), a lasso on
the adapted map, from the mouse release to its gallery shown and to the page idle (the selection's downloads
drawn). With ``--baseline`` the same is done by another checkout's app (e.g. a ``git worktree`` of the commit
before a change) on the same run, the two lassos alternating, so that both see the same load: read the ratio.

Candidates: ``canvas`` (Explore's point map above 3,000 points: ``studio.charts.point_map``), ``plotly``
(``st.plotly_chart`` of ``charts.embedding_scatter``: SVG up to 3,000 points, WebGL above) and ``atlas`` (Apple's
Embedding Atlas Streamlit component, when importable: ``pip install embedding-atlas`` into an environment of its
own and name its site-packages in UEO_ATLAS_SITE; its lasso answers a SQL predicate, not measured here).
Columns, each a median in ms:
- first paint: from the page's navigation to the map drawn (the canvas' first frame; Plotly's plot with its
  points; Atlas' canvas);
- zoom / pan frame: 8 zoom steps (the canvas: the wheel; Plotly, which has no wheel zoom in Streamlit: its
  modebar's zoom in / out) / 8 drag steps dispatched in the page, each to the second animation frame after it (the
  frame that shows it; 33 ms is the floor at 60 frames a second);
- lasso → gallery: a real mouse lasso around the centre, from the button's release to the gallery's first
  thumbnail shown (the page reran: the selection went to Python and back);
- hover → thumbnail: the mouse moved onto a point, to its thumbnail shown (the tile's sheet fetched and
  decoded); Plotly's hover can only show text: its time to the hover text is given in brackets.
The machine's CPU may be shared: read the ratios between tools in one run, not the absolute numbers.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import appserver  # noqa: E402
from appserver import ARGS, CHROMIUM  # noqa: E402
from quick import QUICK_NOTE  # noqa: E402

KINDS = ["circle", "square", "triangle", "star", "heart", "unknown"]
DISTINCT = 1000  # distinct source images; point i shows image i % DISTINCT (100,000 real files are not needed)

APP = '''
import os, sys
from pathlib import Path
sys.path.insert(0, {root!r})
import numpy as np
import streamlit as st
from studio import charts, ui
from ueo_core import thumbs

st.set_page_config(page_title="map bench", layout="wide")
tool, n = st.query_params.get("tool", "canvas"), int(st.query_params.get("n", "3000"))
d = Path({work!r})
xy, kind = np.load(d / f"xy-{{n}}.npy"), np.load(d / f"kind-{{n}}.npy")
ex = d / f"ex-{{n}}"
meta = thumbs.read_meta(ex)
names = np.array({kinds!r}, dtype=object)[kind]
hover = charts.hover_table(["{{file}}", "predicted: {{pred}}"], file=[f"img_{{i % {distinct}}}.png" for i in range(n)],
                           pred=names)
picked = []
if tool == "plotly":
    fig = charts.embedding_scatter(xy, names, charts.hover_texts(hover), "plotly")
    ev = st.plotly_chart(fig, width="stretch", on_select="rerun", selection_mode=("box", "lasso"), key="m")
    pts = ev["selection"]["points"] if ev and "selection" in ev else []
    picked = sorted(int(q["customdata"]) for q in pts if q.get("customdata") is not None)
elif tool == "canvas":
    codes, style = charts.map_colours(names)
    picked = charts.point_map(xy, codes, style, hover, "canvas", key="m", thumbs=meta,
                              sheets=thumbs.sheet_paths(ex, meta))
else:
    import pandas as pd
    from embedding_atlas.streamlit import embedding_atlas
    df = pd.DataFrame({{"x": xy[:, 0], "y": xy[:, 1], "text": charts.hover_texts(hover), "kind": names}})
    got = embedding_atlas(df, x="x", y="y", text="text", key="m")
st.subheader(f"Selected ({{len(picked)}})")
ui.gallery([f"img_{{i}}.png" for i in picked], [str(names[i]) for i in picked], key="sel", own_fragment=False,
           image=lambda pos: thumbs.gallery_bytes(ex, picked[pos]), empty="nothing selected")
'''

# in-page: dispatch a wheel or drag step on the map's centre and wait two animation frames (the frame that shows it)
FRAMES = """async ([sel, kind, steps]) => {
  const el = document.querySelector(sel); const b = el.getBoundingClientRect();
  const cx = b.left + b.width / 2, cy = b.top + b.height / 2;
  const raf = () => new Promise(r => requestAnimationFrame(() => r()));
  const target = document.elementFromPoint(cx, cy);
  const fire = (type, x, y, extra) => {
    const init = {bubbles: true, cancelable: true, clientX: x, clientY: y, pointerId: 1, buttons: 1, ...extra};
    const ev = type.startsWith('pointer') ? new PointerEvent(type, init)
      : type === 'wheel' ? new WheelEvent(type, init) : new MouseEvent(type, init);
    (type === 'mousemove' || type === 'mouseup' ? document : target).dispatchEvent(ev);
  };
  const times = [];
  if (kind === 'drag') { fire('pointerdown', cx, cy); fire('mousedown', cx, cy); await raf(); }
  const bar = el.closest('.js-plotly-plot');
  for (let k = 1; k <= steps; k++) {
    const t0 = performance.now();
    if (kind === 'wheel' && bar)  // Streamlit's Plotly has no wheel zoom: its modebar's zoom in / out
      bar.querySelector(`.modebar-btn[data-val="${k % 2 ? 'in' : 'out'}"][data-attr="zoom"]`).dispatchEvent(
        new MouseEvent('click', {bubbles: true, cancelable: true}));
    else if (kind === 'wheel') fire('wheel', cx, cy, {deltaY: k % 2 ? -120 : 100});
    else { fire('pointermove', cx + 6 * k, cy + 3 * k); fire('mousemove', cx + 6 * k, cy + 3 * k); }
    await raf(); await raf();
    times.push(performance.now() - t0);
  }
  if (kind === 'drag') { fire('pointerup', cx + 6 * steps, cy); fire('mouseup', cx + 6 * steps, cy); }
  return times;
}"""

MAP_SEL = {"canvas": ".ueo-map canvas", "plotly": ".js-plotly-plot .nsewdrag", "atlas": "iframe"}
PAINTED = {"canvas": "() => { const c = document.querySelector('.ueo-map canvas'); return c && +c.dataset.frames > 0 }",
           "plotly": "() => { const p = document.querySelector('.js-plotly-plot'); return !!(p && p._fullData && "
                     "document.querySelector('.js-plotly-plot .nsewdrag')) }",
           "atlas": "() => { const f = document.querySelector('iframe'); const d = f && f.contentDocument; "
                    "return !!(d && d.querySelector('canvas')) }"}
IDLE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"


def points(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points in clusters (one per kind, two for the last), as a UMAP of a folder looks."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, len(KINDS), n)
    centres = rng.normal(0, 6, (len(KINDS), 2))
    return (centres[kind] + rng.normal(0, 1.2, (n, 2))).astype(np.float32), kind.astype(np.int64)


def prepare(work: Path, sizes: list[int], distinct: int) -> list[str]:
    """Coordinates and thumbnails for each size (thumbnails made by ``ueo_core.thumbs.make``, kept between runs);
    returns lines saying how long the thumbnails took."""
    from PIL import Image
    from ueo_core import thumbs
    src = work / "images"
    src.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(distinct):
        p = src / f"img_{i}.png"
        if not p.exists():
            a = np.zeros((48, 48, 3), np.uint8) + rng.integers(0, 255, 3, dtype=np.uint8)
            a[rng.integers(0, 40):, rng.integers(0, 40):] = rng.integers(0, 255, 3, dtype=np.uint8)
            Image.fromarray(a).save(p)
    notes = []
    for n in sizes:
        xy, kind = points(n)
        np.save(work / f"xy-{n}.npy", xy)
        np.save(work / f"kind-{n}.npy", kind)
        paths = [str(src / f"img_{i % distinct}.png") for i in range(n)]
        t0 = time.perf_counter()
        meta = thumbs.make(paths, work / f"ex-{n}")
        took = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in thumbs.sheet_paths(work / f"ex-{n}", meta))
        notes.append(f"thumbnails of {n:,} images: {meta['sheets']} sheets, {size / 1e6:.1f} MB, {took:.1f} s "
                     f"({'cached from an earlier run' if took < n / 20000 else f'{n / took:.0f} img/s on the worker'})")
    return notes


def measure(page, url: str, tool: str, n: int, repeats: int) -> dict:
    out: dict = {}
    t0 = time.perf_counter()
    page.goto(f"{url}/?tool={tool}&n={n}")
    page.wait_for_function(PAINTED[tool], timeout=120_000, polling=20)
    out["first paint"] = (time.perf_counter() - t0) * 1000
    page.wait_for_function(IDLE, timeout=60_000)
    page.wait_for_timeout(300)
    sel = MAP_SEL[tool]
    if tool == "atlas":
        out["zoom frame"] = out["pan frame"] = None  # its map lives in an iframe: measured by first paint only
        return out
    out["zoom frame"] = statistics.median(page.evaluate(FRAMES, [sel, "wheel", 8]))
    if tool == "canvas":
        page.click(".ueo-map button[data-mode=pan]")
    else:
        page.click(".modebar-btn[data-val=pan]") if page.locator(".modebar-btn[data-val=pan]").count() else None
    out["pan frame"] = statistics.median(page.evaluate(FRAMES, [sel, "drag", 8]))
    # back to the whole map, lasso mode
    page.goto(f"{url}/?tool={tool}&n={n}")
    page.wait_for_function(PAINTED[tool], timeout=120_000, polling=20)
    page.wait_for_function(IDLE, timeout=60_000)
    page.wait_for_timeout(300)
    box = page.locator(sel).first.bounding_box()
    cx, cy, r = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, min(box["width"], box["height"]) / 4
    lassos = []
    heading = "() => [...document.querySelectorAll('h3')].find(e => e.textContent.startsWith('Selected ('))"
    for k in range(repeats):
        before = page.evaluate(f"() => ({heading})().textContent")
        page.mouse.move(cx + r, cy)
        page.mouse.down()
        for a in np.linspace(0, 2 * np.pi, 24):
            page.mouse.move(cx + r * np.cos(a) * (1 - 0.1 * k), cy + r * np.sin(a) * (1 - 0.1 * k))
        t0 = time.perf_counter()
        page.mouse.up()
        # the gallery of a new count (each lasso is smaller than the one before), a thumbnail shown
        page.wait_for_function(f"([was]) => {{ const h = ({heading})(); return h && h.textContent !== was && "
                               "document.querySelector('[data-testid=stImage] img') }", arg=[before],
                               timeout=60_000, polling=20)
        lassos.append((time.perf_counter() - t0) * 1000)
        page.wait_for_function(IDLE, timeout=60_000)
        page.wait_for_timeout(300)
    out["lasso → gallery"] = statistics.median(lassos)
    # hover: onto a point's pixel (the canvas knows where its points are; Plotly's: a hover of its own)
    page.goto(f"{url}/?tool={tool}&n={n}")
    page.wait_for_function(PAINTED[tool], timeout=120_000, polling=20)
    page.wait_for_function(IDLE, timeout=60_000)
    hovers = []
    for k in range(repeats):
        page.mouse.move(box["x"] + 2, box["y"] + 2)
        page.wait_for_timeout(100)
        if tool == "canvas":
            px = page.evaluate("""([k]) => { const c = document.querySelector('.ueo-map canvas');
              const S = c.closest('.ueo-map').__ueo, D = S.D, v = S.view || S.full, i = (k * 7919) % D.n;
              const b = c.getBoundingClientRect();
              return [b.left + (D.x[i] - v[0]) / (v[1] - v[0]) * c.clientWidth,
                      b.top + (1 - (D.y[i] - v[2]) / (v[3] - v[2])) * c.clientHeight]; }""", [k])
            t0 = time.perf_counter()
            page.mouse.move(px[0], px[1])
            page.wait_for_function("""async () => { const p = document.querySelector('.ueo-map .tip .pic');
              if (!p || p.closest('.tip').style.display === 'none') return false;
              const u = getComputedStyle(p).backgroundImage.slice(5, -2); const im = new Image(); im.src = u;
              try { await im.decode(); return true } catch (e) { return false } }""", timeout=30_000, polling=10)
        else:
            t0 = time.perf_counter()
            page.mouse.move(cx + (k - 2) * 7, cy + (k - 2) * 5, steps=2)
            try:
                page.wait_for_selector(".hoverlayer .hovertext", timeout=3_000)
            except Exception:  # noqa: BLE001 (no point under the mouse)
                continue
        hovers.append((time.perf_counter() - t0) * 1000)
    out["hover → thumbnail"] = statistics.median(hovers) if hovers else None
    return out


WS = "cd" * 16  # the page mode's workspace token (a test token: nothing private)
PRIOR = ["circle", "square", "triangle", "star", "heart"]


def page_run(work: Path, n: int, distinct: int) -> str:
    """A finished run of ``n`` images (image i is the bench's ``img_{i % distinct}.png``) with its exploration's
    maps and thumbnails (hard links to the bench's own, made by ``prepare``); returns its id."""
    import json
    import shutil

    from ueo_core import explore, thumbs
    from ueo_core.metrics import write_predictions
    rid = f"20260101-120000-ueo-{n:06d}"
    run = work / "ws" / WS / "runs" / rid
    if (explore.folder(run) / thumbs.FOLDER / thumbs.META).exists():
        return rid
    run.mkdir(parents=True, exist_ok=True)
    (work / "ws" / WS / "uploads").mkdir(parents=True, exist_ok=True)
    xy, kind = points(n)
    rng = np.random.default_rng(n)
    for name, noise in (("predictions_zero_shot.csv", 0.5), ("predictions.csv", 0.2)):
        rows = []
        for i in range(n):
            k = int(kind[i])
            pred = k if k < len(PRIOR) and rng.random() > noise else int(rng.integers(0, len(PRIOR)))
            conf = float(np.clip(rng.normal(0.75 if k < len(PRIOR) else 0.45, 0.12), 0.2, 0.99))
            rows.append({"path": str(work / "images" / f"img_{i % distinct}.png"),
                         "true_class": PRIOR[k] if k < len(PRIOR) else "", "predicted_class": PRIOR[pred],
                         "confidence": round(conf, 6), "entropy": 0.5, "predicted_known": conf >= 0.6})
        write_predictions(run / name, rows)
    (run / "config.json").write_text(json.dumps({"method": "ueo", "data": str(work / "images"), "model": "ueo-tiny",
                                                 "summary": {"classes": PRIOR}}))
    (run / "metrics.json").write_text(json.dumps({"before": {"threshold": 0.6}, "after": {"threshold": 0.6}}))
    ex = explore.folder(run)
    ex.mkdir(exist_ok=True)
    for name in (explore.PCA, explore.UMAP):
        np.savez(ex / name, before=xy * 0.7, after=xy)
    (ex / explore.STATUS).write_text(json.dumps({"stage": "done", "done": 2, "total": 2, "at": time.time()}))
    shutil.rmtree(ex / thumbs.FOLDER, ignore_errors=True)
    shutil.copytree(work / f"ex-{n}" / thumbs.FOLDER, ex / thumbs.FOLDER, copy_function=os.link)
    return rid


def page_lassos(page, url: str, rid: str) -> dict:
    """The Explore page of run ``rid`` opened (home, then the sidebar), ready for a lasso on the adapted map."""
    page.goto(f"{url}/?ws={WS}&run={rid}")
    page.locator("h1").first.wait_for(timeout=300_000)  # the home page drawn (its first run over)
    page.wait_for_function(IDLE, timeout=300_000)
    for attempt in range(3):  # a click while the home page still reruns can be lost
        page.locator('[data-testid="stSidebarNav"] a', has_text="Explore").first.click()
        try:
            page.wait_for_function("() => document.querySelectorAll('.ueo-map canvas[data-frames]').length == 2",
                                   timeout=150_000, polling=50)
            break
        except Exception:  # noqa: BLE001 (tried again, then raised)
            if attempt == 2:
                raise
    page.wait_for_function(IDLE, timeout=300_000)
    c = page.locator(".ueo-map canvas").nth(1)
    c.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    return c.bounding_box()


HEADING = "() => [...document.querySelectorAll('h3')].find(e => e.textContent.startsWith('Selected on the adapted'))"


def page_lasso(page, box: dict, k: int) -> tuple[float, float, str]:
    """One lasso (radius shrinking with ``k``: each selects fewer points); (ms to its gallery, ms to the page
    idle, the gallery's heading)."""
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    r = min(box["width"], box["height"]) * (0.14 - 0.015 * k)
    before = page.evaluate(f"() => {{ const h = ({HEADING})(); return h ? h.textContent : '' }}")
    page.mouse.move(cx + r, cy)
    page.mouse.down()
    for a in np.linspace(0, 2 * np.pi, 24):
        page.mouse.move(cx + r * np.cos(a), cy + r * np.sin(a))
    t0 = time.perf_counter()
    page.mouse.up()
    page.wait_for_function(f"([was]) => {{ const h = ({HEADING})(); return h && h.textContent !== was && "
                           "/\\([1-9]/.test(h.textContent) && document.querySelector('[data-testid=stImage] img') }",
                           arg=[before], timeout=120_000, polling=20)
    gallery = (time.perf_counter() - t0) * 1000
    page.wait_for_function(IDLE, timeout=120_000, polling=20)
    idle = (time.perf_counter() - t0) * 1000
    return gallery, idle, page.evaluate(f"() => ({HEADING})().textContent")


def page_main(a, sizes: list[int]) -> None:
    """``--page``: the real Explore page, this checkout's (and ``--baseline``'s) app, lassos alternating."""
    work = Path(a.work) / "full"
    work.mkdir(parents=True, exist_ok=True)
    for line in prepare(work, sizes, DISTINCT):
        print(line)
    rids = {n: page_run(work, n, DISTINCT) for n in sizes}
    trees = {"this checkout": ROOT} | ({"baseline": Path(a.baseline).resolve()} if a.baseline else {})
    from playwright.sync_api import sync_playwright
    servers = {}
    try:
        for name, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": str(tree), "UEO_WORKSPACES": str(work / "ws"), "HF_HUB_OFFLINE": "1"}
            servers[name] = appserver.serve(tree / "app.py", env, work / f"page-{name.split()[0]}.log")
        got = {(name, n): [] for name in trees for n in sizes}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            pages = {name: browser.new_page(viewport={"width": 1500, "height": 1100}) for name in trees}
            for n in sizes:
                boxes = {name: page_lassos(pages[name], servers[name][1], rids[n]) for name in trees}
                for k in range(a.repeats):
                    for name in (list(trees) if k % 2 == 0 else list(trees)[::-1]):
                        got[(name, n)].append(page_lasso(pages[name], boxes[name], k))
                print(f"  measured the page at {n:,}", file=sys.stderr, flush=True)
            browser.close()
    finally:
        for proc, _ in servers.values():
            proc.terminate()
    print("| app | points | lasso → gallery ms (median) | lasso → page idle ms (median) | selected |")
    print("|---|---|---|---|---|")
    for (name, n), runs in got.items():
        print(f"| {name} | {n:,} | {statistics.median(g for g, _, _ in runs):.0f} | "
              f"{statistics.median(i for _, i, _ in runs):.0f} | "
              f"{', '.join(h.split('(')[-1].rstrip(')') for _, _, h in runs)} |")
    if a.baseline:
        for n in sizes:
            new, old = got[("this checkout", n)], got[("baseline", n)]
            print(f"at {n:,}: baseline / this checkout, lasso → gallery "
                  f"{statistics.median(g for g, _, _ in old) / statistics.median(g for g, _, _ in new):.2f}x, "
                  f"lasso → page idle {statistics.median(i for _, i, _ in old) / statistics.median(i for _, i, _ in new):.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="3000,10000,100000")
    ap.add_argument("--tools", default="canvas,plotly,atlas")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "ueo-map-scale"),
                    help="where the points and thumbnails are kept between runs")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--page", action="store_true", help="the real Explore page (default sizes 10000,100000)")
    ap.add_argument("--baseline", help="with --page: another checkout whose app is measured alongside")
    a = ap.parse_args()
    sizes = [300, 1200] if a.quick else [int(s) for s in a.sizes.split(",")]
    if a.page:
        return page_main(a, [10000, 100000] if a.sizes == ap.get_default("sizes") else sizes)
    tools = ["canvas", "plotly"] if a.quick else a.tools.split(",")
    repeats = 1 if a.quick else a.repeats
    distinct = 60 if a.quick else DISTINCT
    work = Path(a.work) / ("quick" if a.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    atlas_site = os.environ.get("UEO_ATLAS_SITE")
    if "atlas" in tools and not atlas_site:
        try:
            import embedding_atlas  # noqa: F401
        except ImportError:
            print("atlas: embedding-atlas is not installed here (UEO_ATLAS_SITE names its site-packages): left out")
            tools.remove("atlas")
    if a.quick:
        print(QUICK_NOTE)
    for line in prepare(work, sizes, distinct):
        print(line)
    script = work / "map_app.py"
    script.write_text(APP.format(root=str(ROOT), work=str(work), kinds=KINDS, distinct=distinct))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), atlas_site or ""]))}
    proc, url = appserver.serve(script, env, work / "server.log")
    rows = []
    try:
        from playwright.sync_api import sync_playwright
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for tool in list(tools):  # the first load of each imports the app's modules and the component's code
                page.goto(f"{url}/?tool={tool}&n={sizes[0]}")
                try:
                    page.wait_for_function(PAINTED[tool], timeout=180_000, polling=100)
                except Exception as err:  # noqa: BLE001 (a tool that never draws: said, and left out)
                    if a.quick:
                        raise
                    print(f"{tool}: drew no map within 180 s at {sizes[0]:,} points "
                          f"({str(err).splitlines()[0][:60]}): left out")
                    tools.remove(tool)
                page.wait_for_function(IDLE, timeout=60_000)
            for n in sizes:
                for tool in tools:
                    try:
                        rows.append((tool, n, measure(page, url, tool, n, repeats)))
                    except Exception as err:  # noqa: BLE001 (a tool that fails at a size: its row says so)
                        rows.append((tool, n, {"error": str(err).splitlines()[0][:80]}))
                    print(f"  measured {tool} at {n:,}", file=sys.stderr, flush=True)
            browser.close()
    finally:
        proc.terminate()
    cols = ["first paint", "zoom frame", "pan frame", "lasso → gallery", "hover → thumbnail"]
    print("| tool | points | " + " | ".join(f"{c} ms" for c in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for tool, n, m in rows:
        if "error" in m:
            print(f"| {tool} | {n:,} | failed: {m['error']} |" + " |" * (len(cols) - 1))
            continue
        cells = []
        for c in cols:
            v = m.get(c)
            cells.append("–" if v is None else (f"({v:.0f}, text only)" if tool == "plotly" and c.startswith("hover")
                                                 else f"{v:.0f}"))
        print(f"| {tool} | {n:,} | " + " | ".join(cells) + " |")
    base = {(t, n): m for t, n, m in rows}
    for n in sizes:
        c, p = base.get(("canvas", n), {}), base.get(("plotly", n), {})
        if c.get("first paint") and p.get("first paint") and c.get("lasso → gallery") and p.get("lasso → gallery"):
            print(f"at {n:,}: Plotly / canvas first paint {p['first paint'] / c['first paint']:.1f}x, "
                  f"lasso → gallery {p['lasso → gallery'] / c['lasso → gallery']:.1f}x")
    failed = [f"{t} at {n:,}" for t, n, m in rows if "error" in m]
    if a.quick and failed:  # the smoke run fails where an interaction no longer works (renamed element, broken JS)
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
