"""vaectl explore in headless Chromium: time to the first decoded image, decode time per slider move, bytes.

    python bench/explore_speed.py                            # trains the two models briefly first
    python bench/explore_speed.py --screenshot docs/explore.png

For the default MLP and the `--preset quality` model (trained for --epochs on the embedded sample: the
figures concern decode speed, so the weights' quality does not matter), served by `vaectl explore`'s server:
  1. navigation -> first decoded image on the page (ms, median of --loads cold loads: a fresh browser
     context each, and the server sends Cache-Control: no-store);
  2. median decode time of one slider move (onnxruntime-web, WASM, one thread; --moves moves);
  3. bytes transferred on the first load (response bodies as sent, the .wasm gzipped).
Targets: first image <= 1.5 s; per-move decode <= 5 ms (default MLP), <= 20 ms (quality preset).
Needs the [train] extra, playwright, and Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

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
            times = page.evaluate(
                """async moves => {
                const d = window.vaectl.app.info.order[0];
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
                moves,
            )
        context.close()
    return {
        "first": first,
        "decode": statistics.median(times),
        "decode_p90": sorted(times)[int(0.9 * len(times))],
        "bytes": sent[0],
    }


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
    args = ap.parse_args()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}; "
        f"Chromium {CHROMIUM}, onnxruntime-web 1.30.0 WASM, 1 thread"
    )
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for name, flags in MODELS.items():
            run = train_and_export(Path(tmp), name, flags, args.epochs)
            model = load_explore_model(run)
            server = make_server(model)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            try:
                r = measure(browser, f"http://127.0.0.1:{server.server_address[1]}/", args.loads, args.moves)
            finally:
                server.shutdown()
                server.server_close()
            size = model.decoders["fp32"].stat().st_size
            target = 5 if name == "default MLP" else 20
            print(
                f"{name:15s} decoder.onnx {size / 1e6:.2f} MB, latent {model.latent_dim}: "
                f"first image {statistics.median(r['first']):.0f} ms (loads: {', '.join(f'{t:.0f}' for t in r['first'])}; "
                f"target <= 1500)  decode per move {r['decode']:.2f} ms median, p90 {r['decode_p90']:.2f} "
                f"(target <= {target})  first load {r['bytes'] / 1e6:.2f} MB transferred"
            )
        if args.screenshot:  # a model trained long enough that its samples look like digits
            run = train_and_export(Path(tmp), "screenshot", [], args.screenshot_epochs)
            server = make_server(load_explore_model(run))
            threading.Thread(target=server.serve_forever, daemon=True).start()
            try:
                screenshot(browser, f"http://127.0.0.1:{server.server_address[1]}/", args.screenshot)
            finally:
                server.shutdown()
                server.server_close()
            print(f"wrote {args.screenshot}")
        browser.close()


def screenshot(browser, url: str, path: str) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    page.wait_for_function("window.vaectl.settled === true", timeout=120_000)
    page.fill("#seed", "3")
    box = page.locator("#map").bounding_box()
    screen = page.evaluate("window.vaectl.app.screenPoints")
    page.mouse.click(box["x"] + screen[7][0], box["y"] + screen[7][1])  # a map point becomes the current z
    page.wait_for_timeout(500)
    page.screenshot(path=path, full_page=True)
    page.close()


if __name__ == "__main__":
    main()
