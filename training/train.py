"""The training loop. Readable top to bottom; shapes in end-of-line comments.

Data lives on the training device as one uint8 tensor and is batched by index (no DataLoader,
no per-sample PIL work). The same function runs under `torchrun` with DistributedDataParallel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from .. import __version__
from ..data import MNIST_SAMPLE, print_notes
from ..errors import TrainingDivergedError, UserInputError
from ..files import atomic_write_bytes, save_grid, to_uint8_images
from ..models import VAEConfig
from ..models.vae import VAE
from .checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from .data import load_training_data
from .loss import negative_elbo

# With the label given, z only needs style (slant, thickness). A large z also learns the class, and then
# samples drawn with label y come out as other classes: 97% carried the requested digit with a 2-D z,
# 88% with 4-D, 73% with 8-D, 65% with 32-D (mnist-sample, 30 epochs, bench/conditional.py's classifier).
CONDITIONAL_LATENT_DIM = 2
ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al.: a dimension is active when Cov_x(E_q[z]) > 0.01


@dataclass
class TrainConfig:
    out: str = "runs/vae"
    data: str | None = None  # IDX folder or image folder; None: `dataset`
    dataset: str = MNIST_SAMPLE
    cache_dir: str | None = None
    image_size: int | None = None
    channels: int | None = None
    conditional: bool = False
    epochs: int = 20
    batch_size: int = 128
    lr: float = 2e-3
    schedule: str = "onecycle"  # "onecycle": 10% linear warm-up then cosine decay; "constant"
    weight_decay: float = 0.0
    kl_warmup: float = 0.0  # epochs over which beta ramps linearly from 0
    seed: int = 0
    device: str = "auto"
    amp: bool = False  # bf16 autocast
    compile: bool = False
    grid_every: int = 1  # write sample/reconstruction PNGs every N epochs (0: never)

    def validate(self) -> None:
        if self.epochs < 1:
            raise UserInputError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UserInputError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserInputError(f"--lr must be positive, got {self.lr}")
        if self.kl_warmup < 0:
            raise UserInputError(f"--kl-warmup must be >= 0, got {self.kl_warmup}")
        if self.schedule not in ("onecycle", "constant"):
            raise UserInputError(f"unknown schedule {self.schedule!r}")
        if self.image_size is not None and self.image_size < 1:
            raise UserInputError(f"--image-size must be positive, got {self.image_size}")
        if self.grid_every < 0:
            raise UserInputError(f"--grid-every must be >= 0, got {self.grid_every}")


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


def batch_loss(model, x: torch.Tensor, y: torch.Tensor | None, likelihood: str, beta: float, amp=None):
    """(mean negative ELBO, reconstruction (B,), KL (B, D)) of one batch; `model` may be DDP-wrapped."""
    with amp if amp is not None else contextlib.nullcontext():
        logits, mu, logvar = model(x, y)  # (B, C, H, W), (B, D), (B, D)
    loss_i, recon, kl = negative_elbo(logits.float(), x, mu.float(), logvar.float(), likelihood, beta)
    return loss_i.mean(), recon, kl


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Adam:
    # fused: one kernel updates every parameter, not a chain of small ops per tensor (README: +43% img/s, 2-core CPU)
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=device.type in ("cpu", "cuda"))


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserInputError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError("--device cuda: CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserInputError("--device mps: MPS is not available on this machine")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def prepare_out_dir(out: Path, create: bool = True) -> None:
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out}: exists and is not a directory")
    if not create:
        return
    try:
        (out / "images").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserInputError(f"--out {out}: cannot create directory ({e.strerror})") from None
    # temp files of saves that a crash (SIGKILL, power loss) cut short; atomic_write names them .NAME.*.tmp
    names = ("last.pt", "best.pt", "config.json", "metrics.jsonl")
    stale = [p for name in names for p in out.glob(f".{name}.*.tmp")] + list((out / "images").glob(".*_epoch*.png.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)


def trim_metrics(path: Path, epochs_done: int) -> None:
    """On resume: keep the records of the epochs the checkpoint holds, drop a torn last line or records of a
    redone epoch (a crash between appending the record and saving last.pt)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int) and record["epoch"] <= epochs_done:
            kept.append(line + "\n")
    atomic_write_bytes(path, "".join(kept).encode())


