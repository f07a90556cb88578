"""Plotly figures for the pages (drawing only: the numbers come from ueo_core)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

KNOWN_COLOR, UNKNOWN_COLOR, ALL_COLOR = "#2b8a3e", "#e8590c", "#4263eb"
# one colour per method, the same on every page
METHOD_COLORS = {"zero_shot": "#868e96", "entropy": "#e03131", "im": "#1c7ed6", "ueo": "#2f9e44",
                 "oracle": "#9c36b5", "clipood": "#f08c00"}
_PALETTE = ["#4263eb", "#f59f00", "#0ca678", "#d6336c", "#7048e8", "#74b816", "#1098ad", "#e8590c", "#495057"]


def _layout(fig: go.Figure, title: str = "", height: int = 320) -> go.Figure:
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=40 if title else 10, b=10),
                      legend=dict(orientation="h", y=-0.2))
    return fig


def step_curves(steps: list[dict]) -> go.Figure:
    """Loss, mean conditional entropy and marginal entropy per step."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "entropies"))
    x = [s["step"] for s in steps]
    fig.add_trace(go.Scatter(x=x, y=[s["loss"] for s in steps], name="loss", mode="lines"), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=[s["cond_entropy"] for s in steps], name="mean entropy H(p_i)",
                             mode="lines"), 1, 2)
    fig.add_trace(go.Scatter(x=x, y=[s["marginal_entropy"] for s in steps], name="marginal entropy H(mean p)",
                             mode="lines"), 1, 2)
    fig.update_xaxes(title_text="step")
    _layout(fig)
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10))  # room for the subplot titles
    return fig


def confidence_histogram(hist: dict, title: str = "", xlabel: str = "confidence (max softmax)") -> go.Figure:
    edges = np.asarray(hist["edges"])
    centres = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure()
    if "known" in hist:
        fig.add_bar(x=centres, y=hist["known"], name="truly known", marker_color=KNOWN_COLOR, opacity=0.75)
        fig.add_bar(x=centres, y=hist["unknown"], name="truly unknown", marker_color=UNKNOWN_COLOR, opacity=0.75)
        fig.update_layout(barmode="overlay")
    else:
        fig.add_bar(x=centres, y=hist["all"], name="all images", marker_color=ALL_COLOR)
    fig.update_xaxes(title_text=xlabel, range=[float(edges[0]), float(edges[-1])])
    fig.update_yaxes(title_text="images")
    return _layout(fig, title)


def threshold_histogram(hist: dict, threshold: float, score: str = "confidence (max softmax)") -> go.Figure:
    """The histogram of a known/unknown score with the threshold drawn on it."""
    fig = confidence_histogram(hist, f"{score} of every image; left of the line = rejected as unknown", score)
    fig.add_vline(x=threshold, line_dash="dash", line_color="#212529",
                  annotation_text=f"threshold {threshold:.3g}", annotation_position="top")
    return fig


def metric_curves(epochs: list[dict], keys=("gacc", "pacc", "auroc")) -> go.Figure:
    fig = go.Figure()
    x = [e["epoch"] for e in epochs]
    for k in keys:
        ys = [e["metrics"].get(k) for e in epochs]
        if any(y is not None for y in ys):
            fig.add_trace(go.Scatter(x=x, y=ys, name=k.upper(), mode="lines+markers"))
    fig.update_xaxes(title_text="epoch (0 = zero-shot)")
    fig.update_yaxes(range=[0, 1])
    return _layout(fig, "metrics per epoch")


def embedding_scatter(xy: np.ndarray, color: Sequence, hover: Sequence[str], title: str,
                      continuous: bool = False, colour_range: Optional[tuple[float, float]] = None,
                      threshold: Optional[float] = None, colour_title: str = "score") -> go.Figure:
    """A scatter of the images; customdata carries the image index for selections. SVG up to 3,000 points (it
    mounts faster: where the browser has no GPU, WebGL runs in software), WebGL above (smooth with 10,000).
    Continuous colours span ``colour_range`` (the same on maps that are compared; else the values' own), titled
    ``colour_title``; a ``threshold`` is the neutral middle of a diverging known/unknown scale, marked on the bar."""
    fig = go.Figure()
    idx = np.arange(len(xy))
    Scatter = go.Scatter if len(xy) <= 3000 else go.Scattergl
    if continuous:
        values = np.asarray(color, dtype=float)
        lo, hi = colour_range if colour_range is not None else (float(np.nanmin(values)), float(np.nanmax(values)))
        bar = dict(title=dict(text=colour_title))
        scale: object = "Viridis"
        if threshold is not None:
            scale = _diverging(lo, hi, threshold)
            bar.update(tickvals=[lo, threshold, hi], ticktext=[f"{lo:.3g}", f"threshold {threshold:.3g}", f"{hi:.3g}"])
        fig.add_trace(Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", customdata=idx, text=hover,
                              hovertemplate="%{text}<extra></extra>",
                              marker=dict(size=6, color=values, colorscale=scale, cmin=lo, cmax=hi, colorbar=bar)))
    else:
        color = np.asarray(color, dtype=object)
        for value in sorted(set(color.tolist()), key=str):
            m = color == value
            c = {"known": KNOWN_COLOR, "unknown": UNKNOWN_COLOR}.get(str(value))
            fig.add_trace(Scatter(x=xy[m, 0], y=xy[m, 1], mode="markers", name=str(value),
                                       customdata=idx[m], text=np.asarray(hover, dtype=object)[m],
                                       hovertemplate="%{text}<extra></extra>",
                                       marker=dict(size=6, color=c)))
    fig.update_layout(dragmode="lasso")
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    return _layout(fig, title, height=420)


NEUTRAL_COLOR = "#ced4da"  # a threshold's colour: grey, visible on white


def _diverging(lo: float, hi: float, threshold: float) -> list:
    """Unknown's orange below the threshold, known's green above, grey at it (where the threshold falls in
    [lo, hi]; one side only when it lies outside)."""
    mid = min(max((threshold - lo) / (hi - lo), 0.0), 1.0) if hi > lo else 0.5
    if mid <= 0:
        return [[0.0, NEUTRAL_COLOR], [1.0, KNOWN_COLOR]]
    if mid >= 1:
        return [[0.0, UNKNOWN_COLOR], [1.0, NEUTRAL_COLOR]]
    return [[0.0, UNKNOWN_COLOR], [mid, NEUTRAL_COLOR], [1.0, KNOWN_COLOR]]


