"""export_model: checkpoint -> verified encoder.onnx, decoder.onnx (and decoder variants) in one directory.

Export, then validate, then publish: every graph is first written to a hidden temp file in the output
directory, checked and compared there (so what was verified is byte for byte what gets published),
and only when every check of every graph passed are the temp files renamed into place with os.replace.
On any failure the temp files are removed and existing files are left untouched.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from .. import layout
from ..contract import CHECKPOINT_KEY, ROLES, parse_metadata
from ..errors import UserInputError, VerificationError, WriteFailedError, arg, say
from ..files import Output, claim_out_dir, file_sha256, fsync_dir, os_error_reason, write_temp_beside
from ..models.checkpoint import Checkpoint
from .graphs import check_opset, export_graph
from .prior import verify_prior
from .variants import to_fp16, to_int8
from .verify import VERIFY_BATCH_SIZES, Report, verify_against_torch, verify_variant

EXPORT_OUTPUT = Output("exported graphs", tuple(re.escape(name) for name in layout.GRAPH_FILES))


def _same_run(out_dir: Path, ckpt_path: Path, checkpoint_sha256: str) -> Callable[[list[Path]], bool]:
    """May this export replace the graphs already in out_dir? Yes when they are its own run's: out_dir is
    inside the run's directory (re-exporting a run into its own folder, e.g. after more epochs), or every
    earlier graph was exported from this very checkpoint."""

    def same(earlier: list[Path]) -> bool:
        run = ckpt_path.resolve().parent
        if out_dir.resolve() == run or run in out_dir.resolve().parents:
            return True
        return all(_exported_from(p) == checkpoint_sha256 for p in earlier)

    return same


def _exported_from(path: Path) -> str | None:
    """The checkpoint SHA-256 in an exported graph's metadata (None when unreadable or absent)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not a graph we can read: not ours to replace without overwrite
        return None
    return next((p.value for p in model.metadata_props if p.key == CHECKPOINT_KEY), None)


@dataclass
class ExportResult:
    encoder: Path
    decoder: Path
    variants: dict[str, Path] = field(default_factory=dict)  # {"fp16": .../decoder.fp16.onnx, "int8": ...}
    max_abs_diff: dict[str, float] = field(
        default_factory=dict
    )  # "encoder.mu", "decoder.image", "decoder.int8.image", ...


def _stage(model: onnx.ModelProto, final: Path) -> Path:
    """Serialize to a hidden temp file beside `final`, fsynced. The caller renames or deletes it.
    A full disk raises WriteFailedError (files.py): nothing has been published at that point."""
    try:
        return write_temp_beside(final, lambda f: f.write(model.SerializeToString()))
    except WriteFailedError as e:
        raise e.but(f"nothing was written to {final.parent} (existing files are unchanged)") from None


def _publish(staged: dict[str, Path], finals: dict[str, Path]) -> None:
    """Rename every staged graph into place; a rename that fails names what was already replaced."""
    done = []
    for key, tmp in staged.items():
        try:
            os.replace(tmp, finals[key])
        except OSError as e:
            survived = (
                f"{', '.join(done)} already replaced, the other files unchanged" if done else "nothing was replaced"
            )
            raise WriteFailedError(finals[key], os_error_reason(e), survived) from None
        done.append(finals[key].name)


class _DropQuantizerAdvice(logging.Filter):
    # quantize_dynamic logs "Please consider to run pre-processing..." on the root logger every time;
    # its pre-processing (symbolic shape inference, graph optimization) does nothing for these graphs.
    def filter(self, record: logging.LogRecord) -> bool:
        return "consider to run pre-processing" not in record.getMessage()


def _make_variant(variant: str, decoder: onnx.ModelProto) -> onnx.ModelProto:
    if variant == "fp16":
        return to_fp16(decoder)
    root, quiet = logging.getLogger(), _DropQuantizerAdvice()
    root.addFilter(quiet)
    try:
        return to_int8(decoder)
    finally:
        root.removeFilter(quiet)


