"""Inspect: what the model rejects as unknown, mistakes, confusion matrix, downloads."""
import streamlit as st

from studio import changed_panel, charts, pick, sort_panel, state, ui, unknowns_panel
from studio import label_panel
from ueo_core.analysis import read_predictions, rejection_summary
from ueo_core.data import DataError
from ueo_core.metrics import SPLITS, confidence_histogram
from ueo_core.downloads import run_downloads
from ueo_core.runs import RunFolder
from ueo_core.scores import DEFAULT, LABELS, SCORES, span as score_span

ui.page("Inspect", "🔍")
rid = pick.finished_run()
if not rid:
    st.stop()
folder = RunFolder(state.runs_dir() / rid)
try:
    preds = read_predictions(folder.path)
except Exception as err:
    st.error(state.friendly(err))
    st.stop()
names = [n for n in SCORES if n in preds.scores]
score = st.selectbox("Known/unknown score", names, index=names.index(DEFAULT), format_func=LABELS.get,
                     key=f"score|{rid}", help="What decides known vs unknown. MSP (max softmax) is the papers' and "
                                              "the default; the chosen score's AUROC, FPR95 and AUPR are shown "
                                              "below its threshold, where there is ground truth.")
preds = preds.by(score)
label = LABELS[score]
values = preds.confidence
span = score_span(score, values)  # its registry bounds ([0, 1] for MSP, MCM), else its values' span
run_split = (folder.config or {}).get("split", "2means")
youden = label_panel.youden_choice(rid, preds)  # a third choice once a person's labels support one
choices = {**SPLITS, **youden.options}
choice = st.radio("Default threshold, found without labels" + (" or from your labels" if youden.options else ""),
                  list(choices), index=list(SPLITS).index(run_split), format_func=choices.get, horizontal=True,
                  key=f"split|{rid}",
                  help="2-means: the midpoint between the two groups' centres; Otsu: the cut that makes the two "
                       "groups' values most different (Otsu 1979, the CLIPTTA suite's open-set choice). "
                       + youden.note)
split = choice if choice in SPLITS else run_split  # (label-free: the zero-shot side's, below)
default_thr = (youden.value if choice == label_panel.YOUDEN else
               (folder.read_json("metrics.json") or {}).get("after", {}).get("threshold", 0.5)
               if score == DEFAULT and split == run_split else preds.default_threshold(split))
thr = st.slider(f"Known/unknown threshold on {label}", span[0], span[1],
                float(min(max(default_thr, span[0]), span[1])), (span[1] - span[0]) / 200, format="%.3f",
                key=f"thr|{rid}|{score}|{split if choice in SPLITS else youden.key}")
ui.explain(f"Images scoring below the threshold on {label} are rejected as unknown. The default "
           f"({default_thr:.3g}) " + ("is " + youden.note if choice == label_panel.YOUDEN else
                                      f"splits this score's values into two groups without labels ({SPLITS[split]}).")
           + (" MSP is the default score, as in the papers." if score == DEFAULT else ""))
groups = preds.at_threshold(thr)
changed_panel.detection_row(preds, thr)  # the counts at this threshold, and the score's AUROC, FPR95, AUPR
st.plotly_chart(charts.threshold_histogram(confidence_histogram(values, preds.truth, span=span), thr, label),
                width="stretch")
cap = lambda i: f"{preds.classes[preds.pred[i]]} {preds.confidence[i]:.3g}"  # noqa: E731
rejected = list(groups["rejected"])
marks = preds.rejection_marks(rejected)
st.subheader(f"Rejected as unknown ({len(rejected)} of {len(preds)}), most confident first")
ui.explain(rejection_summary(marks))
ui.gallery([preds.paths[i] for i in rejected],
           [(f"{'✓' if m else '✗'} {preds.true_class[i]} · " if m is not None else "") + cap(i)
            for i, m in zip(rejected, marks)], limit=24, key=f"rejected|{rid}")
ui.explain((f"Caption: ✓ or ✗, the image's true folder, then the known class it was closest to and its {label}."
            if preds.truth is not None else
            f"Caption: the known class it was closest to and its {label} (no ground truth: no ✓ or ✗)."))
