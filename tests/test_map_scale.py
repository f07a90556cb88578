"""Explore at 10,000 and 100,000 points (issue 32, part 5): the thumbnails the exploration job makes once (count,
sizes, order, a broken file, made once), the job making them, the point map's payload (no server path) and the
page with more points than Plotly draws (canvas maps, selections, galleries from the job's thumbnails).
The browser side (hover thumbnail, lasso, pan, zoom) runs in bench/map_scale.py --quick (tests/test_benches.py)."""
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from test_explore_page import RID, WS, explore_page, isolated, make_run  # noqa: F401 (the page's fixture)

COLOURS = [(220, 30, 30), (30, 200, 40), (30, 40, 220), (230, 220, 20), (20, 20, 20), (200, 0, 200)]


def photos(folder, n):
    """``n`` images of distinct plain colours and shapes (portrait, landscape, square), as PNG and JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        size = [(40, 90), (120, 50), (70, 70)][i % 3]
        p = folder / f"img_{i}.{'jpg' if i % 2 else 'png'}"
        Image.new("RGB", size, COLOURS[i % len(COLOURS)]).save(p)
        out.append(str(p))
    return out


def tile(ex, meta, i):
    from ueo_core import thumbs
    k, x, y, side = thumbs.tile_box(meta, i)
    with Image.open(thumbs.sheet_paths(ex, meta)[k]) as sheet:
        return np.asarray(sheet.convert("RGB").crop((x, y, x + side, y + side)), dtype=float)


def test_thumbnails_are_made_once_in_the_maps_order(tmp_path, monkeypatch):
    """Sheets of per_row x per_row tiles, image i on tile i (its colour at the tile's centre), the last sheet only
    as tall as its rows; one gallery thumbnail per image within the gallery size, its aspect kept; a broken file
    is a grey tile named in meta's "broken"; a second call decodes nothing, a changed file makes them again."""
    from ueo_core import thumbs
    paths = photos(tmp_path / "img", 11)
    Path_broken = tmp_path / "img" / "broken.jpg"
    Path_broken.write_bytes(b"not an image")
    paths.insert(5, str(Path_broken))
    ex = tmp_path / "explore"
    seen = []
    meta = thumbs.make(paths, ex, tile=16, per_row=2, gallery=32, progress=lambda d, n: seen.append((d, n)))
    assert (meta["n"], meta["per_sheet"], meta["sheets"], meta["broken"]) == (12, 4, 3, [5])
    assert seen[-1] == (12, 12) and len(seen) == 12
    sheets = thumbs.sheet_paths(ex, meta)
    assert [Image.open(p).size for p in sheets] == [(32, 32), (32, 32), (32, 32)]
    for i, p in enumerate(paths):
        centre = tile(ex, meta, i)[8, 8]
        want = thumbs.BROKEN_COLOUR if i == 5 else COLOURS[(i if i < 5 else i - 1) % len(COLOURS)]
        assert np.abs(centre - want).max() < 40, (i, centre, want)
        with Image.open(ex / thumbs.FOLDER / thumbs.gallery_name(i)) as g:
            assert max(g.size) <= 32
            if i != 5:
                w, h = Image.open(p).size
                assert abs(g.size[0] / g.size[1] - w / h) < 0.2, (g.size, (w, h))
    assert thumbs.read_meta(ex) == meta
    monkeypatch.setattr(thumbs, "load_rgb", lambda *a, **k: pytest.fail("decoded again"))
    assert thumbs.make(paths, ex, tile=16, per_row=2, gallery=32) == meta
    monkeypatch.undo()
    Image.new("RGB", (40, 40), (255, 255, 255)).save(paths[0])
    os.utime(paths[0], ns=(1, 1))  # another size and time: another file
    again = thumbs.make(paths, ex, tile=16, per_row=2, gallery=32)
    assert again["key"] != meta["key"] and tile(ex, again, 0)[8, 8].min() > 200


def test_the_exploration_job_makes_the_thumbnails(tmp_path, monkeypatch):
    """explore.compute makes the thumbnails of the run's images, in predictions.csv's order, beside the maps, and
    explore.read reports them (None before)."""
    from ueo_core import embed, explore, thumbs
    from ueo_core.analysis import read_predictions
    run = make_run(7)
    assert explore.read(run)["thumbs"] is None
    monkeypatch.setattr(explore, "run_features",
                        lambda run_dir, **kw: {k: np.random.default_rng(1).normal(size=(7, 8)) for k in explore.MAPS})
    monkeypatch.setattr(embed, "umap_2d", lambda f, seed=0, cache_dir=None: np.asarray(f)[:, :2])
    explore.compute(run)
    got = explore.read(run)
    assert got["thumbs"]["n"] == 7 and got["thumbs"]["broken"] == []
    paths = read_predictions(run).paths
    for i in (0, 3, 6):  # make_run's image i is (30 i, 0, 0)
        red = tile(explore.folder(run), got["thumbs"], i)[32, 32][0]
        assert abs(red - 30 * i % 255) < 30, (i, red)  # (JPEG shifts a saturated red a little)
        assert os.path.basename(paths[i]) == f"img_{i}.png"
    assert len(list((explore.folder(run) / thumbs.FOLDER / "g").iterdir())) == 7


def payload(component):
    """(header, x, y, codes, raw) of a point map as the browser receives it; the header's "columns" holds each
    hover column's array ("h:<name>" codes into the header's tables, "v:<name>" values)."""
    raw = component.proto.bytes
    hl = int(np.frombuffer(raw[:4], np.uint32)[0])
    head = json.loads(raw[4:4 + hl])
    off = 4 + hl + (8 - (4 + hl) % 8) % 8
    n = head["n"]
    types = {"f32": np.float32, "f64": np.float64, "u8": np.uint8, "u16": np.uint16, "u32": np.uint32}
    arrays = {name: np.frombuffer(raw, types[t], n, off + at) for name, t, at in head["arrays"]}
    head["columns"] = arrays
    return head, arrays["x"], arrays["y"], arrays["code"], raw


def hover_of(head, i):
    """Point ``i``'s hover text as the browser's hoverText writes it (without its HTML escaping)."""
    h, out = head["hover"], []
    for line in h["lines"]:
        names = re.findall(r"\{(\w+)\}", line)
        vals = {k: (h["tables"][k][head["columns"]["h:" + k][i]] if k in h["tables"]
                    else f"{head['columns']['v:' + k][i]:.3g}") for k in names}
        if not any(k in h["tables"] and vals[k] == "" for k in names):
            out.append(re.sub(r"\{(\w+)\}", lambda m: vals[m.group(1)], line))
    return "<br>".join(out)


def test_map_payload_is_what_the_points_are():
    """The binary the canvas reads holds each point's coordinates and colour code in the points' order, the legend
    counts them, and the hover texts are one per point."""
    from studio import charts
    xy = np.random.default_rng(0).normal(size=(9, 2))
    colour = np.array(["known", "unknown", "known"] * 3, dtype=object)
    codes, style = charts.map_colours(colour)
    assert style["palette"] == [charts.KNOWN_COLOR, charts.UNKNOWN_COLOR]
    assert [i["name"] for i in style["legend"]] == ["known · 6", "unknown · 3"]
    hover = charts.hover_table(["{file}", "score: {score}", "true: {true}"], file=[f"f{i}.png" for i in range(9)],
                               score=np.linspace(0, 1, 9), true=["", "cat"] * 4 + [""])
    raw = charts.map_payload(xy, codes, {"n": 9}, hover)

    class C:
        class proto:
            bytes = raw
    head, x, y, got, _ = payload(C)
    assert np.allclose(x, xy[:, 0]) and np.allclose(y, xy[:, 1]) and list(got) == [0, 1, 0] * 3
    texts = [hover_of(head, i) for i in range(9)]
    assert texts == charts.hover_texts(hover)
    assert texts[1] == "f1.png<br>score: 0.125<br>true: cat" and texts[0] == "f0.png<br>score: 0", texts
    values = np.linspace(2.0, 4.0, 9)
    codes, style = charts.map_colours(values, continuous=True, colour_range=(2.0, 4.0), threshold=3.0,
                                      colour_title="Energy")
    assert codes[0] == 0 and codes[-1] == len(style["palette"]) - 1 and style["bar"]["ticks"] == [
        "2", "threshold 3", "4"]
    assert style["palette"][0] == charts.UNKNOWN_COLOR and style["palette"][-1] == charts.KNOWN_COLOR


N_BIG = 3100  # just above charts.PLOTLY_MAX: the canvas map (the page's code path is the same at 100,000)


@pytest.fixture(scope="module")
def big_run_template(tmp_path_factory):
    """A run of N_BIG images with maps and the job's thumbnails, made once and copied per test."""
    import shutil

    from studio import workspace
    from ueo_core import explore, thumbs
    from ueo_core.analysis import read_predictions
    root = tmp_path_factory.mktemp("big")
    mp = pytest.MonkeyPatch()
    mp.setattr(workspace, "WORKSPACES", root / "ws")
    run = make_run(N_BIG, with_maps=True)
    thumbs.make(read_predictions(run).paths, explore.folder(run))
    mp.undo()
    yield root / "ws"
    shutil.rmtree(root, ignore_errors=True)


def test_explore_page_with_more_points_than_plotly_draws(isolated, big_run_template, monkeypatch):
    """Above PLOTLY_MAX points both maps are point maps (no Plotly chart) with every point, their thumbnails
    (sheets as media addresses) and no server path or workspace token in what goes to the browser; a lasso on the
    adapted map lists its images with that map's captions, their thumbnails the job's (the web server decodes no
    image)."""
    import shutil

    from studio import charts, pick, ui, workspace
    from ueo_core import explore
    from ueo_core.analysis import read_predictions
    from ueo_core.scores import LABELS
    assert charts.PLOTLY_MAX < N_BIG
    shutil.copytree(big_run_template, workspace.WORKSPACES)
    run = workspace.WORKSPACES / WS / "runs" / RID
    monkeypatch.setattr(ui, "thumbnail", lambda *a, **k: pytest.fail("the web server made a thumbnail"))
    at = explore_page()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.get("plotly_chart")
    maps = at.get("bidi_component")
    assert len(maps) == 2
    coords = explore.read(run)["umap"]
    for component, key in zip(maps, ("before", "after")):
        head, x, y, codes, raw = payload(component)
        assert head["n"] == N_BIG and np.allclose(x, coords[key][:, 0]) and np.allclose(y, coords[key][:, 1])
        assert len(head["columns"]["h:file"]) == N_BIG
        assert head["thumbs"]["n"] == N_BIG and len(head["thumbs"]["sheets"]) == 4
        assert str(run).encode() not in raw and WS.encode() not in raw and b"/tmp" not in raw
        # each point's hover, written in the browser from compact columns, says what the old per-point texts said
        p = read_predictions(run, "predictions.csv" if key == "after" else "predictions_zero_shot.csv")
        thr = {"before": 0.6, "after": 0.7}[key]
        for i in (0, 4, 3050):
            want = (f"img_{i}.png<br>predicted: {p.classes[p.pred[i]]} "
                    f"({'known' if p.confidence[i] >= thr else 'unknown'})<br>{LABELS['msp']}: {p.confidence[i]:.3g}")
            assert hover_of(head, i) == want, (key, i, hover_of(head, i), want)
        assert len(raw) < 60 * N_BIG, len(raw)  # ~7 MB at 100,000 points as texts; ~3.5 MB as columns
    sig = payload(maps[1])[0]["sig"]
    at.session_state["map_after_UMAP"] = {"selection": {"indices": [2, 5, 3050], "sig": sig}}
    runs = []
    monkeypatch.setattr(pick, "finished_run", lambda f=pick.finished_run: runs.append(1) or f())
    at.run()
    assert len(runs) == 1, f"a new selection redrew the page {len(runs)} times"  # its downloads too, in one run
    assert [s.value for s in at.subheader].count("Take the selection home") == 1
    assert not at.exception, [e.value for e in at.exception]
    heads = [s.value for s in at.subheader]
    assert "Selected on the adapted map (3)" in heads and "Selected on the zero-shot map (0)" in heads, heads
    captions = [im.proto.imgs[0].caption for im in at.get("image")]
    assert len(captions) == 3 and all(c.startswith("square ") for c in captions), captions
    assert not [c.value for c in at.caption if "cannot be shown" in c.value]
    # a stale selection (of other points: another colouring, projection or run) selects nothing
    at.session_state["map_after_UMAP"] = {"selection": {"indices": [2, 5], "sig": "another map"}}
    at.run()
    assert "Selected on the adapted map (0)" in [s.value for s in at.subheader]


def test_labels_of_names_images_as_public_path_does(tmp_path):
    """labels_of's fast naming (string prefixes) gives each image the name and inside flag that privacy.public_path
    and a path's relation to the data folder give, for plain paths inside and outside the data folder, the data
    folder itself, paths pathlib would write otherwise, and a data folder reached through a symlink."""
    from ueo_core import export
    from ueo_core.privacy import public_path
    real = tmp_path / "real" / "photos"
    (real / "a").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    root = tmp_path / "link" / "photos"
    paths = [f"{root}/a/1.jpg", f"{real}/a/2.jpg", f"{tmp_path}/other/3.jpg", f"{root}x/4.jpg", str(root),
             f"{root}//a/5.jpg", f"{root}/./a/6.jpg", f"{real}/a/", "rel/7.jpg", "8.jpg", f"{root}/a/é 9.jpg"]
    for r in (root, real, None):
        publics, insides = export._publics(paths, r)
        assert publics == [public_path(q, r) for q in paths], r
        assert insides == [export._inside(q, r) for q in paths], r
    assert export._publics(paths, root)[0][:4] == ["a/1.jpg", "a/2.jpg", "3.jpg", "4.jpg"]
