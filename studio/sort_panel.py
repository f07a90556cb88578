"""The parts of a sort that three pages show alike (Sort, Inspect's "Sort my photos", Explore's selection): a live
sort job's progress, and "take them with you", the zip download and the sorted folders written to a path. Layout
only; the sort itself is a job on Ray (``ueo_core.sort``, ``studio.jobs``)."""
from __future__ import annotations

import streamlit as st

from ueo_core.data import DataError
from ueo_core.sort import how_words

from . import state, ui

LIVE = ("queued", "working")


def _progress(sort_id: str, what: str) -> None:
    """A live job's progress; once it ends, one full rerun shows its result (and stops the polling)."""
    s = state.sorting(sort_id)
    if s.kind in LIVE:
        done, total = s.status.get("done", 0), s.status.get("total", 0)
        text = (f"{what} {s.words}" if s.kind == "queued" else
                f"{what}: {s.status.get('stage', 'starting')} {done}/{total or '…'}")
        st.progress(done / total if total else 0.0, text=text)
    else:
        st.rerun()


def follow(sort_id: str, what: str) -> None:
    """Show a live sort job's progress; it redraws itself alone while the job is live."""
    st.fragment(run_every=1.0)(_progress)(sort_id, what)


def take_home(sid: str, file_name: str, what: str = "photos") -> None:
    """A finished sort's two outputs: its zip (made by the job: no server path, no token inside) and its folders
    written into a path this session may write (a second job)."""
    r = state.sorting(sid).result
    z = r.get("zip") or {}
    c1, c2 = st.columns(2)
    with c1:
        if z.get("bytes"):
            st.download_button(f"⬇ sorted folders (.zip, {z['bytes'] / 1024 ** 2:.1f} MB)",
                               state.sort_zip(sid), file_name, "application/zip", on_click="ignore",
                               key=f"zip|{sid}",
                               help=f"one folder per class and 'unknown', with manifest.csv (one row per {what[:-1]}) "
                                    "and skipped.txt; named by their path inside the data folder")
        else:
            st.info(f"No zip: {z.get('why', 'it was not made')}. Write the sorted folders to a path instead.")
    with c2:
        dest = st.text_input("Write the sorted folders on the server, into", placeholder="/home/me/sorted",
                             key=f"place_to|{sid}", help="A folder on the machine that runs this app (for someone "
                                                         "running it on their own computer); from elsewhere, take "
                                                         "the zip.")
        if st.button("Write sorted folders", key=f"place_go|{sid}"):
            try:
                st.session_state[f"place|{sid}"] = state.place_sorted(sid, dest)
            except DataError as err:
                st.error(state.friendly(err))
        pid = st.session_state.get(f"place|{sid}")
        placing = state.sorting(pid)
        if placing.kind in LIVE:
            follow(pid, "Writing")
        elif placing.kind == "failed":
            st.error(f"The folders could not be written: {placing.words}")
        elif placing.kind == "done":
            w = placing.result
            st.success(f"Wrote {w['images']} {what} into {state.redact(w['out'])}: {how_words(w['how'])}"
                       + (f"; {w['skipped']} listed in skipped.txt." if w["skipped"] else "."))
        ui.explain("Hard links where the disk allows: the same file under a second name (view them freely, but edit "
                   "a copy, since editing one in place edits the original); copies elsewhere. A folder an earlier "
                   "sort wrote is replaced whole; any other folder that is not empty is refused.")


def sort_of_these(sid, what: str, file_name: str, score: str, threshold: float) -> None:
    """A sort of a run's own images (Inspect's all, Explore's selection): its progress while live, then its counts
    per folder and its two outputs. Says so when the page's score or threshold has moved since."""
    job = state.sorting(sid)
    if job.kind in LIVE:
        follow(sid, f"Sorting {what}")
    elif job.kind == "failed":
        st.error(f"{what[:1].upper() + what[1:]} could not be sorted: {job.words}")
    elif job.kind == "done":
        r = job.result
        moved = r["score"] != score or r["threshold"] != threshold
        ui.explain(f"Sorted {r['images']} images at {r['label']} ≥ {r['threshold']:.3f}: "
                   + ", ".join(f"{g['folder']} {g['images']}" for g in r["counts"]) + "."
                   + (" The score or threshold has changed since: sort again to follow it." if moved else ""))
        take_home(sid, file_name, what="images")
