"""Model definitions. `VAEConfig` is torch-free; importing `VAE` and friends needs torch."""

from .config import ARCHITECTURES, LIKELIHOODS, VAEConfig

__all__ = ["ARCHITECTURES", "LIKELIHOODS", "VAEConfig", "VAE", "Encoder", "Decoder", "build_vae"]


def __getattr__(name):  # lazy: keeps `vaectl.models.VAEConfig` importable without torch
    if name in ("VAE", "Encoder", "Decoder", "build_vae", "reparameterize", "kl_divergence"):
        from . import vae

        return getattr(vae, name)
    raise AttributeError(name)
