"""UEO Studio — the home page (app.py is the entry point that lists the pages)."""
import streamlit as st

from studio import state, ui

ui.page("UEO Studio", "🧭")
st.markdown(
    """
Adapt **CLIP** to your own unlabeled images — including the ones that belong to no class you named — with
**UEO** (Universal Entropy Optimization, Liang et al., ICML 2024), and see what happened.

1. **Data** — the built-in *Shapes* world, a folder on this machine, or your uploads; name the classes you care about.
2. **Model** — the built-in small CLIP (offline), any OpenCLIP model, or a local checkpoint.
3. **Adapt** — run UEO or a baseline and watch the loss, entropies and confidence histograms move.
   **Lesson** — one click runs zero-shot, entropy minimisation, IM, UEO and the oracle on the same images and says
   what happened (which method collapsed, which separated the unknowns best).
4. **Explore** — UMAP of the image features before and after, coloured by predicted known / unknown.
5. **Inspect** — what the model rejected as unknown; confusion matrix; downloads: predictions, labels for Label
   Studio / FiftyOne / CSV, and **your photos sorted** into one folder per class and `unknown`.
   **Sort** — new photos sorted by a finished run.
6. **Compare** — runs side by side.
7. **Learn** — the objective, interactively.
"""
)
d, m = state.data_choice(), state.model_choice()
c1, c2 = st.columns(2)
c1.info(f"**Data**: {d['label']}")
c2.info(f"**Model**: {m['label']}")
b1, b2 = st.columns(2)
if b1.button("Start with Shapes and the built-in model →", type="primary"):
    state.set_data_choice()
    state.set_model_choice()
    st.switch_page("pages/3_Adapt.py")
if b2.button("The lesson: every method on Shapes, side by side →"):
    state.set_data_choice()
    state.set_model_choice()
    st.switch_page("pages/8_Lesson.py")
st.caption("Everything runs on this machine (GPU when present, CPU otherwise). " + state.retention_note()
           + " Keep the page address to find a run again after a refresh.")
