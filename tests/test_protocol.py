"""The scoring protocols pin the three scales: training logits, the zero-shot weights, and every score. Each test
recomputes the number from the model's own outputs with the scale written out, and compares with the trainer's."""
import math

import numpy as np
import pytest
import torch

from ueo_core.config import PROTOCOLS, RunConfig
from ueo_core.methods import confidence_weights
from ueo_core.methods.ueo import ueo_loss
from ueo_core.runs import RunFolder
from ueo_core.train import Trainer


def cfg_for(folder, tmp_path, **kw):
    base = dict(data=str(folder), prior=["red", "green", "blue"], model="ueo-tiny", pretrained=None, epochs=1,
                batch_size=8, lr_prompt=0.05, lr_visual=0.05, seed=7, run_dir=str(tmp_path / "run"))
    base.update(kw)
    return RunConfig(**base)


def expected(folder, tmp_path, protocol):
    """(first-step loss, zero-shot confidences) recomputed by hand: the trainer's own pieces, explicit scales."""
    tr = Trainer(cfg_for(folder, tmp_path, protocol=protocol, run_dir=None))
    tr.setup()
    s = tr.loaded.logit_scale
    train_scale, weight_t, eval_scale = {"studio": (s, s, s), "official": (100.0, 1.0, 1.0)}[protocol]
    cos = tr.cosine_logits()
    conf = torch.softmax(eval_scale * cos, dim=1).max(dim=1).values.numpy()
    w = confidence_weights(cos, weight_t)
    torch.manual_seed(tr.config.seed * 1000 + 1)  # as the trainer seeds epoch 1
    b = next(iter(tr.batches.epoch(1)))
    images, idx = b.images, b.index
    assert len(tr.batches) == math.ceil(len(tr.image_set) / tr.config.batch_size)
    feats = tr.loaded.model.encode_image(tr.loaded.to_input(images), normalize=True).float()
    probs = torch.softmax(train_scale * feats @ tr.prompt().float().T, dim=1)
    return float(ueo_loss(probs, w[idx], 1.0)[0]), conf


@pytest.mark.parametrize("protocol", ["studio", "official"])
def test_training_weight_and_evaluation_scales(folder, tmp_path, protocol):
    loss, conf = expected(folder, tmp_path, protocol)
    tr = Trainer(cfg_for(folder, tmp_path, protocol=protocol))
    steps = []
    tr.add_listener(lambda e: steps.append(e.data["loss"]) if e.kind == "step" else None)
    tr.run()
    assert steps[0] == pytest.approx(loss, abs=1e-5)
    run = RunFolder(tmp_path / "run")
    from ueo_core.analysis import read_predictions
    from ueo_core.runs import ZERO_SHOT_PREDICTIONS
    zs = read_predictions(run.path, ZERO_SHOT_PREDICTIONS)
    assert np.allclose(zs.confidence, conf, atol=2e-6)  # predictions.csv follows the protocol's eval scale
    m = run.read_json("metrics.json")
    assert m["protocol"] == protocol and run.config["protocol"] == protocol


def test_the_protocols_differ_where_they_should(folder, tmp_path):
    """Official scores are softmaxes of raw cosines: with 3 classes every confidence stays near 1/3."""
    _, conf_official = expected(folder, tmp_path, "official")
    _, conf_studio = expected(folder, tmp_path, "studio")
    assert conf_official.max() < 0.5 and not np.allclose(conf_official, conf_studio)
    assert PROTOCOLS["official"] == {"train": 100.0, "weights": 1.0, "eval": 1.0}
    with pytest.raises(ValueError, match="protocol"):
        RunConfig(protocol="paper").validate()
