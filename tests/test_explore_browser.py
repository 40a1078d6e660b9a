"""vaectl explore in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

The page decodes with onnxruntime-web; every check compares it with Python onnxruntime or the CLI on the
same inputs. Every page must finish without a console error or a failed request.
The views as a learner reads them: one reconstruction per class for an upload on a conditional model, the
map and the pad on the same components and axes in prior units, round chart ticks, a narrow window, the one
informative rule, the demo's labels and first image, the decoded manifold, thumbnails on the map, and a line
under every title saying what the view shows.
The fast tier opens three short pages (the demo, a static site, a decoder alone); the long sessions on trained
models are marked slow.
"""

from __future__ import annotations

import base64
import functools
import http.server
import io
import json
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

from vaectl.contract import INFORMATIVE_RULE, informative_dims
from vaectl.data import load_data
from vaectl.explore import load_explore_model, write_site
from vaectl.infer import Decoder, Encoder, prepare_images, traverse_latents
from vaectl.prior import priors_of

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

    def __init__(self, browser, url, width=1280):
        self.url, self.problems = url, []
        self.page = browser.new_page(viewport={"width": width, "height": 1000})
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

    def upload(self, name, data):
        self.page.set_input_files("#file", files=[{"name": name, "mimeType": "image/png", "buffer": data}])

    def forget_refusals(self):
        """Refused uploads are 422 responses the page handled: not failures of the "no failed request" rule
        (Chromium logs each 4xx response to the console too)."""
        self.problems = [p for p in self.problems if not p.startswith("422: ") and "status of 422" not in p]

    def close(self):
        self.page.close()
        assert not self.problems, self.problems


def python_decode(path, z, labels=None):
    feed = {"z": np.asarray(z, np.float32)}
    if labels is not None:
        feed["label"] = np.asarray(labels, np.int64)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["image"], feed)[0]


def assert_decoded_alike(got, want, variant, share: float = 0.01):
    """|browser - Python| <= 1e-5. A float16 graph also computes in float16 (export/variants.py), so a kernel
    that sums in another order can move an intermediate by one float16 step (2^-11 relative) and the output
    by its own float16 step: there the bound is one float16 spacing of the output, and at most `share` of the
    pixels (1%; a row-context decoder feeds each generated row back into the next, so such a step in one row
    moves pixels in the rows below it too)."""
    diff = np.abs(np.asarray(got, np.float64) - want)
    if variant != "fp16":
        assert diff.max() <= ATOL, diff.max()
        return
    step = np.spacing(np.abs(want).astype(np.float16)).astype(np.float64)
    assert (diff <= np.maximum(ATOL, step)).all() and (diff > ATOL).mean() < share, (diff.max(), (diff > ATOL).mean())


def to_uint8(x):
    return np.clip(np.rint(np.asarray(x, np.float32) * np.float32(255)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def beta0_run(tmp_path_factory):
    """The tutorial's beta = 0 experiment in small: a plain autoencoder, whose encodings drift away from N(0, I);
    a run directory (metrics.jsonl, per-epoch grids) holding its export."""
    from vaectl.training import TrainConfig, train

    out = tmp_path_factory.mktemp("beta0_run")
    train(
        TrainConfig(out=str(out), epochs=3, batch_size=128, seed=0, grid_every=1),
        dict(arch="mlp", latent_dim=4, hidden=(64,), beta=0.0),
        log=lambda m: None,
    )
    export_run(out, out / "export")
    return out


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


@pytest.mark.slow
@pytest.mark.parametrize("name", ["plain", "conditional", "context"])
def test_page_decodes_as_python_onnxruntime_fp32_and_fp16(pages, name):
    page, graphs = pages[name]
    info = page.js("window.vaectl.app.info")
    d = info["latent_dim"]
    z = np.random.default_rng(1).standard_normal((5, d)).astype(np.float32)
    labels = [0, 3, 9, 1, 7] if info["num_classes"] else None
    share = 0.05 if name == "context" else 0.01  # assert_decoded_alike: float16 steps carried down the rows
    for variant in [v["variant"] for v in info["variants"]]:
        if variant != page.js("window.vaectl.app.model.variant"):
            page.page.select_option("#variant", variant)
            page.wait("v => window.vaectl.last.variant === v", variant)
        path = graphs / next(Path(v["file"]).name for v in info["variants"] if v["variant"] == variant)
        got = np.array(
            page.js("([z, labels]) => window.vaectl.decode(z, 5, labels)", [z.ravel().tolist(), labels or [0] * 5])
        )
        want = python_decode(path, z, labels)
        assert_decoded_alike(got.reshape(want.shape), want, variant, share)
        # the big canvas shows round(255 x) of what the page decoded, pixel for pixel
        page.js("z => window.vaectl.setZ(z)", z[2].tolist())
        page.wait("z => window.vaectl.last.z.every((v, i) => v === z[i])", z[2].tolist())
        last = page.js("window.vaectl.last")
        assert np.array_equal(page.canvas("#main-image"), to_uint8(last["image"]).reshape(28, 28))
        label = [last["label"]] if info["num_classes"] else None
        assert_decoded_alike(np.array(last["image"]), python_decode(path, z[2:3], label).ravel(), variant, share)
    assert {"plain": 2, "conditional": 1, "context": 2}[name] == len(info["variants"])


def plane_point(page, canvas, x, y):
    """Page coordinates of the value (x, y) on the pad or the map (app.padGeometry / app.mapGeometry)."""
    g = page.js(f"window.vaectl.app.{canvas}Geometry()")
    page.page.locator(f"#{canvas}").scroll_into_view_if_needed()
    box = page.page.locator(f"#{canvas}").bounding_box()
    scale = box["width"] / g["width"]
    px = g["left"] + (x + g["range"]) / (2 * g["range"]) * g["size"]
    py = g["top"] + (g["range"] - y) / (2 * g["range"]) * g["size"]
    return box["x"] + px * scale, box["y"] + py * scale


@pytest.mark.slow
def test_slider_and_pad_moves_decode_the_new_z(pages):
    page, graphs = pages["plain"]
    page.page.select_option("#variant", "fp32")
    page.wait("window.vaectl.last.variant === 'fp32'")
    page.page.click("#zero")
    page.wait("window.vaectl.last.z.every(v => v === 0)")
    assert page.page.inner_text("#z-source") == "z: z = 0, the centre of N(0, I)."
    first = page.js("window.vaectl.app.info.order[0]")
    slider = page.page.locator(f"input[data-dim='{first}']")
    slider.focus()
    for _ in range(5):
        page.page.keyboard.press("ArrowRight")  # step 0.01
    page.wait("([d, v]) => Math.abs(window.vaectl.last.z[d] - v) < 1e-6", [first, 0.05])
    assert page.page.inner_text("#z-source") == "z: moved by hand."
    last = page.js("window.vaectl.last")
    assert np.abs(np.array(last["image"]) - python_decode(graphs / "decoder.onnx", [last["z"]]).ravel()).max() <= ATOL
    x_dim, y_dim = int(page.page.input_value("#pad-x")), int(page.page.input_value("#pad-y"))
    page.page.mouse.click(*plane_point(page, "pad", 1.5, -2.0))
    page.wait(
        "([x, y]) => Math.abs(window.vaectl.last.z[x] - 1.5) < 0.03 && Math.abs(window.vaectl.last.z[y] + 2) < 0.03",
        [x_dim, y_dim],
    )
    last = page.js("window.vaectl.last")
    assert last["z"][first] == pytest.approx(0.05, abs=1e-6) or first in (x_dim, y_dim)
    assert np.abs(np.array(last["image"]) - python_decode(graphs / "decoder.onnx", [last["z"]]).ravel()).max() <= ATOL


def map_screen(page):
    """The map's points on its canvas ([x, y] or None outside the view), and its geometry."""
    return page.js("window.vaectl.app.mapScreen()"), page.js("window.vaectl.app.mapGeometry()")


def isolated_point(screen) -> int:
    """The map point farthest from its nearest neighbour (a pointer on it hits no other)."""
    shown = np.array([i for i, p in enumerate(screen["points"]) if p is not None])
    xy = np.array([screen["points"][i] for i in shown])
    gaps = np.sort(np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1)), 1)[:, 1]
    return int(shown[gaps.argmax()])


