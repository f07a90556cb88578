"""Inspect's "Groups among the rejected": the run's rejected images in groups, each with suggested names and a way
to grow the prior by one of them. Layout only: the grouping and naming are ``ueo_core.unknowns``, answered by the
run's warm search worker on Ray (``state.search(…, "unknowns", …)``: a model is never loaded in the web server);
growing the prior is ``studio.grow``."""
from __future__ import annotations

import streamlit as st

from ueo_core.unknowns import TOP_NAMES, mistake_sentence, parse_names, truth_sentence

from . import state, ui

MAX_TYPED = 60  # characters of a typed name (the grow itself checks the model's text context)


def _names(group: dict) -> str:
    return " · ".join(f"“{d['name']}” {d['similarity']:.2f}" for d in group["names"]) or "no name"


def _results(rid: str) -> dict:
    """This run's groupings found in this session, keyed by what they depend on: moving the threshold back shows
    the earlier groups again without asking the worker."""
    return st.session_state.setdefault(f"unknowns|{rid}", {})


def render(rid: str, folder, preds, score: str, thr: float) -> None:
    """The panel under Inspect's "Rejected as unknown" gallery; ``preds`` are judged by ``score`` (its values in
    ``confidence``), and ``thr`` is the page's threshold on it."""
    n = int((preds.confidence < thr).sum())
    st.subheader("Groups among the rejected, with suggested names")
    if n == 0:
        st.caption("No image is rejected at this threshold: there are no groups to find.")
        return
    ui.explain("The rejected images' adapted features in groups (k-means; the number of groups chosen by the "
               "silhouette unless you set it), each named by the words whose text features are most like the "
               "group's mean (cosine similarity), the prior's own names left out. A group closer to a class of your "
               "prior than to any new name is probably a known class rejected by mistake.")
    c_k, c_v = st.columns([1, 2])
    k = int(c_k.number_input("Number of groups (0 = automatic)", min_value=0, max_value=n, value=0, step=1,
                             key=f"unk_k|{rid}", help="0 chooses it by the silhouette (how far apart the groups "
                                                      "are); any other number makes that many groups."))
    typed = c_v.text_area("More names to suggest (one per line, or comma-separated)", key=f"unk_vocab|{rid}",
                          height=80, placeholder="e.g. cross, arrow",
                          help="Added to the names the model knows; a name already in the prior is left out.")
    extra = parse_names(typed)
    key = (score, round(float(thr), 9), k, tuple(extra))
    found = _results(rid)
    if st.button(f"Find groups among the {n} rejected", key=f"unk_go|{rid}"):
        try:
            with st.spinner("Grouping and naming… (the run's search worker: a few seconds, longer the first time)"):
                found[key] = (state.search(rid, "unknowns", None, score=score, threshold=float(thr),
                                           groups=k or None, vocab_extra=extra), None)
        except ValueError as err:
            found[key] = (None, state.friendly(err))
    if key not in found:
        st.caption("Grouping costs a few seconds: press the button to find the groups at this threshold.")
        return
    res, error = found[key]
    if error:
        st.error(error)
        return
    _show(rid, res, preds, f"{abs(hash(key)):x}")


def _show(rid: str, res: dict, preds, tag: str) -> None:
    """The groups of one result; ``tag`` names the result, so that a grown run's message stays with its group."""
    groups = res["groups"]
    st.caption(f"{res['rejected']} rejected image{'s' if res['rejected'] != 1 else ''} in {len(groups)} "
               f"group{'s' if len(groups) != 1 else ''}, largest first. {res['how']} Names from "
               f"{res['vocabulary']} words ({res['vocabulary_from']}, the prior's left out"
               + (f"; {res['too_long']} too long for this model left out" if res.get("too_long") else "")
               + "); the number after a name is the cosine similarity of the group's mean image feature to its "
                 "text feature. Each gallery shows the group's most central images first.")
    for g_no, g in enumerate(groups, 1):
        st.markdown(f"#### Group {g_no}: {g['size']} image{'s' if g['size'] != 1 else ''} — {_names(g)}")
        mistake = mistake_sentence(g)
        near = g.get("nearest_prior")
        if mistake:
            st.warning(mistake[0].upper() + mistake[1:])
        elif near:
            st.caption(f"Nearest class of your prior: “{near['name']}” {near['similarity']:.2f}, no closer than "
                       f"“{g['names'][0]['name']}”.")
        if truth_sentence(g):
            st.caption(truth_sentence(g)[0].upper() + truth_sentence(g)[1:])
        captions = ([preds.true_class[i] for i in g["indices"]] if preds.truth is not None else None)
        ui.gallery(g["paths"], captions, limit=max(1, g["central"]), columns=6, key=f"unk_gal|{rid}|{g_no}")
        _grow(rid, g_no, g, tag, flagged=bool(mistake))


def _grow(rid: str, g_no: int, group: dict, tag: str, flagged: bool = False) -> None:
    """One button per suggested name, and a typed name: the run again with that name added to its prior
    (``studio.grow``), this group's images remembered with it. A group that looks like a class of the prior gets
    no suggested-name buttons (a new name would not fit it): a typed one only, for a user who knows better."""
    said = f"unk_grown|{rid}|{tag}|{g_no}"
    c_names, c_typed = st.columns([3, 2])  # the buttons one under another: their labels are long
    chosen = None
    if flagged:
        c_names.caption("No name is offered to add: this group looks like a class already in your prior.")
    for d in ([] if flagged else group["names"][:TOP_NAMES]):
        if c_names.button(f"Add '{d['name']}' to the prior and run again", key=f"unk_add|{rid}|{g_no}|{d['name']}"):
            chosen = d["name"]
    with c_typed:
        typed = st.text_input("Or another name", key=f"unk_typed|{rid}|{g_no}", max_chars=MAX_TYPED,
                              placeholder="a name of your own")
        if st.button("Add it and run again", key=f"unk_add_typed|{rid}|{g_no}"):
            chosen = typed.strip()
            if not chosen:
                st.session_state[said] = ("error", "Type a name first.")
    if chosen:
        from studio import grow
        try:
            new = grow.start(run_id=rid, name=chosen, group_paths=list(group["paths"]))
            st.session_state[said] = (
                "ok", f"Started run {new}: this run's settings with '{chosen}' added to the prior (queued like any "
                      "run). Once it finishes, Compare shows the two runs side by side.")
        except ValueError as err:
            st.session_state[said] = ("error", state.friendly(err))
    done = st.session_state.get(said)
    if done:
        (st.success if done[0] == "ok" else st.error)(done[1])
