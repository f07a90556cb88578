"""Data: choose images and the class-name prior; see counts, thumbnails and skipped files."""
import hashlib
import os
from pathlib import Path

import streamlit as st

from studio import charts, state, ui
from studio.uploads import save_upload
from ueo_core.data import IMG_EXTENSIONS, DataError, is_os_junk, parse_prior
from ueo_core.explore import MIN_IMAGES as MAP_MIN_IMAGES
from ueo_core.methods import too_few_note
from ueo_core.presets import get_preset
from ueo_core.privacy import data_name
from ueo_core.prompts import check_prior_names
from ueo_core.roots import describe
from ueo_core.shapes import DEFAULT_PRIOR, SHAPES, DOMAINS as SHAPE_DOMAINS

ui.page("Data", "🗂️")
choice = state.data_choice()
sources = ["Built-in Shapes", "Folder on this machine", "Upload photos or a zip"]
pacs = state.shared_pacs()
if pacs:
    sources.insert(1, "PACS (shared data)")
src_index = {"shapes": 0, "pacs": 1 if pacs else 0, "folder": sources.index("Folder on this machine"),
             "upload": sources.index("Upload photos or a zip")}.get(choice["source"], 0)
st.session_state.setdefault("data_source", sources[src_index])
source = st.radio("Where are the images?", sources, horizontal=True, key="data_source")

# ------------------------------------------------------------------------------------------- pick the images
root, preset, default_prior = None, None, None
if source == "Built-in Shapes":
    shown = choice["spec"] if choice["spec"].startswith("shapes:") else state.DEFAULT_DATA["spec"]
    dom = st.selectbox("Domain", SHAPE_DOMAINS, index=SHAPE_DOMAINS.index(shown.split(":")[1]),
                       help="flat = what the built-in model was trained on; sketch and photo are shifted domains")
    unknown = [s for s in SHAPES if s not in DEFAULT_PRIOR]
    ui.explain(f"{len(SHAPES)} shapes; the default prior names {len(DEFAULT_PRIOR)} of them, so "
               f"{', '.join(unknown[:-1])} and {unknown[-1]} are the unknowns: shapes the built-in model knows by "
               "name, that the prior leaves out.")
    spec, label, preset, kind = f"shapes:{dom}", f"Shapes · {dom}", "shapes", "shapes"
elif source == "PACS (shared data)":
    dom = st.selectbox("PACS domain", ["art_painting", "cartoon", "photo", "sketch"], index=3)
    far = st.checkbox("Add Imagenette photos as far-OOD unknowns", value=False,
                      disabled=state.shared_imagenette() is None)
    ui.explain("PACS: 7 classes; the default prior names the first 5 (dog … horse), so house and person are unknown.")
    if far:
        mix = state.workspace() / "mixes" / f"pacs-{dom}-imagenette"
        mix.mkdir(parents=True, exist_ok=True)
        for base in (pacs / dom, state.shared_imagenette()):
            for d in sorted(base.iterdir()):
                link = mix / d.name
                if d.is_dir() and not link.exists():
                    link.symlink_to(d, target_is_directory=True)
        spec, label = str(mix), f"PACS · {dom} + Imagenette (far-OOD)"
    else:
        spec, label = str(pacs / dom), f"PACS · {dom}"
    default_prior, kind = list(get_preset("pacs").split("ODA")[0]), "pacs"
elif source == "Folder on this machine":
    st.session_state.setdefault("folder_path", choice["spec"] if choice["source"] == "folder" else "")
    path = st.text_input("Folder path", key="folder_path",
                         placeholder="/home/me/photos  (one sub-folder per class, or images directly inside)")
    ui.explain("This server reads folders only inside: " + describe(state.allowed_roots()) + ".")
    spec, label, kind = "", f"Folder · {path.strip()}", "folder"
    if path.strip():
        try:
            spec = str(state.check_path(path))
            if not Path(spec).is_dir():
                st.error(f"Folder not found: {state.redact(spec)}")
                spec = ""
        except DataError as err:
            st.error(str(err))
