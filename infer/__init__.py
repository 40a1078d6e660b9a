"""Torch-free inference on exported graphs: onnxruntime, numpy and Pillow only.

    from vaectl.infer import Decoder, VAEPair, save_image_grid
    dec = Decoder("export/decoder.onnx")
    images = dec.sample(64, seed=0)                 # uint8 (64, 28, 28), z from the graph's default prior
    images = dec.sample(64, seed=0, prior="normal") # z ~ N(0, I); dec.priors lists what the graph offers
    save_image_grid("grid.png", images, nrow=8)
    pair = VAEPair.load("export/encoder.onnx", "export/decoder.onnx")
    strip = pair.interpolate("a.png", "b.png", steps=10, method="slerp")
    show(images)                                    # in Jupyter: the grid inline; Animation(strip): a GIF
The CLI's commands, one function each: vaectl.infer.commands (generate, reconstruct, interpolate, traverse,
data_images) and vaectl.infer.evaluate.evaluate_onnx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ below imports each on first use
    from ..prior import MixturePrior, NormalPrior, Prior, priors_of
    from .describe import describe_model, format_description
    from .display import Animation, ImageGrid, show
    from .inputs import prepare_images
    from .latent import grid_latents, interpolate_latents, lerp, slerp, traverse_latents
    from .output import save_image_batches, save_image_grid
    from .safe_load import check_model_bytes, read_model_bytes
    from .sessions import Decoder, Encoder, VAEPair

# Each name's module, imported when the name is first used (PEP 562): every CLI command imports
# vaectl.infer.commands, which runs this file, and a command should not pay at start-up for the modules
# it does not use (`vaectl generate` never reads image files, describes a graph or shows one in Jupyter).
_NAMES_OF = {
    "..prior": ("MixturePrior", "NormalPrior", "Prior", "priors_of"),
    ".describe": ("describe_model", "format_description"),
    ".display": ("Animation", "ImageGrid", "show"),
    ".inputs": ("prepare_images",),
    ".latent": ("grid_latents", "interpolate_latents", "lerp", "slerp", "traverse_latents"),
    ".output": ("save_image_batches", "save_image_grid"),
    ".safe_load": ("check_model_bytes", "read_model_bytes"),
    ".sessions": ("Decoder", "Encoder", "VAEPair"),
}
_MODULE_OF = {name: module for module, names in _NAMES_OF.items() for name in names}

__all__ = [
    "Animation",
    "Decoder",
    "Encoder",
    "VAEPair",
    "Prior",
    "NormalPrior",
    "MixturePrior",
    "priors_of",
    "ImageGrid",
    "show",
    "describe_model",
    "format_description",
    "prepare_images",
    "grid_latents",
    "interpolate_latents",
    "lerp",
    "slerp",
    "traverse_latents",
    "save_image_batches",
    "save_image_grid",
    "check_model_bytes",
    "read_model_bytes",
]


def __getattr__(name: str):
    if name in _MODULE_OF:
        return getattr(importlib.import_module(_MODULE_OF[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
