"""`vaectl doctor`'s smoke run on one device: train one epoch, export on the CPU, generate through onnxruntime.

Needs torch (the [train] extra); vaectl.doctor imports it only when torch is installed.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .. import layout
from . import FAIL, PASS, TORCH_INSTALL_HELP, Check

# the embedded 4,000 training digits, one epoch of a small MLP
SMOKE_MODEL = dict(arch="mlp", latent_dim=4, hidden=(64,))
SMOKE_BATCH = 128
SMOKE_IMAGES = 16
SMOKE_PIXEL_TOL = 1e-3  # ONNX on the CPU vs PyTorch on the training device, pixels in [0, 1]


def smoke_run(device: str, amp: bool, workdir: Path) -> Check:
    """Train one epoch of a small MLP on `device`, export it on the CPU (which verifies ONNX vs PyTorch), generate
    through onnxruntime, and compare those images with the trained model's own on `device`."""
    from ..export import export_model
    from ..infer import Decoder
    from ..models.checkpoint import Checkpoint
    from ..training import TrainConfig, train

    name = f"smoke {device}" + (" (bf16 amp)" if amp else "")
    run, times = workdir / device.replace(":", ""), {}
    try:
        t0 = time.perf_counter()
        train(
            TrainConfig(out=str(run), epochs=1, batch_size=SMOKE_BATCH, seed=0, device=device, amp=amp, grid_every=0),
            dict(SMOKE_MODEL),
            log=lambda m: None,
        )
        times["train"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        exported = export_model(run, run / "onnx", log=lambda m: None)  # loads the checkpoint on the CPU
        times["export"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        decoder = Decoder(exported.decoder)
        z = decoder.latents(SMOKE_IMAGES, seed=0)  # (16, D)
        onnx_images = decoder.decode_float(z)  # (16, 1, 28, 28) in [0, 1]
        times["generate"] = time.perf_counter() - t0
        model = Checkpoint.load(run / layout.BEST_CHECKPOINT).model().to(device)  # back on the training device
        with torch.no_grad():
            torch_images = torch.sigmoid(model.decoder(torch.from_numpy(z).to(device), None)).float().cpu().numpy()
    except Exception as e:  # the smoke run reports what broke; a traceback would hide the other checks
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        advice = (
            f"reproduce: vaectl train --device {device}{' --amp' if amp else ''} --epochs 1 --out runs/check && "
            f"vaectl export runs/check"
        )
        if (
            "no kernel image" in first or "driver version is insufficient" in first
        ):  # wheel built for other GPUs/drivers
            advice = f"this torch build does not support this GPU or driver: install the matching build ({TORCH_INSTALL_HELP})"
        return Check(name, FAIL, f"{type(e).__name__}: {first}", advice)
    diff = float(np.abs(onnx_images - torch_images).max())
    export_diff = max(exported.max_abs_diff.values())
    ok = diff <= SMOKE_PIXEL_TOL
    where = "exported on the CPU, " if device != "cpu" else ""
    detail = (
        f"trained 1 epoch in {times['train']:.2f} s, {where}exported in {times['export']:.2f} s (ONNX vs PyTorch "
        f"{export_diff:.1e}), generated {SMOKE_IMAGES} images in {times['generate'] * 1000:.0f} ms (vs PyTorch on {device} {diff:.1e})"
    )
    return Check(
        name,
        PASS if ok else FAIL,
        detail,
        "" if ok else f"ONNX and PyTorch on {device} disagree beyond {SMOKE_PIXEL_TOL}: report it with this output",
        round(sum(times.values()), 2),
    )
