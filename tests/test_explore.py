"""vaectl explore's server and static site, over real HTTP: routes, guards, info.json, the map, uploads.

The page itself runs in a real browser in tests/test_explore_browser.py.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, expect_usage_error, make_tiny_idx_dir, sigint_as_in_a_terminal
from PIL import Image
from test_prior import random_mixture, spec_of
from test_untrusted import png_bomb

from vaectl import layout
from vaectl.contract import INFORMATIVE_KL, INFORMATIVE_RULE, informative_dims
from vaectl.data import load_data
from vaectl.errors import UserInputError
from vaectl.explore import load_explore_model, make_server, write_site
from vaectl.explore.model import MAP_IMAGES, describe_prior, draws, view_ranges, with_article
from vaectl.explore.server import MAX_UPLOAD_BYTES, STATIC, VENDOR, allowed_hosts, runtime_files
from vaectl.infer import Decoder, Encoder, describe_model, prepare_images
from vaectl.prior import MixturePrior


@contextmanager
def serving(model, host="127.0.0.1"):
    """The explore server in a thread; yields its port."""
    server = make_server(model, host, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def request(port, path, method="GET", body=None, host=None, headers=None):
    """(status, headers, body) for one raw request: the path goes out exactly as given."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", host or f"127.0.0.1:{port}")
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


@pytest.fixture(scope="module")
def mlp_model(mlp_graphs):
    return load_explore_model(mlp_graphs)


@pytest.fixture(scope="module")
def mlp_server(mlp_model):
    with serving(mlp_model) as port:
        yield port


def test_routes_serve_the_page_the_runtime_and_the_graphs(mlp_server, mlp_graphs):
    status, headers, body = request(mlp_server, "/")
    assert status == 200 and headers["content-type"].startswith("text/html") and b"app.mjs" in body
    assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store"
    for name in (
        "app.mjs",
        "runtime.mjs",
        "views.mjs",
        "panels.mjs",
        "ort/ort.wasm.min.mjs",
        "ort/ort-wasm-simd-threaded.mjs",
    ):
        status, headers, _ = request(mlp_server, f"/{name}")
        assert status == 200 and headers["content-type"].startswith("text/javascript"), name
    status, headers, body = request(mlp_server, "/ort/ort-wasm-simd-threaded.wasm")
    assert status == 200 and headers["content-type"] == "application/wasm" and headers["content-encoding"] == "gzip"
    wasm = runtime_files()["ort-wasm-simd-threaded.wasm"]
    assert hashlib.sha256(gzip.decompress(body)).hexdigest() == wasm["sha256"]
    assert len(body) == wasm["stored_bytes"] < wasm["bytes"] / 3
    for name in ("decoder.onnx", "decoder.fp16.onnx", "encoder.onnx"):
        status, headers, body = request(mlp_server, f"/models/{name}")
        assert status == 200 and body == (mlp_graphs / name).read_bytes()


# how the page's JavaScript spells a URL it requests (it cannot import layout.py): quoted, relative, api/ or models/
PAGE_URL = re.compile(r"""['"`]((?:api|models)/[^'"`?]*)""")


def urls_the_page_requests() -> set[str]:
    """The api/ and models/ URLs in the page's JavaScript, with {} for each ${...} and no query."""
    return {
        re.sub(r"\$\{[^}]*\}", "{}", url)
        for path in sorted(STATIC.glob("*.mjs"))
        for url in PAGE_URL.findall(path.read_text())
    }


def test_the_page_requests_only_urls_that_layout_names():
    requested = urls_the_page_requests()
    named = {
        *(layout.INFO_JSON, layout.MAP_JSON, layout.RUN_JSON, layout.DRAWS_JSON, layout.UPLOAD),
        layout.draws_file("{}", "{}"),
        layout.site_model_file("encoder"),
        *(layout.site_model_file("decoder", variant) for variant in layout.DECODER_VARIANTS),
    }
    # guards the pattern: it finds the page's first request, its fp32 decoder and a static site's draws
    assert {layout.INFO_JSON, layout.site_model_file("decoder"), layout.draws_file("{}", "{}")} <= requested
    assert requested <= named, sorted(requested - named)