unknowns_panel.render(rid, folder, preds, score, thr)  # groups among the rejected, with suggested names
if preds.truth is not None:
    c1, c2 = st.columns(2)
    with c1:
        st.subheader(f"False rejections ({len(groups['false_rejections'])})")
        ui.explain("Known-class images the model called unknown.")
        ui.gallery([preds.paths[i] for i in groups["false_rejections"]],
                   [f"{preds.true_class[i]} {preds.confidence[i]:.3g}" for i in groups["false_rejections"]],
                   limit=12, columns=4, key=f"false_rej|{rid}")
    with c2:
        st.subheader(f"False acceptances ({len(groups['false_acceptances'])})")
        ui.explain("Unknown images the model accepted as one of the known classes.")
        ui.gallery([preds.paths[i] for i in groups["false_acceptances"]],
                   [f"{preds.true_class[i]} → {cap(i)}" for i in groups["false_acceptances"]], limit=12, columns=4,
                   key=f"false_acc|{rid}")
    c3, c4 = st.columns(2)
    with c3:
        st.plotly_chart(charts.confusion_heatmap(preds.confusion(thr), preds.classes + ["unknown"]),
                        width="stretch")
    with c4:
        st.plotly_chart(charts.bar(preds.per_class_accuracy(thr), "accuracy per known class at this threshold"),
                        width="stretch")
        ui.explain("A known image counts as right only when it is accepted and given its own class.")
else:
    st.info("This folder has no class sub-folders, so there is no ground truth to check mistakes against.")
changed_panel.render(rid, folder, preds, score, thr, split)  # the decisions that flipped since zero-shot
st.subheader("Accepted images, by predicted class")
accepted = groups["accepted"]
per_class = {name: [i for i in accepted if preds.pred[i] == k] for k, name in enumerate(preds.classes)}


@st.fragment
def accepted_gallery() -> None:  # choosing a class reruns this part only
    shown = st.radio("Predicted class", list(per_class), horizontal=True, key=f"acc_class|{rid}",
                     format_func=lambda c: f"{c} · {len(per_class[c])}")
    ui.gallery([preds.paths[i] for i in per_class[shown]], [f"{preds.confidence[i]:.3g}" for i in per_class[shown]],
               limit=16, key=f"acc|{rid}|{shown}", empty=f"No image is accepted as {shown} at this threshold.",
               own_fragment=False)  # (already inside this fragment)


accepted_gallery()
label_panel.render(rid, folder, preds, score, thr)  # a person labels a few images: estimates, Youden's J

st.subheader("Downloads")
# Each file is made (or read) only when its button is pressed, and pressing one does not rerun the page: a
# checkpoint of a whole image tower (CLIPood) is hundreds of MB, too much to resend on every threshold change.
# Every download names images by their path inside the data folder, never by the server's path (privacy).
downloads = run_downloads(folder.path, preds, thr, labels=label_panel.person_labels(preds))
for k, d in enumerate(downloads):
    if k % 3 == 0:
        cols = st.columns(3)
    cols[k % 3].download_button(d.label, d.make, d.file_name, d.mime, on_click="ignore", help=d.help or None)
ui.explain(f"The predictions file and the labels use the score and threshold chosen above ({label}, {thr:.3f}): "
           "rejected images are labelled 'unknown'; an image you labelled (Check with a few labels) carries your "
           "label, marked as a person's. Label Studio's tasks come with these labels pre-filled, for a "
           "person to correct; FiftyOne's dataset carries each label with its confidence; each zip's IMPORT.txt "
           "says how to open it, and images are named by their path inside your data folder.")

st.subheader("Sort my photos")
n_acc, n_mine = label_panel.sorted_known(preds, thr)  # (where a person labelled an image, the label decides)
ui.explain(f"One folder per known class and 'unknown' for this run's {len(preds)} images, at the score and "
           f"threshold above ({label} ≥ {thr:.3f}): {n_acc} go to the known classes' folders, {len(preds) - n_acc} "
           "to 'unknown'. Your images are only read: the result is a zip, or folders of links written where you "
           "say. Each folder's images show on the Sort page." + label_panel.sort_note(n_mine))
if st.button(f"Sort these {len(preds)} images", key=f"sort_own|{rid}"):
    try:
        st.session_state[f"sort|{rid}"] = st.session_state["sort"] = state.start_sort(rid, None, score, thr,
                                                                                  labels=label_panel.labels_now(preds))
    except DataError as err:
        st.error(state.friendly(err))
sort_panel.sort_of_these(st.session_state.get(f"sort|{rid}"), "the images", f"{rid}-sorted.zip", score, thr)