def on_map(page, g, xy):
    """Page coordinates of a point of the map's canvas, scrolled into view."""
    page.page.locator("#map").scroll_into_view_if_needed()
    box = page.page.locator("#map").bounding_box()
    scale = box["width"] / g["width"]
    return box["x"] + xy[0] * scale, box["y"] + xy[1] * scale


def expected_screen(mu, axes, g):
    x, y = mu[:, axes["x"]], mu[:, axes["y"]]
    inside = (np.abs(x) <= g["range"]) & (np.abs(y) <= g["range"])
    px = g["left"] + (x + g["range"]) / (2 * g["range"]) * g["size"]
    py = g["top"] + (g["range"] - y) / (2 * g["range"]) * g["size"]
    return inside, np.stack([px, py], 1)


@pytest.mark.slow
def test_map_has_one_point_per_image_coloured_by_label_and_a_click_decodes_it(pages):
    page, graphs = pages["plain"]
    the_map = page.js("window.vaectl.app.map")
    screen, g = map_screen(page)
    labels = np.array(the_map["labels"])
    palette = page.js("(async () => (await import('./draw.mjs')).PALETTE)()")
    rgb = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in palette])
    assert len(screen["points"]) == len(labels) == the_map["count"] == 500 and len(set(labels.tolist())) == 10
    shown = np.array([i for i, p in enumerate(screen["points"]) if p is not None])
    xy = np.array([screen["points"][i] for i in shown])
    assert len(shown) >= 0.95 * 500  # the view holds 95 % of the points
    pixels = page.rgba("#map")[..., :3].astype(int)
    z = page.js("window.vaectl.last.z")
    axes = page.js("window.vaectl.app.axes")
    _, (marker,) = expected_screen(np.array([z]), axes, g)
    # each point's centre pixel has its label's colour, where no point of another label touches that pixel
    # (dots have radius 2.5; the current z's marker has radius 7 and a 4-pixel outline; the rings, drawn over
    # the dots, are 3.5 pixels wide with their white edge)
    centre = np.array([g["left"] + g["size"] / 2, g["top"] + g["size"] / 2])
    rings = [r / (2 * g["range"]) * g["size"] for r in (1, 2)]
    checked = 0
    for i, (x, y) in zip(shown, xy):
        px, py = int(x), int(y)
        near = np.hypot(xy[:, 0] - (px + 0.5), xy[:, 1] - (py + 0.5)) < 3.3
        off_rings = all(abs(np.hypot(*(centre - (px + 0.5, py + 0.5))) - r) > 3 for r in rings)
        if (labels[shown[near]] == labels[i]).all() and np.hypot(*(marker - (px + 0.5, py + 0.5))) > 11 and off_rings:
            assert np.abs(pixels[py, px] - rgb[labels[i]]).max() <= 2, (i, pixels[py, px])
            checked += 1
    assert checked >= 10, checked  # a briefly trained model crowds its points: the isolated ones are checked
    # click the most isolated point: its posterior mean becomes the current z and is decoded
    i = isolated_point(screen)
    page.page.mouse.click(*on_map(page, g, screen["points"][i]))
    mu_i = np.array(the_map["mu"][i], np.float32)
    page.wait("mu => window.vaectl.last.z.every((v, k) => v === mu[k])", mu_i.tolist())
    last = page.js("window.vaectl.last")
    assert np.abs(np.array(last["image"]) - python_decode(graphs / "decoder.onnx", mu_i[None]).ravel()).max() <= ATOL
    article = "an" if labels[i] == 8 else "a"
    assert page.page.inner_text("#z-source") == f"z: the posterior mean of test image {i} ({article} {labels[i]})."
    originals = np.frombuffer(base64.b64decode(the_map["images"]), np.uint8).reshape(-1, 28, 28)
    page.wait("i => window.vaectl.lastHover && window.vaectl.lastHover.index === i", i)
    assert np.array_equal(page.canvas("#map-original"), originals[i])


@pytest.mark.slow
def test_map_and_pad_show_the_same_two_components_on_the_same_axes(pages):
    """Item: the pad's x and y are the map's x and y, whichever components are chosen."""
    page, _ = pages["plain"]
    info = page.js("window.vaectl.app.info")
    mu = np.array(page.js("window.vaectl.app.map.mu"))
    assert page.js("window.vaectl.app.axes") == {"x": info["order"][0], "y": info["order"][1]}
    for x_dim, y_dim in ((info["order"][0], info["order"][1]), (info["order"][2], info["order"][1])):
        page.page.select_option("#pad-x", str(x_dim))
        page.wait("x => window.vaectl.app.axes.x === x", x_dim)
        axes = page.js("window.vaectl.app.axes")
        assert axes == {"x": x_dim, "y": y_dim} and int(page.page.input_value("#pad-y")) == y_dim
        screen, g = map_screen(page)
        inside, want = expected_screen(mu, axes, g)
        got = np.array([p if p is not None else [np.nan, np.nan] for p in screen["points"]])
        assert np.array_equal(np.isfinite(got[:, 0]), inside)
        np.testing.assert_allclose(got[inside], want[inside], atol=1e-6)
        # a click on the pad at (1, -1) sets exactly those two components; the map's marker sits there too
        page.page.mouse.click(*plane_point(page, "pad", 1.0, -1.0))
        page.wait(
            "([x, y]) => Math.abs(window.vaectl.last.z[x] - 1) < 0.03 && Math.abs(window.vaectl.last.z[y] + 1) < 0.03",
            [x_dim, y_dim],
        )
    # choosing the other axis's component swaps the two
    page.page.select_option("#pad-y", str(x_dim))
    page.wait("x => window.vaectl.app.axes.y === x", x_dim)
    assert page.js("window.vaectl.app.axes") == {"x": y_dim, "y": x_dim}
    assert page.page.input_value("#pad-x") == str(y_dim)


