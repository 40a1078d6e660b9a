"""`vaectl eval --encoder E --decoder D`: the core's scorer (vaectl/scoring.py) on exported graphs, no torch."""

from __future__ import annotations

from .. import layout
from ..data import MNIST_SAMPLE, load_data, warn_notes
from ..errors import UserInputError, arg
from ..scoring import IWAE_K, EvalReport, score, sigmoid
from .sessions import VAEPair, graph_path


def evaluate_onnx(
    encoder_path,
    decoder_path,
    *,
    data_dir=None,
    dataset: str | None = None,
    k: int = IWAE_K,
    n: int | None = None,
    seed: int = 0,
    binarize: bool = False,
    threads: int | None = None,
    progress=None,
    prior=None,
) -> EvalReport:
    """`vaectl eval --encoder E --decoder D`: the same scorer on exported graphs, no torch; scored under N(0, I)
    and under the prior `generate` samples from (`prior`: a name, as generate's --prior) [the graph's default]."""
    if k < 1:
        raise UserInputError(f"{arg('k')} must be at least 1, got {k}")
    if n is not None and n < 1:
        raise UserInputError(f"{arg('n')} must be at least 1, got {n}")
    pair = VAEPair.load(encoder_path, decoder_path, threads)
    cfg = pair.decoder.config
    chosen = pair.decoder.prior(prior)
    run_dir = None
    if data_dir is None and dataset is None:
        run_dir = layout.run_dir_of_graph(graph_path(decoder_path, "decoder"))
    if data_dir is None and run_dir is None:
        wanted = dataset or cfg.dataset
        if wanted != MNIST_SAMPLE:
            raise UserInputError(
                f"the model was trained on {wanted!r}: point {arg('data_dir')} at a folder with its IDX files or "
                "images (downloading torchvision datasets needs the [train] extra)"
            )
    c, h, w = cfg.image_shape
    # graphs exported into their run directory: the data the run trained on, read as it read them (its size,
    # its hold-out); otherwise the model's own data (the embedded sample) at the size it trained at (train
    # --image-size); named data as it is, holding out what the run held out where it has no test split
    # (GraphInfo.hold_out_seed)
    if run_dir is not None:
        from ..data.sources import load_model_data

        ds = load_model_data(cfg, None, run_dir)
    elif data_dir is None:
        ds = load_data(None, image_size=h if h == w else None, channels=c)
    else:
        ds = load_data(data_dir, seed=pair.decoder.info.hold_out_seed or 0)
    warn_notes(ds)
    if tuple(ds.image_shape) != cfg.image_shape:
        raise UserInputError(
            f"dataset {ds.name!r} has images of shape {tuple(ds.image_shape)}, but the model expects {cfg.image_shape}"
        )
    labels = None
    if cfg.num_classes:
        if ds.test_labels is None:
            raise UserInputError("this conditional model needs labelled evaluation data")
        labels = ds.test_labels[:n]

    def encode(x, y):
        if cfg.row_context:
            return pair.encoder.encode_with_context(x, label=y)
        return pair.encoder.encode(x, label=y)

    def decode(z, y, context=None):
        if context is None:  # a guided decoder at w = 1: the likelihood is the plain conditional model's
            return pair.decoder.decode_float(z, label=y, guidance=1.0 if cfg.guided else None)
        return sigmoid(pair.decoder.base_logits(z, label=y) + context)

    report = score(
        encode,
        decode,
        ds.test[:n],
        labels,
        likelihood=cfg.likelihood,
        row_context=cfg.row_context,
        k=k,
        seed=seed,
        binarize=binarize,
        progress=progress,
        prior=chosen,
        log_sigma=cfg.log_sigma,
    )
    report.dataset, report.split, report.split_size = ds.name, ds.test_split, len(ds.test)  # what was scored
    return report
