"""Named recipes for `vaectl train --preset NAME`: model fields plus training flags. Explicit flags win."""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    # The tutorial this project grew from: an MLP, squared error (MSE) reconstruction, beta = 3,
    # a 2-D latent so one component can morph one digit into another.
    "tutorial": {
        "model": {"arch": "mlp", "hidden": (512, 256), "latent_dim": 2, "likelihood": "gaussian", "beta": 3.0},
        "train": {},
    },
    # The recommended recipe for the best test likelihood on a CPU budget (README, "Quality"): a wider MLP
    # with a larger latent and a row-autoregressive decoder (16-channel context over the 3 rows above),
    # larger in-memory batches under the one-cycle schedule, and KL warm-up.
    "quality": {
        "model": {"arch": "mlp", "hidden": (1024, 512), "latent_dim": 64, "context_channels": 16, "context_kernel": 7},
        "train": {"batch_size": 256, "lr": 4e-3, "kl_warmup": 10.0},
    },
}