def _sample_images(config, data):
    """Real images to verify on, uint8 (N, C, H, W): the run's own (`data`, held-out ones first) when at hand,
    else the embedded MNIST sample when the model takes that shape, else None (random): the graphs are checked
    on inputs like those they will see."""
    import numpy as np

    from ..data import load_mnist_sample

    n = max(VERIFY_BATCH_SIZES)
    if data is not None:
        images = np.concatenate([data.test[:n], data.train[:n]])[:n]
        if len(images) and images.shape[1:] == config.image_shape:
            return np.resize(images, (n, *images.shape[1:]))  # a small set repeated to fill the batch
    if config.image_shape != (1, 28, 28):
        return None
    return load_mnist_sample().test[:n]


def _staged_info(path: Path):
    graph = onnx.load(str(path), load_external_data=False)
    return parse_metadata({p.key: p.value for p in graph.metadata_props}, str(path))


def _mb(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.2f} MB"


def _log_report(report: Report, out_dir: Path, log: Callable[[str], None]) -> None:
    """Log each graph's largest difference from its reference; raise VerificationError listing every failure."""
    for key, diff in report.max_abs_diff.items():
        against, bound = report.compared_with[key]
        log(
            f"  {key:<19} max abs diff vs {against}: {diff:.2e} (tolerance {bound:.3g}; N = {' and '.join(map(str, VERIFY_BATCH_SIZES))})"
        )
    if report.failures:
        for failure in report.failures:
            log(f"  FAILED {failure}")
        raise VerificationError(
            f"export failed verification ({len(report.failures)} problem{'s' if len(report.failures) > 1 else ''}: "
            f"{'; '.join(report.failures)}); nothing was written to {out_dir}"
        )


def _graphs(ckpt: Checkpoint, model, opset: int, checkpoint_sha256: str, prior: dict | None) -> dict:
    """Both roles' graphs, each with the checkpoint's facts in its metadata (the prior in the decoder's)."""
    return {
        role: export_graph(model, role, opset, checkpoint_sha256, ckpt.kl_per_dim, prior, ckpt.hold_out_seed)
        for role in ROLES
    }


def _export_line(ckpt_path: Path, config, opset: int) -> str:
    classes = f", {config.num_classes} classes" if config.num_classes else ""
    refined = f", {config.refine_steps} refinement steps in the encoder" if config.refine_steps else ""
    shape = "x".join(map(str, config.image_shape))
    return f"exporting {ckpt_path} ({config.arch}, latent {config.latent_dim}, image {shape}{classes}{refined}) with opset {opset}"


def _run_export_dir(source, ckpt_path: Path | None) -> Path:
    """Where a checkpoint's graphs go when the caller names no directory: RUN/onnx of the run it is in."""
    out_dir = None if ckpt_path is None else layout.default_export_dir(ckpt_path)
    if out_dir is None:
        raise UserInputError(
            f"{source}: a checkpoint outside a training run; name the directory for the graphs with {arg('out_dir')}"
        )
    return out_dir


