"""Lesson: zero-shot, entropy minimisation, IM, UEO (and the oracle) on the same data in one click, then what
happened, in words computed from the numbers (ueo_core.lesson)."""
import streamlit as st

from studio import charts, share, state, ui
from ueo_core.config import RunConfig
from ueo_core.jobs import duration_words
from studio.advice import prefers_fast_mode, suggested_settings
from ueo_core.lesson import EXTENDED, lesson_methods, lesson_rows, lesson_summary, plain_name
from ueo_core.methods import METHODS

ui.page("Lesson", "🎓")  # a teacher's link (?lesson_link=) is opened there, before the sidebar shows the choices
ims = ui.data_header()
model = state.model_choice()



def _extend() -> None:  # the toggle adds (or takes away) the field's methods in the selection
    chosen = [m for m in st.session_state.get("lesson_methods", lesson_methods(ims.has_truth)) if m not in EXTENDED]
    st.session_state["lesson_methods"] = chosen + (list(EXTENDED) if st.session_state["lesson_extended"] else [])


st.toggle(f"Extended lesson: also {', '.join(METHODS[m].plain for m in EXTENDED)}, the field's methods",
          key="lesson_extended", on_change=_extend,
          help="None of them trains on the folder beforehand; each works on the images as they come:\n\n"
               + "\n\n".join(f"**{METHODS[m].plain}**: {METHODS[m].description}" for m in EXTENDED))
offered = lesson_methods(ims.has_truth, st.session_state.get("lesson_extended", False))
if st.session_state.get("lesson_from_link"):
    st.success("🔗 Your teacher's lesson: the data, the model, the methods and the settings are set. Press "
               "▶ Run the lesson. Your runs are your own.")
st.session_state["lesson_methods"] = [m for m in st.session_state.get("lesson_methods", offered) if m in offered]
methods = st.multiselect("Methods", offered, format_func=lambda m: METHODS[m].label, key="lesson_methods")
st.markdown("One click runs **" + ", ".join(METHODS[m].label for m in methods) + "** on these images, with the "
            "same seed and settings, and then says what happened. Each run is a job in the server's queue: as many "
            "train at once as the server has slots.")
if not ims.has_truth:
    ui.explain("These images have no class folders, so the oracle (which needs the true known/unknown split) is "
               "left out, and no accuracy can be computed.")

sugg = suggested_settings(model["name"], model.get("pretrained"), "ueo")
with st.expander("Settings (shared by every method)"):
    c1, c2, c3, c4 = st.columns(4)
    epochs = c1.number_input("Epochs", 1, 500, sugg["epochs"], key="lesson_epochs")
    batch = c2.number_input("Batch size", 1, 1024, sugg["batch_size"], key="lesson_batch")
    lr = c3.number_input("Learning rate (prompt and norm params)", 0.0, 10.0, float(sugg["lr_visual"]),
                         format="%.0e", key="lesson_lr")
    seed = c4.number_input("Seed", 0, 2 ** 31 - 1, RunConfig.seed, key="lesson_seed")
    protocol = st.radio("Scoring protocol", list(ui.PROTOCOL_LABELS), horizontal=True, key="lesson_protocol",
                        format_func=ui.PROTOCOL_LABELS.get)
    st.caption(sugg["note"])

with st.expander("🔗 Share this lesson"):
    try:
        st.code(state.lesson_link(st.context.url or "", methods), language=None, wrap_lines=True)
        ui.explain("Every student who opens this link gets a workspace of their own with this data, model, methods "
                   "and settings, one click from running them. The link holds no part of your workspace.")
        local = share.local_only(st.context.url or "")
        if local:
            st.warning(local)
    except share.ShareError as err:
        st.warning(str(err))

lesson = state.active_lesson()
live_now = bool(lesson and state.is_running(lesson["id"]))
busy = state.anything_running()  # one live run or lesson per browser session
too_few = [w for w in (METHODS[m].too_few_images(len(ims), len(ims.classes)) for m in methods) if w]
for w in too_few:
    st.warning(w)
