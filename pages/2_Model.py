"""Model: the built-in small CLIP, any OpenCLIP model + tag, or a local checkpoint; device and run cost."""
import streamlit as st

from studio import state, ui
from ueo_core.models import BUILTIN_MODEL, BUILTIN_TAG, list_pretrained
from ueo_core.roots import describe
from ueo_core.shapes import CONCEPTS
from ueo_core.config import RunConfig
from ueo_core.methods import METHODS
from ueo_core.train import estimate_run
from studio.advice import suggested_settings

ui.page("Model", "🧠")
choice = state.model_choice()
kinds = ["Built-in small CLIP (offline)", "OpenCLIP zoo (downloads weights)", "Local checkpoint file"]
kind = st.radio("Which model?", kinds, horizontal=True,
                index=0 if choice["pretrained"] == BUILTIN_TAG else 2 if choice.get("checkpoint") else 1)
if kind == kinds[0]:
    ui.explain(f"A 10 M-parameter CLIP the project trained on {len(CONCEPTS)} shape concepts drawn flat, as outlines "
               "and in grey (assets/); the sketch and photo domains were never shown to it. It knows shapes, not "
               "dogs: on real photos expect little.")
    new = dict(name=BUILTIN_MODEL, pretrained=BUILTIN_TAG, checkpoint=None, label=state.DEFAULT_MODEL["label"])
elif kind == kinds[1]:
    zoo = [(a, t) for a, t in list_pretrained() if t != BUILTIN_TAG]
    archs = sorted({a for a, _ in zoo})
    arch = st.selectbox("Architecture", archs, index=archs.index("ViT-B-32") if "ViT-B-32" in archs else 0)
    tags = [t for a, t in zoo if a == arch]
    tag = st.selectbox("Pretrained weights", tags, index=tags.index("openai") if "openai" in tags else 0)
    ui.explain("The first use downloads the weights (hundreds of MB) into the local cache; offline this fails "
               "with a message, and the built-in model still works.")
    new = dict(name=arch, pretrained=tag, checkpoint=None, label=f"{arch} · {tag}")
else:
    from ueo_core.models import register_configs
    import open_clip
    register_configs()
    archs = sorted(open_clip.list_models())
    arch = st.selectbox("Architecture of the checkpoint", archs,
                        index=archs.index("ViT-B-32") if "ViT-B-32" in archs else 0)
    up = st.file_uploader("Upload a checkpoint (.safetensors, .pt or .bin)", type=["safetensors", "pt", "bin"])
    if up is not None:
        saved = state.save_checkpoint_upload(up.name, up.getvalue())
        st.session_state["ckpt_path"] = str(saved)
    st.session_state.setdefault("ckpt_path", choice.get("checkpoint") or "")
    path = st.text_input("…or the path of a checkpoint file on this server", key="ckpt_path",
                         help="Only files inside " + describe(state.allowed_roots()))
    shown = state.redact(path.strip())
    new = dict(name=arch, pretrained=None, checkpoint=path.strip() or None, label=f"{arch} · {shown}")

if st.button("Load this model", type="primary"):
    if kind == kinds[2] and not new["checkpoint"]:
        st.error("Give the path of the checkpoint file.")
    else:
        bar = st.empty()

        def downloading(done: int, total: int) -> None:
            bar.progress(min(done / total, 1.0) if total else 0.0,
                         text=f"Downloading the weights: {done / 1e6:.0f} of {total / 1e6:.0f} MB")

        try:
            with st.spinner(f"Loading {new['label']}…"):
                state.loaded_model(new, progress=downloading)
            bar.empty()
            state.set_model_choice(**new)
            st.success(f"Loaded {new['label']}.")
        except Exception as err:
            bar.empty()
            st.error(state.friendly(err))

st.divider()
choice = state.model_choice()
st.subheader(f"In use: {choice['label']}")
try:
    loaded = state.loaded_model()
except Exception as err:
    st.error(state.friendly(err))
    st.stop()
info = loaded.describe()
c1, c2, c3 = st.columns(3)
c1.metric("Device", info["device"])
c2.metric("Parameters", f"{info['parameters'] / 1e6:.1f} M")
c3.metric("Input size", f"{info['image_size']} px")
st.caption(f"Inference precision: **{info['precision']}** ({info['precision_why']}); training steps on a CPU run "
           "in fp32.")

st.subheader("What a run will cost")
try:
    ims = state.image_set()
except Exception as err:
    st.warning(f"Choose data first: {state.friendly(err)}")
    st.stop()
names = [m for m in METHODS if m != "zero_shot" and not (METHODS[m].needs_truth and not ims.has_truth)]
method = st.selectbox("Method", names, index=names.index("ueo"), format_func=lambda m: METHODS[m].label)
sugg = suggested_settings(choice["name"], choice.get("pretrained"), method)
sources = list(state.source_options(state.data_choice()).values())[:1] if METHODS[method].supervised else None
epochs = st.number_input("Epochs", 1, 500, value=int(sugg["epochs"]))
batch = st.number_input("Batch size" + (" (per source folder)" if sources is not None else ""), 1, 1024,
                        value=int(sugg["batch_size"]))
if sources == []:
    st.warning(f"{METHODS[method].label} trains on labelled source folders, and none fit this data: choose them "
               "on the Adapt page.")
elif st.button("Measure one training step"):
    with st.spinner(f"Timing one {METHODS[method].label} step on this device…"):
        try:
            cfg = RunConfig(method=method, data=state.data_choice()["spec"], prior=ims.classes, model=choice["name"],
                            pretrained=choice.get("pretrained"), checkpoint=choice.get("checkpoint"),
                            source=sources, epochs=int(epochs), batch_size=int(batch))
            st.session_state["cost"] = estimate_run(cfg, loaded, ims)
        except Exception as err:
            st.error(state.friendly(err))
est = st.session_state.get("cost")
if est:
    what = METHODS[est["method"]].label
    if est["steps"]:
        st.write(f"{what}: {est['epochs']} epochs = {est['steps']:,} steps of {est['batch']}; one step took "
                 f"{est['seconds_per_step']:.2f} s here → about **{est['minutes']:.1f} minutes** (with an "
                 f"evaluation pass over the {est['images']} images after each epoch, ~{est['eval_seconds']:.0f} s "
                 "each).")
    else:
        st.write(f"{what}: no training; {est['passes']} pass{'es' if est['passes'] != 1 else ''} of the image "
                 f"tower over the {est['images']} images, one pass took ~{est['eval_seconds']:.1f} s here → about "
                 f"**{est['minutes']:.1f} minutes** (after the zero-shot pass every run makes).")