CLASS_CHANGE_COLOR = "#7048e8"  # known both times, another class: violet, neither known's green nor unknown's


def colour_changes(fig: go.Figure, only_flipped: bool = False) -> go.Figure:
    """An ``embedding_scatter`` coloured by what adaptation changed (one trace per kind): each kind in its colour
    and named with its count, the unchanged points small, grey and drawn first (under the flips); with
    ``only_flipped`` they are hidden (legend only: a click on the legend shows them), and the flipped points keep
    their image indices for selections."""
    from ueo_core.analysis.changes import CLASS, DOWN, UNCHANGED, UP  # the kinds, named where they are decided
    colors = {UP: KNOWN_COLOR, DOWN: UNKNOWN_COLOR, CLASS: CLASS_CHANGE_COLOR, UNCHANGED: NEUTRAL_COLOR}
    for tr in fig.data:
        if tr.name in colors:
            kind = tr.name
            tr.marker.color = colors[kind]
            tr.name = f"{kind} · {len(tr.x)}"
            if kind == UNCHANGED:
                tr.marker.size = 4
                tr.visible = "legendonly" if only_flipped else True
    fig.data = sorted(fig.data, key=lambda t: not str(t.name).startswith(UNCHANGED))
    return fig


def confusion_heatmap(cm: np.ndarray, labels: Sequence[str]) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=cm, x=list(labels), y=list(labels), colorscale="Blues", text=cm,
                               texttemplate="%{text}", hovertemplate="true %{y} → predicted %{x}: %{z}<extra></extra>"))
    fig.update_xaxes(title_text="predicted")
    fig.update_yaxes(title_text="true", autorange="reversed")
    return _layout(fig, "confusion (with 'unknown')", height=420)


def bar(values: dict, title: str, ylabel: str = "", range_y: Optional[list] = (0, 1)) -> go.Figure:
    fig = go.Figure(go.Bar(x=list(values), y=list(values.values()), marker_color=ALL_COLOR))
    if range_y:
        fig.update_yaxes(range=list(range_y))
    fig.update_yaxes(title_text=ylabel)
    return _layout(fig, title)


def grouped_bars(groups: dict[str, dict], title: str, colors: Optional[dict] = None,
                 range_y: Optional[list] = (0, 1)) -> go.Figure:
    """Several bar series over the same categories, side by side in one chart (one chart mounts faster than
    several); ``groups`` maps a series name to {category: value}."""
    fig = go.Figure([go.Bar(name=name, x=list(vals), y=list(vals.values()),
                            marker_color=(colors or {}).get(name)) for name, vals in groups.items()])
    fig.update_layout(barmode="group")
    if range_y:
        fig.update_yaxes(range=list(range_y))
    return _layout(fig, title)


def method_color(method: str, k: int = 0) -> str:
    return METHOD_COLORS.get(method, _PALETTE[k % len(_PALETTE)])


def overlay_curves(series: dict[str, tuple[list, list]], title: str, xlabel: str,
                   methods: Optional[dict[str, str]] = None) -> go.Figure:
    """Curves of several runs on one axis (for quantities on one scale: AUROC, GACC); ``methods`` maps a series
    name to its method, which fixes its colour. Runs of the same method get dashes to tell them apart."""
    fig = go.Figure()
    seen: dict[str, int] = {}
    for k, (name, (x, y)) in enumerate(series.items()):
        m = (methods or {}).get(name, "")
        n = seen[m] = seen.get(m, -1) + 1
        fig.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines+markers",
                                 line=dict(color=method_color(m, k), dash=["solid", "dash", "dot", "dashdot"][n % 4])))
    fig.update_xaxes(title_text=xlabel)
    return _layout(fig, title)


def loss_panels(series: dict[str, tuple[list, list]], methods: dict[str, str]) -> go.Figure:
    """Each run's loss in its own panel: the losses of different methods live on different scales (entropy
    minimisation's is positive, IM's and UEO's negative), so one axis would mislead."""
    names = list(series)
    fig = make_subplots(rows=1, cols=max(1, len(names)), subplot_titles=names)
    for k, name in enumerate(names):
        x, y = series[name]
        fig.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines", showlegend=False,
                                 line=dict(color=method_color(methods.get(name, ""), k))), 1, k + 1)
    fig.update_xaxes(title_text="step")
    _layout(fig, "loss per step (own scale per run)")
    fig.update_layout(margin=dict(l=10, r=10, t=60, b=10))
    return fig


def reliability_diagram(rel: dict, title: str = "", color: str = ALL_COLOR) -> go.Figure:
    """A reliability diagram of ``metrics.reliability_bins``: per confidence bin (bars as wide as the bins) the
    accuracy of its images, a dot at their mean confidence, and the diagonal where the two match; empty bins are
    left out. The hover gives each bin's images, accuracy and mean confidence (in %, as the tables print them)."""
    edges, count = np.asarray(rel["edges"]), np.asarray(rel["count"])
    full = count > 0
    lo, hi = edges[:-1][full], edges[1:][full]
    acc, conf = np.asarray(rel["accuracy"])[full], np.asarray(rel["confidence"])[full]
    data = np.c_[lo * 100, hi * 100, count[full], acc * 100, conf * 100]
    hover = ("confidence %{customdata[0]:.1f}–%{customdata[1]:.1f}<br>images: %{customdata[2]}<br>accuracy "
             "%{customdata[3]:.1f}<br>mean confidence %{customdata[4]:.1f}<extra></extra>")
    fig = go.Figure()
    fig.add_bar(x=(lo + hi) / 2, y=acc, width=hi - lo, name="accuracy (images in the bin above each bar)",
                marker_color=color, opacity=0.75, customdata=data, hovertemplate=hover, text=count[full],
                textposition="outside", textfont=dict(size=9), cliponaxis=False)
    fig.add_trace(go.Scatter(x=conf, y=conf, mode="markers", name="mean confidence", customdata=data,
                             marker=dict(color="#212529", size=7), hovertemplate=hover))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="calibrated (accuracy = confidence)",
                             line=dict(color="#868e96", dash="dash"), hoverinfo="skip"))
    fig.update_xaxes(title_text="confidence (max softmax)", range=[0, 1.02], tickformat=".0%")
    fig.update_yaxes(title_text="accuracy", range=[0, 1.1], tickformat=".0%", tickvals=np.linspace(0, 1, 6))
    return _layout(fig, title, height=360)


