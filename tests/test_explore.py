"""vaectl explore's server and static site, over real HTTP: routes, guards, info.json, the map, uploads.

The page itself runs in a real browser in tests/test_explore_browser.py.
"""

from __future__ import annotations

import base64
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
from test_untrusted import png_bomb

from vaectl.data import load_data
from vaectl.explore import load_explore_model, make_server, write_site
from vaectl.explore.model import MAP_IMAGES
from vaectl.explore.server import MAX_UPLOAD_BYTES, VENDOR, allowed_hosts, runtime_files
from vaectl.infer import Decoder, Encoder, describe_model, prepare_images


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
    kl = np.array(info["kl_per_dim"])
    assert info["order"] == list(np.argsort(-kl, kind="stable")) and sorted(info["order"]) == [0, 1, 2, 3]
    assert info["map"] == {
        "available": True,
        "method": "pca",
        "count": MAP_IMAGES,
        "explained": info["map"]["explained"],
    }


def test_map_is_the_pca_of_the_posterior_means(mlp_server, mlp_graphs):
    the_map = json.loads(request(mlp_server, "/api/map.json")[2])
    ds = load_data(None)
    mu, logvar = Encoder(mlp_graphs / "encoder.onnx").encode(ds.test[:MAP_IMAGES])
    np.testing.assert_allclose(np.array(the_map["mu"]), mu, atol=1e-6)
    assert the_map["labels"] == ds.test_labels[:MAP_IMAGES].tolist()
    images = np.frombuffer(base64.b64decode(the_map["images"]), np.uint8).reshape(-1, 1, 28, 28)
    assert np.array_equal(images, ds.test[:MAP_IMAGES])
    kl = (0.5 * (mu.astype(np.float64) ** 2 + np.exp(logvar) - logvar - 1)).mean(0)
    np.testing.assert_allclose(the_map["kl_per_dim"], kl, atol=1e-4)
    # PCA scores: uncorrelated, variances = the top two eigenvalues of the means' covariance
    points = np.array(the_map["points"])
    eig = np.sort(np.linalg.eigvalsh(np.cov(mu.astype(np.float64).T)))[::-1]
    cov = np.cov(points.T)
    np.testing.assert_allclose([cov[0, 0], cov[1, 1]], eig[:2], rtol=1e-3)
    assert abs(cov[0, 1]) < 1e-3 * eig[0]
    np.testing.assert_allclose(the_map["explained"], eig[:2] / eig.sum(), atol=1e-3)


def test_map_of_another_data_folder_and_no_map_without_an_encoder(mlp_graphs, tmp_path):
    model = load_explore_model(mlp_graphs, data_dir=make_tiny_idx_dir(tmp_path / "idx", n_test=32))
    assert model.map["count"] == len(model.map["labels"]) == 32 and model.info["map"]["available"]
    alone = load_explore_model(decoder=mlp_graphs / "decoder.onnx")
    assert alone.map == {"available": False, "reason": "no encoder.onnx: the map needs the encoder to place images"}
    # without the map's encodings, the sliders follow the KL per dimension the export recorded
    kl = Decoder(mlp_graphs / "decoder.onnx").info.kl_per_dim
    assert alone.info["encoder"] is None and alone.info["order"] == list(np.argsort(-np.asarray(kl), kind="stable"))
    assert alone.info["order_by"] == "KL per dimension (recorded at export)" and list(alone.decoders) == ["fp32"]


def test_normals_are_numpys_draws_for_the_seed(mlp_server, mlp_graphs):
    rows = json.loads(request(mlp_server, "/api/normals.json?seed=7&count=5")[2])
    assert np.array_equal(np.array(rows), np.random.default_rng(7).standard_normal((5, 4)))
    # Decoder.latents (what generate and interpolate --seed-a use) is these rows rounded to float32
    assert np.array_equal(np.array(rows, np.float32), Decoder(mlp_graphs / "decoder.onnx").latents(5, 7))
    for query in (
        "seed=-1&count=5",
        "seed=x&count=5",
        "count=5",
        "seed=1&count=0",
        "seed=1&count=100000",
        "seed=1&seed=2&count=1",
        "seed=%C2%B2&count=1",
    ):  # a superscript two: a digit to str.isdigit, not to int()
        status, _, body = request(mlp_server, f"/api/normals.json?{query}")
        assert status == 400 and len(body.decode().strip().splitlines()) == 1, query


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
        records = json.loads(request(port, "/api/run.json")[2])["metrics"]
        assert records == [json.loads(line) for line in (tiny_mlp_run / "metrics.jsonl").read_text().splitlines()]
        assert request(port, "/run/samples_epoch001.png")[2] == grid


def test_static_site_mirrors_the_routes_with_the_wasm_uncompressed(mlp_model, mlp_graphs, tmp_path):
    site = tmp_path / "site"
    write_site(mlp_model, site)
    wasm = runtime_files()["ort-wasm-simd-threaded.wasm"]
    assert hashlib.sha256((site / "ort/ort-wasm-simd-threaded.wasm").read_bytes()).hexdigest() == wasm["sha256"]
    assert (site / "models/decoder.fp16.onnx").read_bytes() == (mlp_graphs / "decoder.fp16.onnx").read_bytes()
    info = json.loads((site / "api/info.json").read_text())
    assert info["upload"] is False and info["seeds"] == list(range(8))
    seeds = json.loads((site / "api/seeds.json").read_text())
    assert np.array_equal(np.array(seeds["3"]), np.random.default_rng(3).standard_normal((64, 4)))
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
