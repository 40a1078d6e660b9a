"""vaectl explore in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

The page decodes with onnxruntime-web; every check compares it with Python onnxruntime or the CLI on the
same inputs. Every page must finish without a console error or a failed request.
"""

from __future__ import annotations

import base64
import functools
import http.server
import shutil
import threading
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from conftest import cli, export_run, grid_cells, read_png
from PIL import Image
from playwright.sync_api import sync_playwright
from test_explore import png_bytes, serving
from test_untrusted import png_bomb

from vaectl.explore import load_explore_model, write_site
from vaectl.infer import Decoder

CHROMIUM = Path("/usr/bin/chromium")
ATOL = 1e-5  # browser (WASM) against Python onnxruntime on the same z


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():  # not a skip: CI installs it (apt-get install chromium)
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


class Page:
    """A page on `url`, loaded until the explorer settled, recording console errors and failed requests."""

    def __init__(self, browser, url):
        self.url, self.problems = url, []
        self.page = browser.new_page(viewport={"width": 1280, "height": 1000})
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.problems.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url}"))
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(f"{r.status}: {r.url}"))
        self.page.goto(url)
        self.page.wait_for_function("window.vaectl.settled === true", timeout=60_000)

    def js(self, expression, arg=None):
        return self.page.evaluate(expression, arg)

    def wait(self, expression, arg=None):
        self.page.wait_for_function(expression, arg=arg, timeout=30_000)

    def canvas(self, selector) -> np.ndarray:
        """The canvas's red channel (the images are grayscale), uint8 (H, W)."""
        return self.rgba(selector)[..., 0]

    def rgba(self, selector) -> np.ndarray:
        """The canvas's pixels, uint8 (H, W, 4), read through a copy (reading the page's own canvases
        would make Chromium warn about readbacks)."""
        w, h, data = self.js(
            """s => { const c = document.querySelector(s), copy = document.createElement('canvas');
            copy.width = c.width; copy.height = c.height;
            const ctx = copy.getContext('2d', { willReadFrequently: true });
            ctx.drawImage(c, 0, 0);
            return [c.width, c.height, Array.from(ctx.getImageData(0, 0, c.width, c.height).data)]; }""",
            selector,
        )
        return np.array(data, np.uint8).reshape(h, w, 4)

    def close(self):
        self.page.close()
        assert not self.problems, self.problems


def python_decode(path, z, labels=None):
    feed = {"z": np.asarray(z, np.float32)}
    if labels is not None:
        feed["label"] = np.asarray(labels, np.int64)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["image"], feed)[0]


def assert_decoded_alike(got, want, variant):
    """|browser - Python| <= 1e-5. A float16 graph also computes in float16 (export/variants.py), so a kernel
    that sums in another order can move an intermediate by one float16 step (2^-11 relative) and the output
    by its own float16 step: there the bound is one float16 spacing of the output, and at most 1% of the pixels."""
    diff = np.abs(np.asarray(got, np.float64) - want)
    if variant != "fp16":
        assert diff.max() <= ATOL, diff.max()
        return
    step = np.spacing(np.abs(want).astype(np.float16)).astype(np.float64)
    assert (diff <= np.maximum(ATOL, step)).all() and (diff > ATOL).mean() < 0.01, (diff.max(), (diff > ATOL).mean())