def is_round(values) -> bool:
    """Ticks at multiples of one step of 1, 2 or 5 x 10^k."""
    values = np.asarray(values, np.float64)
    step = np.diff(values)
    if len(values) < 2 or not np.allclose(step, step[0], rtol=1e-9):
        return False
    mantissa = step[0] / 10 ** np.floor(np.log10(step[0]) + 1e-9)
    return any(abs(mantissa - m) < 1e-9 for m in (1, 2, 5)) and np.allclose(
        values / step[0], np.round(values / step[0])
    )


@pytest.fixture(scope="module")
def beta0_page(browser, beta0_run):
    with serving(load_explore_model(beta0_run)) as port:
        page = Page(browser, f"http://127.0.0.1:{port}/")
        yield page
        page.close()


@pytest.mark.slow
def test_the_map_is_in_prior_units_with_rings_the_current_z_and_a_count_of_points_outside(beta0_page):
    """beta = 0: the encodings drift far from N(0, I); the map says so instead of rescaling it away."""
    page = beta0_page
    mu = np.array(page.js("window.vaectl.app.map.mu"))
    axes = page.js("window.vaectl.app.axes")
    reach = np.abs(mu[:, [axes["x"], axes["y"]]]).max(1)
    page.page.select_option("#map-view", "3")
    page.wait("window.vaectl.app.mapGeometry().range === 3")
    outside = int((reach > 3).sum())
    assert outside > 50  # the lesson of the experiment: most of the data is far outside the prior
    assert page.page.inner_text("#map-outside") == (
        f"{outside} of 500 points lie outside this view: choose a wider one to see them."
    )
    screen, g = map_screen(page)
    assert sum(p is None for p in screen["points"]) == outside
    assert page.js("window.vaectl.app.mapTicks") == [-3, -2, -1, 0, 1, 2, 3]
    assert rings_visible(page, g) > 0.9
    # the current z's marker: its red centre dot
    page.js("z => window.vaectl.setZ(z)", [0.5, 0.5, 0.5, 0.5])
    page.wait("window.vaectl.last.z[0] === 0.5")
    cx = g["left"] + (0.5 + 3) / 6 * g["size"]
    cy = g["top"] + (3 - 0.5) / 6 * g["size"]
    assert tuple(page.rgba("#map")[int(cy), int(cx), :3]) == (0xD0, 0x02, 0x1B)
    # the widest view holds every point, with round ticks
    options = page.js("Array.from(document.querySelectorAll('#map-view option'), o => o.value)")
    page.page.select_option("#map-view", options[-1])
    page.wait("r => window.vaectl.app.mapGeometry().range === r", float(options[-1]))
    assert page.page.inner_text("#map-outside") == "all 500 points in view." and reach.max() <= float(options[-1])
    assert is_round(page.js("window.vaectl.app.mapTicks"))
    assert rings_visible(page, page.js("window.vaectl.app.mapGeometry()")) > 0.9  # over the crowded dots too


def rings_visible(page, g) -> float:
    """The share of points along the map's 1-sigma ring (solid; the 2-sigma one is dashed) that show its blue."""
    rgba = page.rgba("#map")[..., :3].astype(int)
    hits = []
    for radius in (1,):
        for angle in np.linspace(0, 2 * np.pi, 72, endpoint=False):
            cx = g["left"] + (radius * np.cos(angle) + g["range"]) / (2 * g["range"]) * g["size"]
            cy = g["top"] + (g["range"] - radius * np.sin(angle)) / (2 * g["range"]) * g["size"]
            near = rgba[int(cy) - 1 : int(cy) + 2, int(cx) - 1 : int(cx) + 2].reshape(-1, 3)
            hits.append(bool(((near[:, 2] > near[:, 0] + 60) & (near[:, 2] > 150)).any()))  # the rings' blue
    return float(np.mean(hits))


def test_beta0_sliders_and_pad_reach_the_codes(beta0_page):
    """beta = 0: the codes reach far beyond +-3; the sliders and the pad reach them, so the page's first image
    (test image 0's code) sits inside the pad, not pinned at its edge."""
    page = beta0_page
    info = page.js("window.vaectl.app.info")
    mu = np.array(page.js("window.vaectl.app.map.mu"))
    assert (np.array(info["ranges"]) >= np.maximum(3, np.quantile(np.abs(mu), 0.99, axis=0))).all()  # test_explore
    assert max(info["ranges"]) > 3
    bounds = page.js("Array.from(document.querySelectorAll('#sliders input'), i => [+i.dataset.dim, +i.min, +i.max])")
    assert bounds and all(lo == -info["ranges"][d] and hi == info["ranges"][d] for d, lo, hi in bounds)
    wide = [hi for _, _, hi in bounds if hi > 3]
    said = f"beyond ±3 (up to ±{max(wide, default=0)}): the encoded test images or the prior go that far."
    assert (said in page.page.inner_text("#order-note")) == bool(wide)
    axes, g = page.js("window.vaectl.app.axes"), page.js("window.vaectl.app.padGeometry()")
    assert g["range"] == max(info["ranges"][axes["x"]], info["ranges"][axes["y"]])
    start = np.array(info["start"]["z"])
    assert abs(start[axes["x"]]) < g["range"] and abs(start[axes["y"]]) < g["range"]
    ticks = page.js("window.vaectl.app.padTicks")
    assert (
        is_round(ticks)
        and g["range"] / 2 < ticks[-1] <= g["range"]
        and f"to {g['range']}" in page.page.inner_text("#pad-note")
    )


