"""Adapt: pick a method and its settings, start/stop a run, watch it train live."""
import streamlit as st

from studio import charts, state, ui
from ueo_core.analysis import (acceptance_summary, entropy_note, read_predictions, run_curves, run_verdict,
                               shares_note, shown_gain, shown_rate)
from ueo_core.config import RunConfig
from studio.advice import fast_mode_choice, passes_note, suggested_settings
from studio.method_form import option_widgets
from ueo_core.data import DataError
from ueo_core.methods import METHODS
from ueo_core.roots import describe
from ueo_core.runs import RunFolder

ui.page("Adapt", "🏃")
ims = ui.data_header()
model = state.model_choice()

rid = state.active_run_id()
running = state.is_running(rid)
busy = state.anything_running()  # one live run (or lesson) per browser session
names = [m for m in METHODS if not (METHODS[m].needs_truth and not ims.has_truth)]
method = st.selectbox("Method", names, index=names.index("ueo"), format_func=lambda m: METHODS[m].label,
                      help="\n\n".join(f"**{METHODS[m].label}**: {METHODS[m].description}" for m in names))
sugg = suggested_settings(model["name"], model.get("pretrained"), method)
too_few = METHODS[method].too_few_images(len(ims), len(ims.classes))  # said before Start, not after a run
if too_few:
    st.warning(too_few)
sources = []
if METHODS[method].supervised:
    options = state.source_options(state.data_choice())
    ui.explain("CLIPood is supervised: it fine-tunes the whole image tower on *labelled* source folders (class "
               "names from the folder names), then is evaluated here, on the target folder. UEO needs no labels.")
    picked = st.multiselect("Labelled source folders (one batch from each per step)", list(options),
                            default=list(options)[:1])
    typed = st.text_input("More source folders (paths, comma-separated)", "",
                          help="Only folders inside " + describe(state.allowed_roots()))
    sources = [options[p] for p in picked]
    for t in (t.strip() for t in typed.split(",") if t.strip()):
        try:
            sources.append(str(state.check_path(t, what="source folder")))
        except DataError as err:
            st.error(str(err))

fast = None
if not METHODS[method].supervised and METHODS[method].trains:
    try:
        modes, default, slow = fast_mode_choice(state.loaded_model())
    except Exception as err:  # the model cannot be loaded: the run will say so; no fast-mode advice
        st.error(state.friendly(err))
        modes, default, slow = {"Full (exact)": None, "Fast: prompt only (approximation)": "prompt_only"}, None, False
    mode = st.radio("Speed", list(modes), index=list(modes.values()).index(default), horizontal=True,
                    help="Fast modes freeze (part of) the image tower and cache its output for 4 augmented views "
                         "per image: prompt only trains just the prompt context; last ResNet stage also trains "
                         "the norm layers of the last stage. Measured in bench/fast_modes.py.")
    fast = modes[mode]
    if slow:
        ui.explain("No GPU and a large image tower: a fast mode is selected by default. It is an approximation of "
                   "UEO (most of the image tower does not adapt). Choose Full for the exact method; the Model page "
                   "estimates its time.")

# the form shows the settings of this session's run (when it is of the chosen method), so that after a refresh
# during a 150-epoch run it does not show the suggested 5 beside it; else the suggested settings
run_cfg = state.run_config(rid) if rid else {}
own = run_cfg if run_cfg.get("method") == method else {}


def setting(key: str, default, kind=float):
    return kind(own[key]) if own.get(key) is not None else kind(default)


if METHODS[method].options:  # the method's own options, drawn from their declarations on its registry entry
    st.markdown(f"**{METHODS[method].plain}'s own options**")
    options = option_widgets(method, own.get("options") or {})
else:
    options = {}
cost_note = passes_note(RunConfig(method=method, options=options), len(ims), st.session_state.get("cost"))
if cost_note:  # (a training-free method that passes each image more than once: ZERO's views)
    st.caption(cost_note)