def to_uint8(x):
    return np.clip(np.rint(np.asarray(x, np.float32) * np.float32(255)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def context_graphs(tiny_context_run, tmp_path_factory):
    return export_run(tiny_context_run, tmp_path_factory.mktemp("context_graphs"), fp16=True)


@pytest.fixture(scope="module")
def pages(browser, mlp_graphs, conditional_graphs, context_graphs):
    """One served page per model: {name: (Page, export dir)}, closed (and checked) at the end."""
    with ExitStack() as servers:
        opened = {}
        for name, graphs in (("plain", mlp_graphs), ("conditional", conditional_graphs), ("context", context_graphs)):
            port = servers.enter_context(serving(load_explore_model(graphs)))
            opened[name] = (Page(browser, f"http://127.0.0.1:{port}/"), graphs)
        yield opened
        for page, _ in opened.values():
            page.close()


@pytest.mark.parametrize("name", ["plain", "conditional", "context"])
def test_page_decodes_as_python_onnxruntime_fp32_and_fp16(pages, name):
    page, graphs = pages[name]
    info = page.js("window.vaectl.app.info")
    d = info["latent_dim"]
    z = np.random.default_rng(1).standard_normal((5, d)).astype(np.float32)
    labels = [0, 3, 9, 1, 7] if info["num_classes"] else None
    for variant in [v["variant"] for v in info["variants"]]:
        if variant != page.js("window.vaectl.app.model.variant"):
            page.page.select_option("#variant", variant)
            page.wait("v => window.vaectl.last.variant === v", variant)
        path = graphs / next(Path(v["file"]).name for v in info["variants"] if v["variant"] == variant)
        got = np.array(
            page.js("([z, labels]) => window.vaectl.decode(z, 5, labels)", [z.ravel().tolist(), labels or [0] * 5])
        )
        want = python_decode(path, z, labels)
        assert_decoded_alike(got.reshape(want.shape), want, variant)
        # the big canvas shows round(255 x) of what the page decoded, pixel for pixel
        page.js("z => window.vaectl.setZ(z)", z[2].tolist())
        page.wait("z => window.vaectl.last.z.every((v, i) => v === z[i])", z[2].tolist())
        last = page.js("window.vaectl.last")
        assert np.array_equal(page.canvas("#main-image"), to_uint8(last["image"]).reshape(28, 28))
        label = [last["label"]] if info["num_classes"] else None
        assert_decoded_alike(np.array(last["image"]), python_decode(path, z[2:3], label).ravel(), variant)
    assert {"plain": 2, "conditional": 1, "context": 2}[name] == len(info["variants"])


def test_slider_and_pad_moves_decode_the_new_z(pages):
    page, graphs = pages["plain"]
    page.page.select_option("#variant", "fp32")
    page.wait("window.vaectl.last.variant === 'fp32'")
    page.page.click("#zero")
    page.wait("window.vaectl.last.z.every(v => v === 0)")
    first = page.js("window.vaectl.app.info.order[0]")
    slider = page.page.locator(f"input[data-dim='{first}']")
    slider.focus()
    for _ in range(5):
        page.page.keyboard.press("ArrowRight")  # step 0.01
    page.wait("([d, v]) => Math.abs(window.vaectl.last.z[d] - v) < 1e-6", [first, 0.05])
    last = page.js("window.vaectl.last")
    assert np.abs(np.array(last["image"]) - python_decode(graphs / "decoder.onnx", [last["z"]]).ravel()).max() <= ATOL
    x_dim, y_dim = int(page.page.input_value("#pad-x")), int(page.page.input_value("#pad-y"))
    box = page.page.locator("#pad").bounding_box()
    page.page.mouse.click(box["x"] + 0.75 * box["width"], box["y"] + 0.25 * box["height"])  # z_x = 1.5, z_y = 1.5
    page.wait(
        "([x, y]) => Math.abs(window.vaectl.last.z[x] - 1.5) < 0.05 && Math.abs(window.vaectl.last.z[y] - 1.5) < 0.05",
        [x_dim, y_dim],
    )
    last = page.js("window.vaectl.last")
    assert last["z"][first] == pytest.approx(0.05, abs=1e-6) or first in (x_dim, y_dim)
    assert np.abs(np.array(last["image"]) - python_decode(graphs / "decoder.onnx", [last["z"]]).ravel()).max() <= ATOL


def test_map_has_one_point_per_image_coloured_by_label_and_a_click_decodes_it(pages):
    page, graphs = pages["plain"]
    the_map = page.js("window.vaectl.app.map")
    screen = np.array(page.js("window.vaectl.app.screenPoints"))
    labels = np.array(the_map["labels"])
    palette = page.js("(async () => (await import('./draw.mjs')).PALETTE)()")
    rgb = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in palette])
    assert len(screen) == len(labels) == the_map["count"] == 500 and len(set(labels.tolist())) == 10
    pixels = page.rgba("#map")[..., :3].astype(int)
    # each point's centre pixel has its label's colour, where no point of another label touches that pixel
    # (dots have radius 2.5; point 0 has the hover ring, radius 6)
    checked = 0
    for i, (x, y) in enumerate(screen):
        px, py = int(x), int(y)
        near = np.hypot(screen[:, 0] - (px + 0.5), screen[:, 1] - (py + 0.5)) < 3.3
        ring = abs(np.hypot(screen[0, 0] - (px + 0.5), screen[0, 1] - (py + 0.5)) - 6) < 2
        if (labels[near] == labels[i]).all() and not ring:
            assert np.abs(pixels[py, px] - rgb[labels[i]]).max() <= 2, (i, pixels[py, px])
            checked += 1
    assert checked > 250, checked
    # click the most isolated point: its posterior mean becomes the current z and is decoded
    gaps = np.sort(np.hypot(*(screen[:, None] - screen[None]).transpose(2, 0, 1)), 1)[:, 1]
    i = int(gaps.argmax())
    box = page.page.locator("#map").bounding_box()
    page.page.mouse.click(box["x"] + screen[i, 0], box["y"] + screen[i, 1])
    mu = np.array(the_map["mu"][i], np.float32)
    page.wait("mu => window.vaectl.last.z.every((v, k) => v === mu[k])", mu.tolist())
    last = page.js("window.vaectl.last")
    assert np.abs(np.array(last["image"]) - python_decode(graphs / "decoder.onnx", mu[None]).ravel()).max() <= ATOL
    originals = np.frombuffer(base64.b64decode(the_map["images"]), np.uint8).reshape(-1, 28, 28)
    assert np.array_equal(page.canvas("#map-original"), originals[i])