def export_model(
    source,
    out_dir=None,
    *,
    last: bool = False,
    opset: int | None = None,
    atol: float = 1e-4,
    fp16: bool = False,
    int8: bool = False,
    refine_steps: int | None = None,
    prior: str | None = None,
    data_dir=None,
    overwrite: bool = False,
    log: Callable[[str], None] = say,
) -> ExportResult:
    """Export a checkpoint (or run directory) to verified ONNX graphs in `out_dir` [RUN/onnx of its run].

    refine_steps: the encoder graph's refinement steps (models/refine.py) [None: the checkpoint's].
    prior: "normal" (none fitted: N(0, I)), "gmm" or "gmm:K" (a mixture of K Gaussians fitted to the encoded
    training images, vaectl.prior.fit) [None: gmm when the training data, the run's own or `data_dir`, is at hand].
    Raises UserInputError for bad input (nothing written) and VerificationError when a graph fails a
    check (every failure listed; nothing written, existing files untouched). An out_dir holding graphs of
    another run is refused unless overwrite=True (files.claim_out_dir); once the new graphs are published,
    the earlier graphs they do not replace (a decoder.fp16.onnx this export does not write) are removed.
    """
    opset = check_opset(opset)
    if not isinstance(atol, (int, float)) or not math.isfinite(atol) or atol < 0:
        raise UserInputError(f"{arg('atol')} must be a finite number >= 0, got {atol}")
    ckpt = Checkpoint.load(source, last=last)
    out_dir = _run_export_dir(source, ckpt.path) if out_dir is None else Path(out_dir)
    model = ckpt.model() if refine_steps is None else ckpt.model().with_refine_steps(refine_steps)
    config, ckpt_path = model.config, ckpt.path
    if int8 and config.row_context:
        # the generated rows feed back into the next, so the per-batch activation quantization compounds:
        # the --preset quality model measured 0.25 max pixel error against float32 (bound 0.1)
        raise UserInputError(
            f"{arg('int8', True)} is not available for a row-autoregressive model (trained with a row context): its "
            f"quantization error compounds row by row; use {arg('fp16', True)}"
        )
    prior_plan = ckpt.prior_plan(prior, data_dir)  # reads the data now: bad input fails before anything is written
    checkpoint_sha256 = file_sha256(ckpt_path)
    claim = claim_out_dir(
        out_dir,
        EXPORT_OUTPUT,
        overwrite=overwrite,
        reuse=_same_run(out_dir, ckpt_path, checkpoint_sha256),
        instead=f"they come from another checkpoint: choose another {arg('out_dir')}",
        parents=True,
    )
    log(_export_line(ckpt_path, config, opset))

    finals = {role: out_dir / layout.graph_name(role) for role in ROLES}
    wanted = [v for v, on in (("fp16", fp16), ("int8", int8)) if on]
    finals.update({f"decoder.{v}": out_dir / layout.graph_name("decoder", v) for v in wanted})
    staged: dict[str, Path] = {}
    report = Report()
    published = False
    try:
        spec, prior_line = prior_plan.fit()
        log(prior_line if spec is not None else f"{prior_line}: samples come from N(0, I)")
        graphs = _graphs(ckpt, model, opset, checkpoint_sha256, spec)
        real_images = _sample_images(config, prior_plan.data)
        for role in ROLES:
            staged[role] = _stage(graphs[role], finals[role])
            verify_against_torch(model, role, staged[role], atol, real_images, report)
        if spec is not None:  # the prior as the published decoder carries it
            verify_prior(_staged_info(staged["decoder"]).prior, config, report.failures)
        decoder_ok = not any(f.startswith("decoder") for f in report.failures)
        if wanted and not decoder_ok:
            log(f"  skipping {' and '.join(wanted)}: the float32 decoder they derive from failed verification")
        for variant in wanted if decoder_ok else ():
            key = f"decoder.{variant}"
            try:
                staged[key] = _stage(_make_variant(variant, graphs["decoder"]), finals[key])
            except ValueError as e:  # a weight float16 cannot hold
                report.failures.append(f"{key}: {e}")
                continue
            verify_variant(config, variant, staged[key], staged["decoder"], report)

        _log_report(report, out_dir, log)
        _publish(staged, finals)
        published = True
        claim.clear(keep=finals.values())
        fsync_dir(out_dir)
    finally:
        if not published:
            for tmp in staged.values():
                tmp.unlink(missing_ok=True)
            if claim.created:
                with contextlib.suppress(OSError):
                    out_dir.rmdir()  # only succeeds if empty: never removes anything of the user's

    result = ExportResult(
        encoder=finals["encoder"],
        decoder=finals["decoder"],
        variants={v: finals[f"decoder.{v}"] for v in wanted},
        max_abs_diff=dict(report.max_abs_diff),
    )
    log("wrote " + ", ".join(f"{p.name} ({_mb(p)})" for p in finals.values()) + f" to {out_dir}")
    return result