with st.form(f"settings-{method}"):
    template = st.text_input("Prompt template ({} = class name; the words before it initialise the learnable "
                             "context)", value=setting("template", RunConfig.template, str))
    c1, c2, c3, c4 = st.columns(4)
    trains = METHODS[method].trains  # a method that does not train beforehand has no epochs or learning rates
    epochs = lr_prompt = lr_visual = None  # (then the run takes its method's own: RunConfig's defaults)
    if trains:
        epochs = c1.number_input("Epochs", 1, 500, setting("epochs", sugg["epochs"], int))
    batch = c2.number_input("Batch size", 1, 1024, setting("batch_size", sugg["batch_size"], int),
                            help=None if trains else "Images per forward pass; for a stream, how often its progress "
                                                     "is reported and Stop is checked.")
    if trains:
        lr_prompt = c3.number_input("LR prompt", 0.0, 10.0, setting("lr_prompt", sugg["lr_prompt"]), format="%.0e",
                                    disabled=not METHODS[method].trains_prompt)
        lr_visual = c4.number_input("LR image tower" if METHODS[method].trains_visual == "all" else "LR norm params",
                                    0.0, 10.0, setting("lr_visual", sugg["lr_visual"]), format="%.0e")
    c6, c8 = st.columns(2)
    protocol = c6.selectbox("Scoring protocol", list(ui.PROTOCOL_LABELS), format_func=ui.PROTOCOL_LABELS.get,
                            help="Where a softmax is taken, at which scale. Studio uses the model's own logit scale "
                                 "for training, the zero-shot weights and every score. Official reproduces "
                                 "tim-learn/UEO demo.py, as in the paper's tables: training logits ×100, weights and "
                                 "all scores (confidence, histograms, AUROC) from the softmax of unscaled cosines — "
                                 "confidences then sit near 1/K.")
    seed = c8.number_input("Seed", 0, 2 ** 31 - 1, setting("seed", RunConfig.seed, int))
    st.caption(sugg["note"])
    start = st.form_submit_button("▶ Start", type="primary", disabled=busy or bool(too_few))
    if running:
        st.info("A run is in progress: Start is off until it ends or you press Stop.")
    elif busy:
        st.info("The lesson (or another run of this session) is training: Start is off until it ends or you press "
                "Stop in the sidebar.")

if start:
    cfg = RunConfig(method=method, data=state.data_choice()["spec"], prior=ims.classes, model=model["name"],
                    pretrained=model.get("pretrained"), checkpoint=model.get("checkpoint"), source=sources or None,
                    template=template, epochs=None if epochs is None else int(epochs), batch_size=int(batch),
                    lr_prompt=None if lr_prompt is None else float(lr_prompt),
                    lr_visual=None if lr_visual is None else float(lr_visual), seed=int(seed), fast_mode=fast,
                    protocol=protocol, options=options)
    try:
        cfg.validate()  # every option, with a message naming it
        if state.anything_running():  # a second tab or a double click: still one live run
            raise ValueError("A run of this session is already training: stop it first.")
        rid = state.start_run(cfg, ims)
        st.session_state["adapt_epochs"], st.session_state["adapt_batch"] = cfg.epochs, int(batch)
        st.rerun()  # the whole page (Start off, sidebar) follows the new run
    except ValueError as err:
        st.error(str(err))

if running and st.button("■ Stop", help="stops after the current step (a queued run leaves the queue); what the "
                                        "last epoch's checkpoint holds is kept and can be explored"):
    state.stop_run(rid)
    st.rerun()

if not rid:
    st.info("No run yet." if too_few else "No run yet: press Start.")
    st.stop()


def metric_row(b: dict, a: dict) -> None:
    cols = st.columns(4)
    for col, k in zip(cols, ("gacc", "pacc", "auroc", "h_score")):
        if a.get(k) is not None:
            col.metric(k.upper(), shown_rate(a[k]), f"{shown_gain(a[k], b.get(k) or 0):+.1f} vs zero-shot")