def class_share_curves(epochs: list[dict], classes: Sequence[str]) -> go.Figure:
    """Share of images predicted as each class, per evaluated epoch: a collapse shows as one band taking over."""
    fig = go.Figure()
    x = [e["epoch"] for e in epochs]
    for k, c in enumerate(classes):
        fig.add_trace(go.Scatter(x=x, y=[(e.get("class_shares") or [0] * len(classes))[k] for e in epochs],
                                 name=c, mode="lines", stackgroup="shares", line=dict(width=0.5,
                                 color=_PALETTE[k % len(_PALETTE)])))
    fig.update_yaxes(range=[0, 1], title_text="share of images", tickformat=".0%")
    fig.update_xaxes(title_text="epoch (0 = zero-shot)", dtick=1)
    return _layout(fig, "predicted class shares per epoch", height=340)


def histogram_animation(epochs: list[dict]) -> go.Figure:
    """Confidence histograms of every evaluated epoch, with a slider and a play button. The figure opens on the
    latest epoch (its bars and the slider agree), so during a run it follows the training."""
    last = confidence_histogram(epochs[-1]["histogram"])
    frames = []
    for e in epochs:
        f = confidence_histogram(e["histogram"])
        frames.append(go.Frame(data=f.data, name=str(e["epoch"])))
    fig = go.Figure(data=last.data, layout=last.layout, frames=frames)
    shown = ("known", "unknown") if "known" in epochs[0]["histogram"] else ("all",)
    ymax = max(max(max(e["histogram"][k]) for k in shown) for e in epochs) or 1
    fig.update_yaxes(range=[0, ymax * 1.1])
    steps = [dict(method="animate", label=str(e["epoch"]),
                  args=[[str(e["epoch"])], dict(mode="immediate", frame=dict(duration=300, redraw=True),
                                                transition=dict(duration=0))]) for e in epochs]
    fig.update_layout(
        sliders=[dict(active=len(epochs) - 1, currentvalue=dict(prefix="epoch "), steps=steps, pad=dict(t=30))],
        updatemenus=[dict(type="buttons", showactive=False, x=1.0, y=1.25, xanchor="right", yanchor="bottom",
                          buttons=[dict(label="▶ play", method="animate",
                                        args=[None, dict(frame=dict(duration=500, redraw=True),
                                                         fromcurrent=False)])])],
        legend=dict(orientation="h", x=0, y=1.02, yanchor="bottom"),
        margin=dict(l=10, r=10, t=90, b=10),
        height=460, title="confidence histogram per epoch (0 = zero-shot)")
    return fig


def method_scores(rows: Sequence[dict], labels: dict[str, str], keys=("gacc", "auroc", "h_score")) -> go.Figure:
    """The lesson's scores side by side: one group per score, one bar per method in its colour."""
    fig = go.Figure()
    names = {"gacc": "GACC", "auroc": "AUROC", "h_score": "H-score", "pacc": "PACC"}
    for r in rows:
        have = [k for k in keys if r["after"].get(k) is not None]
        fig.add_trace(go.Bar(x=[names[k] for k in have], y=[r["after"][k] for k in have],
                             name=labels.get(r["method"], r["method"]), marker_color=method_color(r["method"]),
                             text=[f"{r['after'][k] * 100:.0f}" for k in have], textposition="outside",
                             textfont=dict(size=10), cliponaxis=False))
    fig.update_yaxes(range=[0, 1.1], tickformat=".0%")
    fig.update_layout(barmode="group")
    return _layout(fig, "scores after adaptation (same data, seed and settings)", height=360)


def method_shares(rows: Sequence[dict], labels: dict[str, str]) -> go.Figure:
    """Each method's final predicted-class shares as one stacked bar: a collapse is one colour filling the bar."""
    fig = go.Figure()
    classes = rows[0]["classes"] if rows else []
    ys = [labels.get(r["method"], r["method"]) for r in rows]
    for k, c in enumerate(classes):
        xs = [(r["after"].get("class_shares") or [0] * len(classes))[k] for r in rows]
        fig.add_trace(go.Bar(y=ys, x=xs, name=c, orientation="h", marker_color=_PALETTE[k % len(_PALETTE)],
                             hovertemplate=f"{c}: %{{x:.0%}}<extra></extra>"))
    fig.update_xaxes(range=[0, 1], tickformat=".0%", title_text="share of images predicted as each class")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(barmode="stack")
    return _layout(fig, "where the predictions went", height=120 + 45 * len(rows))


def toy_descent_animation(runs: dict[str, list[dict]], labels: dict[str, str], every: int = 4) -> dict:
    """The toy batch under gradient steps, one panel per method: each image's class probabilities as a stacked
    bar, animated step by step (play / slider). Opens on step 0. Built as a plain dict (Plotly validates it once
    when shown): making 20 frames of graph objects took 150 ms a rerun; a frame every 4 steps halves the rest."""
    methods = list(runs)
    fig = make_subplots(rows=1, cols=len(methods), subplot_titles=[labels.get(m, m) for m in methods],
                        shared_yaxes=True)
    n_steps = len(runs[methods[0]])
    steps = list(range(0, n_steps, every))
    if steps[-1] != n_steps - 1:
        steps.append(n_steps - 1)

    def traces(s: int) -> list[dict]:
        out = []
        for j, m in enumerate(methods):
            p = runs[m][s]["probs"]
            xs = [f"image {i + 1}" for i in range(p.shape[0])]
            for k in range(p.shape[1]):
                out.append(dict(type="bar", x=xs, y=p[:, k].tolist(), name=f"class {k + 1}",
                                legendgroup=f"class {k + 1}", showlegend=j == 0,
                                marker=dict(color=_PALETTE[k % len(_PALETTE)]),
                                text=[f"{v:.0%}" if v >= 0.15 else "" for v in p[:, k]], textposition="inside",
                                xaxis=f"x{j + 1}" if j else "x", yaxis=f"y{j + 1}" if j else "y"))
        return out

    fig.update_layout(barmode="stack")
    fig.update_yaxes(range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title_text="probability", col=1)
    slider_steps = [dict(method="animate", label=str(s),
                         args=[[str(s)], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                              transition=dict(duration=0))]) for s in steps]
    fig.update_layout(
        sliders=[dict(active=0, currentvalue=dict(prefix="gradient step "), steps=slider_steps, pad=dict(t=30))],
        updatemenus=[dict(type="buttons", showactive=False, x=1.0, y=1.18, xanchor="right", yanchor="bottom",
                          buttons=[dict(label="▶ take gradient steps", method="animate",
                                        args=[None, dict(frame=dict(duration=300, redraw=True),
                                                         fromcurrent=False, transition=dict(duration=0))])])],
        legend=dict(orientation="h", x=0, y=1.12, yanchor="bottom"), height=460, margin=dict(l=10, r=10, t=90, b=10))
    spec = fig.to_dict()
    spec["data"] = traces(0)
    spec["frames"] = [{"name": str(s), "data": traces(s)} for s in steps]
    return spec


