"""AppTest: every page renders headless; a real one-epoch run completes; bad input gets a message."""
import io
import json
import zipfile

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from studio import workspace
from ueo_core.shapes import SHAPES
from helpers import make_folder

PAGES = ["app.py", "home.py"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch, ray_cluster):
    monkeypatch.setenv("UEO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("studio.workspace.WORKSPACES", tmp_path / "ws")
    # the test folders live in tmp_path: the operator setting opens it (the workspaces under it stay denied)
    monkeypatch.setenv("UEO_DATA_ROOTS", str(tmp_path))


def app(page: str, **session) -> AppTest:
    at = AppTest.from_file(str(ROOT / page), default_timeout=180)
    for k, v in session.items():
        at.session_state[k] = v
    return at


def no_trouble(at: AppTest) -> None:
    assert not at.exception, [(e.value, e.stack_trace) for e in at.exception]


def plotly_charts(at: AppTest) -> list:
    return at.get("plotly_chart")


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(page):
    at = app(page)
    at.run()
    no_trouble(at)
    assert at.title


def test_data_page_shapes_default_shows_counts_thumbnails_and_prior():
    at = app("pages/1_Data.py")
    at.run()
    no_trouble(at)
    assert any("Shapes" in m.value for m in at.subheader)
    assert any("circle, square, triangle, star, heart, hexagon" in m.value for m in at.markdown)
    assert plotly_charts(at) and len(at.get("image")) == 4 * len(SHAPES)  # 4 thumbnails for each shape


def test_data_page_folder_and_prior_validation(tmp_path):
    folder = make_folder(tmp_path / "mine", classes=("red", "green", "blue"))
    (folder / "red" / "broken.jpg").write_text("not an image")
    at = app("pages/1_Data.py")
    at.run()
    at.radio[0].set_value("Folder on this machine").run()
    at.text_input[0].set_value(str(folder)).run()
    no_trouble(at)
    at.multiselect[0].set_value(["red", "green"])
    at.text_input[1].set_value("Red")  # duplicate of a folder name
    at.button[0].click().run()
    assert any("twice" in e.value for e in at.error)
    at.multiselect[0].set_value(["red"])
    at.text_input[1].set_value("")
    at.button[0].click().run()
    assert any("at least 2" in e.value for e in at.error)
    at.multiselect[0].set_value(["red", "green"])
    at.button[0].click().run()
    no_trouble(at)
    assert any("2 known classes" in s.value for s in at.success)
    # blue is unknown; the broken file is listed with its reason
    assert any("Skipped files (1)" in s.value for s in at.subheader)
    at.text_input[0].set_value(str(tmp_path / "nowhere")).run()
    assert any("Folder not found" in e.value for e in at.error)


class Upload:
    def __init__(self, name, data):
        self.name, self._data = name, data

    def getbuffer(self):
        return memoryview(self._data)


def test_bad_uploads_are_refused_with_a_message(tmp_path):
    from studio.uploads import save_upload
    from ueo_core.data import DataError, load_folder
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../escape.png", b"x")
        img = io.BytesIO()
        Image.new("RGB", (8, 8), "red").save(img, "PNG")
        zf.writestr("set/cat/a.png", img.getvalue())
        zf.writestr("set/dog/b.png", img.getvalue())
        zf.writestr("set/dog/c.png", b"corrupt")
    root, refused = save_upload([Upload("photos.zip", buf.getvalue())], tmp_path / "u1")
    assert root.name == "set" and refused == [("../escape.png", "unsafe path (absolute or '..')")]
    assert not (tmp_path / "escape.png").exists()
    ims = load_folder(root)
    assert len(ims) == 2 and len(ims.skipped) == 1
    assert "corrupt" in ims.skipped[0][1] or "not an image" in ims.skipped[0][1]
    with pytest.raises(DataError, match="not both"):
        save_upload([Upload("a.zip", buf.getvalue()), Upload("b.png", b"x")], tmp_path / "u2")
    with pytest.raises(DataError, match="Not a readable zip"):
        save_upload([Upload("fake.zip", b"hello")], tmp_path / "u3")
    root, _ = save_upload([Upload("../../x.png", img.getvalue())], tmp_path / "u4")
    assert (root / "x.png").exists() and not (tmp_path / "x.png").exists()


def wait_for_run(at: AppTest, timeout=240):
    """Wait for the session's run (a job on the session's Ray) to end; returns (run id, its outcome): ``status``
    from ended.json (done, cancelled, error) and ``error``, the message the app shows."""
    from types import SimpleNamespace
    from ueo_core import jobs
    rid = at.session_state["active_run"]
    run_dir = workspace.WORKSPACES / at.session_state["ws"] / "runs" / rid
    s = jobs.wait(run_dir, timeout=timeout)
    assert s.kind == "ended", s
    err = (jobs.read(run_dir, "error.json") or {}).get("message")
    return rid, SimpleNamespace(status=s.outcome, error=err, alive=False)


def epochs(at: AppTest):
    """The Adapt page's epochs field (the method's own options come before the common settings)."""
    return next(n for n in at.number_input if n.label == "Epochs")


def start_one_epoch(at: AppTest):
    """On a rendered Adapt page: one epoch, Start, wait for the run; returns (run id, background run)."""
    epochs(at).set_value(1)
    at.button[0].click().run()       # Start (form submit)
    no_trouble(at)
    rid, bg = wait_for_run(at)
    assert bg.error is None
    at.run()
    no_trouble(at)
    return rid, bg


def test_adapt_one_epoch_run_then_explore_inspect_compare():
    at = app("pages/3_Adapt.py")
    at.run()
    no_trouble(at)
    rid, bg = start_one_epoch(at)
    assert bg.status == "done"
    assert any("Done in" in s.value for s in list(at.success) + list(at.warning))  # finished (better or worse)
    assert len(plotly_charts(at)) >= 3  # curves, histogram animation, metrics
    ws = at.session_state["ws"]

    ex = app("pages/4_Explore.py", ws=ws, active_run=rid)
    ex.run()
    no_trouble(ex)
    from ueo_core import explore, jobs
    assert jobs.wait(explore.folder(workspace.WORKSPACES / ws / "runs" / rid), timeout=240).outcome == "done"
    ex.run()
    no_trouble(ex)
    assert len(plotly_charts(ex)) == 2
    assert [r.value for r in ex.radio if r.label == "Projection"] == ["UMAP"]  # UMAP done: shown by default
    counts = [c.value for c in ex.caption if "known ·" in c.value]
    assert len(counts) == 2  # each map says how many points it calls known / unknown, at its own threshold
    [r for r in ex.radio if r.label == "Colour by"][0].set_value("score").run()
    no_trouble(ex)
    next(b for b in ex.selectbox if b.label == "Known/unknown score").set_value("maxlogit").run()
    no_trouble(ex)
    counts = [c.value for c in ex.caption if "known ·" in c.value]
    assert len(counts) == 2 and all("MaxLogit threshold" in c for c in counts), counts

    ins = app("pages/5_Inspect.py", ws=ws, active_run=rid)
    ins.run()
    no_trouble(ins)
    assert any("Rejected as unknown" in s.value for s in ins.subheader)
    assert any("False acceptances" in s.value for s in ins.subheader)
    ins.slider[0].set_value(0.0).run()
    assert any("Rejected as unknown (0 of" in s.value for s in ins.subheader)
    assert len(ins.get("download_button")) == 6  # predictions, labels for Label Studio / FiftyOne / CSV, checkpoint,
    # report (the sort's zip appears once a sort has run)
    # every image rejected: the marks say how many rejections are right, and the gallery is paged
    ins.slider[0].set_value(1.0).run()
    no_trouble(ins)
    from ueo_core.analysis import read_predictions
    preds = read_predictions(workspace.WORKSPACES / ws / "runs" / rid)
    marks = preds.rejection_marks(preds.at_threshold(1.0)["rejected"])
    assert any(f"{sum(marks)} of {len(marks)} rejections are right" in c.value for c in ins.caption)
    assert any(n.label.startswith("page (of") for n in ins.number_input)
    assert any("threshold 1.000" in b.label for b in ins.get("download_button"))
    # another known/unknown score: the slider, histogram, galleries and the download follow it
    next(b for b in ins.selectbox if b.label == "Known/unknown score").set_value("energy").run()
    no_trouble(ins)
    slider = ins.slider[0]
    energy = preds.by("energy")
    assert slider.label == "Known/unknown threshold on Energy" and slider.min == pytest.approx(energy.confidence.min())
    assert slider.value == pytest.approx(energy.default_threshold(), abs=(slider.max - slider.min) / 200)
    rejected = len(energy.at_threshold(slider.value)["rejected"])
    assert any(f"Rejected as unknown ({rejected} of {len(energy)})" in s.value for s in ins.subheader)
    assert any("(Energy)" in b.label for b in ins.get("download_button"))
    csv_text = energy.csv_at_threshold(slider.value)
    assert csv_text.splitlines()[0].endswith("score,score_value,threshold,predicted_known")
    assert csv_text.splitlines()[1].split(",")[5] == "energy"
    # a paged gallery is a fragment (its pager reruns it alone; AppTest itself always reruns the whole page, so
    # the wiring is what is checked here), and its next page shows the next rejections
    from unittest import mock
    from studio import ui
    shown = lambda: [str(im.proto) for im in ins.get("image")]  # noqa: E731  (captions and image ids)
    first = shown()
    with mock.patch.object(ui.st, "fragment", wraps=ui.st.fragment) as frag:
        next(n for n in ins.number_input if n.label.startswith("page (of")).set_value(2).run()
        no_trouble(ins)
    assert sum(c.args[:1] == (ui._gallery,) for c in frag.call_args_list) == 3  # rejected, false rej./acc.
    assert first and shown() and shown() != first  # the next 24 rejections

    cmp_ = app("pages/6_Compare.py", ws=ws)
    cmp_.run()
    no_trouble(cmp_)
    # the table's rates are printed as the caption prints them: the run's GACC and AUROC, in points, in both
    after = json.loads((workspace.WORKSPACES / ws / "runs" / rid / "metrics.json").read_text())["after"]
    row = cmp_.table[0].value.iloc[0]
    caption = " ".join(c.value for c in cmp_.caption)
    for key in ("gacc", "auroc"):
        assert row[key] == f"{after[key] * 100:.1f}" and f"{key.upper()} {row[key]}" in caption, (row, caption)


def test_bad_template_and_failed_run_show_plain_errors(tmp_path):
    at = app("pages/3_Adapt.py", model={"name": "ueo-tiny", "pretrained": None, "label": "broken",
                                        "checkpoint": str(tmp_path / "missing.safetensors")})
    at.run()
    no_trouble(at)
    at.text_input[0].set_value("no placeholder here")
    at.button[0].click().run()
    assert any("exactly once" in e.value for e in at.error)
    at.text_input[0].set_value("a photo of a {}.")
    at.button[0].click().run()   # the run starts, then fails to load its model in the background
    wait_for_run(at)
    at.run()
    no_trouble(at)
    assert any("Checkpoint file not found" in e.value for e in at.error)
    assert not any("Traceback" in e.value for e in at.error)


def test_learn_page_numbers_follow_the_sliders():
    at = app("pages/7_Learn.py")
    at.run()
    no_trouble(at)
    before = [m.value for m in at.metric]
    at.slider[2].set_value(2.0).run()  # image 1, class 1 logit up: more confident
    no_trouble(at)
    assert [m.value for m in at.metric] != before


def test_learn_page_losses_follow_lambda_and_equal_the_engines():
    """The λ slider changes the IM and UEO losses, and every shown loss equals the engine's own objective on the
    same batch (computed here independently through the method registry and ueo_loss)."""
    import torch
    from ueo_core.analysis import softmax
    from helpers import loss_of
    from ueo_core.methods.ueo import ueo_loss
    at = app("pages/7_Learn.py")
    at.run()
    logits = [[1.2, 0.1, 0.0], [0.0, 0.9, 0.2], [0.3, 0.35, 0.3], [0.1, 0.0, 0.15]]  # the page's defaults
    probs = torch.tensor([softmax(z, 5.0) for z in logits])
    w = probs.max(dim=1).values
    for trade in (1.0, 2.5):
        at.slider[1].set_value(trade).run()
        no_trouble(at)
        shown = {m.label.split(" (")[0]: float(m.value) for m in at.metric}
        assert shown["UEO loss"] == pytest.approx(float(ueo_loss(probs, w, trade)[0]), abs=6e-4)
        assert shown["IM"] == pytest.approx(float(loss_of("im", probs, trade=trade)[0]), abs=6e-4)
        assert shown["entropy min."] == pytest.approx(float(loss_of("entropy", probs)[0]), abs=6e-4)
    assert shown["UEO loss"] != pytest.approx(float(ueo_loss(probs, w, 1.0)[0]), abs=6e-4)  # λ moved it


def test_learn_gradient_steps_collapse_tent_but_not_ueo():
    """The 'take gradient steps' animation: on the page's default batch, entropy minimisation piles the images onto
    fewer classes and makes the unsure ones sure; UEO keeps every class and the unsure images unsure. Every loss
    is the engine's (step 0 equals the metrics above), every step lowers the loss, and the page's sentences are
    the engine's notes."""
    import torch
    from helpers import loss_of
    from ueo_core.analysis import softmax, toy_descent, toy_descent_note
    logits = [[1.2, 0.1, 0.0], [0.0, 0.9, 0.2], [0.3, 0.35, 0.3], [0.1, 0.0, 0.15]]
    runs = {m: toy_descent(logits, m, 5.0, 1.0) for m in ("entropy", "im", "ueo")}
    probs = torch.tensor([softmax(z, 5.0) for z in logits])
    for m, frames in runs.items():
        loss = loss_of(m, probs, weights=probs.max(dim=1).values, trade=1.0)[0]
        assert frames[0]["loss"] == pytest.approx(float(loss), abs=1e-9)
        losses = [f["loss"] for f in frames]
        assert all(a >= b - 1e-12 for a, b in zip(losses, losses[1:])), m  # descent: never up
        assert losses[-1] < losses[0] - 1e-3, m
    tent, ueo = runs["entropy"][-1], runs["ueo"][-1]
    assert min(tent["shares"]) == 0 and max(tent["shares"]) >= 0.75        # a class emptied, 3 of 4 on one
    assert min(ueo["shares"]) > 0                                            # every class still used
    assert min(tent["confidence"][2:]) > 0.9 and max(ueo["confidence"][2:]) < 0.6  # unsure images 3, 4
    at = app("pages/7_Learn.py")
    at.run()
    no_trouble(at)
    names = {"entropy": "entropy min. (TENT)", "im": "IM (λ = 1)", "ueo": "UEO (λ = 1)"}
    shown = " ".join(m.value for m in at.markdown)
    for line in toy_descent_note(runs, names):
        assert line in shown
    fig = [c for c in plotly_charts(at) if "take gradient steps" in c.proto.spec][0]
    assert '"frames"' in fig.proto.spec


def test_adapt_runs_zero_with_its_views_and_states_their_cost_before_start():
    """ZERO trains nothing (no epochs, no learning rates to set) and costs a pass of the image tower per view:
    the page says how many before Start; the run is an ordinary run folder, scored by every score."""
    import json
    at = app("pages/3_Adapt.py")
    at.run()
    at.selectbox[0].set_value("zero").run()
    no_trouble(at)
    assert "Epochs" not in [n.label for n in at.number_input]  # (it trains nothing: a run takes ZERO's own 1)
    assert any("does not train beforehand: no epochs or learning rates" in c.value for c in at.caption)
    views = next(n for n in at.number_input if n.label.startswith("Views per image"))
    assert views.value == 64  # the official count
    views.set_value(4).run()
    said = [c.value for c in at.caption if "image-tower passes" in c.value]
    n = int(said[0].split(" images")[0]) if said else 0
    assert said and f"{n} images × 4 passes of the image tower = {4 * n:,} image-tower passes" in said[0], said
    at.button[0].click().run()  # Start (the form's submit)
    no_trouble(at)
    rid, bg = wait_for_run(at)
    assert bg.status == "done" and bg.error is None, bg
    run = workspace.WORKSPACES / at.session_state["ws"] / "runs" / rid
    assert json.loads((run / "config.json").read_text())["options"] == {"zero_views": 4}
    assert set(json.loads((run / "metrics.json").read_text())["after"]["scores"]) == {"msp", "maxlogit", "energy",
                                                                                   "mcm", "gen"}


def test_adapt_clipood_from_labelled_shapes_source():
    at = app("pages/3_Adapt.py")
    at.run()
    at.selectbox[0].set_value("clipood").run()
    no_trouble(at)
    assert at.multiselect[0].value == ["Shapes · flat"]  # the labelled source: the other domains, flat first
    assert next(n for n in at.number_input if n.label == "Batch size").value == 12  # official, per source domain
    steps = next(n for n in at.number_input if n.label == "Steps per epoch")
    assert steps.value == 500  # official (thuml/CLIPood --iters-per-epoch); a quick run sets fewer
    steps.set_value(4)
    labels = [n.label for n in at.number_input]  # CLIPood's own knob, not UEO's λ; no UEO weight temperature
    assert "Margin λ (CLIPood)" in labels and "λ (marginal entropy weight)" not in labels
    assert "UEO weight temperature" not in labels
    next(n for n in at.number_input if n.label == "Margin λ (CLIPood)").set_value(0.2)
    rid, bg = start_one_epoch(at)
    assert bg.status == "done"
    assert any("Done in" in s.value for s in list(at.success) + list(at.warning))  # finished (better or worse)
    import json
    m = json.loads((workspace.WORKSPACES / at.session_state["ws"] / "runs" / rid / "metrics.json").read_text())
    assert {"before", "after", "last"} <= set(m) and "acc_seen" in m["after"]
    cfg = json.loads((workspace.WORKSPACES / at.session_state["ws"] / "runs" / rid / "config.json").read_text())
    assert cfg["options"]["iters_per_epoch"] == 4 and cfg["summary"]["total_steps"] == 4
    assert cfg["options"]["margin"] == 0.2


def test_model_page_measures_the_cost_of_a_run():
    at = app("pages/2_Model.py")
    at.run()
    no_trouble(at)
    assert any("CPU" in m.value or "GPU" in m.value for m in at.metric)
    at.button[1].click().run()  # Measure one training step
    no_trouble(at)
    assert any("one step took" in m.value and m.value.startswith("UEO:") for m in at.markdown)
    # CLIPood: its own step (a batch from a labelled source) and its own steps per epoch (500), not UEO's
    next(s for s in at.selectbox if s.label == "Method").set_value("clipood").run()
    at.button[1].click().run()
    no_trouble(at)
    said = [m.value for m in at.markdown if "one step took" in m.value]
    from ueo_core.config import RunConfig
    from ueo_core.methods import METHODS
    d = METHODS["clipood"].defaults
    steps = d["epochs"] * RunConfig(method="clipood").options["iters_per_epoch"]
    assert said and said[0].startswith("CLIPood") and f"{steps:,} steps" in said[0], said


def test_old_workspaces_are_pruned(tmp_path):
    import os
    from studio.state import prune_workspaces
    old, new = tmp_path / ("a" * 32), tmp_path / ("b" * 32)
    for ws in (old, new):
        (ws / "runs").mkdir(parents=True)
        (ws / "runs" / "x.txt").write_text("x")
    (tmp_path / "not-a-token").mkdir()
    now = 1_000_000_000.0
    for p in [old, old / "runs", old / "runs" / "x.txt"]:
        os.utime(p, (now - 20 * 86400, now - 20 * 86400))
    for p in [new, new / "runs", new / "runs" / "x.txt"]:
        os.utime(p, (now - 1 * 86400, now - 1 * 86400))
    assert prune_workspaces(tmp_path, 14, now=now) == ["a" * 32]
    assert not old.exists() and new.exists() and (tmp_path / "not-a-token").exists()


def test_a_collapsing_run_is_a_warning_not_a_green_done():
    """Entropy minimisation on the default Shapes domain with the quick settings collapses (issue 9's lesson):
    the page says so, names the class, and the note under the entropy chart says the marginal entropy fell."""
    at = app("pages/3_Adapt.py")
    at.run()
    at.selectbox[0].set_value("entropy").run()
    at.button[0].click().run()
    rid, bg = wait_for_run(at)
    assert bg.error is None
    at.run()
    no_trouble(at)
    assert any(w.value.startswith("Collapsed") and "% of all images are now predicted as" in w.value
               for w in at.warning), [w.value for w in at.warning]
    assert not any("Done in" in s.value for s in at.success)
    assert any("marginal entropy fell" in m.value for m in list(at.markdown) + list(at.caption)), "entropy note"


def test_histogram_opens_on_the_latest_epoch():
    from studio.charts import histogram_animation
    epochs = [{"epoch": e, "histogram": {"edges": [i / 4 for i in range(5)], "known": k, "unknown": [0, 0, 0, 1]}}
              for e, k in ((0, [5, 0, 0, 0]), (1, [0, 0, 0, 5]))]
    fig = histogram_animation(epochs)
    known = [tr for tr in fig.data if tr.name == "truly known"][0]
    assert list(known.y) == [0, 0, 0, 5]  # the bars drawn are the last epoch's, as the slider says
    assert fig.layout.sliders[0].active == 1


def test_the_lesson_makes_its_runs_and_says_what_happened():
    """One click: zero-shot, entropy, IM, UEO and the oracle on the default Shapes sketch folder with the quick
    settings; the page's summary is the engine's, computed from the five runs, and it names TENT's collapse."""
    from ueo_core import jobs
    from ueo_core.lesson import lesson_rows, lesson_summary, read_lesson
    at = app("pages/8_Lesson.py")
    at.run()
    no_trouble(at)
    at.button[0].click().run()
    no_trouble(at)
    lid = at.session_state["lesson"]
    runs = workspace.WORKSPACES / at.session_state["ws"] / "runs"
    manifest = read_lesson(runs / "lessons" / f"{lid}.json")
    assert manifest["methods"] == ["zero_shot", "entropy", "im", "ueo", "oracle"]
    for rid in manifest["runs"].values():  # every run is a queued job
        assert jobs.wait(runs / rid, timeout=300).outcome == "done"
    at.run()
    no_trouble(at)
    rows = lesson_rows(runs, manifest)
    assert [r["method"] for r in rows] == manifest["methods"]  # five finished runs, each a run folder
    settings = {(r["run"], json.dumps({k: v for k, v in json.loads((runs / r["run"] / "config.json").read_text())
                                       .items() if k in ("seed", "epochs", "batch_size", "lr_prompt", "data")}))
                for r in rows}
    assert len({s for _, s in settings}) == 1  # same data, seed and settings for every method
    summary = lesson_summary(rows)
    shown = " ".join(m.value for m in at.markdown)
    assert all(line in shown for line in summary)
    assert any(line.startswith("Entropy minimisation (TENT) collapsed") for line in summary), summary
    assert len(plotly_charts(at)) == 2 and at.table


def test_model_page_offline_zoo_error_is_shown_in_full_with_what_to_do_in_the_app():
    # HF_HUB_OFFLINE=1 (conftest) stands for a machine that cannot reach the hub
    at = app("pages/2_Model.py")
    at.run()
    at.radio[0].set_value("OpenCLIP zoo (downloads weights)").run()
    at.button[0].click().run()
    no_trouble(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    text = errors[0]
    assert "open_clip_pytorch_model.bin" in text and "ViT-B-32-quickgelu" in text
    assert text.endswith("upload the file or give its path on this server.")  # whole, not cut off
    assert "--" not in text  # no CLI flags for a GUI user
    assert at.session_state["model"]["pretrained"] == "builtin"  # the working choice is kept


def test_builtin_model_on_other_images_is_warned_before_and_judged_after(tmp_path):
    """Colour photos with the built-in shapes model: Data, Adapt and Lesson warn before any run; after a run the
    verdict is a warning that says the results are near chance (from the run's own numbers)."""
    from ueo_core.analysis import chance_note
    folder = make_folder(tmp_path / "colours", classes=("red", "green", "blue"), per_class=8)
    data = {"source": "folder", "spec": str(folder), "label": "colours", "prior": ["red", "green"], "preset": None,
            "setting": "ODA"}
    for page in ("pages/1_Data.py", "pages/3_Adapt.py", "pages/8_Lesson.py"):
        at = app(page, data=dict(data))
        at.run()
        no_trouble(at)
        assert any("trained only on drawn shapes" in w.value and "'red', 'green'" in w.value for w in at.warning), page
    at = app("pages/3_Adapt.py", data=dict(data))
    at.run()
    rid, bg = start_one_epoch(at)
    metrics = json.loads((workspace.WORKSPACES / at.session_state["ws"] / "runs" / rid / "metrics.json").read_text())
    note = chance_note(metrics["after"], 2)
    assert note, metrics["after"]  # colour blocks mean nothing to a shapes model
    verdicts = [w.value for w in at.warning if "trained only on drawn shapes" not in w.value]
    assert len(verdicts) == 1 and verdicts[0].endswith(note), verdicts
    assert not at.success
    # the built-in model on its own world: no such warning
    at = app("pages/3_Adapt.py")
    at.run()
    assert not any("trained only on drawn shapes" in w.value for w in at.warning)


def test_unlabeled_folder_run_says_what_was_accepted_and_rejected(tmp_path):
    from ueo_core.analysis import acceptance_summary, read_predictions
    src = make_folder(tmp_path / "src", classes=("red", "green", "blue"), per_class=4)
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in src.rglob("*.png"):
        p.rename(flat / f"{p.parent.name}_{p.name}")
    data = {"source": "folder", "spec": str(flat), "label": "flat", "prior": ["red", "green"], "preset": None,
            "setting": "ODA"}
    at = app("pages/3_Adapt.py", data=data, model={"name": "ueo-tiny", "pretrained": None, "checkpoint": None,
                                                   "label": "tiny"})
    at.run()
    rid, bg = start_one_epoch(at)
    run = workspace.WORKSPACES / at.session_state["ws"] / "runs" / rid
    preds = read_predictions(run)
    thr = json.loads((run / "metrics.json").read_text())["after"]["threshold"]
    line = acceptance_summary(preds, thr)
    assert line.startswith("Of 12 images, ")
    assert any(line in c.value for c in at.caption), [c.value for c in at.caption]


def test_explore_shows_pca_at_once_while_umap_computes():
    """The embeddings are a Ray job writing into the run folder: while UMAP computes (its worker held still with
    SIGSTOP once the PCA maps have landed), the page already shows both maps in PCA, with a progress line;
    released, UMAP appears."""
    import os
    import signal
    import time
    from studio import state
    from ueo_core import explore, jobs
    at = app("pages/3_Adapt.py")
    at.run()
    rid, bg = start_one_epoch(at)
    ws = at.session_state["ws"]
    run_dir = workspace.WORKSPACES / ws / "runs" / rid
    out = explore.folder(run_dir)
    ex = app("pages/4_Explore.py", ws=ws, active_run=rid)
    ex.run()  # the first visit submits the job
    no_trouble(ex)
    assert (out / jobs.JOB).exists() and state.exploration(str(run_dir)).kind in ("queued", "working")
    for _ in range(2400):  # the model loads and the features pass runs (seconds); UMAP (numba) takes longer
        if (out / explore.PCA).exists():
            break
        time.sleep(0.05)
    pid = jobs.read(out, jobs.WORKER)["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        assert not (out / explore.UMAP).exists(), "UMAP landed before the worker could be held"
        ex.run()
        no_trouble(ex)
        assert [r.options for r in ex.radio if r.label == "Projection"] == [["PCA"]]
        assert len(plotly_charts(ex)) == 2
        assert any("UMAP computing" in p.text for p in ex.get("progress")), [p.text for p in ex.get("progress")]
    finally:
        os.kill(pid, signal.SIGCONT)
    assert jobs.wait(out, timeout=240).outcome == "done"
    ex.run()
    no_trouble(ex)
    assert [r.value for r in ex.radio if r.label == "Projection"] == ["UMAP"]


def test_explore_failure_is_a_message_and_try_again_submits_again():
    """A failed exploration (here: the run's checkpoint is gone) says so in words, with no traceback; Try again
    submits a new job."""
    from ueo_core import explore, jobs
    from ueo_core.runs import CHECKPOINT
    at = app("pages/3_Adapt.py")
    at.run()
    rid, bg = start_one_epoch(at)
    ws = at.session_state["ws"]
    run_dir = workspace.WORKSPACES / ws / "runs" / rid
    (run_dir / CHECKPOINT).rename(run_dir / "moved.safetensors")
    ex = app("pages/4_Explore.py", ws=ws, active_run=rid)
    ex.run()
    assert jobs.wait(explore.folder(run_dir), timeout=240).outcome == "error"
    ex.run()
    no_trouble(ex)
    assert any("could not be computed" in e.value for e in ex.error), [e.value for e in ex.error]
    first = jobs.read(explore.folder(run_dir), jobs.JOB)["submitted"]
    (run_dir / "moved.safetensors").rename(run_dir / CHECKPOINT)
    [b for b in ex.button if b.label == "Try again"][0].click().run()
    no_trouble(ex)
    assert jobs.read(explore.folder(run_dir), jobs.JOB)["submitted"] > first
    assert jobs.wait(explore.folder(run_dir), timeout=240).outcome == "done"
    ex.run()
    assert not ex.error and len(plotly_charts(ex)) == 2


def test_refresh_restores_the_data_the_model_and_the_live_run_and_stop_works_from_any_page():
    """A refresh is a new browser session with only ?ws= in the address: it finds the data choice, the model and
    the live run again; Start stays off while it trains (one live run per session); the sidebar's Stop on another
    page stops it; the stopped run opens in Explore and Inspect, labelled with its epoch."""
    import time
    from ueo_core import jobs
    from ueo_core.runs import RunFolder
    at = app("pages/1_Data.py")
    at.run()
    at.selectbox[0].set_value("photo").run()
    [b for b in at.button if b.label == "Apply data and prior"][0].click().run()
    no_trouble(at)
    ws = at.session_state["ws"]
    ad = app("pages/3_Adapt.py", ws=ws, data=at.session_state["data"])
    ad.run()
    epochs(ad).set_value(40)
    ad.button[0].click().run()
    no_trouble(ad)
    rid = ad.session_state["active_run"]
    run = RunFolder(workspace.WORKSPACES / ws / "runs" / rid)
    alive = lambda: jobs.job_state(run.path, workspace.WORKSPACES).kind in ("queued", "running")  # noqa: E731
    for _ in range(600):  # until epoch 1 is evaluated and saved
        if any(e["epoch"] >= 1 for e in run.read_jsonl("epochs.jsonl")) and run.checkpoint_path.exists():
            break
        time.sleep(0.2)

    def refreshed(page):
        a = AppTest.from_file(str(ROOT / page), default_timeout=180)
        a.query_params["ws"] = ws
        a.run()
        no_trouble(a)
        return a

    r = refreshed("pages/3_Adapt.py")
    assert r.session_state["data"]["spec"] == "shapes:photo" and r.session_state["active_run"] == rid
    assert any(rid in s.value for s in r.subheader)
    start = [b for b in r.button if "Start" in b.label][0]
    assert start.disabled and alive()
    assert epochs(r).value == 40  # the run's own, not the default
    side = " ".join(c.value for c in r.sidebar.caption)
    assert "Shapes · photo" in side and "training…" in side and rid[-6:] in side

    ins = refreshed("pages/5_Inspect.py")
    [b for b in ins.sidebar.button if "Stop" in b.label][0].click().run()
    jobs.wait(run.path, timeout=120)
    assert not alive()
    m = run.read_json("metrics.json")
    assert m and m["stopped_at_epoch"] >= 1
    for page in ("pages/5_Inspect.py", "pages/4_Explore.py"):
        p = refreshed(page)
        assert p.selectbox[0].value == rid
        assert f"stopped at epoch {m['stopped_at_epoch']} of 40" in p.selectbox[0].format_func(rid)
    side = " ".join(c.value for c in refreshed("home.py").sidebar.caption)
    assert f"stopped at epoch {m['stopped_at_epoch']} of 40" in side and "finished" not in side


def test_adapt_runs_under_the_official_protocol():
    at = app("pages/3_Adapt.py")
    at.run()
    [s for s in at.selectbox if s.label == "Scoring protocol"][0].set_value("official")
    rid, bg = start_one_epoch(at)
    m = json.loads((workspace.WORKSPACES / at.session_state["ws"] / "runs" / rid / "metrics.json").read_text())
    assert m["protocol"] == "official" and m["after"]["mean_confidence"] < 0.5  # raw cosines: near 1/K
    assert any("official protocol" in s.value for s in at.subheader)


@pytest.mark.parametrize("method, trade_on, temperature_on", [("entropy", False, False), ("im", True, False),
                                                               ("ueo", True, True)])
def test_adapt_offers_only_the_options_the_method_uses(method, trade_on, temperature_on):
    at = app("pages/3_Adapt.py")
    at.run()
    at.selectbox[0].set_value(method).run()
    no_trouble(at)
    labels = [n.label for n in at.number_input]
    assert ("λ (marginal entropy weight)" in labels) == trade_on
    assert ("UEO weight temperature" in labels) == temperature_on


def test_a_teachers_lesson_link_opens_a_student_workspace_with_the_same_choices():
    """The teacher picks the photo domain, three methods and settings; the link carries them and no part of the
    workspace. A fresh session (a student) opening it gets its own workspace, the same choices, and one click
    queues exactly those runs."""
    from urllib.parse import parse_qs, urlparse
    from studio import share
    from ueo_core.lesson import read_lesson
    t = app("pages/1_Data.py")
    t.run()
    t.selectbox[0].set_value("photo").run()
    [b for b in t.button if b.label == "Apply data and prior"][0].click().run()
    ws = t.session_state["ws"]
    t = app("pages/8_Lesson.py", ws=ws, data=t.session_state["data"])
    t.run()
    no_trouble(t)
    t.multiselect[0].set_value(["zero_shot", "im", "ueo"]).run()
    [n for n in t.number_input if n.label == "Epochs"][0].set_value(3).run()
    [n for n in t.number_input if n.label == "Seed"][0].set_value(11).run()
    no_trouble(t)
    link = t.code[0].value
    assert ws not in link and f"?{share.PARAM}=" in link and "ws=" not in link
    value = parse_qs(urlparse(link).query)[share.PARAM][0]
    assert ws not in share.decode(value).__repr__()

    s = AppTest.from_file(str(ROOT / "pages/8_Lesson.py"), default_timeout=180)
    s.query_params[share.PARAM] = value
    s.run()
    no_trouble(s)
    assert s.session_state["ws"] != ws  # a workspace of the student's own
    assert s.session_state["data"]["spec"] == "shapes:photo"
    assert s.multiselect[0].value == ["zero_shot", "im", "ueo"]
    assert [n for n in s.number_input if n.label == "Epochs"][0].value == 3
    assert [n for n in s.number_input if n.label == "Seed"][0].value == 11
    assert any("teacher's lesson" in m.value for m in s.success)
    [b for b in s.button if b.label == "▶ Run the lesson"][0].click().run()   # the single click
    no_trouble(s)
    manifest = read_lesson(workspace.WORKSPACES / s.session_state["ws"] / "runs" / "lessons"
                           / f"{s.session_state['lesson']}.json")
    assert manifest["methods"] == ["zero_shot", "im", "ueo"]
    assert manifest["settings"]["epochs"] == 3 and manifest["settings"]["seed"] == 11
    assert manifest["settings"]["data"] == "shapes:photo"
    [b for b in s.sidebar.button if "Stop" in b.label][0].click().run()  # leave the slot free for later tests
    no_trouble(s)


def test_a_lesson_link_never_carries_an_upload_or_a_broken_link_says_so(tmp_path):
    from studio import share
    token = "f" * 32
    with pytest.raises(share.ShareError, match="upload in your own workspace"):
        share.encode({"source": "upload", "spec": f"/srv/ws/{token}/uploads/x"}, {"name": "m"}, ["ueo"], {}, token)
    with pytest.raises(share.ShareError, match="checkpoint uploaded"):
        share.encode({"source": "shapes", "spec": "shapes:sketch"}, {"name": "m", "checkpoint": f"/w/{token}/c.pt"},
                     ["ueo"], {}, token)
    ok = share.encode({"source": "shapes", "spec": "shapes:sketch"}, {"name": "m"}, ["ueo", "bogus"],
                      {"epochs": 2}, token)
    assert share.decode(ok)["methods"] == ["ueo"] and share.decode(ok)["settings"] == {"epochs": 2}
    for bad in ("", "not-base64!!", ok[:-6]):
        with pytest.raises(share.ShareError, match="cannot be read"):
            share.decode(bad)
    s = AppTest.from_file(str(ROOT / "pages/8_Lesson.py"), default_timeout=180)
    s.query_params[share.PARAM] = "garbage"
    s.run()
    no_trouble(s)
    assert any("cannot be read" in e.value for e in s.error)
