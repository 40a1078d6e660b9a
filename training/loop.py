"""The training loop. Readable top to bottom; shapes in end-of-line comments.

Data lives on the training device as one uint8 tensor and is batched by index (no DataLoader, no per-sample
PIL work). The same function runs under `torchrun` with DistributedDataParallel.

`train()` is the steps of a run: set_up -> for each epoch: train_one_epoch -> validate -> save_and_log.

The host does not wait for the device inside an epoch. Each step writes its loss, reconstruction and KL into
a buffer on the device (EpochLosses); the host reads that buffer every CHECK_EVERY steps and at the end of
the epoch (and, for a progress bar on a terminal, at most every BAR_SECONDS), adds the values up in float64
in step order, and checks the losses. So a loss that becomes NaN or inf is noticed up to CHECK_EVERY - 1
steps late: those steps run on the broken weights, nothing is saved meanwhile, and the run stops naming the
step where it happened, with last.pt still the last good checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__, layout
from ..errors import TrainingDivergedError, UserInputError, WriteFailedError, arg, say
from ..files import Claim
from ..models.checkpoint import Checkpoint, TrainingState, save_state
from ..models.config import VAEConfig
from ..models.vae import VAE
from ..scoring import ACTIVE_UNIT_THRESHOLD, bits_per_dim
from .config import TrainConfig, resolve, resolve_for_images
from .loss import fitted_log_sigma, gaussian_nll_sum, negative_elbo
from .run_dir import (
    SavedCheckpoint,
    append_metrics,
    claim_run_dir,
    grid_images,
    make_run_dir,
    remove_if_empty,
    trim_metrics,
    write_config,
    write_grids,
)
from .runtime import (
    CtrlC,
    Interrupted,
    Processes,
    agree,
    all_reduce_sums,
    any_rank,
    set_threads,
    start_processes,
    stop_processes,
)
from .steps import (
    checkpoint_of,
    count_informative,
    describe_resume,
    describe_run,
    epoch_line,
    finished_message,
    load_data_on_device,
    load_resume,
    model_config,
    restore,
)
from .tensorboard import TensorBoard, require_tensorboard

# The shuffle of epoch e depends on (--seed, e) alone, so a resumed run draws the order the uninterrupted run
# drew; the stride is a prime larger than any realistic epoch count.
EPOCH_SEED_STRIDE = 100_003
FLIP_SEED_OFFSET = 2**40  # the mirroring's generator seeds: above every order seed, so the two never share one
# Validation runs in chunks whose full-size feature maps hold at most this many floats (64 MB): a resnet's
# 16-channel 64 px maps for 1,000 images would take a gigabyte each, and training's memory follows the batch.
VALIDATION_FLOATS = 2**24
VALIDATION_CHUNK = 1000
CHECK_EVERY = 50  # steps between reads of the device's losses (a non-finite loss is noticed this late at most)
BAR_SECONDS = 0.5  # the progress bar is fed at most this often (each feed reads the losses: one wait)

__all__ = ["Interrupted", "train"]


def lr_at(step: int, total: int, base: float, schedule: str) -> float:
    """Learning rate for optimizer step `step` of `total` (nanoGPT-style, no scheduler object)."""
    if schedule == "constant":
        return base
    warmup = max(1, total // 10)
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def beta_at(epoch_progress: float, beta: float, warmup_epochs: float) -> float:
    """Linear KL warm-up: beta * min(1, epochs done / warm-up epochs)."""
    if warmup_epochs <= 0:
        return beta
    return beta * min(1.0, epoch_progress / warmup_epochs)


def gather_batch(x_u8: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """The fast path: index the in-memory uint8 images, convert only the batch. (B,) -> (B, C, H, W) in [0, 1]."""
    return x_u8[idx].float().div_(255)


def batch_loss(model, x: torch.Tensor, y: torch.Tensor | None, likelihood: str, beta: float, amp=None, log_sigma=None):
    """(mean negative ELBO, reconstruction (B,), KL (B, D)) of one batch; `model` may be DDP-wrapped.
    log_sigma: the raw model's VAE.log_sigma (the learned-variance likelihood's parameter)."""
    with amp if amp is not None else contextlib.nullcontext():
        logits, mu, logvar = model(x, y)  # (B, C, H, W), (B, D), (B, D)
    loss_i, recon, kl = negative_elbo(logits.float(), x, mu.float(), logvar.float(), likelihood, beta, log_sigma)
    return loss_i.mean(), recon, kl


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Adam:
    # fused: one kernel updates every parameter, not a chain of small ops per tensor (docs/benchmarks.md)
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=device.type in ("cpu", "cuda"))


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def validation_chunk(cfg: VAEConfig) -> int:
    """Validation images per forward pass: at most VALIDATION_FLOATS in the model's widest full-size feature
    map (a conv model's first width; an MLP's widest map is the image), at most VALIDATION_CHUNK images."""
    widest = max(cfg.channels, cfg.conv_channels[0] if cfg.arch in ("conv", "resnet") else 0)
    return max(1, min(VALIDATION_CHUNK, VALIDATION_FLOATS // (widest * cfg.height * cfg.width)))


@torch.no_grad()
def validation_metrics(
    model: VAE, x_u8: torch.Tensor, y: torch.Tensor | None, beta: float, batch_size: int | None = None
) -> dict:
    """Mean negative ELBO (one z sample) on the validation images, its parts, KL per dimension, active units.
    Everything stays on the device until one read at the end.

    A learned-variance model is scored with the sigma per channel that fits these images best ("log_sigma" in
    the result; validate() gives it to the model): the sigma learned from the training images alone shrinks
    as the model learns them by heart, and the held-out loss would then measure that instead of the images'."""
    cfg = model.config
    batch_size = batch_size or validation_chunk(cfg)
    sums = torch.zeros(4, dtype=torch.float64, device=x_u8.device)
    kl_dims = torch.zeros(cfg.latent_dim, dtype=torch.float64, device=x_u8.device)
    squared_error = torch.zeros(cfg.channels, dtype=torch.float64, device=x_u8.device)  # per channel
    mus = []
    for i in range(0, len(x_u8), batch_size):
        x = x_u8[i : i + batch_size].float().div_(255)  # (B, C, H, W) in [0, 1]
        yb = None if y is None else y[i : i + batch_size]
        logits, mu, logvar = model(x, yb)  # (B, C, H, W), (B, D), (B, D)
        loss, recon, kl = negative_elbo(
            logits.float(), x, mu.float(), logvar.float(), cfg.likelihood, beta, model.log_sigma
        )
        sums += torch.stack([loss.sum(), recon.sum(), kl.sum(), logvar.float().exp().mean(1).sum()]).double()
        kl_dims += kl.sum(0).double()
        if cfg.learned_sigma:
            squared_error += (x - torch.sigmoid(logits.float())).pow(2).sum((0, 2, 3)).double()
        mus.append(mu.float())
    n = len(x_u8)
    fitted = None
    if cfg.learned_sigma:  # the reconstruction term again, under the fitted sigma
        count = n * cfg.height * cfg.width
        fitted = fitted_log_sigma(squared_error, count)  # (C,)
        sums[1] = gaussian_nll_sum(squared_error, count, fitted)
        sums[0] = sums[1] + beta * sums[2]
    mu_all = torch.cat(mus)  # (N, D)
    au_var = mu_all.var(0, unbiased=False) if n > 1 else torch.zeros(cfg.latent_dim, device=mu_all.device)
    active = (au_var > ACTIVE_UNIT_THRESHOLD).sum().double()
    loss, recon, kl, posterior_var, *kl_per_dim, active_units = torch.cat(
        [sums / n, kl_dims / n, active[None]]
    ).tolist()
    metrics = {
        "loss": loss,
        "recon": recon,
        "kl": kl,
        # of the -ELBO (beta 1); the fixed-variance gaussian's loss leaves out its constant, (D/2) log(pi)
        "bits_per_dim": bits_per_dim(recon + kl + gaussian_constant(cfg), cfg.num_pixels, cfg.likelihood),
        "posterior_var": posterior_var,  # mean sigma^2 of q(z|x): collapses towards 0 when beta = 0
        "kl_per_dim": [round(v, 5) for v in kl_per_dim],
        "active_units": int(active_units),
    }
    if fitted is not None:
        metrics["log_sigma"] = fitted.float()  # (C,) on the device
    return metrics


