"""Model definitions. `VAEConfig` is torch-free; importing `VAE` and friends needs torch."""

from .config import ARCHITECTURES, LIKELIHOODS, VAEConfig

_TORCH_NAMES = ("VAE", "Encoder", "Decoder", "reparameterize")
__all__ = ["ARCHITECTURES", "LIKELIHOODS", "VAEConfig", *_TORCH_NAMES]


def __getattr__(name):  # lazy: keeps `vaectl.models.VAEConfig` importable without torch
    if name in _TORCH_NAMES:
        from . import vae

        return getattr(vae, name)
    raise AttributeError(f"module 'vaectl.models' has no attribute {name!r}")
