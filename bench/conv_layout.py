"""Training steps of the default colour model with its conv weights contiguous (NCHW) and channels-last (NHWC).

    python bench/conv_layout.py [--sizes 32,64] [--batch N] [--threads N] [--steps 20] [--repeats 3]

For each image size: the resnet `vaectl train` picks for RGB images of that size (models/presets.py), batches
of --batch random images (32 unless told), the training loss (gaussian-learned, β 1) backward and an Adam step, as in
vaectl.training.loop. The two layouts run alternately, --repeats times each, in this one process; images/s is
the median over the repeats, after 3 warm-up steps. The layout changes where each number sits in memory, not the
arithmetic: `vaectl train` keeps conv weights channels-last. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from vaectl.models import VAEConfig
from vaectl.models.presets import for_images
from vaectl.models.vae import VAE
from vaectl.threads import choose_threads
from vaectl.training.loop import batch_loss

WARMUP = 3


def images_per_second(cfg: VAEConfig, channels_last: bool, steps: int, batch: int = 32) -> float:
    torch.manual_seed(0)
    model = VAE(cfg).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    x = torch.rand(batch, cfg.channels, cfg.height, cfg.width)  # (B, C, H, W)
    for i in range(WARMUP + steps):
        if i == WARMUP:
            t0 = time.perf_counter()
        loss, _, _ = batch_loss(model, x, None, cfg.likelihood, cfg.beta, log_sigma=model.log_sigma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="32,64", help="image sides, comma-separated [32,64]")
    ap.add_argument("--batch", type=int, default=32, help="images per training step [32]")
    ap.add_argument("--threads", type=int, default=None, help="torch threads [vaectl's rule: the free cores]")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per repeat [20]")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of each layout, alternating [3]")
    args = ap.parse_args(argv)
    threads = choose_threads(args.threads)
    torch.set_num_threads(threads)
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, {threads} thread(s), "
        f"batches of {args.batch}"
    )
    print(f"{'size':>5} {'widths':<18} {'contiguous img/s':>17} {'channels-last img/s':>20} {'ratio':>6}")
    for side in (int(s) for s in args.sizes.split(",")):
        recipe, _ = for_images(3, side, side)
        cfg = VAEConfig(channels=3, height=side, width=side, **recipe.model)
        runs: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.repeats):
            for layout in (False, True):
                runs[layout].append(images_per_second(cfg, layout, args.steps, args.batch))
        plain, last = statistics.median(runs[False]), statistics.median(runs[True])
        widths = ",".join(map(str, cfg.conv_channels))
        print(f"{side:>5} {widths:<18} {plain:>17.1f} {last:>20.1f} {last / plain:>6.2f}")


if __name__ == "__main__":
    main()