def gaussian_constant(cfg: VAEConfig) -> float:
    """What the fixed-variance gaussian's summed squared error leaves out of -log p(x | z): (D/2) log(pi)."""
    return 0.5 * cfg.num_pixels * math.log(math.pi) if cfg.likelihood == "gaussian" else 0.0


class PadLastBatch(torch.nn.Module):
    """torch.compile specializes its graph to the batch size, and an epoch's last batch is usually smaller:
    it is padded up to the full size with blank images (label 0) and the outputs cut back to the real ones,
    so it runs the same graph instead of compiling another (bench/compile_speed.py: one compilation, the
    fastest of marking the batch dimension dynamic, padding, and dropping the batch; padding trains every image).
    The padded rows add nothing to the loss, so nothing to the gradients."""

    def __init__(self, model: torch.nn.Module, size: int):
        super().__init__()
        self.model, self.size = model, size

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        b = len(x)
        if b < self.size:
            x = torch.cat([x, x.new_zeros(self.size - b, *x.shape[1:])])  # (size, C, H, W)
            y = None if y is None else torch.cat([y, y.new_zeros(self.size - b)])  # (size,)
        logits, mu, logvar = self.model(x, y)
        return logits[:b], mu[:b], logvar[:b]  # (B, C, H, W), (B, D), (B, D)


