"""The named steps of `train()` (training/loop.py) that set a run up and describe it: resume, data on the
device, the model's config, restoring state, what a checkpoint holds, the log lines."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch

from ..contract import informative_dims
from ..data import print_notes
from ..data.sources import load_training_data
from ..errors import UserInputError, arg, plural
from ..models import VAEConfig
from ..models.checkpoint import Checkpoint, TrainingState
from ..models.vae import VAE
from ..scoring import DENSITIES
from .config import TrainConfig
from .host_images import images_for
from .runtime import Processes, to_host

# After a resume, rank r > 0 reseeds from (seed, r, step); the stride is a prime larger than any realistic
# step count, so no two (rank, step) pairs share a seed.
RANK_SEED_STRIDE = 1_000_003


def load_resume(resume, resume_epochs: int | None, device: str) -> tuple[Checkpoint, TrainConfig]:
    """The checkpoint to continue and its run's own settings (only the device may change)."""
    ckpt = Checkpoint.load(resume, last=True)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    if not ckpt.resumable:
        raise UserInputError(f"{ckpt.path}: checkpoint has no resumable training state")
    try:
        tcfg = TrainConfig(**{k: v for k, v in ckpt.train.items() if k in known})
    except (TypeError, ValueError):
        raise UserInputError(f"{ckpt.path}: checkpoint has no resumable training state") from None
    done = ckpt.state.epoch
    tcfg.out, tcfg.device = str(ckpt.run_dir), device
    if resume_epochs is not None:
        if resume_epochs < 1:
            raise UserInputError(f"{arg('resume_epochs')} must be at least 1, got {resume_epochs}")
        if resume_epochs < done:
            raise UserInputError(
                f"{arg('resume_epochs', resume_epochs)}: the run in {tcfg.out} has already trained {plural(done, 'epoch')}"
            )
        tcfg.epochs = resume_epochs
    tcfg.validate()
    return ckpt, tcfg


def load_data_on_device(tcfg: TrainConfig, procs: Processes):
    """(dataset, x_train, y_train, x_val, y_val): uint8 images (N, C, H, W) and int64 labels (N,) on the device."""
    ds = load_training_data(
        tcfg.data, tcfg.dataset, tcfg.image_size, tcfg.channels, tcfg.cache_dir, tcfg.seed, tcfg.skip_bad_images
    )
    if procs.main:
        print_notes(ds)
    if tcfg.conditional and not ds.has_labels:
        raise UserInputError(
            f"{arg('conditional', True)} needs labels, but dataset {ds.name!r} has none "
            "(IDX label files, or image subfolders named after classes)"
        )
    to = procs.device
    x_train, x_val = images_for(ds, to)  # tensors on the device, or read from the image store per batch
    y_train = torch.from_numpy(ds.train_labels).to(to) if tcfg.conditional else None
    y_val = torch.from_numpy(ds.test_labels).to(to) if tcfg.conditional else None
    return ds, x_train, y_train, x_val, y_val


def model_config(ds, tcfg: TrainConfig, model_fields: Mapping | None, ckpt: Checkpoint | None) -> VAEConfig:
    """The checkpoint's config on resume, else the resolved fields completed by what the data says."""
    if ckpt is not None:
        cfg = ckpt.config
        if tuple(ds.image_shape) != cfg.image_shape:
            raise UserInputError(
                f"data images are {ds.image_shape} but the checkpoint's model expects {cfg.image_shape}"
            )
        return cfg
    c, h, w = ds.image_shape
    data_fields = dict(channels=c, height=h, width=w, dataset=ds.name)
    if tcfg.conditional:
        data_fields.update(num_classes=len(ds.class_names), class_names=ds.class_names)
    return VAEConfig(**{**dict(model_fields or {}), **data_fields})


def restore(ckpt: Checkpoint, model: VAE, opt, tcfg: TrainConfig, procs: Processes) -> TrainingState:
    """Weights, optimizer, progress and RNG state from the checkpoint."""
    model.load_state_dict(ckpt.weights)
    opt.load_state_dict(ckpt.optimizer)
    progress = dataclasses.replace(ckpt.state, sums=list(ckpt.state.sums))
    torch.set_rng_state(ckpt.rng["torch"])
    device = procs.device
    if device.type == "cuda" and ckpt.rng.get("cuda") is not None:
        torch.cuda.set_rng_state(ckpt.rng["cuda"], device)
    if procs.rank > 0:  # the checkpoint holds rank 0's state; other ranks keep drawing different noise
        progress.sums = [0.0, 0.0, 0.0, 0]  # rank 0's saved sums already cover all ranks
        seed = tcfg.seed + RANK_SEED_STRIDE * procs.rank + progress.global_step
        torch.manual_seed(seed)
        if device.type == "cuda":
            torch.cuda.manual_seed(seed)
    return progress