# ------------------------------------------------------------------------------------ a live run's figures, cached
def _signature(path: Path) -> Optional[tuple]:
    try:
        st_ = os.stat(path)
        return st_.st_size, st_.st_mtime_ns
    except OSError:
        return None


@st.cache_resource(max_entries=64, ttl=900, show_spinner=False)
def _step_figure(run_dir: str, signature: tuple) -> go.Figure:
    from ueo_core.runs import RunFolder
    return step_curves(RunFolder(run_dir).read_jsonl("steps.jsonl"))


@st.cache_resource(max_entries=64, ttl=900, show_spinner=False)
def _epoch_figures(run_dir: str, signature: tuple, classes: tuple) -> dict[str, go.Figure]:
    from ueo_core.runs import RunFolder
    epochs = RunFolder(run_dir).read_jsonl("epochs.jsonl")
    figs = {"hist": histogram_animation(epochs)}
    if "auroc" in epochs[0]["metrics"]:
        figs["metrics"] = metric_curves(epochs)
    if epochs[-1].get("class_shares"):
        figs["shares"] = class_share_curves(epochs, classes)
    return figs


def live_figures(run_dir: str | Path, classes: Sequence[str]) -> dict[str, go.Figure]:
    """A run's curves ("curves"), confidence histogram animation ("hist"), metric curves ("metrics") and class
    shares ("shares"), those it has logged so far. Built once per content of steps.jsonl / epochs.jsonl and shared
    by every session that follows the run: a live Adapt page redraws every second, and building the histogram
    animation alone takes ~85 ms on this CPU (bench/classroom.py). Figures are not changed after they are built."""
    run_dir = Path(run_dir)
    out: dict[str, go.Figure] = {}
    sig = _signature(run_dir / "steps.jsonl")
    if sig and sig[0]:
        out["curves"] = _step_figure(str(run_dir), sig)
    sig = _signature(run_dir / "epochs.jsonl")
    if sig and sig[0]:
        out.update(_epoch_figures(str(run_dir), sig, tuple(classes)))
    return out


# ------------------------------------------------------------------------------ the point map (10,000 - 100,000)
# Explore's maps above PLOTLY_MAX points. Plotly's WebGL scatter, which runs in software where the browser has no
# GPU, took seconds to mount and to answer a lasso at 100,000 points (bench/map_scale.py); this map draws on a 2-D
# canvas by writing pixels (a few ms for 100,000 points), selects by lasso or box in the browser, and shows the
# hovered image's thumbnail: a tile of the sprite sheets that the exploration job made (ueo_core.thumbs), fetched
# by the browser as Streamlit media (an address of content hashes: no server path). Points are sent as binary
# (float32 coordinates, uint16 colour codes), their hover texts as columns (``hover_table``: codes into tables of
# distinct texts, score values), written into a text by the browser for the hovered point only.
PLOTLY_MAX = 3000

