"""Checks on exported graphs: the ONNX checker, structure, and onnxruntime against PyTorch.

Every check appends to a list of failures instead of raising, so one export reports all that is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from .. import contract
from ..contract import BATCH
from ..models import VAEConfig
from ..threads import choose_threads
from .graphs import RANDOM_OPS, io_spec, module_for_export

VERIFY_BATCH_SIZES = (1, 64)
VERIFY_GUIDANCE = (0.0, 1.0, 3.0)  # a guided decoder is also checked at these weights (unconditional, plain, strong)
# A refining encoder runs one step over and over in a loop: checking a few turns checks the step and the loop.
# More turns only carry rounding further: on noise images (what export checks with when the run's data is not
# at hand), 100 turns took ORT's and PyTorch's refined mu 2e-3 apart, 3e-3 in what they decode to.
VERIFY_REFINE_STEPS = 3
# Rounding in a step's gradient (a sum over every pixel, of terms that largely cancel) moves Adam's next step,
# more so on some models than others: after 3 turns on a 64 px colour model trained on clip art, PyTorch's own
# float32 mu was up to 1.7e-4 from float64, ORT's up to 2.5e-4. A loop that gets its step count or Adam's
# moments wrong is off by 0.09 or more on the same model. So the refined mu is held to REFINED_ATOL times atol.
REFINED_ATOL = 10
# Variants are compared with the float32 graph on [0, 1] pixels. The bounds catch broken graphs
# (overflow, a wrong cast, saturated int8 kernels), not rounding: measured max fp16 ~1e-4, int8 ~5e-3.
VARIANT_ATOL = {"fp16": 1e-2, "int8": 1e-1}


@dataclass
class Report:
    failures: list[str] = field(default_factory=list)
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # per output, max over the batch sizes
    compared_with: dict[str, tuple[str, float]] = field(default_factory=dict)  # output -> (reference, tolerance)

    def record_diff(self, key: str, value: float, against: str, atol: float) -> None:
        self.max_abs_diff[key] = max(self.max_abs_diff.get(key, 0.0), value)
        self.compared_with[key] = (against, atol)


def make_inputs(
    config: VAEConfig,
    role: str,
    n: int,
    real_images: np.ndarray | None,
    seed: int,
    guidance: float | None = None,
    refine_steps: int | None = None,
) -> dict[str, np.ndarray]:
    """Deterministic inputs: real images when given (shape must match), else uniform [0, 1]; z ~ N(0, I).

    A guided decoder gets `guidance` fed when given; left out, the graph's default is its weight. A refining
    encoder gets `refine_steps` [the model's own]."""
    rng = np.random.default_rng(seed)
    if role == "encoder":
        if real_images is not None and len(real_images) >= n:
            first = real_images[:n].astype(np.float32) / 255.0
        else:
            first = rng.random((n, *config.image_shape), dtype=np.float32)
    else:
        first = rng.standard_normal((n, config.latent_dim), dtype=np.float32)
    feeds = {contract.PRIMARY_INPUT[role]: first}
    if config.conditional:
        feeds[contract.LABEL] = (np.arange(n) % config.num_classes).astype(np.int64)  # every class once n >= K
    if config.guided and role == "decoder":  # the model's own weight unless another is asked for
        feeds[contract.GUIDANCE] = np.array([config.guidance if guidance is None else guidance], np.float32)
    if config.refine_steps and role == "encoder":
        steps = config.refine_steps if refine_steps is None else refine_steps
        feeds[contract.REFINE_STEPS] = np.array([steps], np.int64)
    return feeds


def torch_outputs(model, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reference: the PyTorch model itself, float32, through the same wrappers that were exported."""
    _, outputs = io_spec(model.config, role)
    args = [torch.from_numpy(v) for v in feeds.values()]
    if model.config.guided and role == "decoder" and contract.GUIDANCE not in feeds:  # the graph's default weight
        args.append(torch.tensor([model.config.guidance]))
    with torch.no_grad():
        got = module_for_export(model, role)(*args)
    got = got if isinstance(got, tuple) else (got,)
    return {name: t.numpy() for name, t in zip(outputs, got)}


def check_graph_file(path: Path, label: str, report: Report, unbatched: tuple[str, ...] = ()) -> bool:
    """onnx.checker (full, with strict shape inference) and structural rules. False if unusable."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        report.failures.append(f"{label}: onnx checker: {str(e).strip().splitlines()[0]}")
        return False
    model = onnx.load(str(path), load_external_data=False)
    random_ops = sorted({n.op_type for n in model.graph.node} & RANDOM_OPS)
    if random_ops:
        report.failures.append(f"{label}: contains random ops {', '.join(random_ops)}; graphs must be deterministic")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        report.failures.append(f"{label}: weights are stored outside the file")
    for value in (*model.graph.input, *model.graph.output):
        if value.name in unbatched:
            continue
        dims = value.type.tensor_type.shape.dim
        if not dims or dims[0].dim_param != BATCH:
            report.failures.append(f"{label}: {value.name} does not have the dynamic batch dimension {BATCH!r} first")
    return True


def session(path: Path, label: str, report: Report) -> ort.InferenceSession | None:
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # not the warning that an input (guidance) has an initializer: it is meant to
        opts.intra_op_num_threads = choose_threads()  # as inference sessions do (vaectl/threads.py)
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own untyped errors (Fail, InvalidGraph, ...)
        report.failures.append(f"{label}: onnxruntime cannot load it: {str(e).strip().splitlines()[0]}")
        return None


def _run(sess: ort.InferenceSession, feeds, label: str, report: Report) -> dict[str, np.ndarray] | None:
    try:
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feeds)))
    except Exception as e:  # as above: onnxruntime's error types are not part of its API
        report.failures.append(
            f"{label}: onnxruntime failed at N={len(next(iter(feeds.values())))}: {str(e).strip().splitlines()[0]}"
        )
        return None