def grid_matches(got: np.ndarray, want: np.ndarray) -> None:
    """The page's grid against the CLI's PNG: the same layout and pixels. WASM and native kernels may sum
    in another order (|diff| <= 1e-5 above), which can move a pixel sitting on a rounding boundary by one."""
    assert got.shape == want.shape
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).sum())


@pytest.mark.parametrize(
    "name, label, same_z", [("plain", None, False), ("conditional", "3", False), ("conditional", "all", True)]
)
def test_sample_grid_for_a_seed_is_vaectl_generates(pages, tmp_path, name, label, same_z):
    page, graphs = pages[name]
    if label == "3":
        page.page.select_option("#class", "3")
    if name == "conditional":
        page.page.set_checked("#same-z", same_z)
    page.page.fill("#seed", "5")
    page.wait(
        "l => window.vaectl.lastGrid.seed === 5 && String(window.vaectl.lastGrid.label) === l",
        "null" if label is None else label,
    )
    args = ["generate", "--onnx", graphs / "decoder.onnx", "--seed", "5", "--out", tmp_path / "g.png"]
    args += (
        ["-n", "8", "--label", "all", "--same-z"] if same_z else ["-n", "64"] + (["--label", label] if label else [])
    )
    assert cli(*args).exit_code == 0
    grid_matches(page.canvas("#grid"), read_png(tmp_path / "g.png"))


def test_interpolation_and_traversal_are_vaectls(pages, tmp_path):
    page, graphs = pages["plain"]
    decoder = graphs / "decoder.onnx"
    page.wait("window.vaectl.lastStrip && window.vaectl.lastStrip.from === 'seeds'")  # seeds 0 and 1, slerp, 10 steps
    assert (
        cli(
            "interpolate",
            "--decoder",
            decoder,
            "--seed-a",
            0,
            "--seed-b",
            1,
            "--steps",
            10,
            "--out",
            tmp_path / "i.png",
        ).exit_code
        == 0
    )
    grid_matches(page.canvas("#strip"), read_png(tmp_path / "i.png"))
    page.page.click("#zero")
    page.wait("window.vaectl.lastTraversal && window.vaectl.lastTraversal.z0.every(v => v === 0)")
    dim = page.js("window.vaectl.lastTraversal.dim")
    assert (
        cli(
            "traverse",
            "--onnx",
            decoder,
            "--dim",
            dim,
            "--span",
            3,
            "--steps",
            9,
            "--no-labels",
            "--out",
            tmp_path / "t.png",
        ).exit_code
        == 0
    )
    grid_matches(page.canvas("#traversal"), read_png(tmp_path / "t.png"))


