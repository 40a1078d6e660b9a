"""Checkpoints: tensors and plain Python data only, written atomically, loaded with weights_only=True,
and checked against a digest of their contents stored inside them.

torch.load does not check the zip's CRCs, so flipped bits in a tensor's bytes would load silently; every
checkpoint therefore carries `payload_sha256`, a SHA-256 over a canonical encoding of everything else in it
(sorted keys; each tensor's dtype, shape and bytes; plain values exactly), recomputed on every load from
what was actually loaded. Checkpoints written before the digest existed load with a note.
"""

from __future__ import annotations

import hashlib
import io
import math
import pickle
import re
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__, layout
from ..errors import CorruptCheckpointError, UserInputError, arg, note
from ..files import atomic_write
from .config import VAEConfig

FORMAT = "vaectl.checkpoint"
FORMAT_VERSION = 1  # payload_sha256 is an addition older readers ignore, so the format keeps its number
DIGEST_KEY = "payload_sha256"


def _feed(h, value) -> None:
    """Feed one value to the hash, tagged by type and length-prefixed, so that different payloads never
    encode to the same bytes."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(b"T" + str(t.dtype).encode() + b"|" + ",".join(map(str, t.shape)).encode() + b"|")
        data = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b""
        h.update(struct.pack("<Q", len(data)))
        h.update(data)
    elif isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: (type(kv[0]).__name__, repr(kv[0])))
        h.update(b"D" + struct.pack("<Q", len(items)))
        for k, v in items:
            _feed(h, k)
            _feed(h, v)
    elif isinstance(value, (list, tuple)):
        h.update((b"L" if isinstance(value, list) else b"U") + struct.pack("<Q", len(value)))
        for v in value:
            _feed(h, v)
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        h.update(b"S" + struct.pack("<Q", len(data)) + data)
    elif value is None or isinstance(value, bool):  # before int: bool is an int
        h.update(b"N" if value is None else (b"1" if value else b"0"))
    elif isinstance(value, int):
        data = str(value).encode()
        h.update(b"I" + struct.pack("<Q", len(data)) + data)
    elif isinstance(value, float):
        h.update(b"F" + (value.hex() if math.isfinite(value) else repr(value)).encode() + b"|")
    elif isinstance(value, (torch.dtype, torch.device, torch.Size)):
        h.update(b"O" + type(value).__name__.encode() + b"|" + str(value).encode() + b"|")
    else:
        raise TypeError(f"a checkpoint cannot hold a {type(value).__name__}")


def payload_digest(payload: dict) -> str:
    """SHA-256 of the canonical encoding of a checkpoint's contents, without its own digest."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != DIGEST_KEY})
    return h.hexdigest()