def compare(
    got: dict[str, np.ndarray],
    want: dict[str, np.ndarray],
    expected: dict[str, tuple],
    atol: float,
    label: str,
    n: int,
    report: Report,
    against: str = "PyTorch",
) -> None:
    """Shape, dtype, finiteness and max abs difference of each output; failures recorded, not raised."""
    for name, (_, shape) in expected.items():
        key = f"{label}.{name}"
        want_shape = (n, *shape[1:])
        if name not in got:
            report.failures.append(f"{key}: output missing")
            continue
        out = got[name]
        if out.dtype != np.float32 or out.shape != want_shape:
            report.failures.append(f"{key} at N={n}: got {out.dtype} {out.shape}, expected float32 {want_shape}")
            continue
        if not np.isfinite(out).all():
            report.failures.append(f"{key} at N={n}: {np.size(out) - np.isfinite(out).sum()} NaN/inf values")
            report.record_diff(key, float("inf"), against, atol)
            continue
        diff = float(np.abs(out.astype(np.float64) - want[name]).max())
        report.record_diff(key, diff, against, atol)
        if not diff <= atol:
            report.failures.append(f"{key} at N={n}: max abs diff vs {against} {diff:.3g} > atol {atol:g}")


def verify_against_torch(model, role: str, path: Path, atol: float, real_images, report: Report) -> None:
    config = model.config
    if not check_graph_file(path, role, report, _unbatched(config, role)):
        return
    sess = session(path, role, report)
    if sess is None:
        return
    _, outputs = io_spec(config, role)
    weights = (None, *VERIFY_GUIDANCE) if config.guided and role == "decoder" else (None,)
    # a refining encoder: the encoder alone, and a few turns of its loop (VERIFY_REFINE_STEPS)
    counts = (
        (0, min(VERIFY_REFINE_STEPS, config.refine_steps)) if config.refine_steps and role == "encoder" else (None,)
    )
    for i, n in enumerate(VERIFY_BATCH_SIZES):
        for guidance in weights:  # None: the graph's default
            for steps in counts:
                feeds = make_inputs(config, role, n, real_images, seed=i, guidance=guidance, refine_steps=steps)
                got = _run(sess, feeds, role, report)
                if got is None:
                    continue
                want = torch_outputs(model, role, feeds)
                if steps:  # logvar is the encoder's own, the same as with 0 steps
                    refined = {contract.MU: outputs[contract.MU]}
                    compare(got, want, refined, REFINED_ATOL * atol, "refined encoder", n, report)
                else:
                    compare(got, want, outputs, atol, role, n, report)


def _unbatched(config: VAEConfig, role: str) -> tuple[str, ...]:
    """The contract's inputs without the batch dimension (a guided decoder's guidance)."""
    return tuple(t.name for t in contract.graph_inputs(config, role) if t.shape[0] != BATCH)


def verify_variant(config: VAEConfig, variant: str, path: Path, fp32_path: Path, report: Report) -> None:
    """A decoder variant against the verified float32 decoder, same inputs."""
    label = f"decoder.{variant}"
    if not check_graph_file(path, label, report, _unbatched(config, "decoder")):
        return
    sess, reference = session(path, label, report), session(fp32_path, "decoder", report)
    if sess is None or reference is None:
        return
    # The bounds are for [0, 1] pixels; a row-context decoder's base_logits output serves scoring, which
    # the float32 graph is for, so only the image is held to them.
    outputs = {contract.IMAGE: io_spec(config, "decoder")[1][contract.IMAGE]}
    for i, n in enumerate(VERIFY_BATCH_SIZES):
        feeds = make_inputs(config, "decoder", n, None, seed=i, guidance=VERIFY_GUIDANCE[-1] if config.guided else None)
        got, want = _run(sess, feeds, label, report), _run(reference, feeds, "decoder", report)
        if got is not None and want is not None:
            compare(got, want, outputs, VARIANT_ATOL[variant], label, n, report, against="the float32 graph")