@st.fragment(run_every=1.0 if running else None)
def live(rid: str) -> None:
    folder = RunFolder(state.runs_dir() / rid)
    job = state.job(rid)
    steps, epochs = run_curves(folder.path)
    cfg = state.run_config(rid)
    total = (cfg.get("summary") or {}).get("total_steps") or 0
    alive = job.kind in ("queued", "running")  # as state.is_running: ended once its metrics are written
    metrics = folder.read_json("metrics.json")
    st.subheader(f"Run `{rid}` · {cfg.get('method', '')}" +
                 (f" · fast: {cfg['fast_mode']}" if cfg.get("fast_mode") else "") +
                 (" · official protocol" if cfg.get("protocol") == "official" else ""))
    if total:
        done = steps[-1]["step"] if steps else 0
        eta = steps[-1]["eta"] if steps else None
        st.progress(min(done / total, 1.0), text=f"step {done}/{total}" +
                    (f" · about {eta:.0f} s left" if alive and eta is not None else ""))
    status = folder.read_json("status.json")
    if alive and status and status["done"] < status["total"]:  # a long pass that is not a step
        st.progress(status["done"] / max(status["total"], 1),
                    text=f"{status['phase']}: {status['done']}/{status['total']} images")
    elif job.kind == "queued":
        st.info(f"⏳ {job.words[0].upper()}{job.words[1:]}. Stop takes it out of the queue.")
    elif alive and not total:
        st.progress(0.0, text="starting…")
    error = state.run_error(rid)
    if job.kind == "lost":
        st.error(error)
        if st.button("↻ Resume from the last checkpoint", key="resume_run"):
            state.resume_run(rid)
            st.rerun()
    elif error:
        st.error(error)
    elif metrics and metrics.get("stopped_at_epoch") is not None:
        st.warning(f"Stopped at epoch {metrics['stopped_at_epoch']} of {metrics.get('epochs_planned')}: the "
                   "numbers below are that epoch's, from its checkpoint, which Explore and Inspect open.")
        b, a = metrics["before"], metrics["after"]
        metric_row(b, a)
    elif metrics:
        b, a = metrics["before"], metrics["after"]
        metric_row(b, a)
        level, text = run_verdict(b, a, (cfg.get("summary") or {}).get("classes") or [], metrics["seconds"],
                                  cfg.get("method"))
        (st.warning if level == "warning" else st.success)(text)
        if not (cfg.get("summary") or {}).get("has_truth") and (folder.path / "predictions.csv").exists():
            ui.explain(acceptance_summary(read_predictions(folder.path), a["threshold"]) + " Without class folders "
                       "nobody can score this run: look at the accepted and rejected images on Inspect.")
    elif not alive:
        st.warning("This run stopped before its first epoch ended: nothing was adapted, so there is nothing to "
                   "explore. Start a new run.")
    classes = (cfg.get("summary") or {}).get("classes") or []
    figs = charts.live_figures(folder.path, classes)  # built once per new line of the logs, for every session
    if steps and "curves" in figs:
        st.plotly_chart(figs["curves"], width="stretch", key="curves")
        ui.explain(entropy_note(steps, (metrics or {}).get("after", {}).get("collapsed")))
    if epochs and "hist" in figs:
        c1, c2 = st.columns(2)
        with c1:
            st.plotly_chart(figs["hist"], width="stretch", key="hist")
            ui.explain("Max-softmax confidence of every image. UEO should push truly known images right and keep "
                       "unknown ones left; press play or drag the epoch slider.")
        with c2:
            if "metrics" in figs:
                st.plotly_chart(figs["metrics"], width="stretch", key="metrics")
                ui.explain("GACC: accuracy on known-class images; PACC: mean per-class accuracy; AUROC: how well "
                           "confidence separates known from unknown (0.5 = chance).")
            rows = [{"epoch": e["epoch"], **{k: v for k, v in e["metrics"].items() if isinstance(v, float)}}
                    for e in epochs]
            first = ["epoch", "gacc", "pacc", "auroc", "h_score", "fpr95", "threshold"]  # the scores, then the rest
            ui.table(rows, columns=[k for k in first if k in rows[0]] + [k for k in rows[0] if k not in first])
        if "shares" in figs:
            st.plotly_chart(figs["shares"], width="stretch", key="shares")
            ui.explain(shares_note(epochs, classes))
    if running and not alive:
        st.rerun()  # the run ended: refresh the whole page (Start button, sidebar)


live(rid)