_MAP_JS = r"""
const HOVER_PX = 7;
function decode(raw) {
  const u8 = raw instanceof Uint8Array ? raw : new Uint8Array(raw.buffer ? raw.buffer : raw);
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const hlen = dv.getUint32(0, true);
  const head = JSON.parse(new TextDecoder().decode(u8.subarray(4, 4 + hlen)));
  let off = 4 + hlen; off += (8 - (off % 8)) % 8;
  const n = head.n, buf = u8.buffer.slice(u8.byteOffset + off, u8.byteOffset + u8.byteLength);
  const T = {f32: Float32Array, f64: Float64Array, u8: Uint8Array, u16: Uint16Array, u32: Uint32Array}, A = {};
  head.arrays.forEach(([name, type, at]) => { A[name] = new T[type](buf, at, n); });
  return {head, x: A.x, y: A.y, code: A.code, A, n};
}
function esc(t) { return String(t).replace(/[&<>"]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'})[c]); }
function g3(v) {  // Python's f"{v:.3g}"
  if (!isFinite(v)) return isNaN(v) ? 'nan' : (v > 0 ? 'inf' : '-inf');
  if (v === 0) return (1 / v < 0) ? '-0' : '0';
  const [m, e] = v.toExponential(2).split('e'), E = +e;
  const trim = t => t.includes('.') ? t.replace(/0+$/, '').replace(/\.$/, '') : t;
  if (E < -4 || E >= 3) return trim(m) + 'e' + (E < 0 ? '-' : '+') + String(Math.abs(E)).padStart(2, '0');
  return trim(v.toFixed(2 - E));
}
function hoverText(D, i) {  // the lines of charts.hover_texts, from the point's codes and values
  const h = D.head.hover, out = [];
  for (const line of h.lines) {
    let skip = false;
    const t = line.replace(/\{(\w+)\}/g, (all, k) => {
      if (h.tables[k]) { const v = h.tables[k][D.A['h:' + k][i]]; if (v === '') skip = true; return esc(v); }
      if (D.A['v:' + k]) return g3(D.A['v:' + k][i]);
      return all; });
    if (!skip) out.push(t);
  }
  return out.join('<br>');
}
function hexRgb(h) { const v = parseInt(h.slice(1), 16); return [(v >> 16) & 255, (v >> 8) & 255, v & 255]; }
function inPoly(px, py, poly) {
  let inside = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i], [xj, yj] = poly[j];
    if (((yi > py) !== (yj > py)) && (px < (xj - xi) * (py - yi) / (yj - yi) + xi)) inside = !inside;
  }
  return inside;
}
export default function(component) {
  const { data, parentElement, setStateValue } = component;
  const root = parentElement.querySelector('.ueo-map');
  let S = root.__ueo;
  if (!S) {
    S = root.__ueo = {mode: 'lasso', view: null, sel: null, sig: null, drawMs: 0, frames: 0};
    S.canvas = root.querySelector('canvas'); S.tip = root.querySelector('.tip');
    S.legend = root.querySelector('.legend'); S.title = root.querySelector('.title');
    root.querySelectorAll('button[data-mode]').forEach(b => b.onclick = () => {
      S.mode = b.dataset.mode;
      root.querySelectorAll('button[data-mode]').forEach(o => o.classList.toggle('on', o === b));
    });
    root.querySelector('button.reset').onclick = () => { S.view = null; draw(); };
    root.querySelector('button.clear').onclick = () => { S.sel = null; draw(); send(); };
  }
  // the same points as drawn already (a rerun after a lasso sends them again): keep what was decoded and indexed
  const raw = data instanceof Uint8Array ? data : new Uint8Array(data.buffer ? data.buffer : data);
  const stamp = raw.byteLength + ':' + new TextDecoder().decode(raw.subarray(4, 64));
  if (S.stamp === stamp && S.D) { if (S.draw) S.draw(); return; }
  S.stamp = stamp;
  const D = decode(data);
  const H = D.head;
  if (S.sig !== H.sig) { S.sig = H.sig; S.sel = null; S.view = null; S.hidden = new Set(H.hidden || []); }
  if (S.sel === null && H.selection && H.selection.length) S.sel = new Set(H.selection);
  S.D = D; S.H = H;
  S.rgb = H.palette.map(hexRgb);
  S.title.textContent = H.title;
  S.canvas.style.height = H.height + 'px';
  // the extent of the data, padded
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < D.n; i++) { const a = D.x[i], b = D.y[i];
    if (a < x0) x0 = a; if (a > x1) x1 = a; if (b < y0) y0 = b; if (b > y1) y1 = b; }
  const px = (x1 - x0) * 0.04 || 1, py = (y1 - y0) * 0.04 || 1;
  S.full = [x0 - px, x1 + px, y0 - py, y1 + py];
  // a grid over the data for the hover's nearest point
  const G = 128, cnt = new Int32Array(G * G + 1), cell = new Int32Array(D.n);
  for (let i = 0; i < D.n; i++) {
    const gx = Math.min(G - 1, Math.floor((D.x[i] - S.full[0]) / (S.full[1] - S.full[0]) * G));
    const gy = Math.min(G - 1, Math.floor((D.y[i] - S.full[2]) / (S.full[3] - S.full[2]) * G));
    cell[i] = gy * G + gx; cnt[cell[i] + 1]++;
  }
  for (let c = 0; c < G * G; c++) cnt[c + 1] += cnt[c];
  const order = new Int32Array(D.n), fill = cnt.slice();
  for (let i = 0; i < D.n; i++) order[fill[cell[i]]++] = i;
  S.grid = {G, cnt, order};
  // legend: a click hides or shows a kind
  S.legend.innerHTML = '';
  if (H.bar) {
    const b = document.createElement('div'); b.className = 'bar';
    b.innerHTML = `<span>${H.bar.title}</span><i style="background:linear-gradient(90deg,${H.bar.stops})"></i>` +
      `<small>${H.bar.ticks.join(' · ')}</small>`;
    S.legend.appendChild(b);
  }
  (H.legend || []).forEach(item => {
    const el = document.createElement('button'); el.className = 'item' + (S.hidden.has(item.code) ? ' off' : '');
    el.innerHTML = `<b style="background:${H.palette[item.code]}"></b>${item.name}`;
    el.onclick = () => { S.hidden.has(item.code) ? S.hidden.delete(item.code) : S.hidden.add(item.code);
      el.classList.toggle('off'); draw(); };
    S.legend.appendChild(el);
  });
  function view() { return S.view || S.full; }
  function toPx(i, w, h, v) { return [(D.x[i] - v[0]) / (v[1] - v[0]) * w, (1 - (D.y[i] - v[2]) / (v[3] - v[2])) * h]; }
  function draw() {
    const t0 = performance.now();
    const c = S.canvas, dpr = 1, w = c.clientWidth, h = c.clientHeight;
    if (!w || !h) return;
    if (c.width !== w * dpr || c.height !== h * dpr) { c.width = w * dpr; c.height = h * dpr; }
    const ctx = c.getContext('2d'), img = ctx.createImageData(c.width, c.height);
    const px32 = new Uint32Array(img.data.buffer); px32.fill(0xffffffff);
    const v = view(), sx = c.width / (v[1] - v[0]), sy = c.height / (v[3] - v[2]);
    const r = D.n > 20000 ? 1 : 2, sel = S.sel, W = c.width, Hh = c.height;
    const cols = S.rgb.map(([a, b, d]) => (255 << 24) | (d << 16) | (b << 8) | a);
    const dim = S.rgb.map(([a, b, d]) => (255 << 24) | (((d + 3 * 235) / 4) << 16) | (((b + 3 * 235) / 4) << 8) | ((a + 3 * 235) / 4));
    for (let pass = 0; pass < 2; pass++) for (let i = 0; i < D.n; i++) {
      const k = D.code[i]; if (S.hidden.has(k)) continue;
      const on = !sel || sel.has(i); if ((pass === 0) === on && sel) continue; if (pass === 1 && !sel) continue;
      const X = Math.round((D.x[i] - v[0]) * sx), Y = Math.round((v[3] - D.y[i]) * sy);
      if (X < -r || Y < -r || X > W + r || Y > Hh + r) continue;
      const col = on ? cols[k] : dim[k];
      for (let dy = -r; dy <= r; dy++) { const yy = Y + dy; if (yy < 0 || yy >= Hh) continue;
        for (let dx = -r; dx <= r; dx++) { const xx = X + dx; if (xx >= 0 && xx < W && dx * dx + dy * dy <= r * r + 1) px32[yy * W + xx] = col; } }
    }
    ctx.putImageData(img, 0, 0);
    (H.ring || []).forEach(i => { const [a, b] = toPx(i, W, Hh, v);
      ctx.beginPath(); ctx.arc(a, b, 6, 0, 2 * Math.PI); ctx.strokeStyle = '#212529'; ctx.lineWidth = 1.5; ctx.stroke(); });
    if (S.path && S.path.length > 1) { ctx.beginPath(); ctx.moveTo(...S.path[0]); S.path.forEach(p => ctx.lineTo(...p));
      if (S.mode === 'lasso') ctx.closePath(); ctx.strokeStyle = '#1c7ed6'; ctx.setLineDash([4, 3]); ctx.stroke(); ctx.setLineDash([]); }
    S.drawMs = performance.now() - t0; S.frames++;
    c.dataset.frames = S.frames; c.dataset.drawMs = S.drawMs.toFixed(1);
  }
  function send() {
    const idx = S.sel ? Array.from(S.sel) : [];
    setStateValue('selection', {indices: idx, sig: H.sig});
  }
  function nearest(mx, my) {
    const c = S.canvas, v = view(), w = c.clientWidth, h = c.clientHeight, g = S.grid;
    const dx = mx / w * (v[1] - v[0]) + v[0], dy = (1 - my / h) * (v[3] - v[2]) + v[2];
    const rx = HOVER_PX / w * (v[1] - v[0]), ry = HOVER_PX / h * (v[3] - v[2]);
    const f = S.full, G = g.G;
    const cx0 = Math.max(0, Math.floor((dx - rx - f[0]) / (f[1] - f[0]) * G)), cx1 = Math.min(G - 1, Math.floor((dx + rx - f[0]) / (f[1] - f[0]) * G));
    const cy0 = Math.max(0, Math.floor((dy - ry - f[2]) / (f[3] - f[2]) * G)), cy1 = Math.min(G - 1, Math.floor((dy + ry - f[2]) / (f[3] - f[2]) * G));
    let best = -1, bd = 2;
    for (let gy = cy0; gy <= cy1; gy++) for (let gx = cx0; gx <= cx1; gx++) {
      const c0 = gy * G + gx;
      for (let q = g.cnt[c0]; q < g.cnt[c0 + 1]; q++) { const i = g.order[q];
        if (S.hidden.has(D.code[i])) continue;
        const ex = (D.x[i] - dx) / rx, ey = (D.y[i] - dy) / ry, d = ex * ex + ey * ey;
        if (d <= 1 && d < bd) { bd = d; best = i; } }
    }
    return best;
  }
  function showTip(i, mx, my) {
    if (i < 0) { S.tip.style.display = 'none'; S.tip.dataset.index = ''; return; }
    const t = H.thumbs;
    let pic = '';
    if (t && t.sheets && i < t.n) {
      const k = Math.floor(i / t.per_sheet), j = i % t.per_sheet;
      pic = `<div class="pic" style="width:${t.tile}px;height:${t.tile}px;background:url('${t.sheets[k]}') -${(j % t.per_row) * t.tile}px -${Math.floor(j / t.per_row) * t.tile}px"></div>`;
    }
    S.tip.innerHTML = pic + `<div>${hoverText(S.D, i)}</div>`;
    S.tip.dataset.index = i;
    S.tip.style.display = 'flex';
    const w = S.canvas.clientWidth;
    S.tip.style.left = Math.min(mx + 14, Math.max(0, w - 300)) + 'px'; S.tip.style.top = (my + 14) + 'px';
  }
  if (!S.bound) {
    S.bound = true;
    const c = S.canvas;
    const pos = e => { const b = c.getBoundingClientRect(); return [e.clientX - b.left, e.clientY - b.top]; };
    c.addEventListener('wheel', e => {
      e.preventDefault();
      const [mx, my] = pos(e), v = S.view || S.full, w = c.clientWidth, h = c.clientHeight;
      const f = Math.exp(e.deltaY * 0.0015), ax = v[0] + mx / w * (v[1] - v[0]), ay = v[3] - my / h * (v[3] - v[2]);
      S.view = [ax - (ax - v[0]) * f, ax + (v[1] - ax) * f, ay - (ay - v[2]) * f, ay + (v[3] - ay) * f];
      S.draw();
    }, {passive: false});
    c.addEventListener('dblclick', () => { S.view = null; S.draw(); });
    c.addEventListener('pointerdown', e => {
      c.setPointerCapture(e.pointerId);
      const p = pos(e); S.down = p; S.path = [p]; S.v0 = (S.view || S.full).slice();
      S.tip.style.display = 'none';
    });
    c.addEventListener('pointermove', e => {
      const p = pos(e);
      if (!S.down) { showTip(S.nearest(p[0], p[1]), p[0], p[1]); return; }
      if (S.mode === 'pan') {
        const v = S.v0, w = c.clientWidth, h = c.clientHeight;
        const ddx = (p[0] - S.down[0]) / w * (v[1] - v[0]), ddy = (p[1] - S.down[1]) / h * (v[3] - v[2]);
        S.view = [v[0] - ddx, v[1] - ddx, v[2] + ddy, v[3] + ddy]; S.path = null;
      } else if (S.mode === 'box') { S.path = [S.down, [p[0], S.down[1]], p, [S.down[0], p[1]], S.down]; }
      else S.path.push(p);
      S.draw();
    });
    c.addEventListener('pointerleave', () => { if (!S.down) S.tip.style.display = 'none'; });
    c.addEventListener('pointerup', e => {
      const path = S.path; S.down = null; S.path = null;
      if (S.mode !== 'pan' && path && path.length > 2) {
        const v = S.view || S.full, w = c.clientWidth, h = c.clientHeight, D2 = S.D, got = new Set();
        let bx0 = Infinity, bx1 = -Infinity, by0 = Infinity, by1 = -Infinity;
        path.forEach(([a, b]) => { bx0 = Math.min(bx0, a); bx1 = Math.max(bx1, a); by0 = Math.min(by0, b); by1 = Math.max(by1, b); });
        for (let i = 0; i < D2.n; i++) { if (S.hidden.has(D2.code[i])) continue;
          const a = (D2.x[i] - v[0]) / (v[1] - v[0]) * w, b = (1 - (D2.y[i] - v[2]) / (v[3] - v[2])) * h;
          if (a < bx0 || a > bx1 || b < by0 || b > by1) continue;
          if (inPoly(a, b, path)) got.add(i); }
        S.sel = got.size ? got : null; S.send();
      }
      S.draw();
    });
  }
  S.draw = draw; S.nearest = nearest; S.send = send;
  draw();
}
"""

