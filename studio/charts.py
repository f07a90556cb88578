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
