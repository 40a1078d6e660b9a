"""Latent-space paths (pure numpy): interpolation between two points and one-dimension traversals."""

from __future__ import annotations

import numpy as np

from ..errors import UserInputError, arg, plural
from . import defaults

METHODS = ("slerp", "lerp")


def _check_steps(steps: int) -> None:
    if int(steps) != steps or steps < 2:
        raise UserInputError(f"{arg('steps')} must be at least 2 (the two endpoints), got {steps}")


def lerp(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    """(steps, D) points on the straight line from a to b, both included."""
    _check_steps(steps)
    t = np.linspace(0.0, 1.0, steps)[:, None]
    out = (1.0 - t) * a[None].astype(np.float64) + t * b[None].astype(np.float64)
    out[0], out[-1] = a, b
    return out.astype(np.float32)


def slerp(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    """(steps, D) points on the great-circle arc from a to b, both included.

    Under a N(0, I) prior, points on the straight line between two samples have atypically small
    norms (the middle of the line is near the origin); slerp keeps them at typical norms.
    Falls back to lerp when a and b are (anti)parallel or zero, where the arc is undefined.
    """
    _check_steps(steps)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    na, nb = np.linalg.norm(a64), np.linalg.norm(b64)
    if na == 0 or nb == 0:
        return lerp(a, b, steps)
    cos = float(np.clip(np.dot(a64 / na, b64 / nb), -1.0, 1.0))
    omega = np.arccos(cos)
    if np.sin(omega) < 1e-6:
        return lerp(a, b, steps)
    t = np.linspace(0.0, 1.0, steps)[:, None]
    out = (np.sin((1.0 - t) * omega) * a64 + np.sin(t * omega) * b64) / np.sin(omega)
    out[0], out[-1] = a64, b64
    return out.astype(np.float32)


def interpolate_latents(a, b, steps: int, method: str = "slerp") -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float32).reshape(-1), np.asarray(b, dtype=np.float32).reshape(-1)
    if a.shape != b.shape:
        raise UserInputError(f"latent points differ in size: {a.shape[0]} and {b.shape[0]}")
    if method not in METHODS:
        raise UserInputError(f"unknown interpolation method {method!r}; choose one of {', '.join(METHODS)}")
    return slerp(a, b, steps) if method == "slerp" else lerp(a, b, steps)


def traverse_latents(z0, dims, span: float, steps: int, center=None, scale=None) -> np.ndarray:
    """(len(dims) * steps, D): for each dim d, `steps` copies of z0 with that component set to evenly spaced
    values from center_d - span * scale_d to center_d + span * scale_d (the prior's mean and standard
    deviation; default 0 and 1, N(0, I)'s); the others stay fixed."""
    _check_steps(steps)
    z0 = np.asarray(z0, dtype=np.float32).reshape(-1)
    d = z0.shape[0]
    dims = list(range(d)) if dims is None else [int(i) for i in dims]
    if not dims:
        raise UserInputError("give at least one latent dimension to traverse")
    for i in dims:
        if not 0 <= i < d:
            raise UserInputError(
                f"{arg('dims', i)} is out of range: this model has {plural(d, 'latent dimension')} (0..{d - 1})"
            )
    if not np.isfinite(span) or span <= 0:
        raise UserInputError(f"{arg('span')} must be a positive number, got {span}")
    values = np.linspace(-span, span, steps, dtype=np.float64)
    center = np.zeros(d) if center is None else np.asarray(center, dtype=np.float64).reshape(-1)
    scale = np.ones(d) if scale is None else np.asarray(scale, dtype=np.float64).reshape(-1)
    out = np.repeat(z0[None], len(dims) * steps, axis=0)
    for row, i in enumerate(dims):
        out[row * steps : (row + 1) * steps, i] = (center[i] + scale[i] * values).astype(np.float32)
    return out


def grid_latents(z0, dims=(0, 1), span: float = defaults.TRAVERSE_SPAN, steps: int = defaults.GRID_STEPS) -> np.ndarray:
    """(steps * steps, D): a steps x steps grid over two latent components, each from -span to +span (in prior
    standard deviations), the others fixed at z0. Row-major like a plot: dims[0] grows to the right, dims[1]
    grows upwards (the first row is +span). Decoded and shown with nrow=steps, it is the decoded manifold."""
    _check_steps(steps)
    z0 = np.asarray(z0, dtype=np.float32).reshape(-1)
    dims = [int(i) for i in dims]
    if len(dims) != 2 or dims[0] == dims[1]:
        raise UserInputError(f"a latent grid spans two different dimensions, got {dims}")
    values = traverse_latents(z0, dims, span, steps)[:steps, dims[0]]  # (steps,) -span..span; checks dims and span
    out = np.repeat(z0[None], steps * steps, axis=0)
    out[:, dims[0]] = np.tile(values, steps)
    out[:, dims[1]] = np.repeat(values[::-1], steps)
    return out