# ----------------------------------------------------------------------------- what the epoch loop works with


@dataclass(frozen=True)
class Batches:
    """This process's batches: its shard of each epoch's shuffle of the training images, `size` at a time."""

    x: torch.Tensor  # (N, C, H, W) uint8 on the device
    y: torch.Tensor | None  # (N,) int64 labels of a conditional run
    seed: int
    world: int
    rank: int
    size: int  # images per step on this process: the global batch over the processes
    hflip: bool = False  # mirror a random half of the images, a new half every epoch (TrainConfig.hflip)

    @property
    def shard_len(self) -> int:  # equal shards keep DDP ranks in step
        return len(self.x) // self.world

    @property
    def steps(self) -> int:
        return math.ceil(self.shard_len / self.size)

    def images_in(self, step: int) -> int:
        return min(self.size, self.shard_len - step * self.size)

    def order(self, epoch: int) -> torch.Tensor:
        """This process's image indices for `epoch`, on the device, (shard_len,)."""
        perm = torch.randperm(
            len(self.x), generator=torch.Generator().manual_seed(self.seed * EPOCH_SEED_STRIDE + epoch)
        )
        return perm[: self.shard_len * self.world][self.rank :: self.world].to(self.x.device, non_blocking=True)

    def flips(self, epoch: int) -> torch.Tensor | None:
        """Which images `epoch` mirrors, (N,) bool on the device, or None without hflip. Drawn from the seed and
        the epoch alone, like the order: a resumed run and every DDP process mirror the same images."""
        if not self.hflip:
            return None
        g = torch.Generator().manual_seed(self.seed * EPOCH_SEED_STRIDE + epoch + FLIP_SEED_OFFSET)
        return (torch.rand(len(self.x), generator=g) < 0.5).to(self.x.device, non_blocking=True)

    def batch(self, order: torch.Tensor, step: int, flips: torch.Tensor | None = None):
        """(B, C, H, W) in [0, 1], labels (B,) or None: step `step` of `order`, mirrored where `flips` says."""
        idx = order[step * self.size : (step + 1) * self.size]  # (B,)
        x = gather_batch(self.x, idx)
        if flips is not None:
            x = torch.where(flips[idx].view(-1, 1, 1, 1), x.flip(-1), x)
        return x, None if self.y is None else self.y[idx]


@dataclass(frozen=True)
class Schedule:
    """Learning rate and KL weight at each optimizer step."""

    lr: float
    name: str  # "onecycle" or "constant"
    beta: float
    kl_warmup: float  # epochs
    epochs: int
    steps_per_epoch: int

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def lr_at(self, global_step: int) -> float:
        return lr_at(global_step, self.total_steps, self.lr, self.name)

    def beta_at(self, epoch: int, step: int) -> float:
        return beta_at(epoch + step / self.steps_per_epoch, self.beta, self.kl_warmup)


