"""Named recipes for `vaectl train --preset NAME`, and the defaults of a conditional run (torch-free).

A recipe is model fields (VAEConfig) plus training fields (TrainConfig). Explicit values win over it;
`vaectl.training.config.resolve` applies it, so a preset means the same from the CLI and from Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import arg


@dataclass(frozen=True)
class Recipe:
    model: dict = field(default_factory=dict)  # VAEConfig fields
    train: dict = field(default_factory=dict)  # TrainConfig fields


# What the tutorial and the conditional recipe were measured with: 20 epochs of batches of 128 at peak lr 2e-3,
# no KL warm-up. The default recipe trains longer on larger batches (TrainConfig); these keep their schedule.
SMALL_BATCH_SCHEDULE = {"epochs": 20, "batch_size": 128, "lr": 2e-3, "kl_warmup": 0.0}

PRESETS: dict[str, Recipe] = {
    # The tutorial this project grew from: an MLP, squared error (MSE) reconstruction, beta = 3,
    # a 2-D latent so one component can morph one digit into another.
    "tutorial": Recipe(
        model={"arch": "mlp", "hidden": (512, 256), "latent_dim": 2, "likelihood": "gaussian", "beta": 3.0},
        train=dict(SMALL_BATCH_SCHEDULE),
    ),
    # The recommended recipe for the best test likelihood on a CPU budget (docs/benchmarks.md, "Quality"): a
    # wider MLP with a larger latent and a row-autoregressive decoder (16-channel context over the 3 rows
    # above), larger in-memory batches under the one-cycle schedule, and KL warm-up. beta 0.3, as the default:
    # on Fashion-MNIST its samples come much closer to the data for a small loss of likelihood
    # (docs/sample-quality.md); `--beta 1` buys that likelihood back.
    "quality": Recipe(
        model={
            "arch": "mlp",
            "hidden": (1024, 512),
            "latent_dim": 64,
            "context_channels": 16,
            "context_kernel": 7,
            "beta": 0.3,
        },
        train={"epochs": 20, "batch_size": 256, "lr": 4e-3, "kl_warmup": 10.0},
    ),
}

# With the label given, z only needs style (slant, thickness); beta 3 keeps it there: a z with room to spare
# also learns the class, and then samples drawn with label y come out as other classes. Guidance against
# the average label (weight 2; VAEConfig) pulls each sample to its label at no training cost, which lets
# the latent and the MLP grow: more samples show the requested class, at a better likelihood, than with a
# smaller unguided model (docs/conditional.md, "How well it works").
# Applied to a conditional run under the preset and the explicit values.
CONDITIONAL = Recipe(
    model={"latent_dim": 4, "hidden": (1024, 512), "beta": 3.0, "guidance": 2.0}, train=dict(SMALL_BATCH_SCHEDULE)
)


# ----------------------------------------------------------------------------- the default, picked from the data

# Refinement (models/refine.py): on the held-out 64 px emoji, 5 steps gain 0.74 dB, 10 0.91, 20 1.04, 40 1.11;
# each step costs about a decoder pass and its gradient (20 steps: 40-60 ms an image at 64 px on 2 cores in
# onnxruntime, bench/refine_steps.py).
REFINE_STEPS = 20

# Colour images, or grey ones of 32 px and up: the resnet (models/vae.py) with a learned-variance Gaussian and
# dropout; colour images mirrored too (for_images). One stride-2 stage per halving of the smaller side until
# it is 4 px or less; the last stage DEEPEST_WIDTH wide, each stage above it half as wide (at least
# NARROWEST_WIDTH): the wide layers run on the small maps, so a 64 px model costs about twice a 32 px one
# (32 px: 32,64,128; 64 px: 16,32,64,128). Up to 32 px 100 epochs of batches of 32; above, 60 epochs of
# batches of 16: the larger model is short of steps, not of epochs, and smaller batches give it more of them
# for little more time. A folder of about 2,000 images trains in about 10 minutes or less on a 2-core CPU at
# either size. Chosen, and timed, on the emoji and Oxygen icon folders (docs/your-own-images.md).
IMAGE_RECIPE = Recipe(
    model={
        "arch": "resnet",
        "likelihood": "gaussian-learned",
        "latent_dim": 32,
        "beta": 1.0,
        "dropout": 0.1,
        "refine_steps": REFINE_STEPS,
    },
    train={"epochs": 60, "batch_size": 16, "lr": 2e-3},
)
SMALL_IMAGE_TRAIN = {"epochs": 100, "batch_size": 32}  # up to 32 px, in place of IMAGE_RECIPE's
SMALLEST_MAP = 4  # px: the resnet's last feature map
DEEPEST_WIDTH, NARROWEST_WIDTH = 128, 16


def resnet_widths(height: int, width: int) -> tuple[int, ...]:
    """One width per stride-2 stage, as many stages as halve the smaller side to SMALLEST_MAP px or less:
    DEEPEST_WIDTH for the last, half as much for each stage before it, at least NARROWEST_WIDTH."""
    side, stages = min(height, width), 1
    while (side + 1) // 2 > SMALLEST_MAP:
        side, stages = (side + 1) // 2, stages + 1
    return tuple(max(NARROWEST_WIDTH, DEEPEST_WIDTH >> i) for i in reversed(range(stages)))


def for_images(channels: int, height: int, width: int, hflip: bool | None = None) -> tuple[Recipe | None, str]:
    """The recipe `vaectl train` uses when no --preset or --arch says otherwise, and a line saying why.

    None for grey images under 32 px: the MLP and the default schedule (VAEConfig, TrainConfig) stay.
    hflip: the user's --hflip/--no-hflip, if given (it wins over the recipe's; the line says what will run)."""
    kind = "RGB" if channels == 3 else "grey"
    if channels == 1 and min(height, width) < 32:
        return (
            None,
            f"model: mlp VAE for {width}x{height} grey images (small and grey; {arg('arch', 'resnet')} for the resnet)",
        )
    recipe, why, mirrored = resnet_recipe(height, width), "32 px and up", ""
    if channels == 3:  # icons, emoji, photographs: a mirror image is as likely (grey ones may be digits or text)
        recipe, why = Recipe(model=recipe.model, train={**recipe.train, "hflip": True}), "colour"
        if hflip is not False:
            mirrored = f"; mirrored left to right, {arg('hflip', False)} to keep them as they are"
    return (
        recipe,
        f"model: resnet VAE for {width}x{height} {kind} images ({why}; {arg('arch', 'mlp')} for the MLP){mirrored}",
    )


def resnet_recipe(height: int, width: int) -> Recipe:
    """IMAGE_RECIPE with the widths, epochs and batch size for this image size."""
    train = dict(IMAGE_RECIPE.train)
    if max(height, width) <= 32:
        train.update(SMALL_IMAGE_TRAIN)
    return Recipe(model={**IMAGE_RECIPE.model, "conv_channels": resnet_widths(height, width)}, train=train)
