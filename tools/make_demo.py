"""Re-create the demo model shipped in vaectl/demo/ from its recipe (needs the [train] extra).

    python tools/make_demo.py [--out demo]
Trains with `vaectl train` and exports with `vaectl export` exactly as RECIPE says (on CPU, one thread:
the weights come out bit-identical for a given seed and torch build; compare manifest.json's
weights_sha256, as the files' own sha256 also covers the run's checkpoint hash), converts the encoder to float16 weights as export does
for the decoder (vaectl.export.variants.to_fp16), checks both float16 graphs against their float32
originals, checks that the shipped decoder carries the fitted prior, and writes encoder.onnx, decoder.onnx and
manifest.json (recipe, seed, versions, the prior's components, sha256).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SEED = 0
# The exact arguments; RUN_DIR and EXPORT_DIR are filled in. A small conditional model with a 2-D latent
# (the map and the pad show the whole latent, and the class selector works), trained with label dropout so
# the same model is also unconditional (label "none") and takes a guidance weight: every control of
# `vaectl explore` has something to do. The model flags are spelled out (they were the --conditional
# defaults when the demo was made) so that the recipe does not drift when those defaults change.
# The export fits the prior `vaectl generate` and the explorer sample from by default (a Gaussian mixture of
# the encoded training images, docs/sample-quality.md): the run's data, the embedded mnist-sample, is always
# at hand, and `--prior gmm` says so: were it missing, export would stop rather than fall back to N(0, I).
# decoder.fp16.onnx carries the prior in its metadata (vaectl.prior) as decoder.onnx does.
RECIPE = {
    "train": [
        "vaectl",
        "train",
        "--dataset",
        "mnist-sample",
        "--conditional",
        "--latent-dim",
        "2",
        "--hidden",
        "512,256",
        "--beta",
        "3",
        "--label-dropout",
        "0.2",
        "--guidance",
        "1",
        "--seed",
        str(SEED),
        "--device",
        "cpu",
        "--grid-every",
        "0",
        "--out",
        "RUN_DIR",
    ],
    "export": ["vaectl", "export", "RUN_DIR", "--out", "EXPORT_DIR", "--fp16", "--prior", "gmm"],
    "decoder.onnx": "EXPORT_DIR/decoder.fp16.onnx (float16 weights, float32 inputs and outputs)",
    "encoder.onnx": "vaectl.export.variants.to_fp16(EXPORT_DIR/encoder.onnx)",
}
# Largest allowed difference of the float16 graphs from the float32 ones on the sample's test split.
MAX_MU_DIFF = 0.05
MAX_PIXEL_DIFF = 0.02
REPO = Path(__file__).resolve().parents[1]


def run(argv: list[str], run_dir: Path, export_dir: Path) -> None:
    args = [a.replace("RUN_DIR", str(run_dir)).replace("EXPORT_DIR", str(export_dir)) for a in argv[1:]]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    print("+ vaectl " + " ".join(args), file=sys.stderr)
    subprocess.run([sys.executable, "-m", "vaectl.cli", *args], check=True, env=env)


def fp16_encoder(src: Path, dst: Path) -> None:
    import onnx

    from vaectl.export.variants import to_fp16

    model = to_fp16(onnx.load(str(src)))
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(dst))


def weights_sha256(path: Path) -> str:
    """sha256 over a graph's initializers (name, dtype, shape, bytes): equal on a rebuild, where the file's own
    sha256 differs in vaectl.checkpoint_sha256 (each training run writes a checkpoint file of its own)."""
    import hashlib

    import onnx
    from onnx import numpy_helper

    digest = hashlib.sha256()
    for tensor in sorted(onnx.load(str(path)).graph.initializer, key=lambda t: t.name):
        values = numpy_helper.to_array(tensor)
        digest.update(f"{tensor.name}|{values.dtype.str}|{values.shape}|".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()


def max_differences(export_dir: Path, out: Path) -> dict[str, float]:
    """How far the shipped float16 graphs are from the float32 export, on the sample's test split."""
    import numpy as np

    from vaectl.data import load_data
    from vaectl.infer import Decoder, Encoder

    ds = load_data()
    x, y = ds.test, ds.test_labels
    mu32, _ = Encoder(export_dir / "encoder.onnx").encode(x, y)
    mu16, _ = Encoder(out / "encoder.onnx").encode(x, y)
    px32 = Decoder(export_dir / "decoder.onnx").decode_float(mu32, y)
    px16 = Decoder(out / "decoder.onnx").decode_float(mu32, y)
    return {"encoder_mu": float(np.abs(mu16 - mu32).max()), "decoder_pixel": float(np.abs(px16 - px32).max())}


def shipped_prior(out: Path) -> dict:
    """The fitted prior the shipped decoder carries, in brief; exits if it carries none (it would sample N(0, I))."""
    from vaectl import contract
    from vaectl.infer import Decoder

    decoder = Decoder(out / "decoder.onnx")
    spec = decoder.info.prior
    if spec is None:
        sys.exit(f"{out / 'decoder.onnx'} carries no fitted prior")
    kind = contract.prior_kind(spec)
    return {
        "kind": kind,
        "by_label": contract.prior_by_label(spec),
        "components": [len(w) for w in decoder.prior(kind).weights],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "demo", help="where to write the files [demo/]")
    args = parser.parse_args()

    import numpy
    import onnx
    import onnxruntime
    import torch

    from vaectl import __version__
    from vaectl.files import file_sha256

    with tempfile.TemporaryDirectory(prefix="vaectl-demo-") as tmp:
        run_dir, export_dir = Path(tmp) / "run", Path(tmp) / "export"
        run(RECIPE["train"], run_dir, export_dir)
        run(RECIPE["export"], run_dir, export_dir)
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(export_dir / "decoder.fp16.onnx", args.out / "decoder.onnx")
        fp16_encoder(export_dir / "encoder.onnx", args.out / "encoder.onnx")
        diffs = max_differences(export_dir, args.out)
        prior = shipped_prior(args.out)
    if diffs["encoder_mu"] > MAX_MU_DIFF or diffs["decoder_pixel"] > MAX_PIXEL_DIFF:
        sys.exit(f"float16 graphs too far from float32: {diffs}")
    names = ("encoder.onnx", "decoder.onnx")
    manifest = {
        "recipe": RECIPE,
        "seed": SEED,
        "vaectl_version": __version__,
        "built_with": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "numpy": numpy.__version__,
        },
        "fp16_max_abs_difference": {k: round(v, 6) for k, v in diffs.items()},
        "prior": prior,
        "bytes": {name: (args.out / name).stat().st_size for name in names},
        "sha256": {name: file_sha256(args.out / name) for name in names},
        "weights_sha256": {name: weights_sha256(args.out / name) for name in names},
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()