class EpochLosses:
    """One epoch's per-step losses, written on the device and read by the host in chunks (one wait each)."""

    def __init__(self, batches: Batches, first_step: int, sums: list):
        self.batches = batches
        self.buffer = torch.zeros(batches.steps, 3, device=batches.x.device)  # per step: loss, recon sum, KL sum
        self.read_to = first_step  # steps before this one are in `sums`
        self.sums = list(sums)  # loss, recon, KL sums over the epoch's images so far, and the image count
        self.diverged: tuple[int, float] | None = None  # (step, loss) of the first non-finite loss read

    def record(self, step: int, loss: torch.Tensor, recon: torch.Tensor, kl: torch.Tensor) -> None:
        torch.stack([loss.detach(), recon.detach().sum(), kl.detach().sum()], out=self.buffer[step])

    def read(self, upto: int) -> None:
        """Add steps read_to..upto-1 to `sums`, in step order and in float64 (as a checkpoint holds them)."""
        for step, (loss, recon, kl) in enumerate(self.buffer[self.read_to : upto].tolist(), self.read_to):
            if not math.isfinite(loss) and self.diverged is None:
                self.diverged = (step, loss)
            b = self.batches.images_in(step)
            self.sums = [self.sums[0] + loss * b, self.sums[1] + recon, self.sums[2] + kl, self.sums[3] + b]
        self.read_to = upto

    def mean_loss(self) -> float:
        return self.sums[0] / max(1, self.sums[3])


class Bar:
    """The progress bar on a terminal (nothing otherwise), fed at most every BAR_SECONDS."""

    def __init__(self, show: bool, epoch: int, epochs: int, steps: int, first_step: int):
        self.bar, self.next = None, time.monotonic() + BAR_SECONDS
        if show:
            from tqdm import tqdm  # a terminal's bar; tqdm.auto would warn in Jupyter where ipywidgets is missing

            self.bar = tqdm(
                total=steps, initial=first_step, desc=f"epoch {epoch + 1}/{epochs}", leave=False, dynamic_ncols=True
            )

    def due(self) -> bool:
        return self.bar is not None and time.monotonic() >= self.next

    def show(self, steps_done: int, mean_loss: float) -> None:
        if self.bar is not None:
            self.bar.update(steps_done - self.bar.n)
            self.bar.set_postfix(loss=f"{mean_loss:.2f}")
            self.next = time.monotonic() + BAR_SECONDS

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Saver:
    """Writes the run's checkpoints: the state copied to the host once, then each file atomically."""

    def __init__(self, out: Path, cfg: VAEConfig, tcfg: TrainConfig, raw_model: VAE, opt, total_steps, device, saved):
        self.out, self.cfg, self.tcfg, self.model, self.opt = out, cfg, tcfg, raw_model, opt
        self.total_steps, self.device, self.saved = total_steps, device, saved

    def save(self, progress: TrainingState, *names: str) -> None:
        ckpt = checkpoint_of(self.cfg, self.tcfg, self.model, self.opt, progress, self.total_steps, self.device)
        state = ckpt.to_state()
        for name in names:  # best.pt before last.pt: a crash between them redoes this epoch and rewrites both
            save_state(self.out / name, state)
        if layout.LAST_CHECKPOINT in names:
            self.saved.last_pt(self.out, progress)


# --------------------------------------------------------------------------------------------- train()


def train(
    tcfg: TrainConfig | None = None,
    model: Mapping | None = None,
    *,
    preset: str | None = None,
    resume=None,
    log=say,
    resume_epochs: int | None = None,
    overwrite: bool = False,
    **fields,
) -> dict:
    """Train a VAE; returns {"out", "epochs", "best_val", "trained_epochs", "seconds"} (the last: this call's
    wall time from the first epoch on).

    train(TrainConfig(out="runs/a"), {"latent_dim": 8}); train(preset="quality", out="runs/q", epochs=5);
    `fields` are TrainConfig or VAEConfig field names and win over the preset (training/config.py).
    With `resume` (a run directory or checkpoint) the run's own settings are used (`tcfg` and `model` are
    ignored; `fields` may give only device, tensorboard, and out naming the run's own directory); it trains
    to `resume_epochs` epochs in total when given, else to its own epoch count.
    A new run refuses a directory that holds an earlier run unless overwrite=True (training/run_dir.py).
    A failed write (full disk, ...) raises WriteFailedError saying which last.pt survived and how to resume.
    """
    saved, created = SavedCheckpoint(), []
    try:
        return _train(tcfg, model, preset, resume, log, resume_epochs, overwrite, saved, created, fields)
    except WriteFailedError as e:  # full disk, read-only filesystem, ...: what survived, and how to go on
        remove_if_empty(created)
        raise e.but(saved.survivor()) from None
    except BaseException:
        remove_if_empty(created)  # a run that failed before writing anything leaves no empty directory behind
        raise