def test_save_png_is_the_view_scaled_up_without_smoothing(pages, tmp_path):
    page, _ = pages["plain"]
    with page.page.expect_download() as download:
        page.page.click("#save-view")
    saved = np.asarray(Image.open(download.value.path()).convert("L"))
    assert np.array_equal(saved, np.kron(page.canvas("#main-image"), np.ones((8, 8), np.uint8)))


def test_upload_reconstructs_as_vaectl_reconstruct_and_refuses_bad_files(pages, tmp_path):
    page, graphs = pages["plain"]
    image = (np.random.default_rng(2).random((36, 30, 3)) * 255).astype(np.uint8)
    (tmp_path / "a.png").write_bytes(png_bytes(image))
    page.page.set_input_files("#file", files=[{"name": "a.png", "mimeType": "image/png", "buffer": png_bytes(image)}])
    page.wait("window.vaectl.lastUpload && window.vaectl.lastUpload.recon")
    got = page.js("window.vaectl.lastUpload")
    assert (
        cli(
            "reconstruct",
            "--encoder",
            graphs / "encoder.onnx",
            "--decoder",
            graphs / "decoder.onnx",
            tmp_path / "a.png",
            "--out",
            tmp_path / "r.png",
        ).exit_code
        == 0
    )
    original, recon = grid_cells(read_png(tmp_path / "r.png"), 2, 1)
    assert np.array_equal(to_uint8(got["input"]).reshape(28, 28), original)
    grid_matches(to_uint8(got["recon"]).reshape(28, 28), recon)
    assert np.array_equal(page.canvas("#upload-recon"), to_uint8(got["recon"]).reshape(28, 28))
    bomb = png_bomb(tmp_path / "bomb.png", 10_000).read_bytes()
    for name, data, fragment in (
        ("notes.png", b"just text", "not an image in an accepted format"),
        ("bomb.png", bomb, "decompression bomb"),
    ):
        page.page.set_input_files("#file", files=[{"name": name, "mimeType": "image/png", "buffer": data}])
        page.wait("n => document.getElementById('upload-message').textContent.startsWith(n)", name)
        assert fragment in page.page.inner_text("#upload-message")
    # the refusals were 422 responses the page handled: not failures of this test's "no failed request" rule
    # (Chromium logs each 4xx response to the console too)
    page.problems = [p for p in page.problems if not p.startswith("422: ") and "status of 422" not in p]


def test_route_and_host_guards_seen_from_the_browser(pages):
    page, _ = pages["plain"]
    for path in ("../pyproject.toml", "%2e%2e/%2e%2e/etc/passwd", "models/decoder.int8.onnx", "nothing.html"):
        response = page.page.request.get(page.url + path)
        assert response.status == 404, path
    response = page.page.request.get(page.url + "api/info.json", headers={"Host": "rebind.example"})
    assert response.status == 421


class StaticHandler(http.server.SimpleHTTPRequestHandler):
    """A plain static host: files as they are, with JavaScript and WebAssembly types."""

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".json": "application/json",
    }

    def log_message(self, *args):
        pass


