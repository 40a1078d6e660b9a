"""Decoder, Encoder and VAEPair: onnxruntime sessions over vaectl's exported graphs (no torch).

What each graph takes and gives is the contract's (vaectl/contract.py); these classes only run them.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .. import contract, layout
from ..contract import GraphInfo, parse_metadata
from ..errors import UserInputError, arg, note, plural
from ..files import to_uint8_images
from ..models.config import VAEConfig, check_guidance, class_index
from ..prior import Prior, compose, prior_named, priors_of
from . import defaults
from .latent import interpolate_latents, traverse_latents
from .safe_load import create_session, model_metadata, read_model_bytes

DEFAULT_BATCH_SIZE = 256
ALL_LABELS = "all"
NO_LABEL = "none"  # the unconditional class (index num_classes) of a model trained with label dropout


def graph_path(path, role: str) -> Path:
    """The `role` graph ("encoder" or "decoder") that `path` names: the file itself, or in a directory what
    `vaectl export --out` wrote there (ROLE.onnx), directly or in its one subfolder holding an export (a run
    directory exported into RUN/onnx)."""
    path = Path(path)
    if not path.is_dir():
        return path
    name = layout.graph_name(role)
    found = layout.export_dirs_in(path, name)
    if len(found) == 1:
        return found[0] / name
    if found:
        raise UserInputError(
            f"{path}: several subfolders hold a {name} ({', '.join(p.name + '/' for p in found)}): give one of them"
        )
    if any((path / ckpt).is_file() for ckpt in (layout.BEST_CHECKPOINT, layout.LAST_CHECKPOINT)):
        raise UserInputError(f"{path}: a training run with no export in it; export it first: vaectl export {path}")
    raise UserInputError(f"{path}: no {name} in this directory (give {an(role)} file or what `vaectl export` wrote)")


def an(noun: str) -> str:
    """'an encoder', 'a decoder'."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