def save_state(path, state: dict) -> None:
    """Atomic: temp file, fsync, os.replace. A crash mid-save leaves the previous file intact.

    Serialized in memory first, so a full disk surfaces as the writer's OSError (files.py maps it), never
    as an error inside torch's zip writer."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    payload[DIGEST_KEY] = payload_digest(payload)
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write(path, lambda f: f.write(buf.getbuffer()))


def resolve_checkpoint(path, last: bool = False) -> Path:
    """A run directory (best.pt, or last.pt with last=True, falling back to the other) or a file."""
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"{path}: no such file or directory")
    if path.is_dir():
        order = (layout.checkpoint_name(last), layout.checkpoint_name(not last))
        for name in order:
            if (path / name).is_file():
                return path / name
        raise UserInputError(f"{path}: no checkpoint (best.pt or last.pt) in this directory")
    return path


def read_state(path, map_location="cpu") -> dict:
    """A checkpoint file's payload, checked: torch's zip format, weights only, a known format, its digest.
    Never falls back to weights_only=False."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise UserInputError(f"{path}: checkpoint file is empty (0 bytes)")
    # save_state always writes torch's zip format. Anything else (text, images, raw pickles) is
    # refused before unpickling: torch's weights-only unpickler raises KeyError/IndexError on junk.
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise UserInputError(f"{path}: cannot read checkpoint ({e.strerror or e})") from None
    if magic != b"PK\x03\x04":
        raise UserInputError(f"{path}: not a vaectl checkpoint (not a PyTorch zip archive)")
    if not zipfile.is_zipfile(path):  # a zip archive whose directory, written last, is missing: cut short
        raise UserInputError(
            f"{path}: checkpoint is truncated ({path.stat().st_size:,} bytes, its end is missing: a copy or a save "
            "was cut short); use a complete copy or an earlier checkpoint"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message goes on to suggest weights_only=False: exactly wrong advice here, so keep only what it found
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" (it asks to import {found.group(1)})" if found else ""
        raise UserInputError(
            f"{path}: refused to load checkpoint: it holds more than tensors and plain data{what}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserInputError(f"{path}: not a readable checkpoint (truncated or corrupt?): {msg}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserInputError(f"{path}: not a vaectl checkpoint")
    if not isinstance(state.get("format_version", 0), int):
        raise UserInputError(f"{path}: not a vaectl checkpoint (format_version {state['format_version']!r})")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise UserInputError(f"{path}: checkpoint format {state['format_version']} is newer than this vaectl supports")
    check_digest(path, state)
    return state


def check_digest(path: Path, ckpt: dict) -> None:
    """Raise CorruptCheckpointError unless the stored digest matches what was loaded (no digest: a note)."""
    stored = ckpt.pop(DIGEST_KEY, None)
    if stored is None:
        note(f"{path} has no content digest (written by an earlier vaectl), so it cannot be checked for corruption")
        return
    try:
        actual = payload_digest(ckpt)
    except TypeError as e:
        raise CorruptCheckpointError(f"{path}: checkpoint is corrupt ({e})") from None
    if stored != actual:
        raise CorruptCheckpointError(
            f"{path}: checkpoint is corrupt: its contents do not match the digest stored "
            "in it (damaged on disk or in transfer); use another copy or an earlier checkpoint"
        )


# ----------------------------------------------------------------------------------------- the object


@dataclass
class TrainingState:
    """Where a run stands; saved in every checkpoint, so a resumed run continues bit for bit."""

    epoch: int = 0  # epochs finished
    step_in_epoch: int = 0
    global_step: int = 0
    best_val: float = math.inf
    sums: list = field(default_factory=lambda: [0.0, 0.0, 0.0, 0])  # this epoch's loss, recon, kl sums; images
    kl_per_dim: list | None = None  # the last validation's, exported into the graphs' metadata


Encode = Callable[
    [np.ndarray, "np.ndarray | None"], tuple
]  # images (N, C, H, W) in [0, 1], labels -> mu, logvar[, ctx]
Decode = Callable[..., np.ndarray]  # z (N, D), labels[, context logits] -> pixel means (N, C, H, W)


@dataclass
class Checkpoint:
    """A vaectl checkpoint: the model (config and weights), the run's settings, and where its training stands.

    The torch side's one view of a run: training writes and resumes it, export, eval, vaectl.pytorch and doctor
    read it. On disk it is a dict of tensors and plain data (to_state / from_state), loaded weights-only."""

    config: VAEConfig
    weights: dict  # the VAE's state_dict
    train: dict = field(default_factory=dict)  # the run's TrainConfig as plain data ({} when not recorded)
    state: TrainingState = field(default_factory=TrainingState)
    optimizer: dict | None = None  # the optimizer's state_dict (None in a weights-only checkpoint)
    scheduler: dict | None = None  # {"name", "step", "total_steps"}: for the record, the loop recomputes it
    rng: dict | None = None  # {"torch": ByteTensor, "cuda": ByteTensor or None}
    vaectl_version: str = __version__
    path: Path | None = None  # where it was read from (None until saved or loaded)
    _model: object = field(default=None, repr=False, compare=False)

    # --------------------------------------------------------------------------- disk

    @classmethod
    def load(cls, source, *, last: bool = False, map_location="cpu") -> Checkpoint:
        """From a run directory (best.pt; last.pt with last=True, each falling back to the other) or a file."""
        path = resolve_checkpoint(source, last=last)
        return cls.from_state(read_state(path, map_location), path)

    def save(self, path) -> None:
        save_state(path, self.to_state())

    def to_state(self) -> dict:
        """The payload on disk: tensors and plain data only."""
        s = self.state
        return {
            "vaectl_version": self.vaectl_version,
            "config": self.config.to_dict(),
            "train": dict(self.train),
            "model": self.weights,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "epoch": s.epoch,
            "step_in_epoch": s.step_in_epoch,
            "global_step": s.global_step,
            "epoch_sums": list(s.sums),
            "best_val": s.best_val,
            "kl_per_dim": s.kl_per_dim,
            "rng": self.rng,
        }

    @classmethod
    def from_state(cls, state: dict, path=None) -> Checkpoint:
        where = path or "checkpoint"
        weights = state.get("model")
        if not isinstance(weights, dict):
            raise UserInputError(f"{where}: checkpoint holds no model weights")
        train = state.get("train") or {}
        try:
            progress = TrainingState(
                int(state.get("epoch", 0)),
                int(state.get("step_in_epoch", 0)),
                int(state.get("global_step", 0)),
                float(state.get("best_val", math.inf)),
                list(state.get("epoch_sums") or [0.0, 0.0, 0.0, 0]),
                state.get("kl_per_dim"),
            )
        except (TypeError, ValueError):
            raise UserInputError(f"{where}: checkpoint's training state is malformed") from None
        return cls(
            config=VAEConfig.from_dict(state.get("config", {})),
            weights=weights,
            train=dict(train) if isinstance(train, dict) else {},
            state=progress,
            optimizer=state.get("optimizer"),
            scheduler=state.get("scheduler"),
            rng=state.get("rng"),
            vaectl_version=str(state.get("vaectl_version", "")),
            path=Path(path) if path is not None else None,
        )

    @property
    def run_dir(self) -> Path | None:
        """The run directory the checkpoint sits in (None when it was not read from a file)."""
        return None if self.path is None else self.path.parent

    @property
    def kl_per_dim(self) -> list | None:
        return self.state.kl_per_dim

    @property
    def hold_out_seed(self) -> int | None:
        """The seed that chose the run's hold-out (its --seed, as load_run_data reads it); None when the
        checkpoint records no training settings."""
        return int(self.train.get("seed", 0)) if self.train else None

    @property
    def resumable(self) -> bool:
        return bool(self.train) and self.optimizer is not None and self.rng is not None

    # --------------------------------------------------------------------------- the model

    def model(self):
        """The VAE with these weights, in eval mode on the CPU (made once); UserInputError for weights that
        do not fit the config or are not finite."""
        if self._model is None:
            from .vae import VAE

            model = VAE(self.config)
            try:
                model.load_state_dict(self.weights)
            except (RuntimeError, KeyError, TypeError) as e:
                raise UserInputError(
                    f"{self.path}: weights do not match the stored config: {str(e).splitlines()[0]}"
                ) from None
            for name, t in self.weights.items():
                if torch.is_floating_point(t) and not torch.isfinite(t).all():
                    raise UserInputError(f"{self.path}: weight {name} contains NaN or inf")
            self._model = model.eval()
        return self._model

    def numpy_encode(self, refine: bool = True) -> Encode:
        """The encoder as numpy in, numpy out: (images, labels) -> (mu, logvar) [+ context logits of a
        row-context model], as the scorer and the prior fit take it; refine=False: mu as the encoder gives it,
        without the model's refinement steps (VAE.encode)."""
        model, row_context = self.model(), self.config.row_context
        from ..threads import choose_threads

        torch.set_num_threads(choose_threads())  # encoding a dataset is export's and eval's longest torch work

        @torch.no_grad()
        def encode(x: np.ndarray, y: np.ndarray | None):
            x_t, y_t = torch.from_numpy(x), _labels(y)
            mu, logvar = model.encode(x_t, y_t) if refine else model.encoder(x_t, y_t)  # (N, D), (N, D)
            if not row_context:
                return mu.numpy(), logvar.numpy()
            return mu.numpy(), logvar.numpy(), model.decoder.context(torch.from_numpy(x)).numpy()  # + (N, C, H, W)

        return encode

    def numpy_decode(self) -> Decode:
        """The decoder as numpy in, numpy out: (z, labels[, context logits]) -> pixel means (N, C, H, W)."""
        model = self.model()

        @torch.no_grad()
        def decode(z: np.ndarray, y: np.ndarray | None, context: np.ndarray | None = None) -> np.ndarray:
            if context is None:
                return torch.sigmoid(model.decoder(torch.from_numpy(z), _labels(y))).numpy()
            logits = model.decoder.base_logits(torch.from_numpy(z), _labels(y)) + torch.from_numpy(context)
            return torch.sigmoid(logits).numpy()

        return decode

    # --------------------------------------------------------------------------- the data and the prior

    def training_data(self, data_dir=None, dataset: str | None = None):
        """The images the run trained on, as it recorded them, or `data_dir` / `dataset` in their place; brought
        to the model's image shape. UserInputError naming data_dir when they cannot be read from here."""
        from ..data.sources import load_run_data

        return load_run_data(self.train, self.config, self.path or "the checkpoint", data_dir=data_dir, dataset=dataset)

    def prior_plan(self, prior: str | None, data_dir=None) -> PriorPlan:
        """What to do about the fitted prior for export's or eval's `prior` choice: the data to fit it to, or
        why none is fitted. An explicit choice (or data_dir) that cannot be met is an error; the default (None)
        fits one when the training data is at hand and otherwise says why not."""
        from ..prior.fit import parse_choice

        choice = parse_choice(prior)
        if choice.kind == "normal":
            if data_dir is not None:
                raise UserInputError(
                    f"{arg('data_dir')} is the data to fit the prior to; {arg('prior', 'normal')} fits none"
                )
            return PriorPlan(self, choice, None, f"none fitted ({arg('prior', 'normal')})")
        try:
            return PriorPlan(self, choice, self.training_data(data_dir))
        except UserInputError as e:
            why = e.args[0]  # with its arg() markers, shown as flags on the command line
            if choice.explicit or data_dir is not None:
                raise UserInputError(f"cannot fit the prior: {why}") from None
            return PriorPlan(self, choice, None, f"none fitted, the training data is not at hand ({why})")


@dataclass
class PriorPlan:
    """The prior a checkpoint's export carries: `data` to fit it to, or `why_none` (a phrase) when none is."""

    checkpoint: Checkpoint
    choice: object  # prior.fit.PriorChoice
    data: object | None  # the ImageDataset to fit to
    why_none: str = ""

    def fit(self) -> tuple[dict | None, str]:
        """(the prior document or None, the log line saying what was fitted or why nothing was)."""
        if self.data is None:
            return None, f"prior: {self.why_none}"
        from ..prior.fit import fit_prior

        # The prior follows the encoder's own q(z | x), unrefined: the z the decoder was trained on (and refining
        # every training image would cost export far more than the fit itself).
        return fit_prior(self.checkpoint.numpy_encode(refine=False), self.checkpoint.config, self.data, self.choice)


def _labels(y: np.ndarray | None) -> torch.Tensor | None:
    return None if y is None else torch.from_numpy(np.asarray(y, dtype=np.int64))