def test_static_site_works_from_a_plain_static_server(browser, mlp_graphs, tmp_path):
    site = tmp_path / "site"
    write_site(load_explore_model(mlp_graphs), site)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(StaticHandler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = Page(browser, f"http://127.0.0.1:{server.server_address[1]}/")
        z = np.random.default_rng(3).standard_normal((3, 4)).astype(np.float32)
        got = np.array(page.js("z => window.vaectl.decode(z, 3, [0, 0, 0])", z.ravel().tolist()))
        assert np.abs(got - python_decode(mlp_graphs / "decoder.onnx", z).ravel()).max() <= ATOL
        assert page.js("window.vaectl.lastGrid.seed") == 0 and page.js("window.vaectl.app.map.count") == 500
        assert "needs the server" in page.page.inner_text("#upload-note")
        assert not page.page.is_visible("#drop")
        page.close()
    finally:
        server.shutdown()
        server.server_close()


def test_a_decoder_alone_has_no_map_and_the_page_says_why(browser, mlp_graphs):
    with serving(load_explore_model(decoder=mlp_graphs / "decoder.onnx")) as port:
        page = Page(browser, f"http://127.0.0.1:{port}/")
        assert (
            page.page.inner_text("#map-note") == "No map: no encoder.onnx: the map needs the encoder to place images."
        )
        assert "Needs encoder.onnx" in page.page.inner_text("#upload-note")
        z = np.zeros((1, 4), np.float32)
        assert (
            np.abs(
                np.array(page.js("window.vaectl.last.image")) - python_decode(mlp_graphs / "decoder.onnx", z).ravel()
            ).max()
            <= ATOL
        )
        page.close()


def test_a_run_directory_draws_its_curves_and_sample_grids(browser, tiny_mlp_run, mlp_graphs, tmp_path):
    run = tmp_path / "run"
    (run / "images").mkdir(parents=True)
    shutil.copy(tiny_mlp_run / "metrics.jsonl", run)
    for epoch, shade in ((1, 60), (2, 200)):
        (run / "images" / f"samples_epoch{epoch:03d}.png").write_bytes(png_bytes(np.full((62, 62), shade, np.uint8)))
    shutil.copytree(mlp_graphs, run / "export")
    with serving(load_explore_model(run)) as port:
        page = Page(browser, f"http://127.0.0.1:{port}/")
        assert page.page.is_visible("#run-card")
        for canvas in ("#curves-loss", "#curves-units", "#curves-var"):
            ink = page.rgba(canvas)[..., 3]
            assert (ink > 0).mean() > 0.01, canvas  # lines, axes and labels were drawn
        assert page.js("document.getElementById('run-grid').src").endswith("run/samples_epoch002.png")
        page.page.fill("#run-epoch", "0")
        page.wait("document.getElementById('run-grid').src.endsWith('samples_epoch001.png')")
        page.wait(
            "document.getElementById('run-grid').complete && document.getElementById('run-grid').naturalWidth === 62"
        )
        assert page.page.inner_text("#run-epoch-name") == "1"
        page.close()


@pytest.mark.parametrize("graphs", ["guided_graphs", "average_guided_graphs"])  # label dropout; the default
def test_a_guided_model_gets_a_guidance_slider_that_decodes_as_python(browser, graphs, request):
    """The decoder's `guidance` input is fed from the slider (starting at the model's own weight, here 2)."""
    guided_graphs = request.getfixturevalue(graphs)
    with serving(load_explore_model(guided_graphs)) as port:
        page = Page(browser, f"http://127.0.0.1:{port}/")
        assert not page.js("document.getElementById('guidance-box').hidden")
        assert page.js("document.getElementById('guidance').value") == "2"
        z, labels = np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32), [7, 0, 3]
        for w in (3.5, 0.0):
            page.js(
                "w => { const g = document.getElementById('guidance'); g.value = w; g.dispatchEvent(new Event('input')); }",
                w,
            )
            got = page.js("([z, l]) => window.vaectl.decode(z, 3, l)", [z.ravel().tolist(), labels])
            want = Decoder(guided_graphs / "decoder.onnx").decode_float(z, label=np.array(labels), guidance=w)
            assert np.abs(np.array(got) - want.ravel()).max() <= ATOL, w
        page.close()