def _train(tcfg, model, preset, resume, log, resume_epochs, overwrite, saved, created, fields) -> dict:
    given_tcfg = tcfg
    ckpt, tcfg, model_fields = settings(tcfg, model, preset, resume, resume_epochs, overwrite, fields)
    if ckpt is not None and ckpt.state.epoch >= tcfg.epochs:  # a finished run, and no new total of epochs
        log(finished_message(tcfg.out, ckpt.state.epoch))
        return {
            "out": tcfg.out,
            "epochs": tcfg.epochs,
            "best_val": ckpt.state.best_val,
            "trained_epochs": 0,
            "seconds": 0.0,
        }
    # a new run's recipe may depend on the images (training/config.py, data_recipe): settled once they are loaded
    for_data = (
        None
        if ckpt is not None
        else functools.partial(resolve_for_images, preset=preset, model=model, tcfg=given_tcfg, **fields)
    )
    run = set_up(tcfg, model_fields, ckpt, overwrite, for_data)
    tcfg, cfg, procs, progress, out = run.tcfg, run.cfg, run.procs, run.progress, run.out
    saver = Saver(out, cfg, tcfg, run.raw_model, run.opt, run.schedule.total_steps, procs.device, saved)
    if procs.main:  # the run directory is made only now, when nothing that a bad input can fail is left
        created += make_run_dir(out, run.claim)
        write_config(out, {"model": cfg.to_dict(), "train": dataclasses.asdict(tcfg), "vaectl_version": __version__})
        if ckpt is None:  # a last.pt exists from the first moment: a crash at any point leaves one to resume
            saver.save(progress, layout.LAST_CHECKPOINT)
        else:
            saved.last_pt(out, progress)
            trim_metrics(out / layout.METRICS, progress.epoch)
        if run.recipe_note:
            log(run.recipe_note)
        log(describe_run(cfg, run.ds, run.batches.x, run.x_val, procs))
        if ckpt is not None:
            log(describe_resume(out, ckpt.state, tcfg.epochs))

    first_epoch, started = progress.epoch, time.monotonic()
    with (
        CtrlC() as run.ctrl_c,
        TensorBoard(out, tcfg.tensorboard and procs.main, first_epoch + 1, ckpt is not None) as tb,
    ):
        for epoch in range(first_epoch, tcfg.epochs):
            result = train_one_epoch(run, epoch)
            if result.stopped:  # Ctrl-C: save where we are and stop
                if procs.main:
                    saver.save(progress, layout.LAST_CHECKPOINT)
                raise Interrupted(
                    f"interrupted at epoch {epoch + 1}, step {progress.step_in_epoch}; "
                    f"saved {out / layout.LAST_CHECKPOINT}; continue with: vaectl train --resume {out}"
                )
            val = validate(run.raw_model, run.x_val, run.y_val, cfg.beta, procs, epoch, out)
            if procs.main:
                record = epoch_record(epoch, progress, run.schedule, result, val, cfg.beta)
                grids = (
                    grid_images(run.raw_model, run.x_val, run.y_val, run.z_fixed) if grids_due(tcfg, epoch) else None
                )
                # the epochs to go at this session's pace so far (validation and saving included)
                per_epoch = (time.monotonic() - started) / (epoch + 1 - first_epoch)
                left = per_epoch * (tcfg.epochs - epoch - 1)
                save_and_log(out, record, grids, progress, saver, tb, log, tcfg.epochs, cfg, left)
            progress.epoch = epoch + 1
    stop_processes(procs)
    return {
        "out": str(out),
        "epochs": tcfg.epochs,
        "best_val": progress.best_val,
        "trained_epochs": tcfg.epochs - first_epoch,
        "seconds": time.monotonic() - started,
    }


# ----------------------------------------------------------------------------- set up


RESUME_FIELDS = ("device", "tensorboard", "threads")  # what a resumed run may change (besides its number of epochs)


