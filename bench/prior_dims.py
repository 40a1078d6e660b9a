"""Which latent dimensions should the fitted prior's mixture cover? All of them, or those the encoder uses?

    python bench/prior_dims.py EXPORT_DIR [--ks 8,16,32,64,128] [--judge-ks 16,64,128]

EXPORT_DIR is what `vaectl export` wrote for a Fashion-MNIST model (encoder.onnx and decoder.onnx). The bench
encodes the training images as export does (one draw of q(z|x) per image, 50,000 of them), then for each K:
  all dims:   a K-component full-covariance mixture over all D coordinates (what export fitted before);
  used dims:  the same over the coordinates whose mean KL to N(0, 1) is 0.01 nats or more, N(0, 1) on the
              rest (what export fits).
Each is fitted to the draws of 90 % of the images (30 EM iterations, as export's choice of K) and scored on
the other 10 %: the mean held-out log density per draw over all D coordinates (higher is better). For the K
in --judge-ks, the fit continues on all draws and 10,000 samples of the exported decoder from it are judged
as bench/sample_quality.py judges them: FD, precision and recall in its judge's features against the test
images. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sample_quality import DEFAULT_CACHE, FASHION_DIR, JUDGE, features, frechet_distance, judges_for, precision_recall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export_dir", type=Path)
    ap.add_argument("--ks", default="8,16,32,64,128", help="K fitted and scored on held-out draws")
    ap.add_argument("--judge-ks", default="16,64,128", help="K whose samples are judged")
    args = ap.parse_args()
    from vaectl import contract
    from vaectl.data import load_data
    from vaectl.infer import Decoder, Encoder
    from vaectl.prior import MixturePrior, NormalPrior
    from vaectl.prior import fit as F
    from vaectl.prior.mixture import fit_mixture

    ds = load_data(FASHION_DIR)
    encoder, decoder = Encoder(args.export_dir / "encoder.onnx"), Decoder(args.export_dir / "decoder.onnx")
    d = decoder.latent_dim
    subsets = F.Subsets.of(len(ds.train), F.SEED)
    z, kl = F.draws_and_kl(lambda x, y: encoder.encode(x), ds.train[subsets.order], None, subsets.draws, F.SEED)
    used = F.mixed_dims(kl)
    print(f"{args.export_dir}: {len(used)} of {d} dimensions used (mean KL >= {F.UNUSED_KL} nats)")
    held, fit = z[: subsets.held].reshape(-1, d), z[subsets.held :].reshape(-1, d)
    ((judge, _),) = judges_for(ds, "fashion-mnist", DEFAULT_CACHE, which=(JUDGE,)).values()
    real = features(judge, ds.test)
    print("| dims | K | held-out log density | fit (s) | FD | precision | recall |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    judge_ks = {int(k) for k in args.judge_ks.split(",")}
    for name, dims in (("all", np.arange(d)), ("used", used)):
        rest = np.setdiff1d(np.arange(d), dims)
        offset = float(NormalPrior(len(rest)).log_density(held[:, rest]).mean()) if len(rest) else 0.0
        for k in map(int, args.ks.split(",")):
            t0 = time.perf_counter()
            candidate = fit_mixture(fit[:, dims], k, F.SEED, max_iter=F.SELECT_MAX_ITER)
            score = float(candidate.log_density(held[:, dims]).mean()) + offset
            row = f"| {name} | {k} | {score:.3f} | {time.perf_counter() - t0:.1f} |"
            if k in judge_ks:
                final = fit_mixture(z.reshape(-1, d)[:, dims], k, F.SEED, start=candidate)
                spec = contract.prior_document(d, False, [final.embedded(dims, d).as_dict()])
                images = decoder.sample(len(ds.test), seed=0, prior=MixturePrior(spec))
                feats = features(judge, images[:, None] if images.ndim == 3 else images)
                precision, recall = precision_recall(real, feats)
                row += f" {frechet_distance(real, feats):.2f} | {precision:.3f} | {recall:.3f} |"
            else:
                row += " | | |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
