"""A checkpoint behind vaectl.infer's interface, run by PyTorch: the same calls before the export as after it.

    from vaectl.pytorch import checkpoint_pair
    model = checkpoint_pair("runs/tutorial")     # a vaectl.infer.VAEPair whose two graphs are the PyTorch model
    model.decoder.sample(64, seed=0)             # Decoder("onnx/decoder.onnx").sample(64, seed=0, prior="normal")
    checkpoint_pair("runs/tutorial", prior=None) # also the prior export fits: the same default samples as the export
Each graph is the module `vaectl export` traces (export.graphs.module_for_export), fed and read under the
contract's tensor names through the export's own reference (export.verify.torch_outputs), and it carries the
metadata the export would write. So drawing latents, labels, guidance and the informative dimensions run the
code the exported graphs run; only the arithmetic is PyTorch's instead of onnxruntime's.
Like doctor/, this joins siblings (export/ and infer/), which do not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import contract
from .contract import ROLES, build_metadata
from .export.verify import torch_outputs
from .files import file_sha256
from .infer import Decoder, Encoder, VAEPair
from .models.checkpoint import Checkpoint


@dataclass(frozen=True)
class _Value:
    name: str  # all vaectl reads of onnxruntime's NodeArg


@dataclass(frozen=True)
class _ModelMeta:
    custom_metadata_map: dict[str, str]  # all vaectl reads of onnxruntime's ModelMetadata


class TorchSession:
    """One role ("encoder" or "decoder") of a PyTorch VAE with the onnxruntime.InferenceSession methods vaectl uses."""

    def __init__(
        self,
        model,
        role: str,
        checkpoint_sha256: str,
        kl_per_dim=None,
        prior: dict | None = None,
        hold_out_seed: int | None = None,
    ):
        self.model, self.role = model, role
        self.metadata = build_metadata(model.config, role, checkpoint_sha256, "fp32", kl_per_dim, prior, hold_out_seed)
        self.input_names = [t.name for t in contract.graph_inputs(model.config, role)]
        self.output_names = [t.name for t in contract.graph_outputs(model.config, role)]

    def get_inputs(self) -> list[_Value]:
        return [_Value(name) for name in self.input_names]

    def get_outputs(self) -> list[_Value]:
        return [_Value(name) for name in self.output_names]

    def get_modelmeta(self) -> _ModelMeta:
        return _ModelMeta(dict(self.metadata))

    def run(self, output_names, input_feed: dict) -> list[np.ndarray]:
        """The named outputs (None: all) for the feed, like InferenceSession.run; inputs in the graph's order."""
        feed = {name: np.ascontiguousarray(input_feed[name]) for name in self.input_names if name in input_feed}
        outputs = torch_outputs(self.model, self.role, feed)
        return [outputs[name] for name in (output_names or self.output_names)]


def checkpoint_pair(source, last: bool = False, prior: str | None = "normal") -> VAEPair:
    """The checkpoint of a run directory (best.pt; last.pt with last=True) or a checkpoint file, as a VAEPair
    run by PyTorch on the CPU. Its encoder and decoder take and give what the exported graphs do.

    prior: "normal", N(0, I) only (nothing to fit: opens at once); or export's --prior (None: gmm when the
    training data is at hand, "gmm", "gmm:K"), the same fit `vaectl export` makes (seconds), so that the
    decoder samples by default what the exported one does."""
    ckpt = Checkpoint.load(source, last=last)
    model, path = ckpt.model(), ckpt.path
    sha, kl = file_sha256(path), ckpt.kl_per_dim
    spec = None if prior == "normal" else ckpt.prior_plan(prior).fit()[0]
    sessions = {
        role: TorchSession(model, role, sha, kl, spec if role == "decoder" else None, ckpt.hold_out_seed)
        for role in ROLES
    }
    return VAEPair(Encoder(path, session=sessions["encoder"]), Decoder(path, session=sessions["decoder"]))
