"""Training precision (issue 32, part 2, training side): one UEO training step on ViT-B-32, fp32 against bf16,
timed and profiled side by side in one run.

    python bench/train_precision.py             # ViT-B-32 (random init), batch 32, on the CPU
    python bench/train_precision.py --quick     # smoke run: the tiny model, batch 4

The step is the loop's own (``ueo_core.train.loop.step_loss``: image tower on the batch, prompt through the text
tower, UEO loss; then backward and the method's SGD update) with what UEO learns learning: the image tower's
norm-layer affine parameters and the prompt's context. It runs on one augmented batch of Shapes sketches drawn once
(decoding and augmentation are left out: they are the same in every setting). The settings:

- fp32: the step as the trainer takes it on a CPU today;
- bf16 autocast: the forward pass under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (backward outside it);
- bf16 autocast, frozen weights bf16: the same, with the frozen matmul weights (linear, attention projections,
  patch convolution, output projections) cast to bf16 once instead of by autocast at every call: the same
  numbers, without the per-step casts (autocast caches casts only of weights that learn);
- fp32, oneDNN bf16 math: fp32 tensors, with ``torch.backends.mkldnn.matmul.fp32_precision = "bf16"``, which lets
  oneDNN compute fp32 matmuls in bf16 (no conversions in the graph);
- ... contiguous attention input: ``nn.MultiheadAttention`` gets a contiguous sequence-first input instead of
  transposing its batch-first one itself (the same maths: its input projection becomes one ``addmm`` instead of a
  ``bmm`` over a strided view, which bf16 first copies into contiguous memory), in fp32 and with the bf16 fixes.

Timing: ``--rounds`` rounds; in each, every setting takes ``--steps`` steps (the order rotated every round), after
one warm-up step each. A setting's img/s is the batch over its median step time; "vs fp32" is the median over
rounds of the paired ratio (fp32's median step time in that round over the setting's). Agreement: the first step
of each setting from the same weights, its loss and its gradient against fp32's. Profile: ``torch.profiler`` over
``--profile-steps`` steps of fp32 and of each bf16 setting; each op's self CPU time per step, grouped, with its
share and the bf16/fp32 ratio. The conclusion is computed from these numbers. The machine may be shared: read the
ratios, not the absolute numbers.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # the profiler's "gpuGetDeviceCount failed" on a CPU-only machine
import torch  # noqa: E402

from quick import QUICK_NOTE  # noqa: E402
from ueo_core.config import RunConfig  # noqa: E402
from ueo_core.data import load_data  # noqa: E402
from ueo_core.models import TINY_MODEL, load_model, native_bf16  # noqa: E402
from ueo_core.shapes import shapes_folder  # noqa: E402
from ueo_core.train import Trainer  # noqa: E402
from ueo_core.train.checkpoint import Resumed  # noqa: E402
from ueo_core.train.loop import learning, step_loss  # noqa: E402

GOAL = 1.5  # the goal: the bf16 step at least 1.5x as fast as the fp32 one


@dataclass(frozen=True)
class Setting:
    name: str
    autocast: bool = False     # the forward pass under CPU bf16 autocast
    frozen_bf16: bool = False  # the frozen matmul weights cast to bf16 once, before the steps
    onednn_bf16: bool = False  # torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    contiguous_attention: bool = False  # attention's input projection on a contiguous (sequence-first) copy


FP32 = Setting("fp32")
BF16 = Setting("bf16 autocast", autocast=True)
SETTINGS = (FP32, BF16, Setting("bf16 autocast, frozen weights bf16", autocast=True, frozen_bf16=True),
            Setting("fp32, oneDNN bf16 math", onednn_bf16=True),
            Setting("fp32, contiguous attention input", contiguous_attention=True),
            Setting("bf16 autocast, frozen weights bf16, contiguous attention input", autocast=True,
                    frozen_bf16=True, contiguous_attention=True))

# a copy_ that aten::to (aten::_to_copy) makes: a dtype conversion (autocast's casts are these); the profile names
# it apart from the copies of clone / contiguous, which fp32 makes too
CONVERSION = "aten::copy_ (in aten::_to_copy)"
# Op groups of the profile, first match wins: (group, exact op names, substrings of op names).
GROUPS = (
    ("dtype conversions (aten::to)", ("aten::to", "aten::_to_copy", CONVERSION), ()),
    ("copies (clone, contiguous)", ("aten::copy_", "aten::clone", "aten::contiguous"), ()),
    ("attention (SDPA)", (), ("scaled_dot_product", "flash_attention", "efficient_attention")),
    ("matmul / linear", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::linear",
                         "aten::matmul", "aten::mv", "aten::addmv", "aten::dot"), ()),
    ("convolution (patch embedding)", (), ("conv",)),
    ("layer_norm", (), ("layer_norm",)),
    ("gelu", (), ("gelu",)),
    ("softmax", (), ("softmax",)),
)
OTHER = "other (elementwise, autograd, optimizer)"


def op_group(name: str) -> str:
    """The profile group of an op (``GROUPS``), else ``OTHER``."""
    for group, exact, parts in GROUPS:
        if name in exact or any(p in name for p in parts):
            return group
    return OTHER


def frozen_matmul_weights(model: torch.nn.Module, learning_params) -> list[torch.nn.Parameter]:
    """The frozen parameters that autocast casts to bf16 at every call: weights and biases of linear layers and
    convolutions, attention input projections, and the towers' output projections (``x @ proj``). Embeddings and
    the residual stream's additions stay fp32, as under autocast."""
    learn = {id(p) for p in learning_params}
    out = []
    for module in model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            out += [module.weight, module.bias]
        elif isinstance(module, torch.nn.MultiheadAttention):
            out += [module.in_proj_weight, module.in_proj_bias]
    out += [getattr(model.visual, "proj", None), getattr(model, "text_projection", None)]
    seen, keep = set(), []
    for p in out:
        if isinstance(p, torch.nn.Parameter) and p.dtype == torch.float32 and id(p) not in learn | seen:
            seen.add(id(p))
            keep.append(p)
    return keep


