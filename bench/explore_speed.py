"""vaectl explore in headless Chromium: time to the first decoded image, decode time per slider move, the
decoded manifold's redraw, bytes.

    python bench/explore_speed.py                            # trains the two models briefly first
    python bench/explore_speed.py --screenshot docs/explore.png --screenshot-conditional docs/explore-conditional.png

For the default MLP and the `--preset quality` model (trained for --epochs on the embedded sample: the
figures concern decode speed, so the weights' quality does not matter), served by `vaectl explore`'s server,
with the decoded manifold on (the page's default):
  1. navigation -> first decoded image on the page (ms, median of --loads cold loads: a fresh browser
     context each, and the server sends Cache-Control: no-store);
  2. median decode time of one move of the pad's first component (onnxruntime-web, WASM, one thread; --moves
     moves): the main image, its traversal and the map follow, the manifold's slice stays;
  3. the manifold's redraw (16 x 16 images decoded in one batch and drawn) when a component off the pad
     moves (--moves moves), and the main image's decode time during those moves (it may wait for a redraw);
  4. bytes transferred on the first load (response bodies as sent, the .wasm gzipped).
Targets: first image <= 1.5 s; per-move decode <= 5 ms (default MLP), <= 20 ms (quality preset); manifold
redraw <= 100 ms (default MLP).
--screenshot: the page of a default MLP trained --screenshot-epochs epochs (the docs' picture);
--screenshot-conditional: the demo model (conditional, 2-D latent) with a test image's upload row beside
the decoded manifold.
Needs the [train] extra, playwright, and Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import sync_playwright

from vaectl.explore import load_explore_model, make_server

CHROMIUM = "/usr/bin/chromium"
MODELS = {"default MLP": [], "quality preset": ["--preset", "quality"]}


def train_and_export(work: Path, name: str, flags: list[str], epochs: int) -> Path:
    run = work / name.replace(" ", "_")
    out = run / "export"
    vaectl = [sys.executable, "-m", "vaectl.cli"]
    subprocess.run(
        vaectl + ["train", *flags, "--epochs", str(epochs), "--out", str(run), "--grid-every", "1"],
        check=True,
        capture_output=True,
    )
    subprocess.run(vaectl + ["export", str(run), "--out", str(out)], check=True, capture_output=True)
    return run  # a run directory holding its export: the page also draws the training curves


def measure(browser, url: str, loads: int, moves: int) -> dict:
    first, sent = [], []
    for k in range(loads):
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        page = context.new_page()
        bytes_in = []
        page.on(
            "requestfinished",
            lambda r, sink=bytes_in: sink.append(r.sizes()["responseBodySize"] + r.sizes()["responseHeadersSize"]),
        )
        page.goto(url)
        page.wait_for_function("window.vaectl.settled === true", timeout=120_000)
        page.wait_for_timeout(300)  # the last views' requests finish
        first.append(page.evaluate("window.vaectl.firstImageMs"))
        sent.append(sum(bytes_in))
        if k == loads - 1:
            page.wait_for_function("window.vaectl.lastManifold !== null", timeout=120_000)
            times = slider_moves(page, 0, moves)  # the pad's x: the manifold's slice stays
            redraws = page.evaluate("window.vaectl.manifolds")
            during = slider_moves(page, 2, moves)  # off the pad: the manifold follows every move
            manifold = page.evaluate(
                """async n => {  // the redraws after the last move, one per move, until the page is idle
                  const out = [];
                  for (let i = 0; i < n; i++) {
                    const before = window.vaectl.manifolds;
                    const d = window.vaectl.app.info.order[2];
                    window.vaectl.setZ(window.vaectl.app.z.map((v, k) => (k === d ? (i % 7) * 0.4 - 1.3 : v)));
                    while (window.vaectl.manifolds === before) await new Promise(r => setTimeout(r, 0));
                    out.push(window.vaectl.lastManifold.ms);
                  }
                  return out;
                }""",
                max(5, moves // 5),
            )
            redraws = page.evaluate("window.vaectl.manifolds") - redraws
        context.close()
    return {
        "first": first,
        "decode": statistics.median(times),
        "decode_p90": sorted(times)[int(0.9 * len(times))],
        "during": statistics.median(during),
        "during_p90": sorted(during)[int(0.9 * len(during))],
        "manifold": statistics.median(manifold),
        "manifold_p90": sorted(manifold)[int(0.9 * len(manifold))],
        "redraws": redraws,
        "bytes": sent[0],
    }


def slider_moves(page, rank: int, moves: int) -> list[float]:
    """The main image's decode times (ms) for `moves` moves of the slider of the component info.order[rank]."""
    return page.evaluate(
        """async ([rank, moves]) => {
        const d = window.vaectl.app.info.order[rank];
        document.getElementById('show-all').click();  // the component may be hidden behind "show all"
        const slider = document.querySelector(`input[data-dim="${d}"]`);
        const out = [];
        for (let i = 0; i < moves; i++) {
          const before = window.vaectl.decodes;
          slider.value = String(-3 + 6 * (i / moves));
          slider.dispatchEvent(new Event('input'));
          while (window.vaectl.decodes === before) await new Promise(r => setTimeout(r, 0));
          out.push(window.vaectl.last.ms);
        }
        return out;
    }""",
        [rank, moves],
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--loads", type=int, default=3)
    ap.add_argument("--moves", type=int, default=100)
    ap.add_argument(
        "--screenshot",
        default=None,
        help="Also save a full-page PNG of the page for a default MLP trained --screenshot-epochs epochs.",
    )
    ap.add_argument("--screenshot-epochs", type=int, default=15)
    ap.add_argument(
        "--screenshot-conditional",
        default=None,
        help="Also save a PNG of the demo model's decoded manifold and the upload row of a test image.",
    )
    ap.add_argument("--skip-timing", action="store_true", help="Only make the screenshots.")
    args = ap.parse_args()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}; "
        f"Chromium {CHROMIUM}, onnxruntime-web 1.30.0 WASM, 1 thread"
    )
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for name, flags in {} if args.skip_timing else MODELS.items():
            run = train_and_export(Path(tmp), name, flags, args.epochs)
            model = load_explore_model(run)
            with serve(model) as url:
                r = measure(browser, url, args.loads, args.moves)
            size = model.decoders["fp32"].stat().st_size
            target = 5 if name == "default MLP" else 20
            print(
                f"{name:15s} decoder.onnx {size / 1e6:.2f} MB, latent {model.latent_dim}: "
                f"first image {statistics.median(r['first']):.0f} ms (loads: {', '.join(f'{t:.0f}' for t in r['first'])}; "
                f"target <= 1500)  decode per move {r['decode']:.2f} ms median, p90 {r['decode_p90']:.2f} "
                f"(target <= {target})  first load {r['bytes'] / 1e6:.2f} MB transferred\n"
                f"{'':15s} manifold 16x16 redraw {r['manifold']:.1f} ms median, p90 {r['manifold_p90']:.1f}"
                f"{' (target <= 100)' if name == 'default MLP' else ''}; moving a component off the pad "
                f"({r['redraws']} redraws): decode per move {r['during']:.2f} ms median, p90 {r['during_p90']:.2f}"
            )
        print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
        if args.screenshot:  # a model trained long enough that its samples look like digits
            run = train_and_export(Path(tmp), "screenshot", [], args.screenshot_epochs)
            with serve(load_explore_model(run)) as url:
                screenshot(browser, url, args.screenshot)
            print(f"wrote {args.screenshot}")
        if args.screenshot_conditional:
            from vaectl.demo import demo_dir

            with serve(load_explore_model(demo_dir())) as url:
                screenshot_conditional(browser, url, args.screenshot_conditional)
            print(f"wrote {args.screenshot_conditional}")
        browser.close()


