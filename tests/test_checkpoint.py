"""The Checkpoint object (models/checkpoint.py): to disk and back, its model, its numpy callables, its data, its
prior plan. The digest and refusals of damaged files are in tests/test_checkpoint_digest.py."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vaectl.errors import UserInputError  # noqa: E402
from vaectl.models.checkpoint import Checkpoint, TrainingState, read_state  # noqa: E402
from vaectl.training import TrainConfig, train  # noqa: E402


def test_state_round_trips_through_the_file(tiny_mlp_run, tmp_path):
    ckpt = Checkpoint.load(tiny_mlp_run, last=True)
    assert ckpt.path == tiny_mlp_run / "last.pt" and ckpt.run_dir == tiny_mlp_run
    assert ckpt.state.epoch == 2 and ckpt.resumable and ckpt.train["epochs"] == 2
    ckpt.save(tmp_path / "again.pt")
    again = Checkpoint.load(tmp_path / "again.pt")
    assert again.config == ckpt.config and again.train == ckpt.train and again.state == ckpt.state
    assert again.weights.keys() == ckpt.weights.keys()
    assert all(torch.equal(again.weights[k], ckpt.weights[k]) for k in ckpt.weights)
    # on disk it is plain data: the same keys the training loop has always written
    raw = read_state(tmp_path / "again.pt")
    assert {"config", "train", "model", "optimizer", "rng", "epoch", "step_in_epoch", "global_step"} <= set(raw)
    assert isinstance(raw["config"], dict)


def test_a_weights_only_checkpoint_is_not_resumable(tmp_path, tiny_mlp_run):
    ckpt = Checkpoint.load(tiny_mlp_run)
    bare = Checkpoint(config=ckpt.config, weights=ckpt.weights)
    bare.save(tmp_path / "bare.pt")
    loaded = Checkpoint.load(tmp_path / "bare.pt")
    assert not loaded.resumable and loaded.state == TrainingState()
    with pytest.raises(UserInputError, match="no resumable training state"):
        train(resume=tmp_path / "bare.pt", log=lambda m: None)


def test_numpy_callables_are_the_model(tiny_mlp_run):
    ckpt = Checkpoint.load(tiny_mlp_run)
    model = ckpt.model()
    assert model is ckpt.model() and not model.training  # made once, in eval mode
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    mu, logvar = ckpt.numpy_encode()(x, None)
    with torch.no_grad():
        want_mu, want_lv = model.encoder(torch.from_numpy(x))
        want_img = torch.sigmoid(model.decoder(want_mu)).numpy()
    assert np.array_equal(mu, want_mu.numpy()) and np.array_equal(logvar, want_lv.numpy())
    assert np.array_equal(ckpt.numpy_decode()(mu, None), want_img)


def test_training_data_is_read_at_the_size_the_run_trained_at(tmp_path):
    """A run trained with --image-size 16 on the 28-px embedded sample: its own data comes back at 16 px for
    eval, the prior fit and export alike."""
    out = tmp_path / "run16"
    train(
        TrainConfig(out=str(out), epochs=1, batch_size=512, image_size=16, grid_every=0),
        dict(arch="mlp", latent_dim=2, hidden=(8,)),
        log=lambda m: None,
    )
    ckpt = Checkpoint.load(out)
    ds = ckpt.training_data()
    assert ds.image_shape == (1, 16, 16) == ckpt.config.image_shape
    plan = ckpt.prior_plan(None)
    assert plan.data is not None and plan.data.image_shape == (1, 16, 16)
    with pytest.raises(UserInputError, match="fits none"):
        ckpt.prior_plan("normal", data_dir=tmp_path)


def test_prior_plan_says_why_none_is_fitted_when_the_data_is_gone(tiny_mlp_run, tmp_path):
    ckpt = Checkpoint.load(tiny_mlp_run)
    ckpt.train = {**ckpt.train, "data": str(tmp_path / "gone"), "dataset": None}
    plan = ckpt.prior_plan(None)
    spec, line = plan.fit()
    assert spec is None and "not at hand" in line and "not there any more" in line
    with pytest.raises(UserInputError, match="cannot fit the prior"):
        ckpt.prior_plan("gmm")
