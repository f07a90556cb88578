"""What each kind of Streamlit element costs the browser on a page switch, measured side by side in one run.

    python bench/ui_elements.py [--repeats 5]
    python bench/ui_elements.py --quick     # every page once: a smoke run (tests/test_benches.py)

A throwaway multipage app (an empty page, then one page per element kind, each as the app uses it) is served on a
free port and driven in headless Chromium exactly as ``bench/ui_latency.py`` times the app: input event to the last
DOM change before 500 ms of quiet. Each element page is entered from the empty page, so its row minus the empty
row is what mounting that element costs. This is how the app's choices were made (a small table as ``st.table``,
not ``st.dataframe``). Not a test: it never fails CI.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ui_latency as lat  # noqa: E402
from quick import QUICK_NOTE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ROWS = '[{"epoch": i, "gacc": 0.8123, "pacc": 0.7712, "auroc": 0.6634, "h_score": 0.5521} for i in range(6)]'
PAGES = {
    "empty page": "",
    "st.dataframe, 6 rows": f"st.dataframe({ROWS}, hide_index=True)",
    "st.table, 6 rows (ui.table)": f"from studio import ui\nui.table({ROWS})",
    "1 Plotly line chart": "import plotly.graph_objects as go\n"
                           "st.plotly_chart(go.Figure(go.Scatter(y=list(range(100)))), key='p')",
    "4 Plotly line charts": "import plotly.graph_objects as go\nfor i in range(4):\n"
                            "    st.plotly_chart(go.Figure(go.Scatter(y=list(range(100)))), key=f'p{i}')",
    "Learn's descent animation": "from studio import charts\nfrom ueo_core.analysis import toy_descent\n"
                                 "z = [[1.2, 0.1, 0.0], [0.0, 0.9, 0.2], [0.3, 0.35, 0.3], [0.1, 0.0, 0.15]]\n"
                                 "names = {'entropy': 'TENT', 'im': 'IM', 'ueo': 'UEO'}\n"
                                 "st.plotly_chart(charts.toy_descent_animation("
                                 "{m: toy_descent(z, m, 5.0, 1.0) for m in names}, names), key='d')",
    "14 sliders": "for i in range(14):\n    st.slider(f's{i}', 0.0, 1.0, 0.5, key=f's{i}')",
    "16 thumbnails": "from PIL import Image\nimport io\nb = io.BytesIO(); Image.new('RGB', (112, 112), 'teal')"
                     ".save(b, 'JPEG')\ncols = st.columns(8)\nfor i in range(16):\n"
                     "    cols[i % 8].image(b.getvalue(), caption=str(i))",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="every page switch once: a check that the bench runs")
    args = ap.parse_args()
    if args.quick:
        args.repeats = 1
        print(QUICK_NOTE, flush=True)
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="ueo-elements-"))
    titles = {name: f"P{i}" for i, name in enumerate(PAGES)}
    for name, body in PAGES.items():
        (tmp / f"{titles[name]}.py").write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport streamlit as st"
                                                f"\nst.title({titles[name]!r})\n{body}\n")
    (tmp / "app.py").write_text("import streamlit as st\nst.navigation([" + ", ".join(
        f"st.Page({t + '.py'!r}, title={t!r}, url_path={t.lower()!r}, default={i == 0})"
        for i, t in enumerate(titles.values())) + "]).run()\n")
    proc, url = lat.serve(tmp / "app.py", dict(os.environ), tmp / "log")
    results: dict[str, list[float]] = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=lat.CHROMIUM, args=lat.ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.set_default_timeout(120_000)
            page.goto(url)
            lat.need(page, "heading", "P0", "throwaway app", exact=True, timeout_ms=60_000)
            page.evaluate(lat.WATCH)
            for t in (list(titles.values())[1:] + ["P0"]) * (not args.quick):  # every page once: first loads
                lat.goto(page, t)                                               # (JS chunks) not timed
            for _ in range(args.repeats):
                for name, t in titles.items():
                    if t != "P0":
                        lat.timed(page, lat.nav(page, "P0"))
                    results.setdefault(name, []).append(lat.timed(page, lat.nav(page, t)))
                    lat.need(page, "heading", t, f"page {t} ({name})", exact=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    empty = statistics.median(results["empty page"])
    print("\n| page switch to | n | median ms | minus the empty page |\n|---|---|---|---|")
    for name, xs in results.items():
        med = statistics.median(xs)
        print(f"| {name} | {len(xs)} | {med:.0f} | {med - empty:+.0f} |")
    ratio = (statistics.median(results["st.dataframe, 6 rows"])
             / statistics.median(results["st.table, 6 rows (ui.table)"]))
    print(f"\nst.dataframe / st.table page switch: {ratio:.1f}x")
    if args.quick:
        print(QUICK_NOTE)


if __name__ == "__main__":
    main()