@pytest.mark.slow
def test_charts_have_round_ticks_integer_counts_and_a_loss_whose_parts_add_up(beta0_page, beta0_run):
    page = beta0_page
    charts = page.js("window.vaectl.charts")
    records = [json.loads(line) for line in (beta0_run / "metrics.jsonl").read_text().splitlines()]
    loss = {s["name"]: np.array(s["values"], np.float64) for s in charts["loss"]["series"]}
    assert charts["loss"]["title"] == "loss per image = reconstruction + 0 × KL"
    assert list(loss) == ["train loss", "validation loss", "validation reconstruction", "0 × validation KL"]
    # the parts add up to the total, and with beta = 0 the weighted KL is 0
    np.testing.assert_allclose(
        loss["validation reconstruction"] + loss["0 × validation KL"], loss["validation loss"], rtol=1e-12
    )
    np.testing.assert_allclose(loss["validation loss"], [r["val_loss"] for r in records], rtol=1e-12)
    assert np.abs(loss["0 × validation KL"]).max() < 1e-6 * loss["validation loss"].min()
    np.testing.assert_allclose(charts["kl"]["series"][0]["values"], [r["val_kl"] for r in records])
    for key in ("loss", "kl", "variance"):
        assert is_round(charts[key]["axis"]["ticks"]) or key == "variance", (key, charts[key]["axis"])
    units = charts["units"]
    assert units["series"][0]["values"] == [len(informative_dims(r["kl_per_dim"])) for r in records]
    assert all(float(t).is_integer() for t in units["axis"]["ticks"]) and is_round(units["axis"]["ticks"])
    variance_ticks = np.log10(charts["variance"]["axis"]["ticks"])  # 1, 2 or 5 times powers of ten
    assert all(min(abs(v - np.floor(v) - np.log10(m)) for m in (1, 2, 5, 10)) < 1e-9 for v in variance_ticks)
    # the validation loss and its reconstruction coincide: both colours show in the plot (a wide pale line under
    # a dashed one), below the legend
    rgb = page.rgba("#curves-loss")[60:, :, :3].astype(int)
    for colour in ("#f5b06b", page.js("(async () => (await import('./draw.mjs')).PALETTE[2])()")):
        want = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(rgb - want).max(2) <= 8).sum() > 30, colour


@pytest.mark.slow
def test_a_narrow_window_does_not_scroll_sideways_and_clamped_inputs_say_so(
    browser, guided_graphs, beta0_run, tmp_path
):
    image = (np.random.default_rng(5).random((28, 28)) * 255).astype(np.uint8)
    for source in (guided_graphs, beta0_run):
        with serving(load_explore_model(source)) as port:
            page = Page(browser, f"http://127.0.0.1:{port}/", width=420)
            page.upload("a.png", png_bytes(image))
            page.wait("window.vaectl.lastUpload && window.vaectl.lastUpload.row")
            page.page.wait_for_timeout(300)
            assert page.js("document.documentElement.scrollWidth") <= 420
            too_wide = page.js(
                """Array.from(document.querySelectorAll('main *')).filter(e => e.getBoundingClientRect().right > 421)
                   .map(e => e.id || e.tagName)"""
            )
            assert too_wide == [], too_wide
            page.page.fill("#steps", "500")
            page.wait("window.vaectl.lastStrip.steps === 32")
            assert "steps: 32 (2 to 32 here; asked for 500)" in page.page.inner_text("#path-note")
            page.page.fill("#trav-steps", "1")
            page.wait("window.vaectl.lastTraversal.steps === 2")
            assert "steps: 2 (2 to 32 here; asked for 1)" in page.page.inner_text("#trav-note")
            page.close()