class _Session:
    """One exported graph in onnxruntime: checked bytes -> session -> metadata -> signature checked."""

    role = ""  # "encoder" or "decoder"

    def __init__(self, path, threads: int | None = None, *, session=None):
        """`session`: instead of loading `path`, an object with the onnxruntime.InferenceSession methods used here
        (run, get_inputs, get_outputs, get_modelmeta); vaectl.pytorch.checkpoint_pair passes a PyTorch model so."""
        self.path = graph_path(path, self.role)
        source = str(self.path)
        if session is None:
            session = create_session(read_model_bytes(self.path, self.role), source, threads)
        self.session = session
        self.info: GraphInfo = parse_metadata(model_metadata(self.session, source), source)
        if self.info.role != self.role:
            raise UserInputError(
                f"{source} is an exported {self.info.role}, but {an(self.role)} is expected here "
                f"(check the order of the {arg('encoder')} and {arg('decoder')} arguments)"
            )
        self._check_signature()

    @property
    def name(self) -> str:
        """How messages name this graph: its path, or "the demo model" for the one shipped with vaectl."""
        try:
            from ..demo import DEMO_DIR
        except ImportError:  # an install without the demo model
            return str(self.path)
        return "the demo model" if self.path.resolve().parent == DEMO_DIR.resolve() else str(self.path)

    def _check_signature(self) -> None:
        have_in = {i.name for i in self.session.get_inputs()}
        have_out = {o.name for o in self.session.get_outputs()}
        want_in = {t.name for t in contract.graph_inputs(self.config, self.role)}
        want_out = [t.name for t in contract.graph_outputs(self.config, self.role)]
        if have_in != want_in or not set(want_out) <= have_out:
            raise UserInputError(
                f"{self.path}: its metadata says {self.role}, but its inputs {sorted(have_in)} and outputs "
                f"{sorted(have_out)} are not those of a vaectl {self.role} ({sorted(want_in)} -> {want_out})"
            )

    def _run(
        self,
        first: np.ndarray,
        labels: np.ndarray | None,
        names: list[str],
        batch_size: int = DEFAULT_BATCH_SIZE,
        extra: dict | None = None,
    ) -> list[np.ndarray]:
        """The named outputs for `first` (the graph's image or z input) and labels, in batches, concatenated;
        `extra` inputs (guidance) go with every batch."""
        parts = []
        for start in range(0, len(first), batch_size):
            feed = {contract.PRIMARY_INPUT[self.role]: first[start : start + batch_size], **(extra or {})}
            if labels is not None:
                feed[contract.LABEL] = labels[start : start + batch_size]
            parts.append(self.session.run(names, feed))
        return [np.concatenate(arrays) for arrays in zip(*parts)]

    @property
    def config(self) -> VAEConfig:
        return self.info.config

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.config.image_shape

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def conditional(self) -> bool:
        return self.config.conditional

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.config.class_names or tuple(str(i) for i in range(self.num_classes))

    def label_index(self, label) -> int:
        """A class index from an index or a class name (as typed on the command line); a model trained
        with label dropout also takes "none" (or index num_classes), its unconditional class."""
        if not self.conditional:
            raise UserInputError(f"{arg('label')} given, but {self.name} is an unconditional {self.role}")
        if self.config.no_label_class and (
            label == NO_LABEL or (not isinstance(label, (str, bool)) and label == self.num_classes)
        ):
            return self.num_classes
        if label == NO_LABEL and NO_LABEL not in self.class_names:
            raise UserInputError(
                f"{arg('label', NO_LABEL)} needs a model trained with label dropout; {self.name} has no "
                "unconditional class"
            )
        return class_index(label, self.class_names)

    def label_choices(self) -> str:
        """'a label (one of 0, 1, ..., 9; or none: unconditional)', naming the argument as the caller knows it."""
        names = ", ".join(self.class_names)
        extra = f"; or {NO_LABEL}: unconditional" if self.config.no_label_class else ""
        return f"a {arg('label')} (one of {names}{extra})"

    def labels_for(self, label, n: int) -> np.ndarray | None:
        """int64 (n,) labels for the graph's `label` input, or None for an unconditional graph."""
        if label is None:
            if self.conditional:
                raise UserInputError(f"{self.name} is a conditional {self.role}: give {self.label_choices()}")
            return None
        if isinstance(label, np.ndarray) and np.issubdtype(label.dtype, np.integer):
            if not self.conditional:
                self.label_index(0)  # raises the "unconditional" error
            labels = label.astype(np.int64).reshape(-1)
            bad = labels[(labels < 0) | (labels >= self.config.label_slots)]
            if len(bad):
                self.label_index(int(bad[0]))  # raises the out-of-range error
        elif isinstance(label, (list, tuple, np.ndarray)):
            labels = np.array(
                [self.label_index(v.item() if isinstance(v, np.generic) else v) for v in label], dtype=np.int64
            )
        else:
            return np.full(n, self.label_index(label), dtype=np.int64)
        if len(labels) != n:
            raise UserInputError(f"got {plural(len(labels), 'label')} for {plural(n, 'image')}")
        return labels


