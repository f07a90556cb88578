"""This session's choices: the data and model it works on (loaded once per server, read-only), and a teacher's
link that carries them to students."""
from __future__ import annotations

import os
from typing import Optional

import streamlit as st

from studio import share
from ueo_core.analysis import builtin_model_warning
from ueo_core.data import ImageSet, load_data
from ueo_core.lesson import EXTENDED
from ueo_core.models import BUILTIN_MODEL, BUILTIN_TAG, LoadedModel, load_model

from .workspace import check_path, remember

DEFAULT_DATA = {"source": "shapes", "spec": "shapes:sketch", "label": "Shapes · sketch", "prior": None,
                "preset": None, "setting": "ODA"}
DEFAULT_MODEL = {"name": BUILTIN_MODEL, "pretrained": BUILTIN_TAG, "checkpoint": None,
                 "label": "Built-in small CLIP (trained on Shapes, offline)"}


def data_choice() -> dict:
    return st.session_state.setdefault("data", dict(DEFAULT_DATA))


def set_data_choice(**kw) -> None:
    st.session_state["data"] = {**DEFAULT_DATA, **kw}
    remember()


def model_choice() -> dict:
    return st.session_state.setdefault("model", dict(DEFAULT_MODEL))


def set_model_choice(**kw) -> None:
    st.session_state["model"] = {**DEFAULT_MODEL, **kw}
    remember()


@st.cache_resource(show_spinner=False, max_entries=16)
def _image_set(spec: str, prior: Optional[tuple], preset: Optional[str], setting: str, mtime: float) -> ImageSet:
    return load_data(spec, prior=list(prior) if prior else None, preset=preset, setting=setting)


def image_set(choice: Optional[dict] = None) -> ImageSet:
    """The chosen data as an ImageSet (cached; a changed folder is read again). Raises DataError."""
    c = choice or data_choice()
    spec = c["spec"]
    mtime = 0.0
    if not spec.startswith("shapes:"):
        spec = str(check_path(spec))  # every folder is checked against the roots, whatever set it
        if os.path.isdir(spec):
            mtime = os.stat(spec).st_mtime
    return _image_set(spec, tuple(c["prior"]) if c.get("prior") else None, c.get("preset"),
                      c.get("setting", "ODA"), mtime)


@st.cache_resource(show_spinner=False, max_entries=4)
def _model(name: str, pretrained: Optional[str], checkpoint: Optional[str], device: Optional[str],
           _progress=None) -> LoadedModel:
    return load_model(name, pretrained=pretrained, checkpoint=checkpoint, device=device, progress=_progress)


def loaded_model(choice: Optional[dict] = None, progress=None) -> LoadedModel:
    """The chosen model, loaded once per server (read-only: runs load their own copy). Raises ModelLoadError.
    ``progress(bytes_done, bytes_total)`` follows a first download of zoo weights."""
    c = choice or model_choice()
    ckpt = str(check_path(c["checkpoint"], what="checkpoint file")) if c.get("checkpoint") else None
    return _model(c["name"], c.get("pretrained"), ckpt, c.get("device"), _progress=progress)


def model_fit_warning(ims: ImageSet) -> Optional[str]:
    """The built-in model pointed at images that are not Shapes: a warning to show before any run."""
    m = model_choice()
    return builtin_model_warning(m["name"], m.get("pretrained"), data_choice()["spec"], ims.classes)


LESSON_SETTING_KEYS = {"epochs": "lesson_epochs", "batch": "lesson_batch", "lr": "lesson_lr", "seed": "lesson_seed",
                       "protocol": "lesson_protocol"}


def lesson_link(base_url: str, methods: list[str]) -> str:
    """The address of the Lesson page with this session's lesson choices (``studio.share``): no workspace token.
    Raises ShareError when the data or model lie in this workspace."""
    settings = {k: st.session_state[w] for k, w in LESSON_SETTING_KEYS.items() if w in st.session_state}
    value = share.encode(data_choice(), model_choice(), methods, settings, secret=st.session_state["ws"])
    return f"{base_url.split('?')[0]}?{share.PARAM}={value}"


def open_lesson_link(value: str) -> dict:
    """A student opened a teacher's link: its choices become this session's (in this session's own workspace),
    the parameter leaves the address. Paths are checked against this session's roots. Raises ShareError or
    DataError with a message."""
    choice = share.decode(value)
    d = choice["data"]
    if not str(d["spec"]).startswith("shapes:"):
        check_path(d["spec"])
    if choice["model"].get("checkpoint"):
        check_path(choice["model"]["checkpoint"], what="checkpoint file")
    set_data_choice(**{k: v for k, v in d.items() if v is not None})
    set_model_choice(**{k: v for k, v in choice["model"].items() if v is not None})
    for k, v in choice["settings"].items():
        st.session_state[LESSON_SETTING_KEYS[k]] = v
    if choice["methods"]:
        st.session_state["lesson_methods"] = choice["methods"]
        st.session_state["lesson_extended"] = any(m in EXTENDED for m in choice["methods"])
    st.session_state["lesson_from_link"] = True
    del st.query_params[share.PARAM]
    return choice