@contextmanager
def serve(model):
    server = make_server(model)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def open_page(browser, url: str, width: int = 1280):
    page = browser.new_page(viewport={"width": width, "height": 1000})
    page.goto(url)
    page.wait_for_function("window.vaectl.settled === true", timeout=120_000)
    page.wait_for_function("window.vaectl.lastManifold !== null", timeout=120_000)
    return page


def screenshot(browser, url: str, path: str) -> None:
    """The whole page of a default MLP: a map point made the current z, samples of seed 3."""
    page = open_page(browser, url)
    page.fill("#seed", "3")
    page.locator("#map").scroll_into_view_if_needed()
    box = page.locator("#map").bounding_box()
    points = page.evaluate("window.vaectl.app.mapScreen().points")
    i = next(k for k, p in enumerate(points) if p is not None and k >= 7)
    scale = box["width"] / page.evaluate("document.getElementById('map').width")
    page.mouse.click(box["x"] + points[i][0] * scale, box["y"] + points[i][1] * scale)  # a map point becomes z
    page.mouse.move(0, 0)
    page.wait_for_timeout(800)
    page.evaluate("window.scrollTo(0, 0)")
    save_small(Image.open(io.BytesIO(page.screenshot(full_page=True))), path)
    page.close()


def save_small(image, path: str) -> None:
    """A screenshot as a 256-colour PNG: a third of the bytes, and the page's colours kept (octree)."""
    image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
        path, optimize=True
    )


def screenshot_conditional(browser, url: str, path: str) -> None:
    """The demo's decoded manifold (class 3) beside the upload row of a test 3: the image's style as every class."""
    from vaectl.data import load_data

    ds = load_data(None)
    three = ds.test[np.flatnonzero(ds.test_labels == 3)[2]][0]
    buf = io.BytesIO()
    Image.fromarray(three).save(buf, format="PNG")
    page = open_page(browser, url)
    page.set_input_files("#file", files=[{"name": "three.png", "mimeType": "image/png", "buffer": buf.getvalue()}])
    page.wait_for_function("window.vaectl.lastUpload && window.vaectl.lastUpload.row", timeout=60_000)
    page.click("#upload-use")  # the upload's encoding becomes z: the marker on the manifold, class 3
    page.wait_for_function("window.vaectl.lastManifold.label === window.vaectl.lastUpload.readAs", timeout=60_000)
    page.wait_for_timeout(500)
    shots = []
    for card in ("#pad-card", "#upload-card"):
        shots.append(Image.open(io.BytesIO(page.locator(card).screenshot())))
    page.close()
    gap = 12
    out = Image.new("RGB", (sum(s.width for s in shots) + 3 * gap, max(s.height for s in shots) + 2 * gap), "#f4f6f9")
    x = gap
    for shot in shots:
        out.paste(shot, (x, gap))
        x += shot.width + gap
    save_small(out, path)


if __name__ == "__main__":
    main()
