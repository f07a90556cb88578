"""bench/train_precision.py (issue 32, part 2, training side): its tables' ratios are computed from its own timings
and profiles, its conclusion from those numbers, and its "frozen weights cast once" setting computes what bf16
autocast computes (the tiny model; the bench's quick mode itself runs in tests/test_benches.py)."""
import sys

import pytest
import torch

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import train_precision as tp  # noqa: E402
from ueo_core.models import TINY_MODEL  # noqa: E402
from ueo_core.train.loop import learning  # noqa: E402


def test_speed_ratio_is_the_median_of_paired_rounds_not_a_ratio_of_medians():
    # round medians fp32 1, 3, 3 s and bf16 0.5, 1, 3 s: paired ratios 2, 3, 1 -> 2 (the overall medians would
    # give 3 / 1 = 3); a round disturbed by the machine's other users moves both settings of that round
    per_round = {"fp32": [[1, 1], [3, 3], [3, 3]], "bf16 autocast": [[0.5, 0.5], [1, 1], [3, 3]]}
    out = tp.summarize(per_round, batch_size=32)
    assert out["bf16 autocast"]["vs_fp32"] == pytest.approx(2.0)
    assert out["bf16 autocast"]["median_s"] == pytest.approx(1.0)
    assert out["bf16 autocast"]["img_per_s"] == pytest.approx(32.0)
    assert out["fp32"] == pytest.approx({"median_s": 3.0, "img_per_s": 32 / 3, "vs_fp32": 1.0})


CONVERT, COPY = "dtype conversions (aten::to)", "copies (clone, contiguous)"


@pytest.mark.parametrize("op,group", [
    ("aten::to", CONVERT), ("aten::_to_copy", CONVERT), (tp.CONVERSION, CONVERT), ("aten::copy_", COPY),
    ("aten::clone", COPY), ("aten::topk", tp.OTHER),
    ("aten::_scaled_dot_product_flash_attention_for_cpu", "attention (SDPA)"),
    ("aten::_scaled_dot_product_flash_attention_for_cpu_backward", "attention (SDPA)"),
    ("aten::addmm", "matmul / linear"), ("aten::mm", "matmul / linear"), ("aten::bmm", "matmul / linear"),
    ("aten::mkldnn_convolution", "convolution (patch embedding)"),
    ("aten::native_layer_norm_backward", "layer_norm"), ("aten::gelu_backward", "gelu"),
    ("aten::_softmax", "softmax"), ("aten::add_", tp.OTHER), ("aten::mul", tp.OTHER),
])
def test_op_groups(op, group):
    assert tp.op_group(op) == group


PROFILE = {"fp32": {"aten::mm": 100.0, tp.CONVERSION: 5.0, "aten::native_layer_norm": 20.0, "aten::gelu": 10.0},
           "bf16 autocast": {"aten::mm": 400.0, tp.CONVERSION: 65.0, "aten::native_layer_norm": 20.0,
                             "aten::gelu": 5.0}}


def test_profile_tables_share_and_ratio_are_computed_from_the_profile():
    text = "\n".join(tp.profile_tables(PROFILE, top=3))
    # groups: matmul 100 of 135 ms (74.1 %) in fp32, 400 of 490 ms (81.6 %) in bf16, ratio 4.00
    assert "| matmul / linear | 100 | 74.1% | 400 | 81.6% | 4.00 |" in text
    assert f"| {CONVERT} | 5 | 3.7% | 65 | 13.3% | 13.00 |" in text
    assert "| total (self CPU time) | 135 | 100.0% | 490 | 100.0% | 3.63 |" in text
    # the per-op table lists the top 3 by their largest time, largest first
    ops = [line.split("`")[1] for line in text.splitlines() if line.startswith("| `")]
    assert ops == ["aten::mm", tp.CONVERSION, "aten::native_layer_norm"]