else:
    kind = "upload"
    files = st.file_uploader("Photos (many at once) or one zip: a folder of photos, or one sub-folder per class",
                             type=[e.strip(".") for e in IMG_EXTENSIONS] + ["zip"], accept_multiple_files=True,
                             help="Image types read: " + ", ".join(e.strip(".").upper() for e in IMG_EXTENSIONS)
                                  + " (HEIC: iPhone photos). Photos are turned upright by their EXIF orientation.")
    ui.explain("Your files are copied into this session's workspace; the originals are never changed. "
               + state.retention_note())
    spec, label = (choice["spec"], choice["label"]) if choice["source"] == "upload" else ("", "")
    if files and st.button("Use these files", type="primary"):
        try:
            dest = state.new_upload_dir()
            root, refused = save_upload(files, dest)
            if root != dest:
                st.info(f"The zip's folder '{root.relative_to(dest).as_posix()}' holds the images: it is read as "
                        "the top.")
            if refused:
                st.warning(f"{len(refused)} zip entries refused: " +
                           "; ".join(f"{n} ({r})" for n, r in refused[:10]))
            spec, label = str(root), f"Upload · {data_name(str(root))}"
            state.set_data_choice(source="upload", spec=spec, label=label, refused=refused)
        except DataError as err:
            st.error(str(err))
    if not spec:
        st.info("Upload images, then press 'Use these files'.")

# ------------------------------------------------------------------------------------------------- prior
if spec:
    folders = []
    root = spec if not spec.startswith("shapes:") else None
    if root:
        try:
            folders = sorted(e.name for e in os.scandir(root) if e.is_dir() and not is_os_junk(e.name))
        except OSError as err:
            st.error(f"Cannot read {root}: {err}")
    if preset:
        folders = list(get_preset(preset).classnames)
        default_prior = list(get_preset(preset).split("ODA")[0])
    same = choice["spec"] == spec and choice.get("prior")
    current = list(choice["prior"]) if same else (default_prior or folders)
    st.subheader("Class-name prior (the known classes)")
    ui.explain("The model is told only these names. Sub-folders not named here count as *unknown* — that is what "
               "UEO must learn to reject. If no sub-folder is named here, the sub-folders are not classes: the "
               "images are read as unlabeled (no accuracy, no ✓/✗).")
    spec_key = hashlib.sha256(spec.encode("utf-8", "surrogateescape")).hexdigest()[:16]  # widget ids reach the
    # browser: a hash of the folder, never its path (an upload's path holds the workspace token)
    picked = st.multiselect("Known classes from the folder names", folders,
                            default=[c for c in current if c in folders], key=f"prior_pick|{spec_key}")
    extra = st.text_input("More class names (comma-separated)",
                          value=", ".join(c for c in current if c not in folders), key=f"prior_extra|{spec_key}")
    if st.button("Apply data and prior", type="primary"):
        try:
            prior = parse_prior(list(picked) + [x.strip() for x in extra.split(",") if x.strip()])
            check_prior_names(prior, state.model_choice()["name"])  # a name too long for the prompt: said here
            state.set_data_choice(source=kind, spec=spec, label=label, prior=prior, preset=None,
                                  refused=choice.get("refused") if choice["spec"] == spec else None)
            state.image_set()  # read now, so problems show here
            st.success(f"Using {label} with {len(prior)} known classes.")
        except DataError as err:
            st.error(str(err))
        except Exception as err:  # never a traceback on the page
            st.error(state.friendly(err))

# ---------------------------------------------------------------------------------------- what is in it
choice = state.data_choice()
st.divider()
st.subheader(f"In use: {choice['label']}")
try:
    with st.spinner("Reading images (checking every file)…"):
        ims = state.image_set()
except Exception as err:
    st.error(state.friendly(err))
    st.stop()
st.write(state.redact(ims.summary(data_name(choice['spec']))))
st.write("**Prior:** " + ", ".join(ims.classes))
few = too_few_note(len(ims), len(ims.classes))
if few or len(ims) < MAP_MIN_IMAGES:
    st.warning((few or f"{len(ims)} images.") + f" Explore's maps need at least {MAP_MIN_IMAGES} images.")
fit = state.model_fit_warning(ims)
if fit:
    st.warning(fit, icon="⚠️")
for w in ims.warnings:
    st.warning(w)
counts = ims.counts()
st.plotly_chart(charts.bar(counts, "images per class folder", "images", range_y=None), width="stretch")
with st.expander("Thumbnails per class", expanded=True):
    for cls in counts:
        idx = [i for i, f in enumerate(ims.folder_names) if (f or "unlabeled") == cls]
        tag = "known" if ims.has_truth and ims.labels[idx[0]] >= 0 else ("unknown" if ims.has_truth else "no label")
        st.markdown(f"**{cls}** · {len(idx)} images · {tag}")
        ui.gallery([ims.files[i] for i in idx], limit=4)
refused = choice.get("refused") or []
if refused:
    st.subheader(f"Zip entries refused ({len(refused)})")
    st.dataframe([{"entry": n, "reason": r} for n, r in refused], width="stretch", hide_index=True)
st.subheader(f"Skipped files ({len(ims.skipped)})")
if ims.skipped:
    st.dataframe([{"file": state.redact(p), "reason": r} for p, r in ims.skipped], width="stretch", hide_index=True)
else:
    st.caption("Every file was a readable image.")