def settings(
    tcfg, model, preset, resume, resume_epochs, overwrite, fields
) -> tuple[Checkpoint | None, TrainConfig, dict | None]:
    """(checkpoint to continue or None, the run's TrainConfig, the model fields of a new run or None)."""
    if resume is None:
        model_fields, tcfg = resolve(preset, model, tcfg, **fields)
        return None, tcfg, model_fields
    if overwrite:
        raise UserInputError(f"{arg('overwrite', True)} starts a new run; it cannot be combined with {arg('resume')}")
    ckpt, tcfg = load_resume(resume, resume_epochs, fields.get("device", tcfg.device if tcfg else "auto"))
    if "out" in fields and Path(fields["out"]).resolve() != Path(tcfg.out).resolve():
        raise UserInputError(
            f"{arg('out', fields['out'])}: a resumed run stays in its own directory, {tcfg.out}; leave {arg('out')} out "
            "(to branch off a copy, copy the run directory first and resume the copy)"
        )
    refused = sorted(set(fields) - {"out", *RESUME_FIELDS}) + (["preset"] if preset else [])
    if refused:
        flags = ", ".join(arg(name) for name in refused)
        raise UserInputError(
            f"{flags}: a resumed run keeps its own settings (config.json in {tcfg.out}); "
            f"with {arg('resume')} give only {arg('epochs')}, {arg('device')}, {arg('tensorboard')} or {arg('threads')}"
        )
    if "tensorboard" in fields:
        tcfg.tensorboard = bool(fields["tensorboard"])
    if "threads" in fields:  # the machine's, not the run's: a resumed run may run on another
        tcfg.threads = fields["threads"]
    return ckpt, tcfg, None


@dataclass
class Run:
    """What set_up() made for the epoch loop."""

    tcfg: TrainConfig
    cfg: VAEConfig
    procs: Processes
    out: Path
    claim: Claim | None  # the run directory claimed for a new run (its clear() removes an earlier run's files)
    ds: object  # the ImageDataset, for the log line
    batches: Batches  # the training images and their order
    x_val: torch.Tensor  # (N, C, H, W) uint8 on the device
    y_val: torch.Tensor | None  # (N,) labels of a conditional run
    raw_model: VAE  # the plain model: validation, grids and checkpoints use it
    model: torch.nn.Module  # what the steps call: raw_model, or it compiled, DDP-wrapped, last batch padded
    opt: torch.optim.Optimizer
    amp: torch.autocast
    schedule: Schedule
    progress: TrainingState
    z_fixed: torch.Tensor  # (64, D): the latents of every epoch's sample grid
    recipe_note: str | None = None  # the line saying which recipe was picked for a new run's images
    ctrl_c: CtrlC | None = None  # set while the epochs run: a Ctrl-C stops the epoch at the next step


