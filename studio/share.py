"""A teacher's link: the Lesson page's choices (data, prior, model, methods, settings) in one address parameter, so
that every student who opens it gets a workspace of their own with those choices, one click from running them.

The link carries choices only, never the teacher's workspace token: data or a checkpoint inside the teacher's
workspace (an upload) cannot be shared, and a link that would contain the token is refused.
"""
from __future__ import annotations

import base64
import json
from typing import Optional

from ueo_core.lesson import EXTENDED, LESSON_METHODS

PARAM = "lesson_link"
SETTINGS = {"epochs": int, "batch": int, "lr": float, "seed": int, "protocol": str}
DATA_KEYS = ("source", "spec", "label", "prior", "preset", "setting")
MODEL_KEYS = ("name", "pretrained", "checkpoint", "label")


class ShareError(ValueError):
    """The choices cannot be shared, or a link cannot be read; the message says why."""


def encode(data: dict, model: dict, methods: list[str], settings: dict, secret: str) -> str:
    """The choices as one URL-safe parameter value. ``secret`` (the workspace token, and its folder) must not be
    in it: an upload or a checkpoint of the teacher's workspace is refused with a message."""
    if data.get("source") == "upload" or secret in str(data.get("spec", "")):
        raise ShareError("This lesson's data is an upload in your own workspace, which students cannot open. Put "
                         "the images in a folder every student can read (the shared data, or UEO_DATA_ROOTS), "
                         "choose that folder on the Data page, and share again.")
    if model.get("checkpoint") and secret in str(model["checkpoint"]):
        raise ShareError("This lesson's model is a checkpoint uploaded to your workspace, which students cannot "
                         "open: put it on the server (in a data root) and choose it by its path.")
    payload = {"v": 1, "data": {k: data.get(k) for k in DATA_KEYS}, "model": {k: model.get(k) for k in MODEL_KEYS},
               "methods": [m for m in methods if m in LESSON_METHODS + EXTENDED],
               "settings": {k: SETTINGS[k](settings[k]) for k in SETTINGS if k in settings}}
    text = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")
    if secret in text or secret in json.dumps(payload):
        raise ShareError("This lesson's choices name your workspace, which must stay private: choose data and a "
                         "model outside it.")
    return text


def decode(text: Optional[str]) -> dict:
    """The choices of a link (types checked, unknown keys dropped); ShareError when it cannot be read. Paths in
    it are checked against the student's own roots when used, as any typed path is."""
    try:
        raw = json.loads(base64.urlsafe_b64decode((text or "") + "=" * (-len(text or "") % 4)))
        if not isinstance(raw, dict) or raw.get("v") != 1:
            raise ValueError("version")
        data = {k: raw["data"].get(k) for k in DATA_KEYS}
        if not isinstance(data["spec"], str) or not data["spec"]:
            raise ValueError("data")
        if data["prior"] is not None and not (isinstance(data["prior"], list)
                                              and all(isinstance(c, str) for c in data["prior"])):
            raise ValueError("prior")
        model = {k: raw["model"].get(k) for k in MODEL_KEYS}
        if not isinstance(model["name"], str):
            raise ValueError("model")
        methods = [m for m in raw.get("methods", []) if m in LESSON_METHODS + EXTENDED]
        settings = {k: SETTINGS[k](v) for k, v in raw.get("settings", {}).items() if k in SETTINGS}
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise ShareError(f"This lesson link cannot be read ({err.__class__.__name__}): ask your teacher for it "
                         "again.") from None
    return {"data": data, "model": model, "methods": methods, "settings": settings}


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")


def local_only(url: str) -> Optional[str]:
    """A warning when the link's address only works on the machine that opened it: the teacher reached the app
    as ``localhost``, so the link carries that name, and on a student's machine it would open the student's own
    computer. None for any other host."""
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return None
    if host not in LOCAL_HOSTS and not host.startswith("127."):
        return None
    port = f":{parts.port}" if parts.port else ""
    return (f"This link starts with {parts.scheme or 'http'}://{parts.hostname}{port}, the address of this "
            f"computer as seen from itself: on a student's computer it would open the student's own machine. "
            f"Students need the server's address: open the app by that address (the one students type, e.g. "
            f"http://<server name or IP>{port}) and copy the link again, or replace '{parts.hostname}' in it.")