class Decoder(_Session):
    """`decoder.onnx`: z (N, D) [+ label (N,)] -> image (N, C, H, W) in [0, 1].

    Sampling draws z from a prior (vaectl.prior): by default the one the export fitted to the encoded
    training data when the graph carries one, else N(0, I); `prior="normal"` (or a Prior) picks another."""

    role = "decoder"

    @property
    def priors(self) -> list[Prior]:
        """The priors this decoder can sample from, its default first (always includes N(0, I), "normal")."""
        if not hasattr(self, "_priors"):
            self._priors = priors_of(self.info)
        return self._priors

    def prior(self, name=None) -> Prior:
        """The prior called `name` ("normal", "gmm"), a Prior passed through, or (None) the default."""
        if isinstance(name, Prior):
            if name.latent_dim != self.latent_dim:
                raise UserInputError(
                    f"the prior has {name.latent_dim} latent dimensions, the decoder {self.latent_dim}"
                )
            return name
        if name is None:
            return self.priors[0]
        return prior_named(self.info, name, str(self.path))

    def guidance_feed(self, guidance) -> dict[str, np.ndarray]:
        """The guidance input for weight `guidance` (None: the model's own weight); {} for an unguided decoder."""
        if guidance is None:
            return {contract.GUIDANCE: np.array([self.config.guidance], np.float32)} if self.config.guided else {}
        if not self.config.guided:
            raise UserInputError(
                f"{arg('guidance')} given, but {self.name} takes no guidance weight "
                "(an unconditional model, or a conditional one trained with guidance 1 and no label dropout)"
            )
        return {contract.GUIDANCE: np.array([check_guidance(guidance)], np.float32)}

    def decode_float(self, z, label=None, batch_size: int = DEFAULT_BATCH_SIZE, guidance=None) -> np.ndarray:
        """float32 (N, C, H, W) in [0, 1]; refuses non-finite output. guidance: a guided decoder's weight
        w (1 plain conditional, 0 the reference: "no label" or the average label) [None: the weight in the graph]."""
        extra = self.guidance_feed(guidance)
        z = np.asarray(z, dtype=np.float32)
        if z.ndim == 1:
            z = z[None]
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise UserInputError(f"{arg('z')}: expected latents of shape (N, {self.latent_dim}), got {z.shape}")
        if not np.isfinite(z).all():
            raise UserInputError("latents contain NaN or inf")
        if len(z) == 0:
            return np.zeros((0, *self.image_shape), np.float32)
        (images,) = self._run(z, self.labels_for(label, len(z)), [contract.IMAGE], batch_size, extra)
        if images.shape[1:] != self.image_shape:
            raise UserInputError(
                f"{self.path}: decoder returned images of shape {images.shape[1:]}, "
                f"its metadata says {self.image_shape}"
            )
        if not np.isfinite(images).all():
            raise UserInputError(f"{self.path}: the decoder produced NaN or inf pixels; refusing to write them")
        return images

    def base_logits(self, z, label=None) -> np.ndarray:
        """A row-context decoder's pixel-logit term from z alone, float32 (N, C, H, W) (for scoring)."""
        _require_context(self)
        z = np.asarray(z, dtype=np.float32)
        extra = self.guidance_feed(1.0) if self.config.guided else {}  # scoring: the plain conditional model
        return self._run(z, self.labels_for(label, len(z)), [contract.BASE_LOGITS], DEFAULT_BATCH_SIZE, extra)[0]

    def decode(self, z, label=None, batch_size: int = DEFAULT_BATCH_SIZE, guidance=None) -> np.ndarray:
        """uint8 images (N, H, W) or (N, H, W, 3) decoded from latents z (N, D)."""
        return to_uint8_images(self.decode_float(z, label, batch_size, guidance))

    def latents(self, n: int, seed: int | None = None, temperature: float = 1.0, prior=None, label=None) -> np.ndarray:
        """(n, D) float32 draws from the prior (default: the graph's), spread scaled by `temperature`
        (N(0, I): z ~ N(0, temperature^2 I)). A prior fitted per class needs the `label`."""
        _check_count(n)
        _check_temperature(temperature)
        chosen = self.prior(prior)
        labels = None if label is None else self.labels_for(label, n)
        return chosen.latents(n, _rng(seed), temperature, labels)

    def sample_count(self, n: int, label=None) -> int:
        """How many images `sample(n, label=label)` returns: n, or n per class with label="all"."""
        return n * self.num_classes if _is_all(label) else n

    def iter_sample(
        self,
        n: int,
        seed: int | None = None,
        temperature: float = 1.0,
        label=None,
        same_z: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        guidance=None,
        prior=None,
    ) -> Iterator[np.ndarray]:
        """Like `sample`, in uint8 batches of at most `batch_size` images: memory stays flat for any n.

        The latents come from one numpy Generator stream, a fixed number of normals per image, so the images
        do not depend on batch_size.
        """
        _check_count(n)
        _check_temperature(temperature)
        chosen = self.prior(prior)
        if batch_size < 1:
            raise UserInputError(f"{arg('batch_size')} must be at least 1, got {batch_size}")
        self.guidance_feed(guidance)  # a bad weight fails before the first batch
        every_class = _is_all(label)
        if every_class and not self.conditional:
            self.label_index(0)  # raises the "unconditional decoder" error
        if same_z and not every_class:
            raise UserInputError(
                f"{arg('same_z', True)} goes with {arg('label', ALL_LABELS)} (the same latents drawn for every class)"
            )
        fixed = None if every_class or label is None else self.label_index(label)
        if self.conditional and label is None:
            note(
                f"{self.name} is conditional and no {arg('label')} was given: image i is of class i mod "
                f"{self.num_classes} ({', '.join(self.class_names[:3])}, ...); give {arg('label')} for one class"
            )
        total = self.sample_count(n, label)
        rng = _rng(seed)
        width = chosen.normals_per_sample
        shared = rng.standard_normal((n, width)) if same_z else np.zeros(0)
        for start in range(0, total, batch_size):
            idx = np.arange(start, min(start + batch_size, total))
            normals = shared[idx % n] if same_z else rng.standard_normal((len(idx), width))  # (B, width)
            if not self.conditional:
                labels = None
            elif every_class:
                labels = idx // n  # class-major: n images of class 0, then n of class 1, ...
            elif fixed is not None:
                labels = np.full(len(idx), fixed)
            else:
                labels = idx % self.num_classes  # no label asked for: cycle through the classes (noted above)
            labels = None if labels is None else labels.astype(np.int64)
            z = compose(*chosen.parts(normals, labels), temperature)  # (B, D) float32
            yield self.decode(z, labels, batch_size, guidance)

    def sample(
        self,
        n: int,
        seed: int | None = None,
        temperature: float = 1.0,
        label=None,
        same_z: bool = False,
        guidance=None,
        prior=None,
    ) -> np.ndarray:
        """uint8 images decoded from latents drawn from the prior: z = center + temperature * offset
        (prior: None for the graph's default, "normal" for N(0, I), "gmm" for the fitted mixture, or a Prior).

        label: None (a conditional decoder cycles through its classes), a class index or name, or
        "all": n images per class, class-major; with same_z=True every class gets the same n latents,
        so each column shows one style across classes; a label-dropout model also takes "none" (unconditional).
        guidance: a guided decoder's weight (1 plain conditional, > 1 a stronger pull to the label, 0 the
        reference: unconditional or the average label) [None: the weight stored in the graph, `vaectl info` shows it].
        """
        return np.concatenate(
            list(self.iter_sample(n, seed, temperature, label, same_z, guidance=guidance, prior=prior))
        )

    def interpolate(self, z_a, z_b, steps: int, method: str = "slerp", label=None) -> np.ndarray:
        """uint8 images decoded along the path from latent z_a to z_b (both included)."""
        return self.decode(interpolate_latents(z_a, z_b, steps, method), label)

    def traverse(
        self,
        z0=None,
        dims=None,
        span: float = defaults.TRAVERSE_SPAN,
        steps: int = defaults.TRAVERSE_STEPS,
        label=None,
        seed: int | None = None,
        prior=None,
    ) -> np.ndarray:
        """uint8 images, one row of `steps` per dim in `dims` (None: all): that latent component sweeps
        the prior's mean -span..+span of its standard deviations (N(0, I): -span..span), the others stay
        at z0 (default: the prior's mean; or, given `seed`, a draw from the prior)."""
        chosen = self.prior(prior)
        labels = self.labels_for(label, 1) if label is not None else None
        index = None if labels is None else int(labels[0])
        mean, std = chosen.moments(index)
        if z0 is None:  # the prior's mean, or a random point when a seed is given
            z0 = mean if seed is None else self.latents(1, seed, prior=chosen, label=label)[0]
        z0 = np.asarray(z0, dtype=np.float32).reshape(-1)
        if z0.shape[0] != self.latent_dim:
            raise UserInputError(f"z0 has {plural(z0.shape[0], 'component')}, the decoder takes {self.latent_dim}")
        return self.decode(traverse_latents(z0, dims, span, steps, mean, std), label)