@pytest.mark.slow
def test_sliders_show_the_informative_components_by_the_one_rule_and_say_how_many_are_hidden(
    browser, mlp_graphs, tmp_path
):
    import onnx

    for name in ("decoder.onnx", "encoder.onnx"):
        shutil.copy(mlp_graphs / name, tmp_path / name)
    model = onnx.load(str(tmp_path / "decoder.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    props["vaectl.kl_per_dim"] = "[0.0, 2.5, 0.001, 1.25]"  # dims 1 and 3 informative, as `vaectl traverse` draws
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(tmp_path / "decoder.onnx"))
    assert Decoder(tmp_path / "decoder.onnx").info.informative_dims() == [1, 3]
    with serving(load_explore_model(tmp_path)) as port:
        page = Page(browser, f"http://127.0.0.1:{port}/")
        shown = page.js("Array.from(document.querySelectorAll('#sliders input'), i => +i.dataset.dim)")
        assert shown == [1, 3]
        note = page.page.inner_text("#order-note")
        assert f"the 2 components that carry information ({INFORMATIVE_RULE})" in note
        assert "2 components hidden" in note
        assert page.js("window.vaectl.app.axes") == {"x": 1, "y": 3}
        page.page.click("#show-all")
        assert page.js("Array.from(document.querySelectorAll('#sliders input'), i => +i.dataset.dim)") == [1, 3, 2, 0]
        page.close()


def test_the_demo_offers_none_and_starts_on_a_recognisable_image(browser):
    from vaectl.demo import demo_dir

    model = load_explore_model(demo_dir())
    with serving(model) as port:
        page = Page(browser, f"http://127.0.0.1:{port}/")
        options = page.js("Array.from(document.querySelectorAll('#class option'), o => [o.value, o.text])")
        assert options[-1] == ["10", "none (no label)"] and len(options) == 11  # trained with label dropout
        ds = load_data(None)
        start = np.array(model.map["mu"][0], np.float32)
        last = page.js("window.vaectl.last")
        assert np.array_equal(np.array(last["z"], np.float32), start) and last["label"] == ds.test_labels[0]
        article = "an" if ds.test_labels[0] == 8 else "a"
        assert page.page.inner_text("#z-source") == (
            f"z: the posterior mean of test image 0 ({article} {ds.test_labels[0]}); class {ds.test_labels[0]}."
        )
        # it looks like the test image, more than z = 0 (the prior's centre) does
        target = ds.test[0].astype(np.float64).ravel() / 255
        first = np.array(last["image"])
        page.page.click("#zero")
        page.wait("window.vaectl.last.z.every(v => v === 0)")
        centre = np.array(page.js("window.vaectl.last.image"))
        assert ((first - target) ** 2).mean() < ((centre - target) ** 2).mean()
        # "none" decodes the unconditional class, as `vaectl generate --label none`
        page.page.select_option("#class", "10")
        page.wait("window.vaectl.last.label === 10")
        dec = Decoder(demo_dir() / "decoder.onnx")
        assert (
            np.abs(
                np.array(page.js("window.vaectl.last.image")) - dec.decode_float(np.zeros((1, 2)), label="none").ravel()
            ).max()
            <= 2e-3
        )
        page.close()


@pytest.mark.slow
def test_the_demo_samples_its_fitted_prior_first_as_vaectl_generate_demo(browser, tmp_path):
    """A first look at the demo's samples: the fitted prior the demo decoder carries is selected, and the grid is
    `vaectl generate --demo`'s for seed 0: every class in turn, as generate without --label, whatever class the
    decoded image above shows."""
    from vaectl.demo import demo_dir

    with serving(load_explore_model(demo_dir())) as port:
        page = Page(browser, f"http://127.0.0.1:{port}/")
        assert page.js("Array.from(document.querySelectorAll('#prior option'), o => o.value)") == ["gmm", "normal"]
        assert page.js("document.querySelector('#prior').value") == "gmm"
        assert "samples from this prior by default" in page.page.inner_text("#prior-note")
        page.wait("window.vaectl.lastGrid && window.vaectl.lastGrid.label === 'cycle'")
        assert page.js("window.vaectl.lastGrid.prior") == "gmm" and page.js("window.vaectl.lastGrid.seed") == 0
        assert page.js("window.vaectl.lastGrid.labels") == [i % 10 for i in range(64)]
        out = tmp_path / "g.png"
        assert cli("generate", "--demo", "--seed", 0, "-n", 64, "--out", out).exit_code == 0
        grid_matches(page.canvas("#grid"), read_png(out))
        assert "The grid of vaectl generate --seed 0 -n 64 (no --label: the classes in turn, 0 to 9" in (
            page.page.inner_text("#grid-note")
        )
        page.page.select_option("#grid-class", "8")  # one class: generate --label 8
        page.wait("window.vaectl.lastGrid.label === 8")
        assert cli("generate", "--demo", "--seed", 0, "-n", 64, "--label", 8, "--out", out).exit_code == 0
        grid_matches(page.canvas("#grid"), read_png(out))
        assert "The grid of vaectl generate --seed 0 -n 64 --label 8." in page.page.inner_text("#grid-note")
        page.close()


@pytest.mark.slow
def test_the_manifold_is_decoded_behind_the_pad_and_redrawn_when_what_it_shows_changes(browser, conditional_graphs):
    with serving(load_explore_model(conditional_graphs)) as port:
        page = Page(browser, f"http://127.0.0.1:{port}/")
        page.wait("window.vaectl.lastManifold !== null")
        m = page.js("window.vaectl.lastManifold")
        axes, label = m["axes"], m["label"]
        assert m["grid"] == 16 and axes == page.js("window.vaectl.app.axes")
        z = np.array(m["z"], np.float32).reshape(256, 4)
        current = np.array(page.js("window.vaectl.last.z"), np.float32)
        reach = page.js("window.vaectl.app.padGeometry().range")  # 3, or wider where the codes go further
        centres = np.linspace(-reach, reach, 17)[:-1] + reach / 16  # each cell's centre
        np.testing.assert_array_equal(z[:, axes["x"]].reshape(16, 16), np.tile(centres.astype(np.float32), (16, 1)))
        np.testing.assert_array_equal(
            z[:, axes["y"]].reshape(16, 16), np.tile(centres[::-1, None].astype(np.float32), (1, 16))
        )
        others = [d for d in range(4) if d not in axes.values()]
        assert (z[:, others] == current[others]).all()
        # the tiles on the pad are the decoded images (corner tiles, inside their borders: no ring or grid line there)
        want = to_uint8(python_decode(conditional_graphs / "decoder.onnx", z, [label] * 256)).reshape(16, 16, 28, 28)
        g = page.js("window.vaectl.app.padGeometry()")
        assert g["size"] == 16 * 28
        pad = page.canvas("#pad")
        for r, c in ((0, 0), (0, 15), (15, 0), (15, 15)):
            y0, x0 = g["top"] + 28 * r, g["left"] + 28 * c
            diff = np.abs(pad[y0 + 2 : y0 + 26, x0 + 2 : x0 + 26].astype(int) - want[r, c, 2:26, 2:26])
            assert diff.max() <= 1, (r, c, diff.max())
        # moving z along the pad keeps the slice: no redraw; the class, the axes and another component redraw it
        count = page.js("window.vaectl.manifolds")
        page.page.mouse.click(*plane_point(page, "pad", -1.0, 2.0))
        page.wait("([x, y]) => Math.abs(window.vaectl.last.z[x] + 1) < 0.03", [axes["x"], axes["y"]])
        page.page.wait_for_timeout(200)
        assert page.js("window.vaectl.manifolds") == count
        page.page.select_option("#class", "7")
        page.wait("n => window.vaectl.manifolds > n && window.vaectl.lastManifold.label === 7", count)
        page.page.select_option("#pad-x", str(others[0]))
        page.wait("d => window.vaectl.lastManifold.axes.x === d", others[0])
        count = page.js("window.vaectl.manifolds")
        page.js("z => window.vaectl.setZ(z)", [0.25, -0.5, 0.75, 1.0])
        page.wait("n => window.vaectl.manifolds > n", count)
        reach = page.js("window.vaectl.app.padGeometry().range")
        assert page.js("window.vaectl.lastManifold.z.slice(0, 4)")[axes["y"]] == pytest.approx(reach * 15 / 16)
        page.page.uncheck("#manifold")  # off: a plain pad, white behind the rings
        page.page.wait_for_timeout(100)
        assert (page.canvas("#pad")[g["top"] + 2 : g["top"] + 26, g["left"] + 2 : g["left"] + 26] == 255).all()
        page.close()


@pytest.mark.slow
def test_hovering_the_map_shows_the_image_by_the_cursor_and_an_upload_joins_the_map(pages):
    page, graphs = pages["plain"]
    the_map = page.js("window.vaectl.app.map")
    screen, g = map_screen(page)
    i = isolated_point(screen)
    x, y = on_map(page, g, screen["points"][i])
    page.page.mouse.move(x - 30, y - 30)
    page.page.mouse.move(x, y)
    page.wait("i => window.vaectl.lastHover && window.vaectl.lastHover.index === i", i)
    assert page.page.is_visible("#map-tip")
    tip = page.page.locator("#map-tip").bounding_box()
    # beside the cursor (on whichever side has room), not over it and not in a corner of the page
    assert not (tip["x"] <= x <= tip["x"] + tip["width"] and tip["y"] <= y <= tip["y"] + tip["height"])
    gap_x = max(tip["x"] - x, x - (tip["x"] + tip["width"]), 0)
    gap_y = max(tip["y"] - y, y - (tip["y"] + tip["height"]), 0)
    assert gap_x < 40 and gap_y < 40, (tip, x, y)
    originals = np.frombuffer(base64.b64decode(the_map["images"]), np.uint8).reshape(-1, 28, 28)
    assert np.array_equal(page.canvas("#map-original"), originals[i])
    assert page.page.inner_text("#map-tip-text") == f"test image {i} · {the_map['labels'][i]}"  # 0-based
    # an uploaded image: a point at its posterior mean; clicking it makes that mean the current z
    image = np.asarray(load_data(None).test[7][0])
    page.upload("seven.png", png_bytes(image))
    page.wait("window.vaectl.lastUpload && window.vaectl.lastUpload.row")
    mu = np.array(page.js("window.vaectl.lastUpload.mu"), np.float32)
    want_mu, _ = Encoder(graphs / "encoder.onnx").encode(prepare_images(io.BytesIO(png_bytes(image)), (1, 28, 28)))
    np.testing.assert_allclose(mu, want_mu[0], atol=ATOL)
    screen, g = map_screen(page)
    axes = page.js("window.vaectl.app.axes")
    _, (want_xy,) = expected_screen(mu[None].astype(np.float64), axes, g)
    np.testing.assert_allclose(screen["upload"], want_xy, atol=1e-3)
    page.page.mouse.click(*on_map(page, g, want_xy))
    page.wait("mu => window.vaectl.last.z.every((v, k) => v === mu[k])", mu.tolist())
    assert page.page.inner_text("#z-source") == "z: your image's posterior mean."


@pytest.mark.slow
def test_every_view_says_what_it_shows(pages):
    page, _ = pages["conditional"]
    cards = page.js(
        """Array.from(document.querySelectorAll('main > section')).filter(s => !s.hidden).map(s =>
           [s.id, s.querySelector('h2').textContent, (s.querySelector('h2 + p.about') || {}).textContent || ''])"""
    )
    assert len(cards) >= 8
    for card, title, about in cards:
        assert len(about.split()) >= 10, (card, title, about)
    text = page.page.inner_text("#grid-card")
    assert "blurrier than reconstructions" in text


@pytest.mark.slow
def test_upload_on_a_conditional_model_draws_one_reconstruction_per_class(browser, guided_graphs, tmp_path):
    """The image is read as the class under which the model explains it best and decoded under every class,
    "none" included; the chosen class is framed; another choice redraws; a failed upload clears the result."""
    enc, dec = Encoder(guided_graphs / "encoder.onnx"), Decoder(guided_graphs / "decoder.onnx")
    three = np.asarray(load_data(None).test[np.flatnonzero(load_data(None).test_labels == 3)[0]][0])
    (tmp_path / "three.png").write_bytes(png_bytes(three))
    x = prepare_images(tmp_path / "three.png", (1, 28, 28))
    labels = np.arange(11)
    mu, logvar = enc.encode(np.repeat(x, 11, 0), label=labels)
    recons = dec.decode_float(mu, label=labels).astype(np.float64)
    p = np.clip(recons[:10], 1e-7, 1 - 1e-7)
    xs = x.astype(np.float64)
    bce = -(xs * np.log(p) + (1 - xs) * np.log(1 - p)).reshape(10, -1).sum(1)
    kl = 0.5 * (mu[:10].astype(np.float64) ** 2 + np.exp(logvar[:10]) - 1 - logvar[:10]).sum(1)
    scores = bce + kl
    with serving(load_explore_model(guided_graphs)) as port:
        page = Page(browser, f"http://127.0.0.1:{port}/")
        page.page.select_option("#class", "0")  # the main class selector does not decide the upload's class
        page.upload("three.png", png_bytes(three))
        page.wait("window.vaectl.lastUpload && window.vaectl.lastUpload.row")
        got = page.js("window.vaectl.lastUpload")
        np.testing.assert_allclose(got["scores"], scores, rtol=1e-4)
        guess = int(np.argmin(scores))
        assert got["guess"] == got["readAs"] == guess
        row = dec.decode_float(np.repeat(mu[guess : guess + 1], 11, 0), label=labels)
        assert np.abs(np.array(got["row"]) - row.ravel()).max() <= ATOL
        captions = page.js("Array.from(document.querySelectorAll('#upload-row figcaption'), c => c.textContent)")
        assert captions == [*map(str, range(10)), "none"]
        chosen = page.js(
            "Array.from(document.querySelectorAll('#upload-row figure'), f => f.classList.contains('chosen'))"
        )
        assert chosen == [k == guess for k in range(11)]
        cells = page.js("Array.from(document.querySelectorAll('#upload-row canvas')).length")
        for k in (guess, 10):
            assert np.array_equal(
                page.canvas(f"#upload-row figure:nth-child({k + 1}) canvas"), to_uint8(row[k]).reshape(28, 28)
            )
        assert cells == 11
        # the framed one is `vaectl reconstruct --label K`; read as another class, the row is redrawn
        for k in (guess, (guess + 5) % 10):
            page.page.select_option("#read-as", str(k))
            page.wait("k => window.vaectl.lastUpload.readAs === k", k)
            assert (
                cli(
                    "reconstruct",
                    "--encoder",
                    guided_graphs / "encoder.onnx",
                    "--decoder",
                    guided_graphs / "decoder.onnx",
                    tmp_path / "three.png",
                    "--label",
                    k,
                    "--scale",
                    1,
                    "--no-labels",
                    "--out",
                    tmp_path / f"r{k}.png",
                ).exit_code
                == 0
            )
            _, recon = grid_cells(read_png(tmp_path / f"r{k}.png"), 2, 1)
            grid_matches(page.canvas(f"#upload-row figure:nth-child({k + 1}) canvas"), recon)
            want = dec.decode_float(np.repeat(mu[k : k + 1], 11, 0), label=labels)
            assert np.abs(np.array(page.js("window.vaectl.lastUpload.row")) - want.ravel()).max() <= ATOL
        # a failed upload leaves no earlier result on the page or the map
        page.upload("notes.png", b"just text")
        page.wait("window.vaectl.lastUpload && window.vaectl.lastUpload.error")
        assert not page.page.is_visible("#upload-result") and page.js("window.vaectl.app.upload") is None
        assert page.js("document.querySelectorAll('#upload-row figure').length") == 0
        page.forget_refusals()
        page.close()


def grid_matches(got: np.ndarray, want: np.ndarray) -> None:
    """The page's grid against the CLI's PNG: the same layout and pixels. WASM and native kernels may sum
    in another order (|diff| <= 1e-5 above), which can move a pixel sitting on a rounding boundary by one."""
    assert got.shape == want.shape
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).sum())


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, label, same_z", [("plain", None, False), ("conditional", "3", False), ("conditional", "all", True)]
)
def test_sample_grid_for_a_seed_is_vaectl_generates_under_each_prior(pages, tmp_path, name, label, same_z):
    """The page offers the model's priors by name, the default (what `vaectl generate` uses) first, and a seed
    gives generate's images under each."""
    page, graphs = pages[name]
    priors = [p.name for p in priors_of(Decoder(graphs / "decoder.onnx").info)]
    assert page.js("Array.from(document.querySelectorAll('#prior option'), o => o.value)") == priors
    if label == "3":
        page.page.select_option("#grid-class", "3")
    if name == "conditional":
        page.page.set_checked("#same-z", same_z)
    for k, prior in enumerate(priors):
        page.page.select_option("#prior", prior)
        note = page.page.inner_text("#prior-note")
        assert ("samples from this prior by default" in note) == (k == 0), note
        page.page.fill("#seed", "5")
        page.wait(
            "([l, p]) => window.vaectl.lastGrid.seed === 5 && String(window.vaectl.lastGrid.label) === l "
            "&& window.vaectl.lastGrid.prior === p",
            ["null" if label is None else label, prior],
        )
        args = ["generate", "--onnx", graphs / "decoder.onnx", "--seed", "5", "--out", tmp_path / "g.png"]
        args += (["--prior", prior] if k else []) + (
            ["-n", "8", "--label", "all", "--same-z"]
            if same_z
            else ["-n", "64"] + (["--label", label] if label else [])
        )
        assert cli(*args).exit_code == 0
        grid_matches(page.canvas("#grid"), read_png(tmp_path / "g.png"))
        assert "The grid of vaectl generate --seed 5" in page.page.inner_text("#grid-note")
    page.page.select_option("#prior", priors[0])