def set_up(
    tcfg: TrainConfig, model_fields: dict | None, ckpt: Checkpoint | None, overwrite: bool, for_data=None
) -> Run:
    """Processes, the run directory's check, data on the device, model, optimizer; weights and state on resume.
    Writes nothing: every input is checked (and a missing tensorboard named) before the directory is made.
    for_data(image_shape) -> (model fields, TrainConfig, the recipe's log line or None): a new run's settings
    once the images are known."""
    if tcfg.tensorboard:
        require_tensorboard()
    procs = start_processes(tcfg.device)
    set_threads(tcfg.threads)
    out = Path(tcfg.out)
    claim = claim_run_dir(out, procs, new_run=ckpt is None, overwrite=overwrite)
    ds, x_train, y_train, x_val, y_val = load_data_on_device(tcfg, procs)
    recipe_note = None
    if for_data is not None:
        model_fields, tcfg, recipe_note = for_data(tuple(ds.image_shape))
    cfg = model_config(ds, tcfg, model_fields, ckpt)
    torch.manual_seed(tcfg.seed + procs.rank)
    # channels-last conv weights: oneDNN's and cuDNN's faster layout (bench/conv_layout.py); it changes the
    # memory layout only, and the checkpoints' tensors load into any layout
    raw_model = VAE(cfg).to(procs.device, memory_format=torch.channels_last)
    opt = make_optimizer(raw_model, tcfg.lr, tcfg.weight_decay, procs.device)
    batches = Batches(
        x_train, y_train, tcfg.seed, procs.world, procs.rank, max(1, tcfg.batch_size // procs.world), tcfg.hflip
    )
    schedule = Schedule(tcfg.lr, tcfg.schedule, cfg.beta, tcfg.kl_warmup, tcfg.epochs, batches.steps)
    progress = restore(ckpt, raw_model, opt, tcfg, procs) if ckpt is not None else TrainingState()
    model = torch.compile(raw_model) if tcfg.compile else raw_model
    if procs.ddp:
        device = procs.device
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if tcfg.compile and batches.steps > 1 and batches.shard_len % batches.size:  # a smaller last batch
        model = PadLastBatch(model, batches.size)
    amp = torch.autocast(procs.device.type, dtype=torch.bfloat16, enabled=tcfg.amp)
    z_fixed = torch.randn(64, cfg.latent_dim, generator=torch.Generator().manual_seed(tcfg.seed)).to(procs.device)
    return Run(
        tcfg=tcfg,
        cfg=cfg,
        procs=procs,
        out=out,
        claim=claim,
        ds=ds,
        batches=batches,
        x_val=x_val,
        y_val=y_val,
        raw_model=raw_model,
        model=model,
        opt=opt,
        amp=amp,
        schedule=schedule,
        progress=progress,
        z_fixed=z_fixed,
        recipe_note=recipe_note,
    )


# ----------------------------------------------------------------------------- one epoch: train, validate, save and log


@dataclass
class EpochResult:
    seconds: float  # wall time of this process's steps
    images: int  # images trained in those steps (all processes)
    sums: list  # the epoch's loss, recon, KL sums and images (all processes)
    stopped: bool  # Ctrl-C: progress holds the step reached


def train_one_epoch(run: Run, epoch: int) -> EpochResult:
    """The epoch's optimizer steps, from run.progress.step_in_epoch on, without the host waiting on the device
    except every CHECK_EVERY steps and at the end. Stops the run on a non-finite loss (TrainingDivergedError);
    stops early after a Ctrl-C (stopped=True; all processes stop at the same step)."""
    model, opt, batches, schedule, progress, procs = (
        run.model,
        run.opt,
        run.batches,
        run.schedule,
        run.progress,
        run.procs,
    )
    ctrl_c = run.ctrl_c if run.ctrl_c is not None else CtrlC()
    model.train()
    t0 = time.perf_counter()
    order, flips = batches.order(epoch), batches.flips(epoch)  # (shard_len,) image indices, (N,) bool or None
    losses = EpochLosses(batches, progress.step_in_epoch, progress.sums)
    bar = Bar(procs.main and sys.stderr.isatty(), epoch, schedule.epochs, batches.steps, progress.step_in_epoch)
    step, stopped = progress.step_in_epoch - 1, False
    for step in range(progress.step_in_epoch, batches.steps):
        x, y = batches.batch(order, step, flips)  # (B, C, H, W) in [0, 1], (B,)
        loss, recon, kl = batch_loss(
            model, x, y, run.cfg.likelihood, schedule.beta_at(epoch, step), run.amp, run.raw_model.log_sigma
        )  # (), (B,), (B, D)
        optimizer_step(opt, loss, schedule.lr_at(progress.global_step))
        losses.record(step, loss, recon, kl)
        progress.global_step += 1
        check = (step + 1) % CHECK_EVERY == 0 or step + 1 == batches.steps  # the same steps on every process
        if check or bar.due() or (ctrl_c.requested and not procs.ddp):
            losses.read(step + 1)
            bar.show(step + 1, losses.mean_loss())
        if check or not procs.ddp:  # under DDP the processes decide together, at the check steps only
            diverged_at, stopped = decide(losses, ctrl_c, procs)
            if diverged_at is not None:
                bar.close()
                raise diverged_error(losses, diverged_at, epoch, procs, run.out)
            if stopped:
                break
    bar.close()
    seconds = time.perf_counter() - t0
    sums = all_reduce_sums(losses.sums, procs.device) if procs.ddp else losses.sums  # over all processes' shards
    images = sums[3] - (progress.sums[3] if procs.main else 0)  # rank 0's saved sums already covered every rank
    progress.step_in_epoch, progress.sums = (step + 1, sums) if stopped else (0, [0.0, 0.0, 0.0, 0])
    return EpochResult(seconds, images, sums, stopped)


def decide(losses: EpochLosses, ctrl_c, procs: Processes) -> tuple[int | None, bool]:
    """(step at which the loss became non-finite, or None; whether to stop), agreed by all processes."""
    mine = losses.diverged[0] if losses.diverged else None
    if procs.ddp:
        return agree(mine, ctrl_c.requested, procs.device)
    return mine, ctrl_c.requested


def diverged_error(losses: EpochLosses, step: int, epoch: int, procs: Processes, out: Path) -> TrainingDivergedError:
    where = f"at epoch {epoch + 1}, step {step + 1}"
    if losses.diverged is not None and losses.diverged[0] == step:
        what = f"loss became {losses.diverged[1]} {where}"
    else:  # another process's loss
        what = f"loss became non-finite {where} (on some process)"
    return TrainingDivergedError(
        f"{what}; stopped. The last good checkpoint {out / layout.LAST_CHECKPOINT} is intact (try a lower {arg('lr')})"
    )


def validate(raw_model: VAE, x_val, y_val, beta: float, procs: Processes, epoch: int, out: Path) -> dict | None:
    """Validation metrics on the main process (None on the others, which wait for its verdict).

    A learned-variance model takes the sigma fitted to the validation images (validation_metrics): the
    checkpoints then hold a sigma that held-out images bear out, and training goes on from it."""
    val, diverged = None, False
    if procs.main:
        raw_model.eval()
        val = validation_metrics(raw_model, x_val, y_val, beta)
        diverged = not math.isfinite(val["loss"])
    if procs.ddp:
        (diverged,) = any_rank([diverged], procs.device)
    if diverged:
        raise TrainingDivergedError(
            f"validation loss became non-finite after epoch {epoch + 1}; stopped. "
            f"The last good checkpoint {out / layout.LAST_CHECKPOINT} is intact"
        )
    if raw_model.config.learned_sigma:
        log_sigma = raw_model.decoder.log_sigma
        with torch.no_grad():
            if procs.main:
                log_sigma.copy_(val.pop("log_sigma"))
            if procs.ddp:  # every process trains on with the main one's
                torch.distributed.broadcast(log_sigma.data, src=0)
    return val


def epoch_record(
    epoch: int, progress: TrainingState, schedule: Schedule, result: EpochResult, val: dict, beta: float
) -> dict:
    """The epoch's line of metrics.jsonl (docs/training.md describes each field)."""
    seen = result.sums[3]
    train_loss, train_recon = result.sums[0] / seen, result.sums[1] / seen
    return {
        "epoch": epoch + 1,
        "step": progress.global_step,
        "lr": schedule.lr_at(max(0, progress.global_step - 1)),  # at the epoch's last step
        "beta": schedule.beta_at(epoch, schedule.steps_per_epoch - 1),
        "train_loss": train_loss,
        "train_recon": train_recon,
        "train_kl": result.sums[2] / seen,
        "train_weighted_kl": train_loss - train_recon,  # each step's beta times its KL
        "val_loss": val["loss"],
        "val_recon": val["recon"],
        "val_kl": val["kl"],
        "val_weighted_kl": beta * val["kl"],  # the run's beta, not the warm-up's
        "val_bits_per_dim": val["bits_per_dim"],
        "kl_per_dim": val["kl_per_dim"],
        "informative_dims": count_informative(val["kl_per_dim"]),
        "active_units": val["active_units"],
        "posterior_var": val["posterior_var"],
        "seconds": round(result.seconds, 3),
        "images_per_sec": round(result.images / result.seconds, 1),
    }


def grids_due(tcfg: TrainConfig, epoch: int) -> bool:
    return bool(tcfg.grid_every) and ((epoch + 1) % tcfg.grid_every == 0 or epoch + 1 == tcfg.epochs)


def save_and_log(
    out: Path,
    record: dict,
    grids,
    progress: TrainingState,
    saver: Saver,
    tb: TensorBoard,
    log,
    epochs: int,
    cfg: VAEConfig,
    seconds_left: float | None = None,
) -> None:
    """The main process, after validation: metrics.jsonl, the grids, TensorBoard, the checkpoints, the log line.
    Checkpoints last: a crash before them redoes the epoch, and the resumed run rewrites what came before."""
    append_metrics(out, record)
    if grids is not None:
        write_grids(out, record["epoch"], grids)
    tb.log_epoch(record, grids)
    improved = record["val_loss"] < progress.best_val
    progress.best_val = min(progress.best_val, record["val_loss"])
    progress.epoch, progress.kl_per_dim = record["epoch"], record["kl_per_dim"]
    saver.save(progress, *([layout.BEST_CHECKPOINT] if improved else []), layout.LAST_CHECKPOINT)
    log(epoch_line(record["epoch"], epochs, record, cfg, improved, seconds_left))