def _sequence_first(module, args, kwargs):
    """nn.MultiheadAttention's pre-hook (batch_first turned off): the batch-first input as one contiguous
    sequence-first tensor. Batch-first, the module transposes its input itself, and the input projection
    (``F.linear`` on that strided 3-D view) becomes a batched matmul with the weight expanded over the batch; bf16
    ``bmm`` first copies the expanded weight and the view into contiguous memory, every block and every step."""
    new = {id(t): t.transpose(0, 1).contiguous() for t in args[:3]}  # (self-attention: one tensor, one copy)
    return (*(new[id(t)] for t in args[:3]), *args[3:]), kwargs


def _batch_first(module, args, kwargs, output):
    return (output[0].transpose(0, 1), *output[1:])


class Step:
    """The loop's training step on one fixed batch, under any ``Setting``."""

    def __init__(self, model_name: str, batch_size: int, pretrained: str | None = None):
        loaded = load_model(model_name, pretrained=pretrained, device="cpu", precision="fp32")
        folder = shapes_folder("sketch", n_per_class=max(4, math.ceil(batch_size / 6)))
        cfg = RunConfig(data=str(folder), preset="shapes", method="ueo", model=model_name, pretrained=pretrained,
                        epochs=1,
                        batch_size=batch_size, device="cpu", precision="fp32")
        self.tr = tr = Trainer(cfg, loaded=loaded, image_set=load_data(str(folder), preset="shapes"))
        tr.setup()
        n, k = len(tr.image_set), len(tr.image_set.classes)
        # UEO's weights from uniform zero-shot logits (as estimate_run does): their values do not change the cost
        self.ctx = tr.method.prepare(tr.view, torch.zeros(n, k), Resumed())
        self.params = tr.method.params(tr.view)
        self.batch = next(iter(tr.batches.epoch(1)))
        self.batch_size = len(self.batch.images)
        groups = [{"params": [p for name, p in self.params.items() if name.startswith(part)], "lr": lr}
                  for part, lr in (("prompt.", cfg.lr_prompt), ("visual.", cfg.lr_visual))]
        self.optimizer = tr.method.optimizer([g for g in groups if g["params"]], tr)
        self.frozen = frozen_matmul_weights(loaded.model, self.params.values())
        self.frozen_low = [p.data.to(torch.bfloat16) for p in self.frozen]  # cast once
        self.frozen_numel = sum(p.numel() for p in self.frozen)
        self.learning_numel = sum(p.numel() for p in self.params.values())

    @contextmanager
    def applied(self, s: Setting):
        """The setting's state around whole steps (weights, oneDNN flags), restored after."""
        mkl = torch.backends.mkldnn.matmul
        old_math, old_data = mkl.fp32_precision, [p.data for p in self.frozen]
        # open_clip's text transformer casts its input to its weights' dtype (get_cast_dtype): it keeps fp32,
        # as under autocast, or bf16 weights would also turn its residual stream to bf16
        towers = [m for m in self.tr.loaded.model.modules() if hasattr(m, "get_cast_dtype")] if s.frozen_bf16 else []
        attention = [m for m in self.tr.loaded.model.modules() if isinstance(m, torch.nn.MultiheadAttention)
                     and m.batch_first and s.contiguous_attention]
        hooks = [h for m in attention for h in (m.register_forward_pre_hook(_sequence_first, with_kwargs=True),
                                                 m.register_forward_hook(_batch_first, with_kwargs=True))]
        for m in attention:
            m.batch_first = False
        if s.onednn_bf16:
            mkl.fp32_precision = "bf16"
        for m in towers:
            m.get_cast_dtype = (lambda dtype: lambda: dtype)(m.get_cast_dtype())
        if s.frozen_bf16:
            for p, low in zip(self.frozen, self.frozen_low):
                p.data = low
        try:
            yield
        finally:
            mkl.fp32_precision = old_math
            for p, data in zip(self.frozen, old_data):
                p.data = data
            for m in towers:
                del m.get_cast_dtype
            for h in hooks:
                h.remove()
            for m in attention:
                m.batch_first = True

    def forward(self, s: Setting) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16) if s.autocast else nullcontext():
            return step_loss(self.tr, self.ctx, self.batch)[0]

    def __call__(self, s: Setting) -> float:
        """One whole step (forward, backward, update) under ``s``; its seconds."""
        t0 = time.perf_counter()
        loss = self.forward(s)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return time.perf_counter() - t0

    def gradient(self, s: Setting) -> tuple[float, torch.Tensor]:
        """(loss, the learning parameters' gradient as one fp32 vector) of a step under ``s``, without the
        update."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.forward(s)
        loss.backward()
        grad = torch.cat([p.grad.float().flatten() for p in self.params.values()])
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach().item(), grad


def paired_timings(step: Step, settings, rounds: int, steps: int) -> tuple[dict, float]:
    """({setting name: {"median_s", "img_per_s", "vs_fp32"}}, the CPU cores this process had on average): median
    step seconds over every round, and the median over rounds of the paired ratio fp32 seconds / setting seconds
    (both the medians of that round's steps). The cores had are CPU time over wall time: on a shared machine,
    fewer than the threads."""
    per_round = {s.name: [] for s in settings}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for r in range(rounds):
        order = settings[r % len(settings):] + settings[:r % len(settings)]
        for s in order:
            with step.applied(s):
                times = [step(s) for _ in range(steps)]
            per_round[s.name].append(times)
            print(f"  round {r + 1}/{rounds} {s.name:36s} " + " ".join(f"{t:.2f}" for t in times) + " s/step",
                  flush=True)
    return summarize(per_round, step.batch_size), (time.process_time() - cpu0) / (time.perf_counter() - wall0)


def summarize(per_round: dict, batch_size: int) -> dict:
    """The timings table's numbers from ``per_round`` = {setting: [[step seconds of round 1], ...]}, fp32 first."""
    fp32 = [statistics.median(t) for t in per_round[FP32.name]]
    out = {}
    for name, rounds in per_round.items():
        med = statistics.median(x for t in rounds for x in t)
        ratios = [f / statistics.median(t) for f, t in zip(fp32, rounds)]
        out[name] = {"median_s": med, "img_per_s": batch_size / med, "vs_fp32": statistics.median(ratios)}
    return out


def profile(step: Step, settings, n_steps: int) -> dict[str, dict[str, float]]:
    """{setting name: {op name: self CPU milliseconds per step}} of ``n_steps`` steps of each setting
    (torch.profiler, one step at a time, the settings alternating). A copy_ inside aten::_to_copy is named
    ``CONVERSION``."""
    from torch.profiler import ProfilerActivity, profile as torch_profile
    out = {s.name: {} for s in settings}
    for _ in range(n_steps):
        for s in settings:
            with step.applied(s), torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                step(s)
            ops = out[s.name]
            for e in prof.events():
                parent = e.cpu_parent.name if e.cpu_parent is not None else None
                name = CONVERSION if e.name == "aten::copy_" and parent == "aten::_to_copy" else e.name
                ops[name] = ops.get(name, 0.0) + e.self_cpu_time_total / 1000 / n_steps
    return {n: {o: ms for o, ms in ops.items() if ms > 0} for n, ops in out.items()}


def grouped(ops: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, ms in ops.items():
        out[op_group(name)] = out.get(op_group(name), 0.0) + ms
    return out


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "-"


def profile_tables(prof: dict[str, dict[str, float]], top: int) -> list[str]:
    """Markdown: the op groups, then the ``top`` ops by their largest self time, fp32 beside each bf16 setting."""
    names = list(prof)
    groups = {n: grouped(p) for n, p in prof.items()}
    totals = {n: sum(p.values()) for n, p in prof.items()}
    head = " | ".join(f"{n} ms/step | share" for n in names)
    ratios = " | ".join(f"{n} / fp32" for n in names[1:])
    lines = [f"| op group | {head} | {ratios} |", "|---|" + "---|" * (2 * len(names) + len(names) - 1)]
    order = sorted({g for p in groups.values() for g in p}, key=lambda g: -max(p.get(g, 0) for p in groups.values()))
    for g in order + ["total (self CPU time)"]:
        vals = [totals[n] if g.startswith("total") else groups[n].get(g, 0.0) for n in names]
        cells = " | ".join(f"{v:.0f} | {v / totals[n]:.1%}" for v, n in zip(vals, names))
        lines.append(f"| {g} | {cells} | " + " | ".join(ratio(v, vals[0]) for v in vals[1:]) + " |")
    ops = sorted({o for p in prof.values() for o in p}, key=lambda o: -max(p.get(o, 0) for p in prof.values()))
    lines += ["", f"| op (top {top} by self CPU time) | group | {head} | {ratios} |",
              "|---|---|" + "---|" * (2 * len(names) + len(names) - 1)]
    for o in ops[:top]:
        vals = [prof[n].get(o, 0.0) for n in names]
        cells = " | ".join(f"{v:.0f} | {v / totals[n]:.1%}" for v, n in zip(vals, names))
        lines.append(f"| `{o}` | {op_group(o)} | {cells} | " + " | ".join(ratio(v, vals[0]) for v in vals[1:]) + " |")
    return lines


MATRIX_GROUPS = ("matmul / linear", "attention (SDPA)", "convolution (patch embedding)")  # what bf16 units speed up


def ceiling(ops32: dict[str, float], speedup: float) -> tuple[float, float, float]:
    """(share of the fp32 step's op time in ``MATRIX_GROUPS``, the step's speed-up if those ran ``speedup`` times
    faster and everything else kept its fp32 time, the speed-up they would need for the goal: inf if none is
    enough). Amdahl's law on the fp32 profile: an upper bound, as it counts no conversions at all."""
    g = grouped(ops32)
    f = sum(g.get(k, 0.0) for k in MATRIX_GROUPS) / sum(g.values())
    bound = 1 / ((1 - f) + f / speedup)
    room = 1 / GOAL - (1 - f)
    return f, bound, (f / room if room > 0 else math.inf)


def conclusion(speed: dict, prof: dict[str, dict[str, float]], native: str | None) -> list[str]:
    """What the numbers say, in sentences computed from them: the bf16 step against fp32 and the goal, the best
    setting, and (when bf16 falls short) the op groups that hold it back, by the time each adds per step."""
    bf16 = speed[BF16.name]["vs_fp32"]
    best = max(speed, key=lambda n: speed[n]["vs_fp32"])
    out = [f"- This CPU {'has native bf16 (' + native + ')' if native else 'has no native bf16: oneDNN emulates it'}."
           f" The bf16 autocast step runs at {bf16:.2f}x the fp32 step: the goal (>= {GOAL}x) is "
           f"{'met' if bf16 >= GOAL else 'not met'}.",
           f"- Fastest setting: {best} ({speed[best]['vs_fp32']:.2f}x fp32)."]
    if bf16 >= GOAL or FP32.name not in prof or BF16.name not in prof:
        return out
    g32, g16 = grouped(prof[FP32.name]), grouped(prof[BF16.name])
    added = {g: g16.get(g, 0.0) - g32.get(g, 0.0) for g in set(g32) | set(g16)}
    slower = sorted((g for g in added if added[g] > 0), key=lambda g: -added[g])
    faster = sorted((g for g in added if added[g] < 0), key=lambda g: added[g])
    more, less = sum(added[g] for g in slower), -sum(added[g] for g in faster)
    if not slower:
        out.append("- No op group is slower in bf16 than in fp32, but none gains enough to reach the goal.")
        return out
    out.append(f"- What holds bf16 back (profile, self CPU time per step): the op groups bf16 slows add {more:.0f} ms, "
               f"those it speeds up save {less:.0f} ms ({sum(g16.values()):.0f} ms against "
               f"{sum(g32.values()):.0f} ms in fp32). Slower, by the time each adds: " + "; ".join(
                   f"{g} +{added[g]:.0f} ms ({added[g] / more:.0%} of the added time; bf16/fp32 "
                   f"{ratio(g16.get(g, 0.0), g32.get(g, 0.0))})" for g in slower) + ".")
    if faster:
        out.append("- Faster in bf16: " + "; ".join(
            f"{g} {added[g]:.0f} ms (bf16/fp32 {ratio(g16.get(g, 0.0), g32.get(g, 0.0))})" for g in faster) + ".")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--pretrained", default="none", help="weights tag ('builtin' for ueo-shapes); 'none': random "
                    "init (the same speed; its near-uniform predictions give tiny, rounding-dominated gradients)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per setting per round")
    ap.add_argument("--profile-steps", type=int, default=2)
    ap.add_argument("--top", type=int, default=12, help="ops listed in the profile's per-op table")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--gemm-speedup", type=float, default=2.6, help="bf16/fp32 matmul speed-up assumed for the "
                    "expectation line (2.6: issue 32's 2048^2 matmul on an AMD EPYC with AVX-512 BF16)")
    ap.add_argument("--quick", action="store_true", help="smoke run: the tiny model, batch 4, one step of each")
    a = ap.parse_args(argv)
    if a.quick:
        print(QUICK_NOTE, flush=True)
        a.model, a.batch_size, a.rounds, a.steps, a.profile_steps, a.top = TINY_MODEL, 4, 1, 1, 1, 6
    if a.threads:
        torch.set_num_threads(a.threads)
    native = native_bf16(torch.device("cpu"))
    step = Step(a.model, a.batch_size, None if a.pretrained == "none" else a.pretrained)
    weights = "random init" if a.pretrained == "none" else a.pretrained
    print(f"{a.model} ({weights}), CPU ({torch.get_num_threads()} threads, torch {torch.__version__}), batch "
          f"{step.batch_size}, {len(step.tr.image_set.classes)} prompts; native bf16: {native or 'no (emulated)'}; "
          f"learning {step.learning_numel:,} parameters (norm affine + prompt context); "
          f"{len(step.frozen)} frozen matmul weights ({step.frozen_numel / 1e6:.1f} M values)\n", flush=True)
    with learning(step.params):
        measure(step, a, native)
    if a.quick:
        print(QUICK_NOTE)
    return 0