def all_reduce_sums(sums: list, device: torch.device) -> list:
    """Sum the running [loss, recon, kl, images] sums over all DDP ranks (on `device`: nccl needs CUDA tensors)."""
    t = torch.tensor(sums, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [*t[:3].tolist(), int(t[3])]


class _Interrupt:
    """Ctrl-C sets a flag; the loop finishes its step, saves, and exits 130."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        if hasattr(signal, "SIGINT"):
            try:
                self._old = signal.signal(signal.SIGINT, self._handle)
            except ValueError:  # not the main thread
                self._old = None
        return self

    def _handle(self, signum, frame):
        if self.requested:  # second Ctrl-C: give up immediately
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


class Interrupted(Exception):
    """Raised after a Ctrl-C once last.pt is saved; the CLI exits 130."""


@torch.no_grad()
def evaluate(model: VAE, x_u8: torch.Tensor, y: torch.Tensor | None, beta: float, batch_size: int = 1000) -> dict:
    """Validation: mean negative ELBO (one z sample), its parts, KL per dimension, active units."""
    cfg = model.config
    sums = torch.zeros(4, dtype=torch.float64, device=x_u8.device)
    kl_dims = torch.zeros(cfg.latent_dim, dtype=torch.float64, device=x_u8.device)
    mus = []
    for i in range(0, len(x_u8), batch_size):
        x = x_u8[i : i + batch_size].float().div_(255)  # (B, C, H, W) in [0, 1]
        yb = None if y is None else y[i : i + batch_size]
        logits, mu, logvar = model(x, yb)  # (B, C, H, W), (B, D), (B, D)
        loss, recon, kl = negative_elbo(logits.float(), x, mu.float(), logvar.float(), cfg.likelihood, beta)
        sums += torch.stack([loss.sum(), recon.sum(), kl.sum(), logvar.float().exp().mean(1).sum()]).double()
        kl_dims += kl.sum(0).double()
        mus.append(mu.float())
    n = len(x_u8)
    mu_all = torch.cat(mus)  # (N, D)
    au_var = mu_all.var(0, unbiased=False) if n > 1 else torch.zeros(cfg.latent_dim, device=mu_all.device)
    loss, recon, kl, posterior_var = (sums / n).tolist()
    return {
        "loss": loss, "recon": recon, "kl": kl,
        "posterior_var": posterior_var,  # mean sigma^2 of q(z|x): collapses towards 0 when beta = 0
        "kl_per_dim": [round(v, 5) for v in (kl_dims / n).tolist()],
        "active_units": int((au_var > ACTIVE_UNIT_THRESHOLD).sum()),
    }


@torch.no_grad()
def _write_grids(model: VAE, out: Path, epoch: int, x_val: torch.Tensor, y_val, z_fixed: torch.Tensor) -> None:
    cfg = model.config
    y_samples = None
    if cfg.num_classes:  # one row per class (up to 8 per row)
        y_samples = torch.arange(len(z_fixed), device=z_fixed.device) // 8 % cfg.num_classes
    samples = torch.sigmoid(model.decoder(z_fixed, y_samples)).float().cpu().numpy()  # (64, C, H, W)
    save_grid(out / "images" / f"samples_epoch{epoch:03d}.png", to_uint8_images(samples), nrow=8)
    x = x_val[:8].float() / 255
    recon = model.reconstruct(x, None if y_val is None else y_val[:8]).float()
    both = torch.cat([x, recon]).cpu().numpy()  # originals above reconstructions
    save_grid(out / "images" / f"recon_epoch{epoch:03d}.png", to_uint8_images(both), nrow=len(x))


def train(tcfg: TrainConfig, model_overrides: dict | None = None, resume: str | None = None, log=print,
          resume_epochs: int | None = None) -> dict:
    """Train a VAE; returns a summary. `model_overrides` are VAEConfig fields (arch, latent_dim, ...).

    With `resume` (a run directory or checkpoint), the run's own settings are used, except `tcfg.device`;
    the run trains to `resume_epochs` epochs in total when given, else to its own epoch count.
    """
    # --- distributed setup (torchrun sets RANK / WORLD_SIZE / LOCAL_RANK) ---
    world = int(os.environ.get("WORLD_SIZE", "1"))
    ddp = world > 1
    ckpt = None
    if resume is not None:
        ckpt_path = resolve_checkpoint(resume, last=True)
        ckpt = load_checkpoint(ckpt_path)
        try:
            saved = TrainConfig(**{k: v for k, v in ckpt["train"].items() if k in {f.name for f in dataclasses.fields(TrainConfig)}})
            done = int(ckpt["epoch"])
        except (KeyError, TypeError, ValueError):
            raise UserInputError(f"{ckpt_path}: checkpoint has no resumable training state") from None
        saved.out = str(ckpt_path.parent)
        if resume_epochs is not None:
            if resume_epochs < done:
                raise UserInputError(f"--epochs {resume_epochs}: the run in {saved.out} has already trained {done} epochs")
            saved.epochs = resume_epochs
        saved.device = tcfg.device
        tcfg = saved
    tcfg.validate()
    device = pick_device(tcfg.device)
    if ddp:
        backend = "nccl" if device.type == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend)
        if device.type == "cuda":
            torch.cuda.set_device(device)
    rank = dist.get_rank() if ddp else 0
    main_process = rank == 0
    out = Path(tcfg.out)
    prepare_out_dir(out, create=main_process)  # every rank checks, so none waits on a rank 0 that failed

    # --- data: decoded once into uint8 tensors on the device ---
    ds = load_training_data(tcfg.data, tcfg.dataset, tcfg.image_size, tcfg.channels, tcfg.cache_dir, tcfg.seed)
    if main_process:
        print_notes(ds)
    if tcfg.conditional and not ds.has_labels:
        raise UserInputError(f"--conditional needs labels, but dataset {ds.name!r} has none "
                             "(IDX label files, or image subfolders named after classes)")
    x_train = torch.from_numpy(ds.train).to(device)  # (N, C, H, W) uint8
    x_val = torch.from_numpy(ds.test).to(device)  # (M, C, H, W) uint8
    y_train = torch.from_numpy(ds.train_labels).to(device) if tcfg.conditional else None  # (N,) int64
    y_val = torch.from_numpy(ds.test_labels).to(device) if tcfg.conditional else None  # (M,)

    # --- model ---
    if ckpt is not None:
        cfg = ckpt["config"]
        if tuple(ds.image_shape) != cfg.image_shape:
            raise UserInputError(f"data images are {ds.image_shape} but the checkpoint's model expects {cfg.image_shape}")
    else:
        c, h, w = ds.image_shape
        fields = dict(channels=c, height=h, width=w, dataset=ds.name)
        overrides = dict(model_overrides or {})
        if tcfg.conditional:
            fields.update(num_classes=len(ds.class_names), class_names=ds.class_names)
            overrides.setdefault("latent_dim", CONDITIONAL_LATENT_DIM)
        cfg = VAEConfig(**{**overrides, **fields})
    torch.manual_seed(tcfg.seed + rank)
    model = VAE(cfg).to(device)
    opt = make_optimizer(model, tcfg.lr, tcfg.weight_decay, device)

    n_train = len(x_train) // world * world  # equal shards keep DDP ranks in step
    local_batch = max(1, tcfg.batch_size // world)
    steps_per_epoch = math.ceil(n_train // world / local_batch)
    total_steps = steps_per_epoch * tcfg.epochs
    start_epoch, start_step, global_step, best_val = 0, 0, 0, math.inf
    epoch_sums = [0.0, 0.0, 0.0, 0]  # loss, recon, kl sums, images seen
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        start_epoch, start_step = ckpt["epoch"], ckpt["step_in_epoch"]
        global_step, best_val = ckpt["global_step"], ckpt["best_val"]
        epoch_sums = list(ckpt["epoch_sums"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], device)
        if rank > 0:  # the checkpoint holds rank 0's state; other ranks keep drawing different noise
            epoch_sums = [0.0, 0.0, 0.0, 0]  # rank 0's saved sums already cover all ranks
            torch.manual_seed(tcfg.seed + 1_000_003 * rank + global_step)
            if device.type == "cuda":
                torch.cuda.manual_seed(tcfg.seed + 1_000_003 * rank + global_step)
    raw_model = model
    if tcfg.compile:
        model = torch.compile(model)
    if ddp:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=tcfg.amp)
    z_fixed = torch.randn(64, cfg.latent_dim, generator=torch.Generator().manual_seed(tcfg.seed)).to(device)

    def checkpoint_state(epoch, step_in_epoch):
        return {
            "vaectl_version": __version__,
            "config": cfg.to_dict(),
            "train": dataclasses.asdict(tcfg),
            "model": {k: v.detach().cpu() for k, v in raw_model.state_dict().items()},
            "optimizer": opt.state_dict(),
            "scheduler": {"name": tcfg.schedule, "step": global_step, "total_steps": total_steps},
            "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
            "epoch_sums": list(epoch_sums), "best_val": best_val,
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
        }

    if main_process:
        atomic_write_bytes(out / "config.json", json.dumps(
            {"model": cfg.to_dict(), "train": dataclasses.asdict(tcfg), "vaectl_version": __version__}, indent=2).encode())
        if ckpt is None:  # a last.pt exists from the first moment: a crash at any point leaves one to resume
            (out / "best.pt").unlink(missing_ok=True)  # a previous run's, in a reused directory
            save_checkpoint(out / "last.pt", checkpoint_state(0, 0))
            (out / "metrics.jsonl").unlink(missing_ok=True)
        else:
            trim_metrics(out / "metrics.jsonl", start_epoch)
        context = f", row context of {cfg.context_channels} channels, kernel {cfg.context_kernel}" if cfg.context_channels else ""
        log(f"training {cfg.arch} VAE (latent {cfg.latent_dim}, {cfg.likelihood}, beta {cfg.beta}{context}) on {ds.name}: "
            f"{len(x_train)} train / {len(x_val)} validation images {tuple(ds.image_shape)}, device {device}"
            + (f", {world} processes" if ddp else ""))

    from tqdm.auto import tqdm

    show_bar = main_process and sys.stderr.isatty()
    summary = {"out": str(out), "epochs": tcfg.epochs, "best_val": best_val}
    with _Interrupt() as interrupt:
        for epoch in range(start_epoch, tcfg.epochs):
            model.train()
            t0 = time.perf_counter()
            perm = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(tcfg.seed * 100_003 + epoch))
            shard = perm[:n_train][rank::world].to(device)  # (n_train / world,)
            bar = tqdm(total=steps_per_epoch, initial=start_step, desc=f"epoch {epoch + 1}/{tcfg.epochs}",
                       disable=not show_bar, leave=False, dynamic_ncols=True)
            # what the metrics record says when a resumed epoch has no steps left
            lr = lr_at(max(0, global_step - 1), total_steps, tcfg.lr, tcfg.schedule)
            beta = beta_at(epoch + (steps_per_epoch - 1) / steps_per_epoch, cfg.beta, tcfg.kl_warmup)
            for step in range(start_step, steps_per_epoch):
                idx = shard[step * local_batch : (step + 1) * local_batch]  # (B,)
                x = gather_batch(x_train, idx)  # (B, C, H, W) in [0, 1]
                y = None if y_train is None else y_train[idx]  # (B,)
                lr = lr_at(global_step, total_steps, tcfg.lr, tcfg.schedule)
                beta = beta_at(epoch + step / steps_per_epoch, cfg.beta, tcfg.kl_warmup)
                loss, recon, kl = batch_loss(model, x, y, cfg.likelihood, beta, amp)  # scalar, (B,), (B, D)
                finite = bool(torch.isfinite(loss))
                stop_requested = interrupt.requested
                if ddp:  # every rank must take the same branch, or the others hang in the gradient all-reduce
                    flags = torch.tensor([float(not finite), float(stop_requested)], device=device)
                    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                    finite, stop_requested = flags[0].item() == 0, flags[1].item() > 0
                if not finite:
                    raise TrainingDivergedError(
                        f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}"
                        + (" (on some process)" if ddp and math.isfinite(loss.item()) else "")
                        + f"; stopped. The last good checkpoint {out / 'last.pt'} is intact (try a lower --lr)")
                optimizer_step(opt, loss, lr)
                global_step += 1
                b = len(idx)
                epoch_sums[0] += loss.item() * b
                epoch_sums[1] += recon.sum().item()
                epoch_sums[2] += kl.sum().item()
                epoch_sums[3] += b
                if show_bar:
                    bar.set_postfix(loss=f"{epoch_sums[0] / epoch_sums[3]:.2f}", refresh=False)
                    bar.update(1)
                if stop_requested:
                    bar.close()
                    if ddp:  # the checkpoint holds the whole epoch's running sums so far
                        epoch_sums = all_reduce_sums(epoch_sums, device)
                    if main_process:
                        save_checkpoint(out / "last.pt", checkpoint_state(epoch, step + 1))
                    raise Interrupted(f"interrupted at epoch {epoch + 1}, step {step + 1}; saved {out / 'last.pt'}; "
                                      f"continue with: vaectl train --resume {out}")
            bar.close()
            seconds = time.perf_counter() - t0
            start_step = 0
            if ddp:  # train metrics over all ranks' shards, not rank 0's alone
                epoch_sums = all_reduce_sums(epoch_sums, device)

            # --- validation, metrics, checkpoints, grids: rank 0 only ---
            val_finite = True
            if main_process:
                raw_model.eval()
                val = evaluate(raw_model, x_val, y_val, cfg.beta)
                val_finite = math.isfinite(val["loss"])
                seen = epoch_sums[3]
                record = {
                    "epoch": epoch + 1, "step": global_step, "lr": lr, "beta": beta,
                    "train_loss": epoch_sums[0] / seen, "train_recon": epoch_sums[1] / seen, "train_kl": epoch_sums[2] / seen,
                    "val_loss": val["loss"], "val_recon": val["recon"], "val_kl": val["kl"],
                    "kl_per_dim": val["kl_per_dim"], "active_units": val["active_units"], "posterior_var": val["posterior_var"],
                    "seconds": round(seconds, 3), "images_per_sec": round(seen / seconds, 1),
                }
            if ddp:  # also the barrier that holds the other ranks while rank 0 validates and saves
                flag = torch.tensor([float(not val_finite)], device=device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                val_finite = flag.item() == 0
            if not val_finite:
                raise TrainingDivergedError(f"validation loss became non-finite after epoch {epoch + 1}; stopped. "
                                            f"The last good checkpoint {out / 'last.pt'} is intact")
            epoch_sums = [0.0, 0.0, 0.0, 0]
            if main_process:
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
                improved = val["loss"] < best_val
                best_val = min(best_val, val["loss"])
                state = checkpoint_state(epoch + 1, 0)
                if improved:  # best.pt before last.pt: a crash between them redoes this epoch and rewrites both
                    save_checkpoint(out / "best.pt", state)
                save_checkpoint(out / "last.pt", state)
                if tcfg.grid_every and ((epoch + 1) % tcfg.grid_every == 0 or epoch + 1 == tcfg.epochs):
                    _write_grids(raw_model, out, epoch + 1, x_val, y_val, z_fixed)
                log(f"epoch {epoch + 1}/{tcfg.epochs}  train {record['train_loss']:.2f}  val {val['loss']:.2f} "
                    f"(recon {val['recon']:.2f} + kl {val['kl']:.2f})  active units {val['active_units']}/{cfg.latent_dim}  "
                    f"posterior var {val['posterior_var']:.3g}  "
                    f"{record['images_per_sec']:.0f} img/s" + ("  *best" if improved else ""))
    summary["best_val"] = best_val
    if ddp:
        dist.barrier()  # rank 0 may still be saving the last epoch
        dist.destroy_process_group()
    return summary
