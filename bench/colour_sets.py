"""Build the colour image folders the colour benchmarks train on, from images that Debian packages ship.

    apt-get install ruby-gemojione oxygen-icon-theme fonts-noto-color-emoji
    python bench/colour_sets.py                       # writes OUT/emoji-32, emoji-64, oxygen-32, oxygen-64
    python bench/colour_sets.py --out /tmp/colour --sizes 64
    python bench/colour_sets.py --sets noto --sizes 32 --max-images 1500   # also OUT/noto-32-1500

The sets (one kind of picture each, with colour):
  emoji   EmojiOne 2 emoji (ruby-gemojione, CC-BY-SA-4.0): every PNG of the gem's assets/png, 64x64 each.
  oxygen  Oxygen icons (oxygen-icon-theme, LGPL-3+): every icon of base/<size>/<context>/ except the animation
          strips, once, from its largest size; icons that exist only below 48 px are left out, and so are the
          theme's aliases (a name that is a symlink to another icon's file).
  noto    Noto Color Emoji (fonts-noto-color-emoji, OFL-1.1): every bitmap glyph of the font (its one 109 ppem
          strike, 136x128 PNGs, read with fontTools), skin tones and flags included.
Not in the default --sets: noto, the larger set (about 2.5 times the images of the others), for measuring how
the margin over PCA grows with the number of images. --max-images N also writes OUT/<set>-<px>-<N>/, N of
the set's images drawn at random (seed 0), so that a set can be compared with itself at the size of the others.
Each image is composited onto an opaque white background (the sources are transparent), padded to a square
with white (centred) if it is not one, and resized to PX x PX with Pillow's Lanczos filter; saved as RGB PNG
in a flat folder OUT/<set>-<px>/. Prints what it did; not a test.
"""

from __future__ import annotations

import argparse
import io
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

from PIL import Image

EMOJI_DIR = Path("/usr/share/rubygems-integration/all/gems/gemojione-3.3.0/assets/png")
OXYGEN_DIR = Path("/usr/share/icons/oxygen/base")
OXYGEN_MIN_PX = 48
NOTO_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
BACKGROUND = (255, 255, 255)


def package_version(package: str) -> str:
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else "not installed"


def require(path: Path, package: str) -> None:
    if not path.is_dir():
        sys.exit(f"colour_sets: {path} is missing: apt-get install {package}")


def emoji_sources() -> list[tuple[str, Path]]:
    require(EMOJI_DIR, "ruby-gemojione")
    return [(p.stem, p) for p in sorted(EMOJI_DIR.glob("*.png"))]


def oxygen_sources() -> list[tuple[str, Path]]:
    """One file per icon (context/name), the largest size the theme has of it, at least OXYGEN_MIN_PX."""
    require(OXYGEN_DIR, "oxygen-icon-theme")
    best: dict[str, tuple[int, Path]] = {}
    for p in OXYGEN_DIR.glob("*/*/*.png"):
        size_dir, context = p.parent.parent.name, p.parent.name
        px = int(size_dir.split("x")[0])
        if context == "animations" or px < OXYGEN_MIN_PX:
            continue
        key = f"{context}_{p.stem}"
        if key not in best or px > best[key][0]:
            best[key] = (px, p)
    # A theme names many icons twice: a symlink gives an icon another name (folder-picture.png ->
    # folder-pictures.png). Each drawing is kept once, under its file's own name; a copy on both sides of the
    # hold-out would score as a held-out image that the model has seen.
    by_file: dict[Path, str] = {}
    for key in sorted(best, key=lambda k: (best[k][1].is_symlink(), k)):
        by_file.setdefault(best[key][1].resolve(), key)
    return [(key, best[key][1]) for key in sorted(by_file.values())]


def noto_sources() -> list[tuple[str, io.BytesIO]]:
    """Every colour bitmap glyph of Noto Color Emoji, as the PNG bytes the font embeds (its CBDT table)."""
    if not NOTO_FONT.is_file():
        sys.exit(f"colour_sets: {NOTO_FONT} is missing: apt-get install fonts-noto-color-emoji")
    try:
        from fontTools.ttLib import TTFont
    except ImportError:
        sys.exit("colour_sets: the noto set needs fontTools: pip install fonttools")
    strike = TTFont(NOTO_FONT)["CBDT"].strikeData[0]  # the font has one strike (109 ppem)
    return [(name, io.BytesIO(glyph.imageData)) for name, glyph in sorted(strike.items())]


SETS = {
    "emoji": ("ruby-gemojione", emoji_sources),
    "oxygen": ("oxygen-icon-theme", oxygen_sources),
    "noto": ("fonts-noto-color-emoji", noto_sources),
}
DEFAULT_SETS = ("emoji", "oxygen")


def flatten(path: Path | io.BytesIO) -> Image.Image:
    """RGB on white, padded (centred) to a square."""
    im = Image.open(path)
    im.load()
    im = im.convert("RGBA")
    canvas = Image.new("RGBA", im.size, BACKGROUND + (255,))
    rgb = Image.alpha_composite(canvas, im).convert("RGB")
    w, h = rgb.size
    if w == h:
        return rgb
    side = max(w, h)
    square = Image.new("RGB", (side, side), BACKGROUND)
    square.paste(rgb, ((side - w) // 2, (side - h) // 2))
    return square


def build(name: str, out: Path, sizes: list[int], max_images: int | None = None) -> None:
    package, sources = SETS[name]
    files = sources()
    if not files:
        sys.exit(f"colour_sets: no {name} images found: apt-get install --reinstall {package}")
    src_sizes: Counter = Counter()
    folders = {px: out / f"{name}-{px}" for px in sizes}
    subset: set[str] = set()
    if max_images is not None and max_images < len(files):
        subset = set(random.Random(0).sample([stem for stem, _ in files], max_images))
        folders.update({-px: out / f"{name}-{px}-{max_images}" for px in sizes})
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()
    for stem, path in files:
        im = flatten(path)
        src_sizes[im.size[0]] += 1
        for key, folder in folders.items():
            if key < 0 and stem not in subset:
                continue
            px = abs(key)
            small = im if im.size == (px, px) else im.resize((px, px), Image.Resampling.LANCZOS)
            small.save(folder / f"{stem}.png")
    by_size = ", ".join(f"{c} from {s} px" for s, c in sorted(src_sizes.items()))
    print(f"{name}: {len(files)} images from {package} {package_version(package)} ({by_size})")
    for key, folder in folders.items():
        px = abs(key)
        print(f"  {folder}: {len(list(folder.glob('*.png')))} RGB PNGs, {px}x{px}, on white, Lanczos")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/work/coord/colour"), help="where the folders go")
    ap.add_argument("--sets", default=",".join(DEFAULT_SETS), help="comma-separated, from: " + ", ".join(SETS))
    ap.add_argument("--sizes", default="32,64", help="comma-separated square sizes in pixels")
    ap.add_argument("--max-images", type=int, help="also write <set>-<px>-<N>/: N images drawn at random")
    args = ap.parse_args(argv)
    names = [s for s in args.sets.split(",") if s]
    unknown = [s for s in names if s not in SETS]
    if unknown:
        sys.exit(f"colour_sets: unknown set {unknown[0]!r}; choose from {', '.join(SETS)}")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    for name in names:
        build(name, args.out, sizes, args.max_images)


if __name__ == "__main__":
    main()