def checkpoint_of(
    cfg: VAEConfig, tcfg: TrainConfig, model: VAE, opt, progress: TrainingState, total_steps: int, device: torch.device
) -> Checkpoint:
    """Everything a checkpoint holds, in host memory (copied from the device with one wait, not one per tensor)."""
    weights, optimizer, rng = to_host(
        (
            model.state_dict(),
            opt.state_dict(),
            {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            },
        ),
        device,
    )
    return Checkpoint(
        config=cfg,
        weights=weights,
        train=dataclasses.asdict(tcfg),
        state=dataclasses.replace(progress, sums=list(progress.sums)),
        optimizer=optimizer,
        scheduler={"name": tcfg.schedule, "step": progress.global_step, "total_steps": total_steps},
        rng=rng,
    )


def describe_run(cfg: VAEConfig, ds, x_train, x_val, procs: Processes) -> str:
    context = (
        f", row context of {cfg.context_channels} channels, kernel {cfg.context_kernel}" if cfg.row_context else ""
    )
    if cfg.dropout:
        context += f", dropout {cfg.dropout:g}"
    if cfg.refine_steps:
        context += f", {cfg.refine_steps} refinement steps at inference"
    return (
        f"training {cfg.arch} VAE (latent {cfg.latent_dim}, {cfg.likelihood}, beta {cfg.beta}{context}"
        f"{describe_classes(cfg)}) on {ds.name}: "
        f"{len(x_train)} train / {len(x_val)} validation images {tuple(ds.image_shape)}, device {procs.device}"
        + (f", {procs.world} processes" if procs.ddp else "")
    )


def describe_classes(cfg: VAEConfig) -> str:
    """', conditional on 10 classes (0, 1, ..., 9)' for a conditional model (all names up to 6 classes); ''."""
    if not cfg.conditional:
        return ""
    names = list(cfg.class_names) or [str(i) for i in range(cfg.num_classes)]
    shown = ", ".join(names) if len(names) <= 6 else f"{names[0]}, {names[1]}, ..., {names[-1]}"
    return f", conditional on {cfg.num_classes} class{'es' if cfg.num_classes != 1 else ''} ({shown})"


def describe_resume(out, state: TrainingState, epochs: int) -> str:
    """Where a resumed run continues: 'resuming runs/a after epoch 2 of 5' or '... in epoch 3 of 5, at step 12'."""
    done, step = state.epoch, state.step_in_epoch
    if step:
        return f"resuming {out} in epoch {done + 1} of {epochs}, at step {step + 1} ({done} epoch{'s' if done != 1 else ''} done)"
    to_go = f"epoch {epochs}" if done + 1 == epochs else f"epochs {done + 1}-{epochs}"
    return f"resuming {out} after epoch {done} of {epochs}: training {to_go}"


def finished_message(out, done: int) -> str:
    return (
        f"{out} has trained all its {done} epoch{'s' if done != 1 else ''}: nothing to do. To train it further, "
        f"give a new total of epochs: vaectl train --resume {out} --epochs N (N > {done})"
    )


def epoch_line(
    epoch: int, epochs: int, record: dict, cfg: VAEConfig, improved: bool, seconds_left: float | None = None
) -> str:
    """The per-epoch log line. Its parts add up: val = recon + beta x kl (the validation loss weighs the KL
    with the run's beta, not the warm-up's); 'informative' counts dimensions by contract.informative_dims.
    A density likelihood's line also gives the -ELBO (beta 1) in bits/dim (scoring.bits_per_dim), and a
    line with epochs still to go the estimated time they take."""
    left = f", {time_left(seconds_left)} left" if seconds_left else ""
    bits = f"  -elbo {record['val_bits_per_dim']:.3f} bits/dim" if cfg.likelihood in DENSITIES else ""
    return (
        f"epoch {epoch}/{epochs}  train {record['train_loss']:.2f}  val {record['val_loss']:.2f} "
        f"(recon {record['val_recon']:.2f} + {cfg.beta:g} × kl {record['val_kl']:.2f}){bits}  "
        f"informative {record['informative_dims']}/{cfg.latent_dim}  "
        f"posterior var {record['posterior_var']:.3g}  "
        f"{record['images_per_sec']:.0f} img/s{left}" + ("  *best" if improved else "")
    )


def time_left(seconds: float) -> str:
    """An estimate, as coarse as it is: '40 s', '12 min', '2.5 h'."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 2 * 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def wall_time(seconds: float) -> str:
    """A measured wall time: '42 s', '13 min 26 s', '2 h 05 min'."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def count_informative(kl_per_dim) -> int:
    return len(informative_dims(kl_per_dim))
