"""Sort: new photos (an upload, a folder, a Shapes domain) sorted by a finished run into one folder per class of its
prior and 'unknown', as a job on Ray (ueo_core.sort); each folder's images with counts, a zip download, and the
sorted folders written to a path. The photos themselves are only read."""
import streamlit as st

from studio import pick, sort_panel, state, ui
from studio.uploads import save_upload
from ueo_core.analysis import read_predictions
from ueo_core.data import IMG_EXTENSIONS, DataError
from ueo_core.roots import describe
from ueo_core.scores import DEFAULT, LABELS, SCORES
from ueo_core.shapes import DOMAINS

LIVE = sort_panel.LIVE

ui.page("Sort", "🗂️")
ui.explain("A finished run sorts photos into one folder per class of its prior, and 'unknown' for those it rejects, "
           "at the run's own score and threshold. Your photos are only read, never moved or changed: the result is "
           "a zip to download, or folders of links written where you say.")
rid = pick.finished_run()
if not rid:
    st.stop()
try:
    names = [n for n in SCORES if n in read_predictions(state.runs_dir() / rid).scores]
except Exception as err:
    st.error(state.friendly(err))
    st.stop()

st.subheader("Sort new photos")
source = st.radio("Photos", ["Upload", "A folder on this server", "A Shapes domain"], horizontal=True,
                  key="sort_source")
files, typed, domain = None, "", None
if source == "Upload":
    files = st.file_uploader("Photos (many at once) or one zip: flat, or in sub-folders at any depth",
                             type=[e.strip(".") for e in IMG_EXTENSIONS] + ["zip"], accept_multiple_files=True,
                             key="sort_upload")
    ui.explain("The upload is copied into this session's workspace; the run never sees your originals. "
               + state.retention_note())
elif source == "A folder on this server":
    typed = st.text_input("Folder", placeholder="/home/me/new_photos", key="sort_folder")
    ui.explain("This server reads folders only inside: " + describe(state.allowed_roots()) + ".")
else:
    domain = st.selectbox("Shapes domain", DOMAINS, index=DOMAINS.index("photo"), key="sort_shapes",
                          help="The built-in world's other domains: photos a run on sketch has never seen.")
c1, c2 = st.columns(2)
score = c1.selectbox("Known/unknown score", names, index=names.index(DEFAULT), format_func=LABELS.get,
                     key=f"sort_score|{rid}")
default_thr, words = state.sort_threshold(rid, score)
thr = c2.number_input(f"Threshold on {LABELS[score]}", value=float(default_thr), format="%.4f",
                      key=f"sort_thr|{rid}|{score}")
ui.explain(f"A photo scoring at least {thr:.4f} on {LABELS[score]} goes to the known class it is closest to; below, "
           f"to 'unknown'. The default ({default_thr:.4f}) is {words}: it belongs to the run and is not re-fitted "
           "on the new photos.")
if st.button("Sort new photos", type="primary", key="sort_go"):
    try:
        if source == "Upload":
            if not files:
                raise DataError("Upload photos (or one zip) first.")
            root, refused = save_upload(files, state.new_upload_dir())
            if refused:
                st.warning(f"{len(refused)} zip entries refused: " + "; ".join(f"{n} ({r})" for n, r in refused[:10]))
            folder = str(root)
        elif source == "A folder on this server":
            folder = typed
        else:
            folder = f"shapes:{domain}"
        st.session_state["sort"] = state.start_sort(rid, folder, score, thr)
    except DataError as err:
        st.error(state.friendly(err))

sid = st.session_state.get("sort") if state.sort_path(st.session_state.get("sort")) else state.latest_sort()
if not sid:
    st.stop()
job = state.sorting(sid)


if job.kind in LIVE:
    sort_panel.follow(sid, "Sorting")
    st.stop()
if job.kind == "failed":
    st.error(f"The photos could not be sorted: {job.words}")
    st.stop()
r = job.result
rows = r["counts"]
unknown = rows[-1]["images"]
st.subheader(f"Sorted: {r['images']} photos of {r['data']}")
ui.explain(f"{r['images'] - unknown} in the folders of the {len(rows) - 1} known classes and {unknown} in 'unknown', "
           f"at {r['label']} ≥ {r['threshold']:.4f} ({r['threshold_from']}); by the run {r['run']} "
           f"({r['method']})" + (", from its own predictions (these are the images it adapted on)." if r["own_data"]
                                 else ", applied to these photos.")
           + (f" {r['by_person']} of them were placed by your labels (marked 'person' in manifest.csv)."
              if r.get("by_person") else "")
           + (f" {r['skipped']} file{'s' if r['skipped'] != 1 else ''} could not be read: listed in skipped.txt "
              "in the zip." if r["skipped"] else ""))
ui.table([{"folder": g["folder"], "class": g["class"] or "(rejected as unknown)", "images": g["images"]}
          for g in rows])
groups = {g["folder"]: g for g in state.sort_groups(sid)}
if groups:
    shown = st.radio("Folder", list(groups), horizontal=True, key=f"sort_folder_pick|{sid}",
                     format_func=lambda f: f"{f} · {groups[f]['images']}")
    ui.gallery(groups[shown]["paths"], groups[shown]["captions"], limit=24, key=f"sorted|{sid}|{shown}",
               empty=f"No photo went to {shown}.")
    ui.explain(f"Caption: the photo's path inside the folder sorted, then its {r['label']}; most sure first. In "
               "the zip and the written folders a name that comes twice into one folder carries its sub-folder "
               "(circle__0010.png).")

st.subheader("Take them with you")
sort_panel.take_home(sid, f"{sid}.zip")
