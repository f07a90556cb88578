"""Learn: the UEO objective, with a small interactive batch."""
import numpy as np
import streamlit as st

from studio import charts, ui
from ueo_core.analysis import softmax, toy_descent, toy_descent_note, ueo_batch_terms

ui.page("Learn", "🎓")
st.markdown("**UEO** adapts CLIP without labels. Each image $i$ gets a weight $w_i$: its zero-shot confidence "
            "(the largest softmax probability before any training). Then it minimises")
st.latex(r"\mathcal{L} \;=\; \underbrace{\frac{\sum_i w_i\, H(p_i)}{\sum_i w_i}}_{\text{confident images: be sure}}"
         r"\;-\;\lambda\, H\!\Big(\underbrace{\frac{\sum_i w_i^{-1} p_i}{\sum_i w_i^{-1}}}_{\bar p:\ \text{weighted "
         r"towards unsure images}}\Big), \qquad H(p) = -\sum_k p_k \log p_k")
st.markdown("- **Entropy** $H(p)$ is small when one class has all the probability, largest ($\\log K$) when it is "
            "spread evenly.\n- The first term makes likely-*known* images (high $w$) more confident.\n"
            "- The second term keeps the average prediction spread over classes, and it is dominated by "
            "likely-*unknown* images (low $w$): they are kept unsure instead of being forced into a class — so "
            "their low confidence still marks them as unknown after training.\n"
            "- Without the weights this is *information maximisation* (IM); without the second term it is plain "
            "*entropy minimisation* (TENT), which can collapse all predictions onto one class.")

st.subheader("Try it: a batch of four images, three classes")
ui.explain("Drag the logits (similarities) of each image. Scale = the logit scale (CLIP uses 100 on cosines).")
c_scale, c_trade = st.columns(2)
scale = c_scale.slider("logit scale", 1.0, 20.0, 5.0, 0.5)
trade = c_trade.slider("λ (weight of the marginal-entropy term)", 0.0, 3.0, 1.0, 0.1)
defaults = [[1.2, 0.1, 0.0], [0.0, 0.9, 0.2], [0.3, 0.35, 0.3], [0.1, 0.0, 0.15]]
probs, probs_logits = [], []
cols = st.columns(4)
for i, col in enumerate(cols):
    with col:
        st.markdown(f"**image {i + 1}**")
        z = [st.slider(f"class {k + 1}", -1.0, 2.0, defaults[i][k], 0.05, key=f"z{i}{k}") for k in range(3)]
        probs.append(softmax(z, scale))
        probs_logits.append(z)
probs = np.array(probs)
t = ueo_batch_terms(probs, trade=trade)
ui.table([{"image": i + 1, "p": " / ".join(f"{x:.2f}" for x in probs[i]), "entropy H(p)": round(t["entropy"][i], 3),
               "weight w = max p": round(t["weights"][i], 3), "share of entropy term": round(t["share_cond"][i], 3),
               "share of marginal": round(t["share_marginal"][i], 3)} for i in range(4)])
marginals = {"UEO marginal p̄ (weighted towards unsure images)": t["marginal"],
             "plain mean prediction (IM)": t["plain_marginal"]}
st.plotly_chart(charts.grouped_bars({name: {f"class {k + 1}": v for k, v in enumerate(m)}
                                     for name, m in marginals.items()}, "The batch's mean prediction, two ways",
                                    colors=dict(zip(marginals, (charts.method_color("ueo"), charts.method_color("im"))))),
                width="stretch")
m1, m2 = st.columns(2)
m1.metric("weighted entropy term", f"{t['cond']:.3f}")
m2.metric("marginal entropy H(p̄)", f"{t['marginal_entropy']:.3f}", help=f"maximum log 3 = {t['max_entropy']:.3f}")
st.subheader("The three losses on this batch (computed by the engine's own objectives)")
l1, l2, l3 = st.columns(3)
l1.metric("entropy min. (TENT)", f"{t['losses']['entropy']:.3f}", help="mean entropy: no diversity term")
l2.metric(f"IM (λ = {trade:g})", f"{t['losses']['im']:.3f}", help="mean entropy − λ · entropy of the mean")
l3.metric(f"UEO loss (λ = {trade:g})", f"{t['losses']['ueo']:.3f}",
          help="confidence-weighted entropy − λ · entropy of the inverse-confidence-weighted mean")

st.subheader("Take gradient steps: who collapses?")
ui.explain("Each method now trains on this batch: one offset per class, shared by all four images (the toy version "
           "of the prompt context, which moves every image's score for a class at once), follows the gradient of "
           "the method's loss — the engine's own. UEO's weights stay at the confidences above. Press ▶.")
names = {"entropy": "entropy min. (TENT)", "im": f"IM (λ = {trade:g})", "ueo": f"UEO (λ = {trade:g})"}
descent = {m: toy_descent(probs_logits, m, scale, trade) for m in names}
st.plotly_chart(charts.toy_descent_animation(descent, names), width="stretch", key="descent")
st.markdown("\n".join(f"- {line}" for line in toy_descent_note(descent, names)))