class Encoder(_Session):
    """`encoder.onnx`: image (N, C, H, W) in [0, 1] [+ label (N,)] -> mu, logvar (N, D)."""

    role = "encoder"

    def prepare(self, images) -> np.ndarray:
        """Paths, PIL images or arrays of any size and mode -> float32 (N, C, H, W) for this encoder."""
        from .inputs import prepare_images  # the image readers: a decoder alone never loads them

        return prepare_images(images, self.image_shape)

    def encode(
        self, images, label=None, batch_size: int = DEFAULT_BATCH_SIZE, refine_steps: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(mu, logvar), each float32 (N, D), for images in any form `prepare` accepts. refine_steps: a refining
        encoder's steps from the encoder's mu (0: none) [the model's own, config.refine_steps]."""
        mu, logvar = self._encode(images, label, [contract.MU, contract.LOGVAR], batch_size, refine_steps)
        return mu, logvar

    def refine_feed(self, refine_steps: int | None) -> dict[str, np.ndarray]:
        """The refine_steps input for `refine_steps` (None: the model's own); {} for an encoder without one."""
        whole = isinstance(refine_steps, numbers.Integral) and not isinstance(refine_steps, bool)
        if refine_steps is not None and (not whole or refine_steps < 0):
            raise UserInputError(f"{arg('refine_steps')} must be a whole number >= 0, got {refine_steps}")
        if not self.config.refine_steps:
            if refine_steps:
                raise UserInputError(
                    f"{arg('refine_steps')} given, but {self.path} does not refine its latent (exported with "
                    f"{arg('refine_steps', 0)}, or not a resnet)"
                )
            return {}
        steps = self.config.refine_steps if refine_steps is None else refine_steps
        return {contract.REFINE_STEPS: np.array([steps], np.int64)}

    def encode_with_context(self, images, label=None, batch_size: int = DEFAULT_BATCH_SIZE):
        """A row-context model's (mu, logvar, context_logits) in one pass; context_logits (N, C, H, W) is each
        pixel's logit term from the real rows above it (for scoring)."""
        _require_context(self)
        mu, logvar, context = self._encode(
            images, label, [contract.MU, contract.LOGVAR, contract.CONTEXT_LOGITS], batch_size
        )
        return mu, logvar, context

    def _encode(self, images, label, names: list[str], batch_size: int, refine_steps=None) -> list[np.ndarray]:
        if label is None and self.conditional:
            self.labels_for(None, 0)  # the missing label is the error, before any image is read (or noted)
        extra = self.refine_feed(refine_steps)
        x = self.prepare(images)
        outputs = self._run(x, self.labels_for(label, len(x)), names, batch_size, extra)
        mu = outputs[0]
        if mu.shape[1] != self.latent_dim or not np.isfinite(mu).all():
            raise UserInputError(f"{self.path}: the encoder produced latents of the wrong size or NaN/inf")
        return outputs


class VAEPair:
    """An encoder and a decoder exported from the same model."""

    def __init__(self, encoder: Encoder, decoder: Decoder):
        e, d = encoder, decoder
        if e.latent_dim != d.latent_dim:
            raise UserInputError(
                f"encoder {e.path} has {e.latent_dim} latent dimensions but decoder {d.path} has "
                f"{d.latent_dim}: they come from different models"
            )
        if e.image_shape != d.image_shape or e.num_classes != d.num_classes:
            raise UserInputError(
                f"encoder {e.path} (images {e.image_shape}, {e.num_classes} classes) and decoder "
                f"{d.path} (images {d.image_shape}, {d.num_classes} classes) come from different models"
            )
        sha_e, sha_d = e.info.checkpoint_sha256, d.info.checkpoint_sha256
        if sha_e and sha_d and sha_e != sha_d:
            raise UserInputError(
                f"encoder {e.path} and decoder {d.path} were exported from different checkpoints "
                f"({sha_e[:12]} vs {sha_d[:12]}); re-export both from one run"
            )
        self.encoder, self.decoder = e, d

    @classmethod
    def load(cls, encoder_path, decoder_path, threads: int | None = None) -> VAEPair:
        return cls(Encoder(encoder_path, threads), Decoder(decoder_path, threads))

    def reconstruct(self, images, label=None) -> np.ndarray:
        """uint8 reconstructions through the posterior mean: decode(mu(x))."""
        mu, _ = self.encoder.encode(images, label)
        return self.decoder.decode(mu, label)

    def interpolate(self, a, b, steps: int, method: str = "slerp", label=None) -> np.ndarray:
        """uint8 images along the latent path between the posterior means of images a and b."""
        mu, _ = self.encoder.encode([a, b], label)
        return self.decoder.interpolate(mu[0], mu[1], steps, method, label)

    def traverse(
        self,
        z0,
        dims=None,
        span: float = defaults.TRAVERSE_SPAN,
        steps: int = defaults.TRAVERSE_STEPS,
        label=None,
        prior=None,
    ) -> np.ndarray:
        """Decoder.traverse from z0: a latent vector (D,), or an image whose posterior mean is used."""
        z = np.asarray(z0) if isinstance(z0, np.ndarray) and z0.ndim == 1 else self.encoder.encode(z0, label)[0][0]
        return self.decoder.traverse(z, dims, span, steps, label, prior=prior)


def _require_context(graph: _Session) -> None:
    if not graph.config.row_context:
        raise UserInputError(f"{graph.name}: this model has no row context (its decoder sees z alone)")


def _rng(seed) -> np.random.Generator:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise UserInputError(f"{arg('seed')} must be a non-negative integer, got {seed!r}")
    return np.random.default_rng(seed)


def _check_count(n) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise UserInputError(f"{arg('n')} must be a positive number of images, got {n}")


def _check_temperature(t) -> None:
    if not np.isfinite(t) or t < 0:
        raise UserInputError(f"{arg('temperature')} must be a finite number >= 0, got {t}")


def _is_all(label) -> bool:
    return isinstance(label, str) and label == ALL_LABELS
