"""The contract between export and infer: tensor names, metadata, and graphs from earlier versions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vaectl import contract
from vaectl.contract import build_metadata, graph_inputs, graph_outputs, parse_metadata
from vaectl.errors import UserInputError
from vaectl.infer import Decoder, VAEPair
from vaectl.models import VAEConfig

FIXTURES = Path(__file__).parent / "fixtures"


def names(specs):
    return [t.name for t in specs]


def test_each_roles_inputs_and_outputs_with_the_conditional_and_row_context_extras():
    plain = VAEConfig(latent_dim=3)
    assert names(graph_inputs(plain, "encoder")) == ["image"] and names(graph_outputs(plain, "encoder")) == [
        "mu",
        "logvar",
    ]
    assert names(graph_inputs(plain, "decoder")) == ["z"] and names(graph_outputs(plain, "decoder")) == ["image"]
    both = VAEConfig(latent_dim=3, num_classes=2, context_channels=4)
    assert names(graph_inputs(both, "encoder")) == ["image", "label"]
    assert names(graph_outputs(both, "encoder")) == ["mu", "logvar", "context_logits"]
    assert names(graph_inputs(both, "decoder")) == ["z", "label"]
    assert names(graph_outputs(both, "decoder")) == ["image", "base_logits"]
    assert graph_inputs(both, "decoder")[1].dtype == "int64"
    assert graph_outputs(both, "decoder")[0].shape == ("N", 1, 28, 28)
    assert graph_inputs(both, "decoder")[0].shape == ("N", 3)
    with pytest.raises(ValueError):
        graph_inputs(plain, "critic")


def test_metadata_round_trips_the_config_and_derives_the_readable_keys_from_it():
    cfg = VAEConfig(latent_dim=5, num_classes=2, class_names=("cat", "dog"), dataset="pets", context_channels=2)
    props = build_metadata(cfg, "decoder", "ab" * 32, "fp16", kl_per_dim=[0.0, 1.5, 0.01, 2.0, 0.3])
    info = parse_metadata(props)
    assert info.config == cfg and info.role == "decoder" and info.variant == "fp16"
    assert info.checkpoint_sha256 == "ab" * 32 and info.format_version == 1
    assert info.informative_dims() == [3, 1, 4]  # most informative first
    assert props["vaectl.latent_dim"] == "5" and json.loads(props["vaectl.class_names"]) == ["cat", "dog"]
    assert contract.metadata_of(info) == props  # what a derived graph (fp16, int8) carries
    # the readable keys are never parsed: changing one changes nothing
    assert parse_metadata({**props, "vaectl.latent_dim": "99"}).config.latent_dim == 5


def test_the_hold_out_seed_round_trips_and_is_absent_when_not_recorded():
    cfg = VAEConfig(latent_dim=3)
    props = build_metadata(cfg, "encoder", "", hold_out_seed=7)
    assert props["vaectl.hold_out_seed"] == "7"
    info = parse_metadata(props)
    assert info.hold_out_seed == 7 and contract.metadata_of(info, "int8")["vaectl.hold_out_seed"] == "7"
    assert parse_metadata(build_metadata(cfg, "encoder", "")).hold_out_seed is None


def test_only_graphs_a_format_1_reader_would_misread_are_written_as_format_2():
    """Guidance against the average label needs the reader to feed `guidance` although label_dropout is 0, which
    vaectl before format 2 did not do: such graphs say format 2 (refused by older readers in one line)."""
    versions = {
        "plain": VAEConfig(),
        "conditional": VAEConfig(num_classes=3),
        "label dropout": VAEConfig(num_classes=3, label_dropout=0.2, guidance=2.0),
        "average label": VAEConfig(num_classes=3, guidance=2.0),
    }
    got = {
        name: parse_metadata(build_metadata(cfg, "decoder", "ab" * 32)).format_version for name, cfg in versions.items()
    }
    assert got == {"plain": 1, "conditional": 1, "label dropout": 1, "average label": 2}
    # 3: a prior over some coordinates (tests/test_prior.py); 4: an encoder that refines (the refine_steps input)
    assert contract.FORMAT_VERSION == 4
    refining = VAEConfig(arch="resnet", channels=3, height=16, width=16, conv_channels=(2, 4), refine_steps=5)
    encoder, decoder = (parse_metadata(build_metadata(refining, role, "ab" * 32)) for role in ("encoder", "decoder"))
    assert (encoder.format_version, decoder.format_version) == (4, 1)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"vaectl.format_version": str(contract.FORMAT_VERSION + 1)}, "newer than this vaectl reads"),
        ({"vaectl.role": "critic"}, "unknown role"),
        ({"vaectl.config": "{not json"}, "malformed vaectl.config"),
        ({"vaectl.kl_per_dim": "[1, 2]"}, "2 values for 3 latent dimensions"),
        ({"vaectl.hold_out_seed": "three"}, "malformed vaectl.hold_out_seed"),
    ],
)
def test_bad_metadata_is_refused_with_one_line(change, message):
    props = build_metadata(VAEConfig(latent_dim=3), "decoder", "")
    with pytest.raises(UserInputError, match=message):
        parse_metadata({**props, **change}, "x.onnx")


def test_graphs_exported_by_vaectl_0_1_0_load_and_give_the_same_numbers():
    """Graphs from before the contract module (fixtures/README.md) stay readable, with identical results."""
    from vaectl.data import load_mnist_sample

    want = np.load(FIXTURES / "v010_expected.npz")
    x = load_mnist_sample().test[:4]
    plain = VAEPair.load(FIXTURES / "v010_plain" / "encoder.onnx", FIXTURES / "v010_plain" / "decoder.onnx")
    assert plain.decoder.info.kl_per_dim is None  # recorded since; unknown here
    assert np.array_equal(plain.decoder.sample(4, seed=0), want["plain_sample"])
    assert np.array_equal(plain.encoder.encode(x)[0], want["plain_mu"])
    assert np.array_equal(plain.reconstruct(x), want["plain_recon"])
    cond = VAEPair.load(
        FIXTURES / "v010_cond_context" / "encoder.onnx", FIXTURES / "v010_cond_context" / "decoder.onnx"
    )
    assert cond.decoder.config.row_context and cond.decoder.conditional
    assert np.array_equal(cond.decoder.sample(2, seed=0, label="all"), want["cond_sample"])
    assert np.array_equal(cond.encoder.encode(x, label=np.array([7, 2, 1, 0]))[0], want["cond_mu"])
    fp16 = Decoder(FIXTURES / "v010_cond_context" / "decoder.fp16.onnx")
    assert fp16.info.variant == "fp16"
    assert np.array_equal(fp16.sample(2, seed=0, label="all"), want["cond_fp16_sample"])


def test_informative_dims_are_those_above_the_threshold_most_informative_first():
    from vaectl.contract import INFORMATIVE_KL, informative_dims

    assert informative_dims([0.0, 2.5, INFORMATIVE_KL, 4.0, 0.06]) == [3, 1, 4]  # the threshold itself is not enough
    assert informative_dims([1.0, 1.0, 0.5]) == [0, 1, 2]  # ties keep index order
    assert informative_dims([]) == []
