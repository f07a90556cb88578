"""STAMP against a direct re-implementation of its CLIP form (the CLIPTTA benchmark's ``ttavlm`` STAMP class, with
``methods/abstract_model.py`` of MarcLafon/cliptta f4221f4 for features, logits and optimizer; the memory as in
yuyongcan/STAMP ``src/methods/stamp.py`` 55b116c), written out here as that code does it, compared after every
batch of a short stream; and as runs: the CLI, a recorded order, the tower put back, options checked."""
import copy
import json
import math
import random
from functools import partial
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from helpers import Tower, stream_folder, tower_state
from ueo_core.cli import main
from ueo_core.config import RunConfig
from ueo_core.methods import METHODS
from ueo_core.methods.stamp import Memory, stamp_step
from ueo_core.models import load_model
from ueo_core.train import Trainer


# ------------------------------------------------------------------------------ the official code, transcribed
def official_entropy(p):
    """yuyongcan/STAMP src/methods/stamp.py entropy (lines 11-12)."""
    return -torch.sum(p * torch.log(p + 1e-5), dim=1)


def official_softmax_entropy(x):
    return -(x.softmax(1) * x.log_softmax(1)).sum(1)


class OfficialRBM:
    """src/methods/stamp.py RBM (lines 15-57; the CLIP form's is the same), with the module ``random``."""

    def __init__(self, max_len, num_class):
        self.num_class = num_class
        self.count_class = torch.zeros(num_class)
        self.data = [[] for _ in range(num_class)]
        self.max_len = max_len
        self.total_num = 0

    def remove_item(self):
        max_count = 0
        for i in range(self.num_class):
            if len(self.data[i]) == 0:
                continue
            if self.count_class[i] > max_count:
                max_count = self.count_class[i]
        max_classes = []
        for i in range(self.num_class):
            if self.count_class[i] == max_count and len(self.data[i]) > 0:
                max_classes.append(i)
        remove_class = random.choice(max_classes)
        self.data[remove_class].pop(0)

    def append(self, items, class_ids):
        for item, class_id in zip(items, class_ids):
            if self.total_num < self.max_len:
                self.data[class_id].append(item)
                self.total_num += 1
            else:
                self.remove_item()
                self.data[class_id].append(item)

    def get_data(self):
        data = []
        for cls in range(self.num_class):
            data.extend(self.data[cls])
            self.count_class[cls] = 0.9 * self.count_class[cls] + 0.1 * len(self.data[cls])
        return torch.stack(data)

    def __len__(self):
        return self.total_num


class OfficialSTAMP:
    """The CLIP form's STAMP (its update_memory, consistency_filtering, _forward_and_adapt, forward_and_adapt with
    steps=1 and use_sam off) over abstract_model.py's get_features (normalize_features on) and get_logits (class
    bias 0), SGD with its momentum."""

    def __init__(self, model, class_prototypes, memory_length, alpha_stamp, use_consistency_filtering, lr, momentum,
                 logit_scale):
        self.model, self.class_prototypes, self.logit_scale = model, class_prototypes, logit_scale
        self.memory_length, self.use_consistency_filtering = memory_length, use_consistency_filtering
        self.num_classes = self.class_prototypes.shape[0]
        self.margin = alpha_stamp * math.log(self.num_classes)
        self.memory = OfficialRBM(self.memory_length, self.num_classes)
        self.optimizer = torch.optim.SGD(model.ln.parameters(), lr, momentum=momentum)
        self.use_sam = False
        self.steps = 1
        if self.use_consistency_filtering:
            self.norm_model = copy.deepcopy(self.model).train()
        self.kept = None

    def get_features(self, images, model=None):
        model = self.model if model is None else model
        out = []
        for img in images:
            f = model.encode_image(img)
            out.append(f / f.norm(dim=-1, keepdim=True))
        return out

    def get_logits(self, image_features):
        return [f @ self.class_prototypes.t() + 0 for f in image_features]

    def consistency_filtering(self, images_origin):
        image_features = self.get_features(images_origin)
        logits = self.get_logits(image_features)[0]
        preds = logits.argmax(dim=1)
        image_features_source = self.get_features(images_origin, self.norm_model)
        logits_source = self.get_logits(image_features_source)[0]
        preds_source = logits_source.argmax(dim=1)
        return preds == preds_source

    def update_memory(self, images):
        if self.use_consistency_filtering:
            filter_ids_0 = self.consistency_filtering(images)
        else:
            filter_ids_0 = torch.BoolTensor([True] * images[0].shape[0])
        images_features = self.get_features(images)
        logits = self.get_logits(images_features)
        probs = [(self.logit_scale * lg).softmax(dim=-1) for lg in logits]
        probs = torch.stack(probs, dim=0).mean(dim=0)
        entropy = official_entropy(probs)
        filter_ids = (entropy < self.margin) * filter_ids_0
        self.kept = filter_ids
        self.memory.append(images[0][filter_ids], probs.argmax(dim=1)[filter_ids])
        return logits

    @torch.enable_grad()
    def _forward_and_adapt(self, images):
        image_features = self.get_features([images])
        logits = self.get_logits(image_features)[0]
        entropys = official_softmax_entropy(logits)
        inv_entropy = 1 / torch.exp(entropys)
        coeff = inv_entropy / inv_entropy.sum() * self.memory.max_len
        entropys = entropys.mul(coeff)
        loss = entropys.mean()
        loss.backward()
        return loss

    def forward_and_adapt(self, images, step=0):
        with torch.no_grad():
            self.update_memory(images)
        if len(self.memory) > 0:
            data = self.memory.get_data()
            self.optimizer.zero_grad()
            _ = self._forward_and_adapt(data)
            closure = partial(self._forward_and_adapt, images=data)
            self.optimizer.step(closure if self.use_sam else None)
            self.optimizer.zero_grad(set_to_none=True)
        if step == self.steps - 1:
            with torch.no_grad():
                image_features = self.get_features(images)
                logits = self.get_logits(image_features)
        return logits


