"""vaectl.pytorch.checkpoint_pair: a checkpoint behind vaectl.infer's interface gives what its exported graphs give."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from vaectl.data import load_mnist_sample
from vaectl.errors import UserInputError
from vaectl.infer import Decoder, Encoder, VAEPair
from vaectl.models.checkpoint import Checkpoint
from vaectl.pytorch import TorchSession, checkpoint_pair


def assert_same_images(a: np.ndarray, b: np.ndarray) -> None:
    """uint8 images from PyTorch and onnxruntime: float32 rounding may move a pixel across a rounding edge."""
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert np.mean(a != b) < 0.01


def test_the_checkpoint_samples_encodes_and_describes_itself_as_its_export(tiny_mlp_run, mlp_graphs):
    torch_pair = checkpoint_pair(tiny_mlp_run, prior=None)  # with the prior export fits, as the export carries it
    onnx_pair = VAEPair.load(mlp_graphs / "encoder.onnx", mlp_graphs / "decoder.onnx")
    for torch_graph, onnx_graph in ((torch_pair.encoder, onnx_pair.encoder), (torch_pair.decoder, onnx_pair.decoder)):
        assert torch_graph.info == onnx_graph.info  # config, checkpoint digest, KL per dimension, format
        assert torch_graph.path == tiny_mlp_run / "best.pt"
    assert torch_pair.decoder.info.informative_dims() == onnx_pair.decoder.info.informative_dims()
    assert_same_images(torch_pair.decoder.sample(32, seed=0), onnx_pair.decoder.sample(32, seed=0))
    # by default N(0, I) only (nothing fitted): the export's samples under --prior normal
    plain = checkpoint_pair(tiny_mlp_run).decoder
    assert plain.info.prior is None and [p.name for p in plain.priors] == ["normal"]
    assert_same_images(plain.sample(32, seed=0), onnx_pair.decoder.sample(32, seed=0, prior="normal"))
    z = onnx_pair.decoder.latents(8, seed=1)
    assert np.abs(torch_pair.decoder.decode_float(z) - onnx_pair.decoder.decode_float(z)).max() < 1e-5
    x = load_mnist_sample().test[:20]
    for got, want in zip(torch_pair.encoder.encode(x), onnx_pair.encoder.encode(x)):
        assert np.abs(got - want).max() < 1e-4
    assert_same_images(torch_pair.reconstruct(x), onnx_pair.reconstruct(x))
    assert_same_images(torch_pair.interpolate(x[0], x[1], 5), onnx_pair.interpolate(x[0], x[1], 5))
    # one digest: a PyTorch encoder and an exported decoder of the same checkpoint make a pair
    assert_same_images(VAEPair(torch_pair.encoder, onnx_pair.decoder).reconstruct(x), onnx_pair.reconstruct(x))


def test_the_pytorch_numbers_are_the_models(tiny_mlp_run):
    torch = pytest.importorskip("torch")
    model = Checkpoint.load(tiny_mlp_run).model()
    dec = checkpoint_pair(tiny_mlp_run).decoder
    z = dec.latents(4, seed=0)
    with torch.no_grad():
        want = torch.sigmoid(model.decoder(torch.from_numpy(z))).numpy()
    np.testing.assert_array_equal(dec.decode_float(z), want)


def test_labels_and_guidance_go_through_as_in_the_export(tiny_guided_run, guided_graphs):
    torch_dec = checkpoint_pair(tiny_guided_run, prior=None).decoder
    onnx_dec = Decoder(guided_graphs / "decoder.onnx")
    assert torch_dec.config.guided and torch_dec.config.no_label_class
    for kwargs in (
        dict(label="all", same_z=True),
        dict(label=3, guidance=0.0),
        dict(label=3, guidance=4.0),
        dict(label="none"),
        dict(label=None),
    ):
        assert_same_images(torch_dec.sample(4, seed=5, **kwargs), onnx_dec.sample(4, seed=5, **kwargs))
    x = load_mnist_sample().test[:6]
    torch_enc = checkpoint_pair(tiny_guided_run).encoder
    assert (
        np.abs(torch_enc.encode(x, label=2)[0] - Encoder(guided_graphs / "encoder.onnx").encode(x, label=2)[0]).max()
        < 1e-4
    )
    with pytest.raises(UserInputError, match="conditional encoder"):
        torch_enc.encode(x)  # the contract's checks hold before the export too


def test_a_row_context_model_generates_row_by_row_and_gives_its_scoring_outputs(tiny_context_run, context_graphs):
    torch_pair = checkpoint_pair(tiny_context_run, prior=None)
    onnx_pair = VAEPair.load(context_graphs / "encoder.onnx", context_graphs / "decoder.onnx")
    assert_same_images(torch_pair.decoder.sample(8, seed=0), onnx_pair.decoder.sample(8, seed=0))
    x = load_mnist_sample().test[:4]
    for got, want in zip(torch_pair.encoder.encode_with_context(x), onnx_pair.encoder.encode_with_context(x)):
        assert np.abs(got - want).max() < 1e-3
    z = onnx_pair.decoder.latents(3, seed=0)
    assert np.abs(torch_pair.decoder.base_logits(z) - onnx_pair.decoder.base_logits(z)).max() < 1e-3


def test_which_checkpoint_and_what_a_bad_source_says(tiny_mlp_run, tmp_path):
    assert checkpoint_pair(tiny_mlp_run, last=True).decoder.path == tiny_mlp_run / "last.pt"
    assert checkpoint_pair(tiny_mlp_run / "best.pt").decoder.path == tiny_mlp_run / "best.pt"
    with pytest.raises(UserInputError, match="no such file"):
        checkpoint_pair(tmp_path / "missing")
    with pytest.raises(UserInputError, match="no checkpoint"):
        checkpoint_pair(tmp_path)


def test_the_session_runs_every_output_like_onnxruntime(tiny_mlp_run, mlp_graphs):
    import onnxruntime as ort

    model = Checkpoint.load(tiny_mlp_run).model()
    ours = TorchSession(model, "encoder", "digest")
    theirs = ort.InferenceSession(str(mlp_graphs / "encoder.onnx"), providers=["CPUExecutionProvider"])
    assert [v.name for v in ours.get_inputs()] == [v.name for v in theirs.get_inputs()]
    assert [v.name for v in ours.get_outputs()] == [v.name for v in theirs.get_outputs()]
    feed = {"image": load_mnist_sample().test[:3].astype(np.float32) / 255}
    for got, want in zip(ours.run(None, feed), theirs.run(None, feed)):
        assert np.abs(got - want).max() < 1e-4
    (logvar,) = ours.run(["logvar"], feed)
    assert logvar.shape == (3, 4)
    assert ours.get_modelmeta().custom_metadata_map["vaectl.checkpoint_sha256"] == "digest"