def test_the_server_answers_every_url_the_page_requests(mlp_server):
    """GET (api/draws.json wants its query: 400), the upload a POST (an empty one: 422); a seed's draws file is
    the static site's alone (the server answers api/draws.json instead)."""
    for url in urls_the_page_requests() - {layout.draws_file("{}", "{}")}:
        if url == layout.UPLOAD:
            assert request(mlp_server, f"/{url}", "POST", b"")[0] == 422
        else:
            assert request(mlp_server, f"/{url}")[0] in (200, 400), url


@pytest.mark.parametrize(
    "path",
    [
        "/../pyproject.toml",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/models/../encoder.onnx",
        "/models/%2e%2e/decoder.onnx",
        "/models/decoder.int8.onnx",
        "/models/",
        "/static/index.html",
        "/index.html/",
        "//etc/passwd",
        "/cli.py",
        "/ort/",
        "/ort/ort.all.min.mjs",
        "/ort/ort-wasm-simd-threaded.wasm.gz",
        "/run/samples_epoch001.png",
        "/api/",
    ],
)
def test_unknown_and_escaping_paths_are_404(mlp_server, path):
    status, headers, body = request(mlp_server, path)
    assert status == 404 and body == b"404: not found\n"
    assert headers["x-content-type-options"] == "nosniff"


def test_foreign_host_header_is_421(mlp_server):
    for host in ("evil.example", f"evil.example:{mlp_server}", f"127.0.0.1:{mlp_server + 1}", "attacker.localhost:80"):
        status, _, body = request(mlp_server, "/api/info.json", host=host)
        assert status == 421 and b"Host" in body, host
    status, _, body = request(mlp_server, "/api/upload", "POST", b"x", host="evil.example")
    assert status == 421
    for host in (f"localhost:{mlp_server}", f"127.0.0.1:{mlp_server}", f"LOCALHOST:{mlp_server}"):
        assert request(mlp_server, "/", host=host)[0] == 200, host


def test_bound_to_all_interfaces_only_ip_literals_pass():
    ok = allowed_hosts("0.0.0.0", 8000)
    assert ok("192.168.1.20:8000") and ok("localhost:8000") and ok("[fe80::1]:8000")
    assert not ok("evil.example:8000") and not ok("192.168.1.20:8001") and not ok("192.168.1.20")
    local = allowed_hosts("127.0.0.1", 8000)
    assert local("127.0.0.1:8000") and not local("192.168.1.20:8000")


def test_info_json_describes_the_model_as_vaectl_info_does(mlp_server, mlp_graphs):
    status, headers, body = request(mlp_server, "/api/info.json")
    info = json.loads(body)
    assert status == 200 and headers["content-type"] == "application/json"
    card = describe_model(mlp_graphs / "decoder.onnx")
    assert info["decoder"]["inputs"] == card["inputs"] and info["decoder"]["metadata"] == card["metadata"]
    assert info["decoder"]["path"] == "decoder.onnx"  # no local path leaves the machine
    assert info["latent_dim"] == card["latent_dim"] == 4 and info["image_shape"] == [1, 28, 28]
    assert [v["variant"] for v in info["variants"]] == ["fp32", "fp16"]
    assert info["variants"][1]["file"] == "models/decoder.fp16.onnx" and info["encoder_file"] == "models/encoder.onnx"
    assert info["guidance"] is None and info["row_context"] is False and info["num_classes"] == 0
    assert info["label_names"] == [] and info["beta"] == Decoder(mlp_graphs / "decoder.onnx").config.beta
    assert info["map"] == {"available": True, "count": MAP_IMAGES}
    # the fitted prior the export carries first (the page's default), N(0, I) second
    priors = Decoder(mlp_graphs / "decoder.onnx").priors
    assert [p["name"] for p in info["priors"]] == ["gmm", "normal"]
    assert [(p["name"], p["description"]) for p in info["priors"]] == [(p.name, p.description) for p in priors]
    # each prior's mean and standard deviation per component, exactly what `vaectl traverse` sweeps over
    for served, prior in zip(info["priors"], priors):
        mean, std = prior.moments()
        assert served["mean"] == [mean.tolist()] and served["std"] == [std.tolist()]
    assert info["priors"][1]["mean"] == [[0.0] * 4] and info["priors"][1]["std"] == [[1.0] * 4]