# ------------------------------------------------------------------------------ a short stream, batch by batch
def stream(seed: int, n: int = 48, k: int = 3, d: int = 16):
    """Images near one class text (knowns) and random ones (unknowns), mixed."""
    g = torch.Generator().manual_seed(seed)
    text = F.normalize(torch.randn(k, d, generator=g, dtype=torch.float64), dim=1)
    known = torch.rand(n, generator=g) < 0.6
    base = torch.where(known[:, None], 3 * text[torch.randint(k, (n,), generator=g)], torch.zeros(n, d).double())
    return Tower(d, g), text, base + torch.randn(n, d, generator=g, dtype=torch.float64)


OPTIONS = SimpleNamespace(stamp_memory=6, stamp_alpha=0.45, stamp_lr=0.5, stamp_momentum=0.9,
                          stamp_consistency=True)
SCALE, BATCH = 10.0, 6


def stamp_stream(seed: int, counts: dict, consistency: bool = True) -> None:
    """One stream of STAMP, ours beside the CLIP form's, compared after every batch."""
    tower, text, images = stream(seed)
    theirs = copy.deepcopy(tower)
    o = SimpleNamespace(**{**vars(OPTIONS), "stamp_consistency": consistency})
    ref = OfficialSTAMP(theirs, text, o.stamp_memory, o.stamp_alpha, consistency, o.stamp_lr, o.stamp_momentum,
                        SCALE)
    opt = torch.optim.SGD(tower.ln.parameters(), lr=o.stamp_lr, momentum=o.stamp_momentum)
    source = copy.deepcopy(tower)
    memory = Memory(o.stamp_memory, len(text), random.Random(seed))
    random.seed(seed)  # the official memory's ties: the module's generator, seeded alike
    for start in range(0, len(images), BATCH):
        x = images[start:start + BATCH]
        rec = stamp_step(memory, tower.encode_image, source.encode_image if consistency else None, x, text, opt, o,
                         SCALE)
        logits = ref.forward_and_adapt([x])
        assert torch.equal(rec["kept"], ref.kept), start
        assert torch.allclose(rec["cos"], logits[0], atol=1e-12), start
        assert all(
            len(a) == len(b) and all(torch.equal(u, v) for u, v in zip(a, b))
            for a, b in zip(memory.data, ref.memory.data)), start
        assert memory.count == pytest.approx(ref.memory.count_class.tolist(), abs=1e-6)
        for a, b in zip(tower.ln.parameters(), theirs.ln.parameters()):
            assert torch.allclose(a, b, atol=1e-12), start
        counts["rejected_entropy"] += int((~rec["kept"]).sum())
        counts["full"] += len(memory) == o.stamp_memory and bool(rec["kept"].any())
        if consistency:
            with torch.no_grad():
                now = (F.normalize(tower.encode_image(x), dim=-1) @ text.T).argmax(1)
                before = (F.normalize(source.encode_image(x), dim=-1) @ text.T).argmax(1)
            counts["inconsistent"] += int((now != before).sum())
    counts["moved"] += not torch.equal(tower.ln.weight, source.ln.weight)