_MAP_HTML = """<div class="ueo-map"><div class="title"></div><div class="tools">
<button data-mode="lasso" class="on" title="draw around points to select them">Lasso</button>
<button data-mode="box" title="drag a rectangle to select">Box</button>
<button data-mode="pan" title="drag to move the map (the wheel zooms)">Pan</button>
<button class="reset" title="the whole map (or double-click)">Reset view</button>
<button class="clear" title="select nothing">Clear selection</button></div>
<div class="stage"><canvas></canvas><div class="tip"></div></div><div class="legend"></div></div>"""

_MAP_CSS = """
.ueo-map { font: 13px sans-serif; color: #212529; }
.ueo-map .title { font-size: 16px; margin: 4px 0; }
.ueo-map .tools button, .ueo-map .legend button { border: 1px solid #ced4da; background: #fff; border-radius: 4px;
  padding: 1px 8px; margin: 0 4px 4px 0; cursor: pointer; font: inherit; }
.ueo-map .tools button.on { background: #e7f5ff; border-color: #1c7ed6; }
.ueo-map .stage { position: relative; }
.ueo-map canvas { width: 100%; display: block; border: 1px solid #f1f3f5; cursor: crosshair; touch-action: none; }
.ueo-map .tip { position: absolute; display: none; gap: 8px; align-items: flex-start; background: #fff;
  border: 1px solid #adb5bd; border-radius: 4px; padding: 6px; pointer-events: none; max-width: 300px;
  box-shadow: 0 2px 6px rgba(0,0,0,.15); z-index: 2; }
.ueo-map .tip .pic { flex: none; border: 1px solid #dee2e6; }
.ueo-map .legend { margin-top: 4px; }
.ueo-map .legend b { display: inline-block; width: 10px; height: 10px; border-radius: 5px; margin-right: 4px; }
.ueo-map .legend .off { opacity: .4; text-decoration: line-through; }
.ueo-map .bar i { display: inline-block; width: 160px; height: 10px; margin: 0 6px; vertical-align: middle; }
"""