def test_a_prior_per_class_gives_the_page_its_moments_per_label():
    """A mixture per label: the traversal's centre and step sizes follow the class, as Decoder.traverse's do."""
    prior = MixturePrior(spec_of([random_mixture(2, 3, seed=k) for k in range(3)], by_label=True))
    served = describe_prior(prior, 3)
    assert len(served["mean"]) == len(served["std"]) == 3 and served["mean"][0] != served["mean"][1]
    for k in range(3):
        mean, std = prior.moments(k)
        assert served["mean"][k] == mean.tolist() and served["std"][k] == std.tolist()


def test_components_follow_the_one_informative_rule_of_the_contract(mlp_server, mlp_graphs):
    """The page's order and its informative components are contract.informative_dims of the KL the export recorded:
    what `vaectl info` and `vaectl traverse` use. The threshold, the rule's words and the tensor names reach the page
    through info.json only."""
    info = json.loads(request(mlp_server, "/api/info.json")[2])
    kl = Decoder(mlp_graphs / "decoder.onnx").info.kl_per_dim
    assert info["kl_per_dim"] == list(kl) and info["order_by"].endswith("(recorded at export)")
    assert info["informative"] == {
        "dims": informative_dims(kl),
        "threshold": INFORMATIVE_KL,
        "rule": INFORMATIVE_RULE,
    }
    assert info["order"][: len(informative_dims(kl))] == informative_dims(kl) and sorted(info["order"]) == [0, 1, 2, 3]
    assert info["refine_steps"] is None  # an MLP's encoder has no refine_steps input
    assert info["tensors"] == {
        "z": "z",
        "label": "label",
        "guidance": "guidance",
        "refine_steps": "refine_steps",
        "image": "image",
        "mu": "mu",
        "logvar": "logvar",
    }
    for path in (STATIC).glob("*.mjs"):
        code = path.read_text()
        assert str(INFORMATIVE_KL) not in code and "MAX_FIRST" not in code, path.name
        # no graph feed or fetch names its tensor with a literal
        assert not re.search(r"feeds\.(z|label|guidance|image)\b|feeds\[['\"]|\.run\([^)]*\[['\"]", code), path.name