def test_stamp_steps_equal_the_clip_form_over_a_stream():
    counts = dict.fromkeys(("rejected_entropy", "full", "inconsistent", "moved"), 0)
    for seed in range(4):
        stamp_stream(seed, counts)
    stamp_stream(9, counts, consistency=False)
    # the streams went through every branch: images left out, a full memory losing images, the adapted tower
    # disagreeing with the loaded one, the parameters moving
    assert all(counts.values()), counts


def test_the_memory_keeps_classes_balanced():
    m = Memory(4, 2, random.Random(0))
    m.append(torch.arange(4.0)[:, None], torch.tensor([0, 0, 0, 1]))
    m.read()  # counts now 0.3 and 0.1
    m.append(torch.tensor([[10.0], [11.0]]), torch.tensor([1, 1]))
    assert len(m) == 4 and [t.item() for t in m.data[0]] == [2.0] and len(m.data[1]) == 3


# ------------------------------------------------------------------------------ runs
TINY = dict(model="ueo-tiny", pretrained=None)


@pytest.fixture
def small(tmp_path):
    return stream_folder(tmp_path)


def test_a_cli_run_records_its_stream_and_its_checkpoint_is_the_tower_as_loaded(small, tmp_path, capsys):
    out = tmp_path / "stamp"
    rc = main(["train", str(small), "--prior", "red,green,blue", "--model", "ueo-tiny", "--pretrained", "none",
               "--method", "stamp", "--stamp-alpha", "1", "--batch-size", "4", "--out", str(out)])
    assert rc == 0, capsys.readouterr()
    m = json.loads((out / "metrics.json").read_text())
    assert sorted(m["stamp_stream"]) == list(range(12))
    assert len(m["stamp_kept"]) == 12 and any(m["stamp_kept"])
    assert m["stamp_updates"] > 0  # the tower did learn during the stream
    saved = load_file(out / "checkpoint.safetensors")
    loaded = load_model("ueo-tiny", pretrained=None)
    tower = METHODS["stamp"].visual_params(loaded.model.visual)
    assert tower and all(torch.equal(saved[f"visual.{n}"], p.detach()) for n, p in tower)


def test_the_stream_order_is_fixed_by_the_seed_and_the_tower_is_put_back(small, tmp_path):
    loaded = load_model("ueo-tiny", pretrained=None)
    visual = METHODS["stamp"].visual_params(loaded.model.visual)
    as_loaded = {n: p.detach().clone() for n, p in visual}
    base = RunConfig(data=str(small), prior=["red", "green", "blue"], method="stamp", batch_size=4,
                     options={"stamp_lr": 0.05, "stamp_alpha": 1.0}, **TINY)
    orders, preds = [], []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        r = Trainer(base.replace(seed=seed, run_dir=str(tmp_path / name)), loaded=loaded).run()
        assert r.status == "done"
        assert all(torch.equal(as_loaded[n], p) for n, p in visual)
        m = json.loads((tmp_path / name / "metrics.json").read_text())
        assert m["stamp_updates"] > 0
        orders.append(m["stamp_stream"])
        preds.append((tmp_path / name / "predictions.csv").read_text())
    assert orders[0] == orders[1] != orders[2]
    assert preds[0] == preds[1]


def test_a_stopped_stream_puts_the_tower_back(small, tmp_path):
    cfg = RunConfig(data=str(small), prior=["red", "green", "blue"], method="stamp", batch_size=4,
                    options={"stamp_lr": 0.05, "stamp_alpha": 1.0}, run_dir=str(tmp_path / "s"), **TINY)
    tr = Trainer(cfg)
    loaded, changed = {}, []

    def stop_once_changed(e):
        if e.kind == "progress" and e.data["phase"].startswith("STAMP"):
            now = tower_state(tr)
            if any(not torch.equal(loaded[n], now[n]) for n in loaded):
                changed.append(e.data["done"])
                tr.cancel()

    tr.add_listener(lambda e: loaded.update(tower_state(tr)) if e.kind == "start" else None)
    tr.add_listener(stop_once_changed)
    assert tr.run().status == "cancelled"
    assert changed and changed[0] < 12
    assert all(torch.equal(loaded[n], v) for n, v in tower_state(tr).items())


def test_options_are_checked_in_words():
    with pytest.raises(ValueError, match="stamp_lr"):
        RunConfig(method="stamp", options={"stamp_lr": 0}).validate()
    with pytest.raises(ValueError, match="stamp_memory"):
        RunConfig(method="stamp", options={"stamp_memory": 0.5}).validate()
    with pytest.raises(ValueError, match="stamp_consistency"):
        RunConfig(method="stamp", options={"stamp_consistency": 1}).validate()
    assert "stamp" in METHODS and METHODS["stamp"].adapts_in_stream