@pytest.mark.slow
def test_interpolation_is_vaectl_interpolates(pages, tmp_path):
    page, graphs = pages["plain"]
    page.wait("window.vaectl.lastStrip && window.vaectl.lastStrip.from === 'seeds'")  # seeds 0 and 1, slerp, 10 steps
    args = ["--decoder", graphs / "decoder.onnx", "--seed-a", 0, "--seed-b", 1, "--steps", 10]
    assert cli("interpolate", *args, "--scale", 1, "--no-labels", "--out", tmp_path / "i.png").exit_code == 0
    grid_matches(page.canvas("#strip"), read_png(tmp_path / "i.png"))


def page_traversal(page, z, dim: int, span: float, steps: int) -> dict:
    """Set the page's current z, component, span and steps; the traversal it then draws (window.vaectl)."""
    page.page.select_option("#trav-dim", str(dim))
    page.page.fill("#span", str(span))
    page.page.fill("#trav-steps", str(steps))
    page.js("z => window.vaectl.setZ(z)", np.asarray(z, np.float32).tolist())
    page.wait(
        "([z, d, s, k]) => { const t = window.vaectl.lastTraversal; return t && t.dim === d && t.span === s "
        "&& t.steps === k && t.z0.every((v, i) => v === z[i]); }",
        [np.asarray(z, np.float32).tolist(), dim, span, steps],
    )
    return page.js("window.vaectl.lastTraversal")