def test_uninformative_components_are_ordered_last_by_the_rule(mlp_graphs, tmp_path):
    """An export whose KL says dims 1 and 3 carry information (as `vaectl traverse` draws by default)."""
    import onnx

    for name in ("decoder.onnx", "encoder.onnx"):
        shutil.copy(mlp_graphs / name, tmp_path / name)
    model = onnx.load(str(tmp_path / "decoder.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    props["vaectl.kl_per_dim"] = "[0.0, 2.5, 0.001, 1.25]"
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(tmp_path / "decoder.onnx"))
    info = load_explore_model(tmp_path).info
    assert info["informative"]["dims"] == [1, 3] and info["order"] == [1, 3, 2, 0]


def test_map_holds_the_posterior_means_labels_and_images(mlp_server, mlp_graphs):
    the_map = json.loads(request(mlp_server, "/api/map.json")[2])
    ds = load_data(None)
    mu, logvar = Encoder(mlp_graphs / "encoder.onnx").encode(ds.test[:MAP_IMAGES])
    np.testing.assert_allclose(np.array(the_map["mu"]), mu, atol=1e-6)
    assert the_map["labels"] == ds.test_labels[:MAP_IMAGES].tolist()
    images = np.frombuffer(base64.b64decode(the_map["images"]), np.uint8).reshape(-1, 1, 28, 28)
    assert np.array_equal(images, ds.test[:MAP_IMAGES])
    kl = (0.5 * (mu.astype(np.float64) ** 2 + np.exp(logvar) - logvar - 1)).mean(0)
    np.testing.assert_allclose(the_map["kl_per_dim"], kl, atol=1e-4)


def test_the_page_starts_on_the_first_test_images_encoding(mlp_model, guided_graphs):
    assert mlp_model.info["start"] == {
        "z": mlp_model.map["mu"][0],
        "label": None,
        "what": f"the posterior mean of test image 0 ({with_article(load_data(None).test_labels[0])})",
    }
    assert [with_article(c) for c in ("8", "3", "11", "eel", "Sneaker")] == [
        "an 8",
        "a 3",
        "an 11",
        "an eel",
        "a Sneaker",
    ]
    guided = load_explore_model(guided_graphs)  # a conditional model starts on that image's own class
    assert guided.info["start"]["label"] == guided.map["labels"][0]
    alone = load_explore_model(decoder=guided_graphs / "decoder.onnx")  # no map: the default prior's first draw
    dec = Decoder(guided_graphs / "decoder.onnx")
    assert alone.info["start"] == {
        "z": dec.latents(1, 0, label=0)[0].tolist(),  # what `vaectl generate --seed 0 --label 0` decodes first
        "label": 0,
        "what": "a draw from the gmm prior (seed 0)",
    }


def test_sliders_and_pad_reach_where_the_codes_are(mlp_model):
    """info.json's ranges: at least 3 prior standard deviations, widened to whole numbers that hold 99 % of the
    encoded test images of the map (a beta = 0 model's codes reach far beyond 3), the prior and the start point."""
    ranges = mlp_model.info["ranges"]
    mean, std = mlp_model.priors[0].moments()
    codes = np.abs(np.array(mlp_model.map["mu"]))  # (500, D)
    start = np.abs(np.array(mlp_model.info["start"]["z"]))
    reach = np.maximum.reduce([np.full(len(mean), 3.0), np.quantile(codes, 0.99, axis=0), abs(mean) + 3 * std, start])
    assert ranges == np.ceil(reach).astype(int).tolist() and all(isinstance(r, int) for r in ranges)
    wide = dict(mlp_model.map, mu=(np.array(mlp_model.map["mu"]) * 20).tolist())  # codes of a model that drifted
    spread = view_ranges(dataclasses.replace(mlp_model, map=wide), [0.0] * mlp_model.latent_dim)
    want = np.maximum.reduce([np.full(len(mean), 3.0), np.quantile(codes * 20, 0.99, axis=0), abs(mean) + 3 * std])
    assert spread == np.ceil(want).astype(int).tolist() and max(spread) > max(ranges)


def test_a_label_dropout_model_offers_none_among_its_labels(guided_graphs, conditional_graphs):
    assert load_explore_model(guided_graphs).info["label_names"] == [*map(str, range(10)), "none"]
    assert load_explore_model(conditional_graphs).info["label_names"] == [*map(str, range(10))]


def test_map_of_another_data_folder_and_no_map_without_an_encoder(mlp_graphs, tmp_path):
    model = load_explore_model(mlp_graphs, data_dir=make_tiny_idx_dir(tmp_path / "idx", n_test=32))
    assert model.map["count"] == len(model.map["labels"]) == 32 and model.info["map"]["available"]
    alone = load_explore_model(decoder=mlp_graphs / "decoder.onnx")
    assert alone.map == {"available": False, "reason": "no encoder.onnx: the map needs the encoder to place images"}
    # without the map, the components still follow the KL per dimension the export recorded
    kl = Decoder(mlp_graphs / "decoder.onnx").info.kl_per_dim
    assert alone.info["encoder"] is None and alone.info["order"] == list(np.argsort(-np.asarray(kl), kind="stable"))
    assert alone.info["order_by"].endswith("(recorded at export)") and list(alone.decoders) == ["fp32"]


def parts(body) -> tuple[np.ndarray, np.ndarray]:
    d = json.loads(body)
    center, offset = (
        np.frombuffer(base64.b64decode(d[k]), "<f8").reshape(d["rows"], d["dim"]) for k in ("center", "offset")
    )
    return center, offset


def test_draws_are_the_priors_parts_for_the_seed(mlp_server, mlp_graphs):
    center, offset = parts(request(mlp_server, "/api/draws.json?prior=normal&seed=7&n=5&label=")[2])
    assert np.array_equal(center, np.zeros((5, 4))) and np.array_equal(
        offset, np.random.default_rng(7).standard_normal((5, 4))
    )
    # Decoder.latents (what generate and interpolate --seed-a use) is center + t * offset rounded to float32
    dec = Decoder(mlp_graphs / "decoder.onnx")
    assert np.array_equal(
        (center + 0.7 * offset).astype(np.float32), dec.latents(5, 7, temperature=0.7, prior="normal")
    )
    # the fitted prior (the default): its parts for the seed, the latents generate draws
    center, offset = parts(request(mlp_server, "/api/draws.json?prior=gmm&seed=7&n=5&label=")[2])
    assert np.array_equal((center + 0.7 * offset).astype(np.float32), dec.latents(5, 7, temperature=0.7))
    for query in (
        "prior=normal&seed=-1&n=5&label=",
        "prior=normal&seed=x&n=5&label=",
        "prior=normal&n=5&label=",
        "prior=normal&seed=1&n=0&label=",
        "prior=normal&seed=1&n=100000&label=",
        "prior=normal&seed=1&seed=2&n=1&label=",
        "prior=normal&seed=%C2%B2&n=1&label=",  # a superscript two: a digit to str.isdigit, not to int()
        "prior=flow&seed=1&n=1&label=",
        "seed=1&n=1&label=",
        "prior=normal&seed=1&n=1&label=3",  # an unconditional model takes no label
        "prior=normal&seed=1&n=1",
    ):
        status, _, body = request(mlp_server, f"/api/draws.json?{query}")
        assert status == 400 and len(body.decode().strip().splitlines()) == 1, query


def test_draws_for_a_conditional_model_follow_generates_labels(conditional_graphs):
    model = load_explore_model(conditional_graphs)
    rng = np.random.default_rng
    for label, rows in (("cycle", 12), ("3", 12), ("all", 40), ("all-same", 4)):
        d = draws(model, "normal", 5, 12 if label in ("cycle", "3") else 4, label)
        assert d["rows"] == rows
        offset = np.frombuffer(base64.b64decode(d["offset"]), "<f8").reshape(rows, 4)
        assert np.array_equal(offset, rng(5).standard_normal((rows, 4))), label
    for bad in ("", "10", "none", "-1"):  # no "none" class: trained without label dropout
        with pytest.raises(UserInputError):
            draws(model, "normal", 5, 4, bad)


def png_bytes(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_upload_returns_the_models_input_through_vaectls_loader(mlp_server, tmp_path):
    rgb = (np.random.default_rng(0).random((40, 33, 3)) * 255).astype(
        np.uint8
    )  # resized and made gray, as the CLI does
    (tmp_path / "a.png").write_bytes(png_bytes(rgb))
    status, _, body = request(mlp_server, "/api/upload", "POST", png_bytes(rgb))
    assert status == 200
    got = json.loads(body)
    want = prepare_images(tmp_path / "a.png", (1, 28, 28))
    assert got["shape"] == [1, 28, 28] and np.array_equal(np.array(got["pixels"], np.float32), want.reshape(-1))


@pytest.mark.parametrize(
    "payload, status, fragment",
    [
        (b"not an image at all", 422, "not an image in an accepted format"),
        (b"", 422, "empty upload"),
        ("truncated", 422, "cannot decode image"),
        ("bomb", 422, "decompression bomb"),
        ("tiff", 422, "not an image in an accepted format"),
    ],
)
def test_bad_uploads_get_a_one_line_4xx_and_the_server_keeps_serving(mlp_server, tmp_path, payload, status, fragment):
    if payload == "bomb":
        payload = png_bomb(tmp_path / "bomb.png", 10_000).read_bytes()
    elif payload == "truncated":
        payload = png_bytes((np.random.default_rng(1).random((64, 64)) * 255).astype(np.uint8))[:-300]
    elif payload == "tiff":
        buf = io.BytesIO()
        Image.new("L", (8, 8)).save(buf, format="TIFF")
        payload = buf.getvalue()
    got, _, body = request(mlp_server, "/api/upload", "POST", payload)
    lines = body.decode().strip().splitlines()
    assert got == status and len(lines) == 1 and fragment in lines[0] and "Traceback" not in lines[0], body
    assert request(mlp_server, "/")[0] == 200


def test_upload_size_cap_and_method_guards(mlp_server):
    status, _, body = request(mlp_server, "/api/upload", "POST", headers={"Content-Length": str(MAX_UPLOAD_BYTES + 1)})
    assert status == 413 and b"limit" in body
    assert request(mlp_server, "/api/info.json", "POST", b"x")[0] == 404
    assert request(mlp_server, "/api/upload", "PUT", b"x")[0] == 405
    assert request(mlp_server, "/api/upload")[0] == 404  # GET: not a route
    assert request(mlp_server, "/")[0] == 200


def test_runtime_files_match_their_manifest():
    manifest = json.loads((VENDOR / "manifest.json").read_text())
    assert manifest["package"] == "onnxruntime-web" and manifest["version"] == "1.30.0"
    for name, entry in manifest["files"].items():
        stored = (VENDOR / entry["stored_as"]).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == entry["stored_sha256"], name
        raw = gzip.decompress(stored) if entry["stored_as"].endswith(".gz") else stored
        assert hashlib.sha256(raw).hexdigest() == entry["sha256"] and len(raw) == entry["bytes"], name
    assert "MIT" in (VENDOR / "LICENSE").read_text() and "Microsoft" in (VENDOR / "NOTICE").read_text()


def test_a_run_directory_gives_its_curves_and_sample_grids(tiny_mlp_run, mlp_graphs, tmp_path):
    run = tmp_path / "run"
    (run / "images").mkdir(parents=True)
    shutil.copy(tiny_mlp_run / "metrics.jsonl", run)
    grid = png_bytes(np.full((10, 10), 128, np.uint8))
    (run / "images" / "samples_epoch001.png").write_bytes(grid)
    shutil.copytree(mlp_graphs, run / "export")
    model = load_explore_model(run)
    assert model.decoders["fp32"] == run / "export" / "decoder.onnx"
    with serving(model) as port:
        info = json.loads(request(port, "/api/info.json")[2])
        assert info["run"] == {"available": True, "epochs": 2, "grids": ["run/samples_epoch001.png"]}
        run_json = json.loads(request(port, "/api/run.json")[2])
        records = [json.loads(line) for line in (tiny_mlp_run / "metrics.jsonl").read_text().splitlines()]
        assert run_json["metrics"] == records
        # the informative components per epoch, by the one rule (what the page charts)
        assert run_json["informative"] == [len(informative_dims(r["kl_per_dim"])) for r in records]
        assert request(port, "/run/samples_epoch001.png")[2] == grid


def test_static_site_mirrors_the_routes_with_the_wasm_uncompressed(mlp_model, mlp_graphs, tmp_path):
    site = tmp_path / "site"
    write_site(mlp_model, site)
    wasm = runtime_files()["ort-wasm-simd-threaded.wasm"]
    assert hashlib.sha256((site / "ort/ort-wasm-simd-threaded.wasm").read_bytes()).hexdigest() == wasm["sha256"]
    assert (site / "models/decoder.fp16.onnx").read_bytes() == (mlp_graphs / "decoder.fp16.onnx").read_bytes()
    info = json.loads((site / "api/info.json").read_text())
    assert info["upload"] is False and info["seeds"] == list(range(8))
    seed3 = json.loads((site / "api/draws/normal-3.json").read_text())
    assert set(seed3) == {"1|", "16|", "64|"}  # every request the page can make for this prior and seed
    center, offset = parts(json.dumps(seed3["64|"]))
    assert np.array_equal(offset, np.random.default_rng(3).standard_normal((64, 4))) and not center.any()
    assert json.loads((site / "api/map.json").read_text()) == mlp_model.map
    assert {p.name for p in site.iterdir()} >= {"index.html", "app.mjs", "ort", "models", "api"}
    with pytest.raises(Exception, match="already holds a static site"):
        write_site(mlp_model, site)


def test_cli_bad_arguments_are_one_line_errors(mlp_graphs, tmp_path):
    expect_usage_error(cli("explore", tmp_path / "nothing"), "no such directory")
    expect_usage_error(cli("explore", "--decoder", tmp_path / "missing.onnx"), "no such file")
    expect_usage_error(cli("explore", mlp_graphs, "--decoder", mlp_graphs / "decoder.onnx"), "not both")
    expect_usage_error(cli("explore", tmp_path), "no decoder.onnx")
    expect_usage_error(cli("explore", mlp_graphs, "--port", "70000"), "--port")
    expect_usage_error(cli("explore", "--decoder", mlp_graphs / "encoder.onnx"), "decoder is expected")
    expect_usage_error(cli("explore", mlp_graphs, "--overwrite"), "--overwrite goes with --site")


def test_cli_prints_the_url_survives_disconnects_and_exits_130_on_ctrl_c(mlp_graphs):
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaectl.cli", "explore", str(mlp_graphs), "--no-browser", "--host", "0.0.0.0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},  # a hang below ends with every thread's stack (SIGABRT)
        preexec_fn=sigint_as_in_a_terminal,
    )
    try:
        line = proc.stdout.readline()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", line).group(1))
        for _ in range(3):  # a client that hangs up mid-download of the 3.6 MB runtime
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(f"GET /ort/ort-wasm-simd-threaded.wasm HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
                s.recv(100)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        assert request(port, "/")[0] == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            _, stderr = proc.communicate(timeout=30)
            pytest.fail(f"explore did not stop on Ctrl-C within 30 s; its threads:\n{stderr}")
    assert proc.returncode == 130
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
    assert stderr.startswith("warning: listening on 0.0.0.0"), stderr


def test_cli_writes_a_site(mlp_graphs, tmp_path):
    result = cli("explore", mlp_graphs, "--site", tmp_path / "site")
    assert result.exit_code == 0 and "static site" in result.stderr
    assert (tmp_path / "site/index.html").read_bytes() == (
        Path(__file__).parents[1] / "explore/static/index.html"
    ).read_bytes()
    assert not os.path.exists(tmp_path / "site/run")


def test_no_model_argument_opens_the_demo_model(mlp_graphs, tmp_path, monkeypatch):
    import types

    monkeypatch.setitem(sys.modules, "vaectl.demo", types.SimpleNamespace(demo_dir=lambda: mlp_graphs))
    assert cli("explore", "--site", tmp_path / "site").exit_code == 0
    assert (tmp_path / "site/models/decoder.onnx").read_bytes() == (mlp_graphs / "decoder.onnx").read_bytes()
    monkeypatch.setitem(sys.modules, "vaectl.demo", None)  # an install without the demo model: import fails
    expect_usage_error(cli("explore", "--site", tmp_path / "site2"), "no demo model")