def test_conclusion_names_the_ops_that_hold_bf16_back_by_the_time_they_add():
    speed = {"fp32": {"vs_fp32": 1.0}, "bf16 autocast": {"vs_fp32": 0.3},
             "fp32, oneDNN bf16 math": {"vs_fp32": 1.04}}
    lines = tp.conclusion(speed, PROFILE, None)
    text = "\n".join(lines)
    assert "has no native bf16: oneDNN emulates it" in lines[0]
    assert "0.30x the fp32 step: the goal (>= 1.5x) is not met" in lines[0]
    assert "Fastest setting: fp32, oneDNN bf16 math (1.04x fp32)" in lines[1]
    # bf16 slows matmul (+300 ms) and conversions (+60 ms): 360 ms added, of which 83 % and 17 %; gelu saves 5 ms
    assert "the op groups bf16 slows add 360 ms, those it speeds up save 5 ms (490 ms against 135 ms in fp32)" in text
    hold = lines[2].split("Slower, by the time each adds: ")[1]
    assert hold.index("matmul / linear +300 ms (83% of the added time; bf16/fp32 4.00)") < hold.index(
        f"{CONVERT} +60 ms (17% of the added time; bf16/fp32 13.00)")
    assert "gelu" not in hold and "layer_norm" not in hold
    assert lines[3] == "- Faster in bf16: gelu -5 ms (bf16/fp32 0.50)."

    met = tp.conclusion({"fp32": {"vs_fp32": 1.0}, "bf16 autocast": {"vs_fp32": 1.8}}, PROFILE,
                        "this CPU has AMX BF16")
    assert "has native bf16 (this CPU has AMX BF16)" in met[0] and "the goal (>= 1.5x) is met" in met[0]
    assert len(met) == 2  # nothing holds it back


@pytest.fixture(scope="module")
def step():
    return tp.Step(TINY_MODEL, 4)


def test_frozen_weights_cast_once_compute_what_autocast_computes_and_are_restored(step):
    learn = {id(p) for p in step.params.values()}
    assert step.frozen and not any(id(p) in learn for p in step.frozen)  # the norm params and prompt still learn
    assert any(p is m.in_proj_weight for m in step.tr.loaded.model.modules()
               if isinstance(m, torch.nn.MultiheadAttention) for p in step.frozen)
    cast_once = next(s for s in tp.SETTINGS if s.frozen_bf16)
    with learning(step.params):
        with step.applied(tp.BF16):
            loss_auto, grad_auto = step.gradient(tp.BF16)
        with step.applied(cast_once):
            assert all(p.dtype == torch.bfloat16 for p in step.frozen)
            loss_once, grad_once = step.gradient(cast_once)
        loss32, grad32 = step.gradient(tp.FP32)
    assert loss_once == loss_auto and torch.equal(grad_once, grad_auto)  # the same numbers, bit for bit
    assert loss32 != loss_auto  # (bf16 does change them: the comparison can fail)
    assert all(p.dtype == torch.float32 for p in step.frozen)  # the fp32 weights are back
    assert torch.backends.mkldnn.matmul.fp32_precision == "none"


def test_profile_names_autocasts_casts_as_conversions_and_accounts_for_every_op(step):
    with learning(step.params):
        prof = tp.profile(step, [tp.FP32, tp.BF16], 1)
    assert prof[tp.BF16.name][tp.CONVERSION] > 0  # autocast's casts: copies inside aten::_to_copy
    for ops in prof.values():
        assert sum(tp.grouped(ops).values()) == pytest.approx(sum(ops.values()))
        assert any(tp.op_group(o) == "matmul / linear" for o in ops)


def test_ceiling_is_amdahls_law_on_the_fp32_profile():
    # matmul 100 of 135 ms (f = 0.741): 2x faster -> 135 / (35 + 50) = 1.588x; the goal 1.5x needs
    # 1 / (1/1.5 - 35/135) = 2.45x on the matmul
    f, bound, needed = tp.ceiling(PROFILE["fp32"], 2.0)
    assert f == pytest.approx(100 / 135)
    assert bound == pytest.approx(135 / 85)
    assert needed == pytest.approx((100 / 135) / (1 / 1.5 - 35 / 135))
    assert tp.ceiling({"aten::mm": 30.0, "aten::add": 70.0}, 2.0)[2] == float("inf")  # 70 % elsewhere: never 1.5x


def test_contiguous_attention_input_is_the_same_step_without_the_batched_matmul(step):
    plain = tp.FP32
    contiguous = next(s for s in tp.SETTINGS if s.contiguous_attention and not s.autocast)
    attention = [m for m in step.tr.loaded.model.modules() if isinstance(m, torch.nn.MultiheadAttention)]
    with learning(step.params):
        loss, grad = step.gradient(plain)
        with step.applied(contiguous):
            loss_c, grad_c = step.gradient(contiguous)
        prof = tp.profile(step, [plain, contiguous], 1)
    assert loss_c == pytest.approx(loss, rel=1e-5, abs=1e-7) and torch.allclose(grad_c, grad, rtol=1e-4, atol=1e-7)
    # batch-first, the input projection is a bmm on a strided view (with the weight expanded over the batch)
    assert "aten::bmm" in prof[plain.name] and "aten::bmm" not in prof[contiguous.name]
    assert all(m.batch_first for m in attention) and not any(m._forward_hooks or m._forward_pre_hooks
                                                            for m in attention)  # restored