go = st.button("▶ Run the lesson", type="primary", disabled=busy or bool(too_few))
if busy and not live_now:
    st.info("A run of this session is still training: the lesson can start when it ends (or press Stop in the "
            "sidebar).")
fast = None
try:
    fast = "prompt_only" if prefers_fast_mode(state.loaded_model()) else None
except Exception as err:  # the model cannot be loaded: the first run will say so in full
    if go:
        st.error(state.friendly(err))
base = RunConfig(data=state.data_choice()["spec"], prior=ims.classes, model=model["name"],
                 pretrained=model.get("pretrained"), checkpoint=model.get("checkpoint"), epochs=int(epochs),
                 batch_size=int(batch), lr_prompt=float(lr), lr_visual=float(lr), seed=int(seed), fast_mode=fast,
                 protocol=protocol)
if go:
    try:
        if state.anything_running():
            raise ValueError("A run of this session is already training: stop it first.")
        state.start_lesson(base, ims, methods)
        st.rerun()  # the whole page (button off, sidebar) follows the lesson
    except ValueError as err:
        st.error(str(err))

if not lesson:
    try:
        took = state.lesson_estimate(base, ims, methods) if methods else None
    except Exception:  # a folder refused or gone: the Run button says why when pressed
        took = None
    st.info("No lesson yet: press ▶ Run the lesson" + (
        f". On this server these methods' runs on these images have taken about {duration_words(took)} of training"
        " (their own finished runs); starting each run and waiting in the queue come on top."
        if took is not None else "."))
    st.stop()
if live_now and st.button("■ Stop the lesson", help="stops the training run after its current step and takes the "
                                                  "queued ones out of the queue; finished runs are kept"):
    state.stop_everything()
    st.rerun()


@st.fragment(run_every=1.0 if live_now else None)
def live(lid: str) -> None:
    manifest = state.active_lesson() or {}
    status = state.lesson_status(manifest)
    alive = status["live"]
    if alive:
        st.progress(status["fraction"], text=f"Lesson: {status['where']}")
        if status["queue"]:
            st.info(f"⏳ The lesson's runs are {status['queue']}. Stop takes them out of the queue.")
    rows = lesson_rows(state.runs_dir(), manifest)
    if status["error"]:
        st.error(status["error"])
    elif not alive and status["state"] != "done":
        st.warning(f"This lesson stopped after {len(rows)} of {len(manifest.get('methods', []))} runs; the finished "
                   "ones are shown.")
    if rows:
        labels = {r["method"]: METHODS[r["method"]].label for r in rows}
        summary = lesson_summary(rows)
        if not alive:
            st.subheader("What happened")
            st.markdown("\n".join(f"- {s}" for s in summary))
        table = [{"method": labels[r["method"]],
                  **{k.upper().replace("_SCORE", "-score"): round(r["after"][k] * 100, 1)
                     for k in ("gacc", "auroc", "h_score") if r["after"].get(k) is not None},
                  "largest class": f"{max(r['after'].get('class_shares') or [0]):.0%}",
                  "collapsed": bool(r["after"].get("collapsed")), "seconds": round(r["seconds"] or 0, 1),
                  "run": r["run"]} for r in rows]
        ui.table(table)
        c1, c2 = st.columns(2)
        if any(r["after"].get("auroc") is not None for r in rows):
            c1.plotly_chart(charts.method_scores(rows, labels), width="stretch", key="lesson_scores")
        c2.plotly_chart(charts.method_shares(rows, labels), width="stretch", key="lesson_shares")
        ui.explain("Each bar on the right is one method's predictions split by class: an even spread is "
                   f"{1 / max(len(rows[0]['classes']), 1):.0%} per class; one colour filling a bar is a collapse. "
                   "Each run opens on Explore, Inspect and Compare like any other.")
    if alive and len(rows) < len(manifest.get("methods", [])):
        st.caption("Still running: " + ", ".join(plain_name(m) for m in manifest.get("methods", [])
                                                if m not in {r['method'] for r in rows}) + ".")
    if live_now and not alive:
        st.rerun()  # the lesson ended: redraw the whole page (buttons)


live(lesson["id"])
