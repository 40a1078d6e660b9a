"""What the checkpoint digest costs: hashing vs serializing, writing and loading the --preset quality checkpoint.

    python bench/checkpoint_digest.py [--repeats 5] [--dir DIR]

Builds the quality preset's model for 28x28 grayscale images (Fashion-MNIST's shape) with Adam state after
one step, as training saves it every epoch, then times (median of --repeats):
  digest        vaectl.models.checkpoint.payload_digest over the whole payload (what save and load add)
  torch.save    serializing the same payload into memory
  save          save_state to a file in --dir: digest + serialize + write + fsync + os.replace
  torch.load    loading that file with weights_only=True
  load          read_state: torch.load + the magic/format checks + verifying the digest
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vaectl.models import VAEConfig
from vaectl.models.checkpoint import payload_digest, read_state, save_state
from vaectl.models.presets import PRESETS
from vaectl.models.vae import VAE


def quality_payload() -> dict:
    config = VAEConfig(**{**PRESETS["quality"].model, "channels": 1, "height": 28, "width": 28})
    model = VAE(config)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(8, 1, 28, 28)
    logits, mu, logvar = model(x, None)
    (logits.square().mean() + mu.square().mean() + logvar.square().mean()).backward()
    opt.step()  # Adam's two moments per weight now exist, as in every saved checkpoint
    return {
        "format": "vaectl.checkpoint",
        "format_version": 1,
        "config": config.to_dict(),
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "epoch": 1,
        "best_val": 250.0,
        "rng": {"torch": torch.get_rng_state()},
    }


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", default=None, help="Where to write the checkpoint [a temp directory].")
    args = parser.parse_args()
    payload = quality_payload()
    state = {k: v for k, v in payload.items() if k not in ("format", "format_version")}
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        path = Path(d) / "last.pt"
        save_state(path, state)
        size = path.stat().st_size
        timings = {
            "digest": median_seconds(lambda: payload_digest(payload), args.repeats),
            "torch.save": median_seconds(lambda: torch.save(payload, io.BytesIO()), args.repeats),
            "save": median_seconds(lambda: save_state(path, state), args.repeats),
            "torch.load": median_seconds(lambda: torch.load(path, weights_only=True), args.repeats),
            "load": median_seconds(lambda: read_state(path), args.repeats),
        }
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"median of {args.repeats}"
    )
    print(f"--preset quality checkpoint (28x28x1, Adam state): {size / 1e6:.1f} MB")
    for name, seconds in timings.items():
        print(f"  {name:<11} {seconds * 1e3:8.1f} ms")
    print(
        f"  digest = {timings['digest'] / timings['save']:.0%} of save, {timings['digest'] / timings['load']:.0%} of load; "
        f"{size / timings['digest'] / 1e9:.2f} GB/s"
    )


if __name__ == "__main__":
    main()
