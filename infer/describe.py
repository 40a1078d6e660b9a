"""What `vaectl info` says about an ONNX file: role, vaectl metadata, inputs and outputs (no torch)."""

from __future__ import annotations

from pathlib import Path

from .. import contract
from ..contract import ROLE_KEY, GraphInfo, parse_metadata
from ..errors import plural
from ..prior import priors_of
from .safe_load import create_session, model_metadata, read_model_bytes


def describe_model(path) -> dict:
    """What `vaectl info` prints: role, vaectl metadata, and input/output names, types and shapes.

    Works on any self-contained ONNX file; files without vaectl metadata get role "unknown".
    """
    path = Path(path)
    data = read_model_bytes(path)
    session = create_session(data, str(path))
    meta = session.get_modelmeta()
    props = model_metadata(session, str(path))
    info = parse_metadata(props, str(path)) if ROLE_KEY in props else None

    def tensors(args):
        return [
            {"name": a.name, "type": a.type, "shape": [d if isinstance(d, int) else (d or "?") for d in a.shape]}
            for a in args
        ]

    return {
        "path": str(path),
        "bytes": len(data),
        "role": info.role if info else "unknown",
        "vaectl": info is not None,
        "variant": info.variant if info else None,
        "latent_dim": info.config.latent_dim if info else None,
        "image_shape": list(info.config.image_shape) if info else None,
        "class_names": list(info.config.class_names) if info else None,
        "config": info.config.to_dict() if info else None,
        "kl_per_dim": list(info.kl_per_dim) if info and info.kl_per_dim is not None else None,
        "informative_dims": info.informative_dims() if info else None,  # most informative first
        "informative_rule": contract.INFORMATIVE_RULE,
        "checkpoint_sha256": info.checkpoint_sha256 if info else None,
        "priors": _priors(info),
        "producer": meta.producer_name,
        "metadata": dict(sorted(props.items())),
        "inputs": [dict(t, default=_input_default(info, t["name"])) for t in tensors(session.get_inputs())],
        "outputs": tensors(session.get_outputs()),
    }


def format_description(d: dict) -> str:
    """`describe_model`'s dict as the lines `vaectl info` prints."""

    def sig(t):
        default = ""
        if t.get("default") is not None and t["name"] == contract.REFINE_STEPS:
            default = f" (the model's: {t['default']:g} steps)"
        elif t.get("default") is not None:
            default = f" (the model's weight: {t['default']:g})"
        return f"{t['name']}: {t['type']} [{', '.join(map(str, t['shape']))}]{default}"

    lines = [f"model       {d['path']} ({d['bytes']:,} bytes; {d['producer'] or 'unknown producer'})"]
    if d["vaectl"]:
        lines += [
            f"role        {d['role']} (variant {d['variant']})",
            f"latent_dim  {d['latent_dim']}",
            f"image       {'x'.join(map(str, d['image_shape']))} (channels x height x width)",
            f"classes     {', '.join(d['class_names']) or 'none (unconditional)'}",
            *_refinement(d),
            f"informative {_informative(d)}",
            f"checkpoint  sha256 {d['checkpoint_sha256'] or '?'}",
        ]
        for i, p in enumerate(d.get("priors") or []):
            lines.append(
                f"{'prior' if i == 0 else '':<12}{p['name']}{' (default)' if i == 0 else ''}: {p['description']}"
            )
    else:
        lines.append("role        unknown: no vaectl metadata (not made by `vaectl export`)")
    lines += [f"input       {sig(t)}" for t in d["inputs"]]
    lines += [f"output      {sig(t)}" for t in d["outputs"]]
    lines += [f"metadata    {k} = {_short(k, v)}" for k, v in d["metadata"].items()]
    return "\n".join(lines)


def _refinement(d: dict) -> list[str]:
    steps = d["config"].get("refine_steps", 0) if d["role"] == "encoder" else 0
    if not steps:
        return []
    return [
        f"refinement  {steps} steps move mu toward the z that best explains each image (each about a decoder pass; "
        f"the {contract.REFINE_STEPS} input sets another number)"
    ]


def _short(key: str, value: str) -> str:
    """A metadata value as `info` prints it: the prior's parameters (thousands of numbers) summarized."""
    if key == contract.PRIOR_KEY and len(value) > 200:
        return f"{value[:80]}... ({len(value):,} characters of JSON: `vaectl info --json` prints it all)"
    return value


def _priors(info: GraphInfo | None) -> list[dict] | None:
    """The priors a decoder samples from, its default first; what `--prior` takes and what each is."""
    if info is None or info.role != "decoder":
        return None
    priors = [{"name": p.name, "description": p.description} for p in priors_of(info)]
    kind = contract.prior_kind(info.prior)
    if kind not in (None, contract.PRIOR_GMM):  # written by a newer vaectl: say why it is not used
        priors[0]["description"] += f" (the graph's prior of kind {kind!r} needs a newer vaectl)"
    return priors


def _informative(d: dict) -> str:
    """'2 of 4 latent dimensions, most informative first: z1 (KL 1.49), z0 (KL 1.12) (mean KL to ...)'."""
    dims, kl = d["informative_dims"], d["kl_per_dim"]
    if dims is None:
        return "unknown: this graph records no KL per dimension (an older export)"
    shown = ", ".join(f"z{i} (KL {kl[i]:.2f})" for i in dims[:16]) + (", ..." if len(dims) > 16 else "")
    return (
        f"{len(dims)} of {plural(d['latent_dim'], 'latent dimension')}"
        + (f", most informative first: {shown}" if dims else "")
        + f" ({d['informative_rule']})"
    )


def _input_default(info: GraphInfo | None, name: str) -> float | None:
    """What the contract says to feed an input when the caller has no preference (guidance: the model's weight)."""
    if info is None:
        return None
    return next((t.default for t in contract.graph_inputs(info.config, info.role) if t.name == name), None)