def cli_traversal(tmp_path, decoder, dim: int, span: float, steps: int, *flags) -> np.ndarray:
    out = tmp_path / "t.png"
    args = ["traverse", "--onnx", decoder, "--dim", dim, "--span", span, "--steps", steps, "--no-labels", "--scale", 1]
    assert cli(*args, *flags, "--out", out).exit_code == 0
    return read_png(out)


@pytest.mark.slow
@pytest.mark.parametrize("name, label", [("plain", None), ("conditional", "3")])
def test_traversal_under_the_fitted_prior_is_vaectl_traverses(pages, tmp_path, name, label):
    """With the fitted prior selected (the default), the page sweeps one component over the prior's mean
    +- span of its standard deviations, as `vaectl traverse` does; the other components keep the current z. From
    a seed's draw it is `vaectl traverse --seed`'s row; "start at the prior's mean" gives `vaectl traverse`'s own."""
    page, graphs = pages[name]
    decoder = graphs / "decoder.onnx"
    dec = Decoder(decoder)
    prior = priors_of(dec.info)[0]
    assert prior.name == "gmm"
    page.page.select_option("#prior", "gmm")
    flags = []
    if label is not None:
        page.page.select_option("#class", label)
        flags = ["--label", label]
    mean, std = prior.moments(None if label is None else int(label))
    dim = page.js("Number(document.querySelectorAll('#trav-dim option')[1].value)")
    span, steps = 2.5, 7

    # from a draw of seed 5: the other components at that draw, the swept one over the prior's mean +- 2.5 std
    z = dec.latents(1, 5, label=None if label is None else int(label))[0]
    got = page_traversal(page, z, dim, span, steps)
    grid_matches(page.canvas("#traversal"), cli_traversal(tmp_path, decoder, dim, span, steps, "--seed", 5, *flags))
    assert (got["prior"], got["center"], got["scale"]) == ("gmm", mean[dim], std[dim])
    want = traverse_latents(z, [dim], span, steps, mean, std)  # what Decoder.traverse decodes
    assert np.array_equal(np.array(got["z"], np.float32).reshape(steps, -1), want)
    assert "prior std" in page.page.inner_text("#path-card")

    # the prior's mean, as `vaectl traverse` starts without --seed or --image; the page names that command
    page.page.click("#trav-mean")
    page.wait("m => window.vaectl.lastTraversal.z0.every((v, i) => v === m[i])", mean.astype(np.float32).tolist())
    grid_matches(page.canvas("#traversal"), cli_traversal(tmp_path, decoder, dim, span, steps, *flags))
    command = f"vaectl traverse --dim {dim} --span 2.5 --steps 7" + (f" --label {label}" if label else "")
    assert command in page.page.inner_text("#trav-cli")


@pytest.mark.slow
def test_traversal_under_n01_sweeps_from_minus_to_plus_span_as_vaectl_traverse_prior_normal(pages, tmp_path):
    """With N(0, I) selected the page keeps its plain sweep, -span..+span, the others at the current z: from
    z = 0 that is `vaectl traverse --prior normal`, from a draw of seed 5 `vaectl traverse --prior normal --seed 5`."""
    page, graphs = pages["plain"]
    decoder = graphs / "decoder.onnx"
    page.page.select_option("#prior", "normal")
    dim = page.js("Number(document.querySelector('#trav-dim').value)")
    page_traversal(page, np.zeros(4), dim, 3, 9)
    grid_matches(page.canvas("#traversal"), cli_traversal(tmp_path, decoder, dim, 3, 9, "--prior", "normal"))
    assert f"The row of vaectl traverse --dim {dim} --span 3 --steps 9 --prior normal" in page.page.inner_text(
        "#trav-cli"
    )
    z = Decoder(decoder).latents(1, 5, prior="normal")[0]
    page_traversal(page, z, dim, 2, 5)
    grid_matches(
        page.canvas("#traversal"), cli_traversal(tmp_path, decoder, dim, 2, 5, "--prior", "normal", "--seed", 5)
    )
    page.page.select_option("#prior", "gmm")