@st.cache_resource(show_spinner=False)
def _map_component():
    # in the page's DOM (no shadow root): its styles are all under .ueo-map, and tests and benches find it
    return st.components.v2.component("ueo_point_map", html=_MAP_HTML, css=_MAP_CSS, js=_MAP_JS,
                                      isolate_styles=False)


def hover_table(lines: Sequence[str], **columns) -> dict:
    """What a map's hover says of each point, compact: ``lines`` are templates naming ``columns`` in braces
    ("predicted: {pred} ({kind})"). A column of text goes to the browser once as its distinct values and a code per
    point; a column of numbers as float64, written with 3 significant digits (Python's ``.3g``). A line with a text
    column empty for a point is left out for it (no "true:" line without a true class). 100,000 hover texts were
    ~7 MB a map, sent again on each of a lasso's redraws."""
    cats, nums = {}, {}
    for name, values in columns.items():
        a = np.asarray(values)
        if a.dtype.kind in "fiub":
            nums[name] = a.astype(np.float64)
        else:
            table, codes = np.unique(a.astype(str), return_inverse=True)
            kind = np.uint8 if len(table) <= 256 else np.uint16 if len(table) <= 65536 else np.uint32
            cats[name] = (codes.astype(kind).ravel(), table.tolist())
    return {"lines": list(lines), "cats": cats, "nums": nums}


def hover_texts(hover: dict) -> list[str]:
    """Every point's hover text from a ``hover_table``, as the point map writes it in the browser (Plotly's maps
    show these)."""
    import re
    cats, nums = hover["cats"], hover["nums"]
    n = len(next(iter(cats.values()))[0]) if cats else len(next(iter(nums.values()), []))
    lines = [(line, re.findall(r"\{(\w+)\}", line)) for line in hover["lines"]]
    out = []
    for i in range(n):
        shown = []
        for line, names in lines:
            vals = {k: cats[k][1][cats[k][0][i]] if k in cats else f"{nums[k][i]:.3g}" for k in names
                    if k in cats or k in nums}
            if any(k in cats and vals[k] == "" for k in names):
                continue
            shown.append(re.sub(r"\{(\w+)\}", lambda m: vals.get(m.group(1), m.group(0)), line))
        out.append("<br>".join(shown))
    return out


def map_payload(xy: np.ndarray, codes: np.ndarray, head: dict, hover: Optional[dict] = None) -> bytes:
    """The binary the point map reads: uint32 header length, the JSON header, padding to 8 bytes, then the arrays
    the header's "arrays" lists as [name, type, byte offset]: float32 "x" and "y", uint16 colour "code", and per
    ``hover_table`` column a uint8/16/32 "h:<name>" (codes into the header's hover tables, as few bytes as the table
    needs) or a float64 "v:<name>"; each in the points' order (index = image index), each at a multiple of 8."""
    import json
    xy = np.asarray(xy, dtype=np.float32)
    arrays = [("x", "f32", np.ascontiguousarray(xy[:, 0])), ("y", "f32", np.ascontiguousarray(xy[:, 1])),
              ("code", "u16", np.asarray(codes, dtype=np.uint16))]
    if hover is not None:
        arrays += [(f"h:{k}", {1: "u8", 2: "u16"}.get(np.asarray(c).itemsize, "u32"),
                    np.asarray(c, {1: np.uint8, 2: np.uint16}.get(np.asarray(c).itemsize, np.uint32)))
                   for k, (c, _) in hover["cats"].items()]
        arrays += [(f"v:{k}", "f64", np.asarray(v, np.float64)) for k, v in hover["nums"].items()]
        head = {**head, "hover": {"lines": hover["lines"], "tables": {k: t for k, (_, t) in hover["cats"].items()}}}
    parts, at = [], 0
    for name, kind, arr in arrays:
        b = arr.tobytes()
        parts.append((name, kind, at, b))
        at += len(b) + (8 - len(b) % 8) % 8
    h = json.dumps({**head, "arrays": [[name, kind, off] for name, kind, off, _ in parts]},
                   separators=(",", ":")).encode()
    body = b"".join(b + b"\0" * ((8 - len(b) % 8) % 8) for *_, b in parts)
    return b"".join([np.uint32(len(h)).tobytes(), h, b"\0" * ((8 - (4 + len(h)) % 8) % 8), body])


