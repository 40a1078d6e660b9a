"""The one overwrite rule (files.claim_out_dir), writer by writer: a directory that holds an earlier run's
output is refused with one line and exit code 2, touching nothing; --overwrite deletes exactly those files
(a user's own files stay); an export of the same run may replace its own graphs."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")  # the export writer and the tiny runs need the [train] extra

from conftest import cli, expect_usage_error, make_tiny_idx_dir, snapshot

from vaectl.errors import OutputExistsError
from vaectl.files import Output, claim_out_dir

TINY_TRAIN = ["--arch", "mlp", "--latent-dim", "4", "--hidden", "32", "--batch-size", "16", "--grid-every", "0"]


def writers(mlp_graphs: Path, conv_graphs: Path, tiny_mlp_run: Path, tiny_conv_run: Path, data: Path) -> dict:
    """writer -> (the command writing into DIR, the command writing something else into DIR, its files there)."""
    dec = mlp_graphs / "decoder.onnx"
    return {
        "train --out": (
            ["train", "--data", data, "--epochs", 1, *TINY_TRAIN, "--out"],
            ["train", "--data", data, "--epochs", 1, *TINY_TRAIN, "--seed", 1, "--out"],
            {"last.pt", "best.pt", "config.json", "metrics.jsonl"},
        ),
        "generate --out-dir": (
            ["generate", "--decoder", dec, "-n", 20, "--seed", 0, "--out-dir"],
            ["generate", "--decoder", dec, "-n", 5, "--seed", 1, "--out-dir"],
            {f"{i:06d}.png" for i in range(20)},
        ),
        "data-images --out-dir": (
            ["data-images", "--label", 8, "-n", 3, "--out-dir"],
            ["data-images", "--label", 3, "-n", 2, "--out-dir"],
            {"test_00014_8.png", "test_00015_8.png", "test_00017_8.png"},
        ),
        "export --out": (
            ["export", tiny_mlp_run, "--fp16", "--out"],
            ["export", tiny_conv_run, "--out"],
            {"encoder.onnx", "decoder.onnx", "decoder.fp16.onnx"},
        ),
        "explore --site": (
            ["explore", mlp_graphs, "--site"],
            ["explore", conv_graphs, "--site"],
            None,  # index.html, the modules, ort/, models/, api/
        ),
    }


@pytest.fixture
def all_writers(mlp_graphs, conv_graphs, tiny_mlp_run, tiny_conv_run, tmp_path):
    return writers(mlp_graphs, conv_graphs, tiny_mlp_run, tiny_conv_run, make_tiny_idx_dir(tmp_path / "idx"))


WRITERS = ["train --out", "generate --out-dir", "data-images --out-dir", "export --out", "explore --site"]


@pytest.mark.parametrize("writer", WRITERS)
def test_earlier_output_is_refused_in_one_line_and_overwrite_replaces_exactly_it(writer, all_writers, tmp_path):
    first, second, files = all_writers[writer]
    out = tmp_path / "out"
    assert cli(*first, out).exit_code == 0
    (out / "notes.txt").write_text("the user's own file")
    earlier = snapshot(out)
    if files is not None:
        assert files <= set(earlier), sorted(earlier)

    refused = cli(*second, out)
    expect_usage_error(refused, f"{out}: already holds")
    assert "--overwrite: it deletes those files and nothing else" in refused.stderr
    assert snapshot(out) == earlier  # byte for byte: nothing was touched

    replaced = cli(*second, out, "--overwrite")
    assert replaced.exit_code == 0, replaced.stderr
    assert "note: --overwrite: removed " in replaced.stderr and "kept what vaectl did not write: notes.txt" in (
        replaced.stderr
    )
    assert (out / "notes.txt").read_text() == "the user's own file"
    # what is there now is the second run's output alone: a fresh directory gets the same files
    fresh = tmp_path / "fresh"
    assert cli(*second, fresh).exit_code == 0
    now = {k for k in snapshot(out) if k != "notes.txt"}
    assert now == set(snapshot(fresh)), (sorted(now), sorted(snapshot(fresh)))


def test_generate_over_an_earlier_folder_no_longer_mixes_two_runs(all_writers, tmp_path):
    """20 images, then 5 more with --overwrite: the folder holds 5 images, all from the second run."""
    first, second, _ = all_writers["generate --out-dir"]
    out = tmp_path / "samples"
    assert cli(*first, out).exit_code == 0
    assert cli(*second, out, "--overwrite").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}.png" for i in range(5)]


def test_a_run_re_exported_into_its_own_folder_replaces_its_graphs_without_overwrite(tiny_mlp_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_mlp_run, run)
    assert cli("export", run, "--fp16", "--out", run / "onnx").exit_code == 0
    again = cli("export", run, "--last", "--out", run / "onnx")  # another checkpoint of the same run, no --fp16
    assert again.exit_code == 0, again.stderr
    # the fp16 decoder of the earlier export would not match the new graphs: removed, and said
    assert sorted(p.name for p in (run / "onnx").iterdir()) == ["decoder.onnx", "encoder.onnx"]
    assert "removed exported graphs from" in again.stderr and "decoder.fp16.onnx" in again.stderr


def test_the_same_checkpoint_may_be_exported_again_anywhere(tiny_mlp_run, tmp_path):
    out = tmp_path / "graphs"
    assert cli("export", tiny_mlp_run, "--out", out).exit_code == 0
    assert cli("export", tiny_mlp_run, "--fp16", "--out", out).exit_code == 0
    assert {p.name for p in out.iterdir()} == {"encoder.onnx", "decoder.onnx", "decoder.fp16.onnx"}


def test_from_python_the_refusal_names_the_parameters(mlp_graphs, tmp_path):
    from vaectl.infer import commands

    commands.generate(mlp_graphs / "decoder.onnx", 3, seed=0, out_dir=tmp_path / "g")
    with pytest.raises(OutputExistsError) as e:
        commands.generate(mlp_graphs / "decoder.onnx", 3, seed=0, out_dir=tmp_path / "g")
    assert "choose another out_dir, or give overwrite=True" in str(e.value)


def test_claim_counts_only_the_writers_own_files(tmp_path):
    output = Output("test output", (r"\d+\.txt", r"sub/[a-z]+\.bin"))
    (tmp_path / "notes.md").write_text("mine")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "keep.txt").write_text("mine")
    claim = claim_out_dir(tmp_path, output)  # nothing of this writer's: allowed
    assert claim.earlier == [] and not claim.created
    (tmp_path / "001.txt").write_text("earlier")
    (tmp_path / "sub" / "data.bin").write_text("earlier")
    with pytest.raises(OutputExistsError, match=r"already holds test output \(001.txt, sub/ \(1 file\)\)"):
        claim_out_dir(tmp_path, output)
    claim = claim_out_dir(tmp_path, output, overwrite=True)
    with pytest.warns(UserWarning, match="overwrite=True: removed test output"):
        assert claim.clear() == [tmp_path / "001.txt", tmp_path / "sub" / "data.bin"]
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["notes.md", "sub", "sub/keep.txt"]