@pytest.mark.slow
def test_save_png_is_the_view_scaled_up_without_smoothing(pages, tmp_path):
    page, _ = pages["plain"]
    with page.page.expect_download() as download:
        page.page.click("#save-view")
    saved = np.asarray(Image.open(download.value.path()).convert("L"))
    assert np.array_equal(saved, np.kron(page.canvas("#main-image"), np.ones((8, 8), np.uint8)))


@pytest.mark.slow
def test_upload_reconstructs_as_vaectl_reconstruct_and_refuses_bad_files(pages, tmp_path):
    page, graphs = pages["plain"]
    image = (np.random.default_rng(2).random((36, 30, 3)) * 255).astype(np.uint8)
    (tmp_path / "a.png").write_bytes(png_bytes(image))
    page.upload("a.png", png_bytes(image))
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
            "--scale",
            1,
            "--no-labels",
            "--out",
            tmp_path / "r.png",
        ).exit_code
        == 0
    )
    original, recon = grid_cells(read_png(tmp_path / "r.png"), 2, 1)
    assert np.array_equal(to_uint8(got["input"]).reshape(28, 28), original)
    grid_matches(to_uint8(got["recon"]).reshape(28, 28), recon)
    assert np.array_equal(page.canvas("#upload-row canvas"), to_uint8(got["recon"]).reshape(28, 28))
    assert page.js("document.querySelectorAll('#upload-row canvas').length") == 1
    bomb = png_bomb(tmp_path / "bomb.png", 10_000).read_bytes()
    for name, data, fragment in (
        ("notes.png", b"just text", "not an image in an accepted format"),
        ("bomb.png", bomb, "decompression bomb"),
    ):
        page.upload(name, data)
        page.wait("n => document.getElementById('upload-message').textContent.startsWith(n)", name)
        assert fragment in page.page.inner_text("#upload-message")
        assert not page.page.is_visible("#upload-result")
    page.forget_refusals()


@pytest.mark.slow
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
        # the precomputed draws give generate's grid for a shipped seed; another seed says what the page ships
        page.page.select_option("#grid-n", "16")
        page.page.fill("#seed", "6")
        page.wait("window.vaectl.lastGrid.seed === 6 && window.vaectl.lastGrid.n === 16")
        assert (
            cli(
                "generate", "--onnx", mlp_graphs / "decoder.onnx", "--seed", 6, "-n", 16, "--out", tmp_path / "g.png"
            ).exit_code
            == 0
        )
        grid_matches(page.canvas("#grid"), read_png(tmp_path / "g.png"))
        page.page.fill("#seed", "9")
        page.wait("document.getElementById('status').textContent.includes('seeds 0 to 7 only')")
        page.problems = [p for p in page.problems if "seeds 0 to 7 only" not in p]
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
        z = Decoder(mlp_graphs / "decoder.onnx").latents(1, 0)  # the default (fitted) prior's first draw, seed 0
        assert page.page.inner_text("#z-source") == "z: a draw from the gmm prior (seed 0)."
        assert (
            np.abs(
                np.array(page.js("window.vaectl.last.image")) - python_decode(mlp_graphs / "decoder.onnx", z).ravel()
            ).max()
            <= ATOL
        )
        page.close()


@pytest.mark.slow
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
        for canvas in ("#curves-loss", "#curves-kl", "#curves-units", "#curves-var"):
            ink = page.rgba(canvas)[..., 3]
            assert (ink > 0).mean() > 0.01, canvas  # lines, axes and labels were drawn
        assert page.js("document.getElementById('run-grid').src").endswith("run/samples_epoch002.png")
        page.page.fill("#run-epoch", "0")
        page.wait("document.getElementById('run-grid').src.endsWith('samples_epoch001.png')")
        page.wait(
            "document.getElementById('run-grid').complete && document.getElementById('run-grid').naturalWidth === 62"
        )
        assert page.page.inner_text("#run-epoch-name") == "1"
        beta = Decoder(mlp_graphs / "decoder.onnx").config.beta
        names = [s["name"] for s in page.js("window.vaectl.charts.loss.series")]
        assert names[-1] == f"{beta:g} × validation KL"
        page.close()


@pytest.mark.slow
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


def test_static_site_opened_from_disk_says_to_serve_it_over_http(browser, mlp_graphs, tmp_path):
    site = tmp_path / "site"
    result = cli("explore", mlp_graphs, "--site", site)
    assert result.exit_code == 0, result.stderr
    step = f"python3 -m http.server -d {site}"
    assert f"next: {step}, then open http://localhost:8000/" in result.stderr
    page = browser.new_page()
    try:
        page.goto((site / "index.html").as_uri())  # the browser refuses the page's modules from file://
        page.wait_for_function("document.getElementById('status').textContent.includes('http.server')", timeout=30_000)
        status = page.inner_text("#status")
        assert (
            status == f"this page needs http, not a file: serve its folder with {step} and open http://localhost:8000/"
        )
        assert page.eval_on_selector("#status", "s => s.classList.contains('error')")
    finally:
        page.close()


@pytest.mark.slow
def test_a_colour_resnet_with_refinement_encodes_and_reconstructs_uploads_as_python(browser, tmp_path):
    """The colour default's graphs in onnxruntime-web: the encoder with its refinement steps (transposed
    convolutions, matrix products) gives Python onnxruntime's mu, and the reconstruction decodes it alike."""
    from export_helpers import RESNET_COLOUR, save_tiny_checkpoint

    from vaectl.export import export_model

    ckpt = save_tiny_checkpoint(tmp_path / "resnet.pt", **RESNET_COLOUR, height=16, width=16, refine_steps=5)
    graphs = export_model(ckpt, tmp_path / "onnx", prior="normal", log=lambda m: None).encoder.parent
    image = (np.random.default_rng(4).random((20, 18, 3)) * 255).astype(np.uint8)
    with serving(load_explore_model(graphs)) as port:
        page = Page(browser, f"http://127.0.0.1:{port}/")
        page.upload("a.png", png_bytes(image))
        page.wait("window.vaectl.lastUpload && window.vaectl.lastUpload.recon")
        got = page.js("window.vaectl.lastUpload")
        x = np.asarray(got["input"], np.float32).reshape(1, 3, 16, 16)
        mu, _ = Encoder(graphs).encode(x)  # the model's own 5 steps, fed by the Python runtime
        assert np.abs(np.asarray(got["mu"]) - mu.ravel()).max() <= 1e-4
        assert_decoded_alike(got["recon"], python_decode(graphs / "decoder.onnx", [got["mu"]]).ravel(), "fp32")
        assert page.rgba("#upload-row canvas").shape[:2] == (16, 16)
        page.close()  # no console error or failed request