def map_colours(color: Sequence, continuous: bool = False, colour_range: Optional[tuple[float, float]] = None,
                threshold: Optional[float] = None, colour_title: str = "score", colors: Optional[dict] = None,
                hidden: Sequence[str] = ()) -> tuple[np.ndarray, dict]:
    """(each point's colour code, the header's palette / legend / bar) for the point map, with the same colours
    as ``embedding_scatter``: known green, unknown orange, classes from the palette, a score on the diverging
    known/unknown scale centred on the threshold; ``colors`` fixes some kinds' colours (what adaptation changed),
    and the kinds in ``hidden`` start hidden (their legend item shows them). A legend item names its kind and
    count."""
    from plotly.colors import sample_colorscale
    if continuous:
        values = np.asarray(color, dtype=float)
        lo, hi = colour_range if colour_range is not None else (float(np.nanmin(values)), float(np.nanmax(values)))
        scale = _diverging(lo, hi, threshold) if threshold is not None else "Viridis"
        steps = 64
        palette = [_hex(c) for c in sample_colorscale(scale, [k / (steps - 1) for k in range(steps)])]
        pos = np.clip((np.nan_to_num(values, nan=lo) - lo) / ((hi - lo) or 1.0), 0, 1)
        codes = np.rint(pos * (steps - 1)).astype(np.uint16)
        ticks = [f"{lo:.3g}"] + ([f"threshold {threshold:.3g}"] if threshold is not None else []) + [f"{hi:.3g}"]
        stops = ",".join(palette[:: max(1, steps // 8)] + [palette[-1]])
        return codes, {"palette": palette, "legend": [], "bar": {"title": colour_title, "stops": stops,
                                                                "ticks": ticks}}
    color = np.asarray(color, dtype=object)
    kinds = sorted(set(color.tolist()), key=str)
    palette, legend = [], []
    codes = np.zeros(len(color), dtype=np.uint16)
    for k, value in enumerate(kinds):
        m = color == value
        codes[m] = k
        fixed = {"known": KNOWN_COLOR, "unknown": UNKNOWN_COLOR, **(colors or {})}
        palette.append(fixed.get(str(value), _PALETTE[k % len(_PALETTE)]))
        legend.append({"code": k, "name": f"{value} · {int(m.sum())}"})
    return codes, {"palette": palette, "legend": legend, "bar": None,
                   "hidden": [k for k, v in enumerate(kinds) if str(v) in set(hidden)]}


def _hex(c: str) -> str:
    """Plotly's "rgb(r, g, b)" (or a hex) as #rrggbb."""
    if c.startswith("#"):
        return c
    r, g, b = (int(float(v)) for v in c[c.index("(") + 1:c.index(")")].split(",")[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def _sheet_urls(sheets: Sequence[str]) -> list[str]:
    """The thumbnail sheets as Streamlit media addresses (``/media/<content hash>.jpg``: no path leaves the
    server); the browser fetches a sheet when one of its points is first hovered. Registered once per session and
    content of the sheets (their sizes and times): Streamlit keeps a session's media until the session ends, and
    hashing 38 MB of sheets (100,000 images) for each map on each redraw cost a lasso ~0.3 s."""
    from streamlit import runtime
    if not runtime.exists():  # bare mode (AppTest): no media server, nothing to fetch
        return [f"sheet-{k}" for k in range(len(sheets))]
    stamp = tuple((str(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in sheets)
    done = st.session_state.get(_SHEETS)
    if done and done[0] == stamp:
        return done[1]
    mgr = runtime.get_instance().media_file_mgr
    urls = [mgr.add(_sheet_bytes(p, t), "image/jpeg", f"ueo-map-sheet-{p}") for p, _, t in stamp]
    st.session_state[_SHEETS] = (stamp, urls)
    return urls


_SHEETS = "ueo_map_sheets"  # (the sheets' stamp, their media addresses) registered in this session


@st.cache_resource(max_entries=512, ttl=900, show_spinner=False)
def _sheet_bytes(path: str, mtime_ns: int) -> bytes:
    return Path(path).read_bytes()


def point_map(xy: np.ndarray, codes: np.ndarray, style: dict, hover: dict, title: str, key: str,
              thumbs: Optional[dict] = None, sheets: Sequence[str] = (), ring: Sequence[int] = (),
              height: int = 420) -> list[int]:
    """Draws the point map; returns the indices (into ``xy``) of the points selected by lasso or box, [] for none.
    ``hover`` is a ``hover_table`` (each point's hover text, made in the browser); ``thumbs`` is the thumbnails'
    meta (``ueo_core.thumbs``) and ``sheets`` their files: with them a hovered point shows its image. A new set of
    points (another projection, colouring or run) starts with no selection."""
    import hashlib
    xy = np.asarray(xy, dtype=np.float32)
    head = {"n": int(len(xy)), "sig": "", "title": title, "height": int(height),
            "ring": [int(i) for i in ring], **style}
    if thumbs and sheets:
        head["thumbs"] = {k: thumbs[k] for k in ("n", "tile", "per_row", "per_sheet")}
        head["thumbs"]["sheets"] = _sheet_urls(sheets)
    raw = map_payload(xy, codes, head, hover)  # (its signature: the points, colours, hover, title, thumbnails)
    head["sig"] = sig = hashlib.sha1(raw).hexdigest()[:16]
    try:  # the selection Python holds (drawn again by a map that was mounted anew, e.g. after a page switch)
        prev = (st.session_state.get(key) or {}).get("selection") or {}
    except Exception:  # noqa: BLE001 (no state yet)
        prev = {}
    if prev.get("sig") == sig:
        head["selection"] = [int(i) for i in prev.get("indices", [])]
    got = _map_component()(data=map_payload(xy, codes, head, hover), key=key, default={"selection": None},
                           on_selection_change=lambda: None, height="content")
    sel = got.get("selection") if hasattr(got, "get") else getattr(got, "selection", None)
    if not sel or sel.get("sig") != sig:
        return []
    return sorted(int(i) for i in sel.get("indices", []) if 0 <= int(i) < len(xy))