def measure(step: Step, a, native) -> None:
    """Agreement, paired timings and the profile of every setting, printed as tables, then the conclusion."""
    grads = {}
    for s in SETTINGS:  # every first step from the same weights: no update before the last of them
        with step.applied(s):
            grads[s.name] = step.gradient(s)
    (loss32, g32), agree = grads[FP32.name], {}
    for s in SETTINGS:
        loss, g = grads[s.name]
        g, ref = g.double(), g32.double()
        agree[s.name] = (abs(loss - loss32), float(g @ ref / (g.norm() * ref.norm())),
                         float((g - ref).norm() / ref.norm()))
        with step.applied(s):
            step(s)  # warm-up: first calls pay one-off setup costs
    print(f"timing: {a.rounds} rounds x {a.steps} steps per setting (seconds per step):", flush=True)
    speed, cores = paired_timings(step, list(SETTINGS), a.rounds, a.steps)
    print("\n| setting | s/step (median) | img/s | vs fp32 (paired median) | first-step loss abs diff | "
          "gradient cosine to fp32 | gradient rel. error |\n|---|---|---|---|---|---|---|")
    for s in SETTINGS:
        v, (dl, cos, rel) = speed[s.name], agree[s.name]
        print(f"| {s.name} | {v['median_s']:.2f} | {v['img_per_s']:.1f} | {v['vs_fp32']:.2f}x | {dl:.2e} | "
              f"{cos:.5f} | {rel:.2e} |")
    shared = cores < 0.9 * torch.get_num_threads()
    print(f"\nCPU cores this process had during the timings: {cores:.2f} of {torch.get_num_threads()} threads (CPU "
          f"time / wall time{'; the machine is shared: read the ratios, not the img/s' if shared else ''})")

    profiled = [FP32, BF16, SETTINGS[-1]]
    print(f"\nprofile: {a.profile_steps} step(s) of each of {', '.join(s.name for s in profiled)} ...", flush=True)
    prof = profile(step, profiled, a.profile_steps)
    print("\n".join([""] + profile_tables(prof, a.top)))
    print("\n" + "\n".join(conclusion(speed, prof, native)))
    f, bound, needed = ceiling(prof[FP32.name], a.gemm_speedup)
    print(f"- Expectation, not a measurement: matmul, attention and the patch convolution take {f:.0%} of the fp32 "
          f"step's op time here. Were they {a.gemm_speedup:g}x faster in bf16 (--gemm-speedup) and every other op "
          f"as fast as in fp32, with no conversions at all, the step would be {bound:.2f}x faster; the goal "
          f"({GOAL}x) needs them " + (f"{needed:.1f}x faster." if math.isfinite(needed) else
                                       f"infinitely fast: the other ops alone take more than 1/{GOAL} of the step."))


if __name__ == "__main__":
    sys.exit(main())
