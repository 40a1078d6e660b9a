"""The image store (torch-free): a folder of images or a .npy/.npz array, decoded once into a uint8 file.

A store is a raw uint8 (N, C, H, W) file that ImageDataset's train and test arrays map (np.memmap, no copy),
plus small JSON indexes. Its rows are in hold-out order: the validation images first, then the training
images, so both splits are contiguous slices of one file. Building one decodes the folder in parallel (a
process pool, chunks of files, each chunk written into the file as it arrives); later loads only list the
folder and compare names, sizes and modification times with the index. Training reads its batches with
pread (RowReader), so its resident memory holds a batch, not the mapped file.

Where stores live: $VAECTL_CACHE/stores, else $XDG_CACHE_HOME/vaectl/stores, else ~/.cache/vaectl/stores; one
folder per data source (a hash of its absolute path), holding:
  index.json               the source's files (name, bytes, mtime) and each image's header (size, grey or not)
  shapes.json              the (C, H, W) chosen for each --image-size/--channels request, for these files
  CxHxW-seedS.u8 / .json   the pixels at one size, in the hold-out order of one seed, and that layout's index
                           (which file each row holds, the files that cannot be decoded, the groups of files
                           whose pixels are identical at that size); "-good" in the name: the same without
                           those files (skip_bad_images)
Deleting a store's folder (or all of stores/) is always safe: the next load rebuilds it.

The size and channels (the size most images share, else a square; grey unless some image has colour) come
from a first pass over the image headers only (PIL reads them without decoding pixels); the headers are kept in
index.json, so a changed folder re-reads only its new and changed files' headers.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import mmap
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserInputError, arg, note, plural
from ..files import atomic_write
from .images import ALLOWED_FORMATS, IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS, open_image, to_array

STORE_VERSION = 2
CACHE_ENV = "VAECTL_CACHE"
CHUNK = 256  # files per task of the decoding pool: a few MB of pixels per result
SERIAL_BELOW = 2 * CHUNK  # smaller folders decode in this process: a pool costs more than it saves
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
BAD_NAMED = 3  # bad files named in the one-line error


def cache_root() -> Path:
    """vaectl's cache folder: $VAECTL_CACHE, else $XDG_CACHE_HOME/vaectl, else ~/.cache/vaectl."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vaectl"


def store_dir(source: Path) -> Path:
    """The folder holding the stores of `source` (an image folder or an array file)."""
    key = hashlib.sha256(str(Path(source).resolve()).encode()).hexdigest()[:16]
    return cache_root() / "stores" / key


@dataclass(frozen=True)
class StoreFile:
    """Where a dataset's pixels live: rows [0, n_test) of `path` are the test split, [n_test, n) the train split."""

    path: Path
    shape: tuple[int, int, int]  # (C, H, W)
    n: int
    n_test: int

    @property
    def row_bytes(self) -> int:
        c, h, w = self.shape
        return c * h * w

    def open(self) -> np.memmap:
        return np.memmap(self.path, dtype=np.uint8, mode="r", shape=(self.n, *self.shape))


class RowReader:
    """Reads rows of a store with pread, into memory of its own: nothing of the file is mapped. (Pages of a
    mapping count in the resident memory of the process that touched them, and the kernel maps up to 64 KB
    around each page a read faults in: copying random 12 KB rows out of a 246 MB np.memmap left 218 MB of it
    resident after one epoch, however often its pages were dropped.) Rows are read in file order."""

    def __init__(self, store: StoreFile, first_row: int, rows: int):
        self.store, self.first, self.rows = store, first_row, rows
        self.fd = os.open(store.path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.rows

    def __del__(self) -> None:
        with contextlib.suppress(AttributeError, OSError):
            os.close(self.fd)

    def read(self, rows) -> np.ndarray:
        """Rows (B,) of this split -> uint8 (B, C, H, W)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.rows):
            raise IndexError(f"rows out of range for {self.rows} images")
        size = self.store.row_bytes
        out = np.empty((len(rows), size), dtype=np.uint8)
        offsets = ((rows + self.first) * size).tolist()
        for i in np.argsort(rows, kind="stable").tolist():
            if os.preadv(self.fd, [out[i].data], offsets[i]) != size:
                raise OSError(f"{self.store.path}: shorter than its index says; delete it to rebuild")
        return out.reshape(len(rows), *self.store.shape)

    def read_range(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1 of this split (clipped to it), in one read -> uint8 (k, C, H, W)."""
        start, stop = max(0, start), min(self.rows, stop)
        out = np.empty((max(0, stop - start), *self.store.shape), dtype=np.uint8)
        at = (self.first + start) * self.store.row_bytes
        if out.size and os.preadv(self.fd, [out.reshape(-1).data], at) != out.size:
            raise OSError(f"{self.store.path}: shorter than its index says; delete it to rebuild")
        return out


def drop_pages(images: np.ndarray) -> None:
    """Release the resident pages of a memory-mapped array (Linux; elsewhere a no-op)."""
    raw = getattr(images, "_mmap", None)
    if raw is not None and hasattr(mmap, "MADV_DONTNEED"):
        with contextlib.suppress(OSError, ValueError):
            raw.madvise(mmap.MADV_DONTNEED)


# ----------------------------------------------------------------------------- progress and the decoding pool


class _Progress:
    """One self-overwriting line on stderr while a store is built (on a terminal only; logs stay clean)."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.done, self.shown = label, total, 0, 0.0
        self.on = sys.stderr.isatty() and total >= 1000

    def add(self, k: int) -> None:
        self.done += k
        now = time.monotonic()
        if self.on and (now - self.shown > 0.25 or self.done == self.total):
            self.shown = now
            sys.stderr.write(f"\r{self.label}: {self.done:,}/{self.total:,} images ({100 * self.done // self.total}%)")
            sys.stderr.flush()

    def close(self) -> None:
        if self.on:
            sys.stderr.write("\n")
            sys.stderr.flush()


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def run_chunks(func: Callable, chunks: Sequence[tuple], workers: int) -> Iterator:
    """func(*chunk) for each chunk, results in chunk order, on `workers` processes, at most 2 per worker in
    flight, so finished results never pile up in memory. On Linux the workers are forked, as torch's
    DataLoader forks its workers (quick; a script or notebook needs no `if __name__ == "__main__"`; they only
    run Pillow and numpy, never torch, so torch's threads in a training process do not matter to them);
    elsewhere they are spawned."""
    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            yield func(*chunk)
        return
    import multiprocessing

    method = "fork" if sys.platform == "linux" else "spawn"
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
        pending: list[Future] = []
        for chunk in chunks:
            pending.append(pool.submit(func, *chunk))
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


def read_headers(paths: Sequence[str]) -> list[list]:
    """[width, height, grey] from each image's header (no pixels decoded), or [None, None, reason]."""
    out: list[list] = []
    for p in paths:
        try:
            with Image.open(p, formats=ALLOWED_FORMATS) as im:
                w, h = im.size
                out.append([w, h, im.mode in GREY_MODES] if w * h <= MAX_IMAGE_PIXELS else [None, None, "too large"])
        except Exception as e:  # any unreadable header makes the file a bad file, reported with the others
            out.append([None, None, _reason(p, e)])
    return out


def decode_chunk(paths: Sequence[str], shape: tuple[int, int, int]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """uint8 (k, C, H, W) of the images at `paths` (zeros where one fails), and [(i, reason)] of the failures."""
    c, h, w = shape
    out = np.zeros((len(paths), c, h, w), dtype=np.uint8)
    failed = []
    for i, p in enumerate(paths):
        try:
            with open_image(p) as im:
                out[i] = to_array(im, c, h, w)
        except Exception as e:  # collected, reported once for the whole folder
            failed.append((i, _reason(p, e)))
    return out, failed


def _reason(path: str, e: Exception) -> str:
    text = str(e).removeprefix(f"{path}: ")
    if "truncated" in text.lower():
        return "truncated"
    if text.startswith("not an image"):
        return "not an image"
    return text if isinstance(e, UserInputError) else f"{type(e).__name__}: {text}"


# ----------------------------------------------------------------------------- the source's index


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, doc) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(doc, separators=(",", ":")).encode()), fsync=False)


@contextlib.contextmanager
def locked(directory: Path):
    """One process builds a store at a time (the ranks of a DDP run all load the data at once)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a") as f:
        try:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX)
        except ImportError:  # no fcntl (Windows): concurrent builds still end in one complete store each
            pass
        yield


def clear_layouts(directory: Path) -> None:
    for p in directory.iterdir():
        if p.suffix in (".u8", ".json") and p.name != "index.json" or p.name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                p.unlink()


def changed_line(source: Path, old: list, new: list) -> str:
    before = {f[0]: tuple(f[1:]) for f in old}
    after = {f[0]: tuple(f[1:]) for f in new}
    added = len(after.keys() - before.keys())
    removed = len(before.keys() - after.keys())
    changed = sum(1 for k in after.keys() & before.keys() if after[k] != before[k])
    parts = [f"{added:,} added"] if added else []
    parts += [f"{changed:,} changed"] if changed else []
    parts += [f"{removed:,} removed"] if removed else []
    return f"{source} changed since its image store was built ({', '.join(parts) or 'reordered'}): rebuilding"


def source_index(directory: Path, source: Path, files: list[list], header_paths: list[str] | None, workers: int):
    """index.json of `source` for this file list: reused when nothing changed, else rebuilt (with the headers
    of unchanged files kept) and the layouts of the old one deleted. Returns (index, note or None)."""
    old = _json(directory / "index.json")
    if old and old.get("version") == STORE_VERSION and old.get("files") == files:
        return old, None
    note = None
    kept: dict = {}
    built = any(p.suffix == ".u8" for p in directory.iterdir())
    if old and old.get("version") == STORE_VERSION and isinstance(old.get("files"), list):
        note = changed_line(source, old["files"], files) if built else None
        kept = {tuple(f): h for f, h in zip(map(tuple, old["files"]), old.get("headers") or [])}
    clear_layouts(directory)
    index = {"version": STORE_VERSION, "source": str(source), "files": files}
    if header_paths is not None:
        todo = [i for i, f in enumerate(files) if tuple(f) not in kept]
        chunks = [([header_paths[i] for i in todo[s : s + 4 * CHUNK]],) for s in range(0, len(todo), 4 * CHUNK)]
        got = [
            h
            for result in run_chunks(read_headers, chunks, workers if len(todo) >= SERIAL_BELOW else 1)
            for h in result
        ]
        headers = {tuple(files[i]): h for i, h in zip(todo, got)}
        index["headers"] = [kept.get(tuple(f)) or headers[tuple(f)] for f in files]
    _write_json(directory / "index.json", index)
    return index, note


# ----------------------------------------------------------------------------- layouts: one size, one seed


def holdout_order(n: int, seed: int, fraction: float) -> tuple[np.ndarray, int]:
    """(order, n_test): the rows of a store hold images order[0], order[1], ...; the first n_test are held out.
    The same permutation as data._holdout, so a store gives the split the in-memory loader gives."""
    if n < 2:
        raise UserInputError(f"need at least 2 images to hold out a validation set, found {n}")
    return np.random.default_rng(seed).permutation(n), max(1, int(round(n * fraction)))


def write_rows(path: Path, blocks: Iterator[np.ndarray], total: int, label: str) -> list[bytes]:
    """Stream uint8 blocks into `path` (atomically: a temp file, then os.replace), with the progress line.
    Returns a digest of each row's pixels, in row order (for finding images that are copies of each other)."""
    progress = _Progress(label, total)
    digests: list[bytes] = []

    def write(f) -> None:
        for block in blocks:
            block = np.ascontiguousarray(block)
            f.write(block.data.cast("B"))
            digests.extend(hashlib.blake2b(row.data, digest_size=16).digest() for row in block.reshape(len(block), -1))
            progress.add(len(block))

    try:
        # no fsync: a cache; a store cut short by a power loss fails its size check and is rebuilt
        atomic_write(path, write, fsync=False)
    finally:
        progress.close()
    return digests


def copy_groups(
    digests: list[bytes], order: Sequence[int] | np.ndarray, leave_out: frozenset[int] | set[int] = frozenset()
) -> list[list[int]]:
    """The groups (two or more) of files whose rows have the same digest: file indices, sorted; `order[r]` is
    the file row r holds. Files in `leave_out` (undecodable ones, stored as blank rows) are in none."""
    by_digest: dict[bytes, list[int]] = {}
    for row, d in enumerate(digests):
        if int(order[row]) not in leave_out:
            by_digest.setdefault(d, []).append(int(order[row]))
    return sorted(sorted(g) for g in by_digest.values() if len(g) > 1)


def copies_note(source: Path, doc: dict) -> list[str]:
    """One note when held-out images have an exact copy among the training images (a folder that holds a
    picture twice, under two names): their held-out scores are not those of unseen images."""
    groups, n_test = doc.get("copies") or [], doc["n_test"]
    if not groups:
        return []
    row_of = {int(f): r for r, f in enumerate(doc["order"])}
    rows = [[row_of[f] for f in g if f in row_of] for g in groups]
    seen = sum(sum(r < n_test for r in g) for g in rows if any(r >= n_test for r in g))
    if not seen:
        return []
    repeats = sum(len(g) - 1 for g in rows if len(g) > 1)
    return [
        f"note: {seen:,} of the {n_test:,} held-out images in {source} are exact copies of training images "
        f"({plural(repeats, 'image')} in all repeat another's pixels), so scores on them are not those of unseen "
        "images; keep one of each to hold out only new pictures"
    ]


def copy_rows(src: StoreFile, rows: np.ndarray, dst: Path) -> None:
    """A new store of src's rows `rows`, in that order, a block at a time (RowReader: RSS stays small)."""
    reader = RowReader(src, 0, src.n)
    blocks = (reader.read(rows[s : s + 16 * CHUNK]) for s in range(0, len(rows), 16 * CHUNK))
    write_rows(dst, blocks, len(rows), "arranging the image store")


def layout_name(shape: tuple[int, int, int], seed: int, compact: bool) -> str:
    c, h, w = shape
    return f"{c}x{h}x{w}-seed{seed}" + ("-good" if compact else "")


def _pack(a) -> str:
    return base64.b64encode(np.asarray(a, dtype="<i4").tobytes()).decode()


def _unpack(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<i4").astype(np.int64)


def read_layout(directory: Path, name: str, digest: str) -> tuple[dict, StoreFile] | None:
    doc = _json(directory / f"{name}.json")
    path = directory / f"{name}.u8"
    if not doc or doc.get("version") != STORE_VERSION or doc.get("files_digest") != digest or not path.is_file():
        return None
    try:
        doc["order"] = _unpack(doc["order"])
        if doc.get("labels") is not None:
            doc["labels"] = _unpack(doc["labels"])
    except (TypeError, ValueError):  # not written by this version: rebuilt
        return None
    store = StoreFile(path, tuple(doc["shape"]), len(doc["order"]), doc["n_test"])
    if path.stat().st_size != store.n * store.row_bytes:
        return None
    return doc, store


def save_layout(directory: Path, name: str, doc: dict) -> StoreFile:
    """The layout's index: its shape, hold-out, bad files; `order` (the file in each row) and `labels`
    (arrays: per row) as base64 int32, which a 200,000-image store parses in milliseconds."""
    labels = doc.get("labels")
    packed = {"order": _pack(doc["order"]), "labels": labels if labels is None else _pack(labels)}
    _write_json(directory / f"{name}.json", {**doc, "version": STORE_VERSION, **packed})
    return StoreFile(directory / f"{name}.u8", tuple(doc["shape"]), len(doc["order"]), doc["n_test"])


def files_digest(files: list) -> str:
    return hashlib.sha256("\n".join(f"{n}\t{b}\t{t}" for n, b, t in files).encode()).hexdigest()


def bad_files_error(source: Path, bad: list, total: int) -> str:
    named = ", ".join(f"{name}: {why}" for name, why in bad[:BAD_NAMED]) + (", ..." if len(bad) > BAD_NAMED else "")
    return (
        f"{len(bad):,} of {total:,} files in {source} cannot be decoded ({named}): fix or remove them, "
        f"or pass {arg('skip_bad_images', True)}"
    )


def bad_files_note(source: Path, bad: list, total: int) -> str:
    named = ", ".join(f"{name}: {why}" for name, why in bad[:BAD_NAMED]) + (", ..." if len(bad) > BAD_NAMED else "")
    return f"note: skipped {plural(len(bad), 'file')} of {total:,} in {source} that cannot be decoded ({named})"


# ----------------------------------------------------------------------------- image folders


@dataclass
class Stored:
    """A loaded store: its file, the file (index into `names`) each row holds, labels per row, notes."""

    store: StoreFile
    order: np.ndarray  # (N,) int64
    labels: np.ndarray | None  # (N,) int64, row order
    class_names: tuple[str, ...]
    notes: list[str]
    hold_out: bool = True  # the test rows are held out of the data (no test split of its own)


def walk_files(directory: str, prefix: str = "") -> Iterator[tuple[str, os.DirEntry]]:
    """(relative name, entry) of every file below `directory` except hidden ones (os.scandir: one stat per
    file, no pathlib objects; 20,000 files are listed in a fraction of a second)."""
    with os.scandir(directory) as it:
        entries = sorted(it, key=lambda e: e.name)  # sorted per folder, depth first: the order of paths
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from walk_files(entry.path, f"{prefix}{entry.name}/")
            elif not entry.name.startswith(".") and entry.is_file():
                yield prefix + entry.name, entry


def scan_folder(directory: Path) -> tuple[list[list], list[str]]:
    """([relative name, bytes, mtime_ns] of each image file, in path order; notes about files that are not
    images by their extension)."""
    files, skipped = [], []
    for name, entry in walk_files(str(directory)):
        if name[name.rfind(".") :].lower() in IMAGE_EXTENSIONS:
            st = entry.stat()
            files.append([name, st.st_size, st.st_mtime_ns])
        else:
            skipped.append(name)
    if not files:
        raise UserInputError(f"{directory}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
    notes = []
    if skipped:
        what = "is not an image by its" if len(skipped) == 1 else "are not images by their"
        notes.append(f"note: skipped {plural(len(skipped), 'file')} that {what} extension, e.g. {skipped[0]}")
    return files, notes


def choose_shape(source: Path, names: list[str], headers: list, image_size, channels) -> tuple[tuple, list[str]]:
    """(C, H, W) from the headers or the request, and the note on resized images. The size: the one most images
    share, else a square of their median shorter side (at most SCATTERED_MAX_SIDE); grey unless some image has
    colour."""
    good = [h for h in headers if h[0] is not None]
    if not good:
        bad = [[n, h[2]] for n, h in zip(names, headers)]
        raise UserInputError(bad_files_error(source, bad, len(names)).split(": fix")[0] + ": no image can be read")
    sizes = Counter((w, h) for w, h, _ in good)
    (w, h), count = sizes.most_common(1)[0]
    scattered = image_size is None and 2 * count <= len(good)
    if scattered:
        w = h = scattered_side([min(a, b) for a, b, _ in good])
    elif image_size is not None:
        w = h = image_size
    if channels is None:
        channels = 1 if all(grey for _, _, grey in good) else 3
    notes = []
    if len(sizes) > 1 or (w, h) not in sizes:
        odd = sum(c for s, c in sizes.items() if s != (w, h))
        stretched = sum(c for (a, b), c in sizes.items() if a * h != b * w)
        how = (
            f", none shared by most of them) to {w}x{h}: their median shorter side, at most {SCATTERED_MAX_SIDE}"
            " (--image-size N picks another)"
            if scattered
            else f") to {w}x{h}"
        )
        notes.append(
            f"note: resized {odd} of {len(good)} images ({plural(len(sizes), 'size')} in the folder{how}"
            + (f"; {stretched} of them with their aspect ratio changed (stretched, not cropped)" if stretched else "")
        )
    return (int(channels), int(h), int(w)), notes


# Which rule chose the shapes in a store's shapes.json: a choice made by an older rule is made again.
SHAPE_RULE = 2

# The largest side the default colour recipe was measured at on a CPU (docs/your-own-images.md); a folder whose
# images share no size gets a square side from their shorter sides, at most this.
SCATTERED_MAX_SIDE = 64


def scattered_side(shorter_sides: list[int]) -> int:
    """The median shorter side, at most SCATTERED_MAX_SIDE."""
    return max(1, min(SCATTERED_MAX_SIDE, int(np.median(shorter_sides))))


def decode_layout(directory: Path, paths: list[str], shape, seed: int, fraction: float, workers: int, label: str):
    """Decode every image into a new layout in hold-out order; the failures are recorded, not raised."""
    order, n_test = holdout_order(len(paths), seed, fraction)
    starts = range(0, len(order), CHUNK)
    chunks = [([paths[i] for i in order[s : s + CHUNK]], shape) for s in starts]
    bad: list[list] = []

    def blocks():
        for s, (block, failed) in zip(
            starts, run_chunks(decode_chunk, chunks, workers if len(paths) >= SERIAL_BELOW else 1)
        ):
            bad.extend([int(order[s + i]), why] for i, why in failed)
            yield block

    name = layout_name(shape, seed, False)
    digests = write_rows(directory / f"{name}.u8", blocks(), len(paths), label)
    copies = copy_groups(digests, order, {i for i, _ in bad})
    return name, {
        "shape": list(shape),
        "seed": seed,
        "order": order.tolist(),
        "n_test": n_test,
        "bad": sorted(bad),
        "copies": copies,
    }


def compact_layout(directory: Path, raw: StoreFile, doc: dict, seed: int, fraction: float) -> tuple[dict, StoreFile]:
    """The layout without the bad files (their own hold-out order), copied from the one that has them."""
    bad = {i for i, _ in doc["bad"]}
    good = np.array([i for i in range(len(doc["order"])) if i not in bad], dtype=np.int64)
    order, n_test = holdout_order(len(good), seed, fraction)
    row_of_file = np.empty(len(doc["order"]), dtype=np.int64)
    row_of_file[np.asarray(doc["order"])] = np.arange(len(doc["order"]))
    name = layout_name(tuple(doc["shape"]), seed, True)
    copy_rows(raw, row_of_file[good[order]], directory / f"{name}.u8")
    new = {**doc, "order": good[order].tolist(), "n_test": n_test}
    store = save_layout(directory, name, new)
    for stale in (raw.path, raw.path.with_suffix(".json")):  # the layout with the bad files' blank rows
        with contextlib.suppress(OSError):
            stale.unlink()
    return new, store


def resolve_shape(where: Path, source: Path, files, paths, digest, image_size, channels, workers):
    """(C, H, W) and the resize note for this request: remembered in shapes.json for an unchanged folder (a
    warm load parses no per-file index); otherwise from the headers in index.json, updated first."""
    request = f"{image_size},{channels}"
    known = _json(where / "shapes.json") or {}
    fresh = known.get("files_digest") == digest and known.get("rule") == SHAPE_RULE
    if fresh and request in known.get("shapes", {}):
        shape, notes = known["shapes"][request]
        return tuple(shape), notes
    index, changed = source_index(where, source, files, paths, workers)
    if changed:
        note(changed)  # now, before the rebuild's wait
    shape, notes = choose_shape(source, [f[0] for f in files], index["headers"], image_size, channels)
    if not fresh:  # a fresh shapes.json was read, so it exists
        known = {"files_digest": digest, "rule": SHAPE_RULE, "shapes": {}}
    known["shapes"][request] = [list(shape), notes]
    _write_json(where / "shapes.json", known)
    return shape, notes


def folder_store(
    directory: Path,
    image_size,
    channels,
    seed: int,
    fraction: float,
    skip_bad_images: bool = False,
    workers: int | None = None,
) -> Stored:
    """The store of an image folder at the requested size: reused, or (re)built by decoding the folder once."""
    workers = default_workers() if workers is None else workers
    files, notes = scan_folder(directory)
    names = [f[0] for f in files]
    paths = [f"{directory}{os.sep}{n}" for n in names]
    where = store_dir(directory)
    digest = files_digest(files)
    with locked(where):
        shape, size_notes = resolve_shape(where, directory, files, paths, digest, image_size, channels, workers)
        raw, good = layout_name(shape, seed, False), layout_name(shape, seed, True)
        found = read_layout(where, good, digest) if skip_bad_images else None
        found = found or read_layout(where, raw, digest) or read_layout(where, good, digest)
        if found is None:
            name, doc = decode_layout(where, paths, shape, seed, fraction, workers, f"decoding {directory}")
            doc["files_digest"] = digest
            found = doc, save_layout(where, name, doc)
        doc, store = found
        bad = [[names[i], why] for i, why in doc["bad"]]
        # a store made with skip_bad_images (the bad files left out) stands for the choice: the commands that
        # read a run's data afterwards (export, eval, encode, explore) have no such flag
        if bad and not skip_bad_images and len(doc["order"]) == len(files):
            raise UserInputError(bad_files_error(directory, bad, len(files)))
        if bad and len(doc["order"]) == len(files):
            doc, store = compact_layout(where, store, doc, seed, fraction)
    order = np.asarray(doc["order"], dtype=np.int64)
    labelled = all("/" in n for n in names)  # every image in a subfolder: its name is the label
    tops = [n.partition("/")[0] for n in names] if labelled else []
    class_names = tuple(sorted(set(tops)))
    labels = None
    if labelled:
        lookup = {name: k for k, name in enumerate(class_names)}
        labels = np.array([lookup[t] for t in tops], dtype=np.int64)[order]
    notes += size_notes + ([bad_files_note(directory, bad, len(files))] if bad else []) + copies_note(directory, doc)
    return Stored(store, order, labels, class_names, notes)


# ----------------------------------------------------------------------------- arrays: .npy and .npz

ARRAY_SUFFIXES = (".npy", ".npz")
IMAGE_KEYS = ("images", "x", "x_train", "train_images")
LABEL_KEYS = ("labels", "y", "y_train", "train_labels")
TEST_IMAGE_KEYS = ("test_images", "x_test")
TEST_LABEL_KEYS = ("test_labels", "y_test")


def _pick(arrays: dict, keys: tuple[str, ...]):
    return next((arrays[k] for k in keys if k in arrays), None)


def read_arrays(path: Path) -> dict:
    """{"x", "y", "x_test", "y_test", "class_names"} of a .npy (images only, memory-mapped) or .npz (by key)."""
    try:
        if path.suffix.lower() == ".npy":
            return {"x": np.load(path, mmap_mode="r", allow_pickle=False)}
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:  # also a pickled object array, which is never loaded
        raise UserInputError(f"{path}: cannot read the array file ({e})") from None
    x = _pick(arrays, IMAGE_KEYS)
    if x is None:
        raise UserInputError(
            f"{path}: no images in the .npz (keys: {', '.join(arrays) or 'none'}); name them images or x "
            "(labels: labels or y; a test split: test_images / test_labels)"
        )
    names = arrays.get("class_names")
    return {
        "x": x,
        "y": _pick(arrays, LABEL_KEYS),
        "x_test": _pick(arrays, TEST_IMAGE_KEYS),
        "y_test": _pick(arrays, TEST_LABEL_KEYS),
        "class_names": None if names is None else tuple(str(n) for n in np.asarray(names).reshape(-1)),
    }


def image_shape_of(path: Path, x: np.ndarray, what: str) -> tuple[int, int, int]:
    """(C, H, W) of uint8 images (N, H, W) or (N, H, W, C), C 1 or 3; UserInputError otherwise."""
    if x.dtype != np.uint8:
        raise UserInputError(
            f"{path}: {what} must be uint8 (0-255), got {x.dtype}; convert them, e.g. (x * 255).round().astype(np.uint8)"
        )
    if not (x.ndim == 3 or (x.ndim == 4 and x.shape[3] in (1, 3))) or 0 in x.shape[1:]:
        raise UserInputError(
            f"{path}: {what} must have shape (N, H, W) or (N, H, W, C) with C 1 or 3, got {tuple(x.shape)}"
        )
    return (1 if x.ndim == 3 else x.shape[3], x.shape[1], x.shape[2])


def check_labels(path: Path, y, n: int, what: str) -> np.ndarray | None:
    if y is None:
        return None
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise UserInputError(f"{path}: {what} of shape {tuple(y.shape)} for {n} images")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise UserInputError(f"{path}: {what} must be non-negative integers, got {y.dtype}")
    return y.astype(np.int64)


def array_blocks(sources: list[np.ndarray], order: np.ndarray) -> Iterator[np.ndarray]:
    """uint8 (k, C, H, W) blocks of the rows `order` of the concatenated sources (N, H, W[, C]). Pages of a
    memory-mapped source are dropped after each block, so a large .npy never sits whole in memory."""
    offsets = np.cumsum([0] + [len(s) for s in sources])
    for s in range(0, len(order), 4 * CHUNK):
        rows = order[s : s + 4 * CHUNK]
        wanted = np.sort(rows)  # read in file order; the sources' ranges follow each other
        parts = []
        for k, src in enumerate(sources):
            mine = wanted[(wanted >= offsets[k]) & (wanted < offsets[k + 1])] - offsets[k]
            if len(mine):
                parts.append(np.asarray(src[mine]))
        images = np.concatenate(parts)[np.searchsorted(wanted, rows)]  # back in `rows` order
        for src in sources:
            drop_pages(src)
        yield images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)


def array_store(path: Path, seed: int, fraction: float) -> Stored:
    """The store of a .npy / .npz file: reused, or (re)built by copying its images in hold-out order."""
    st = path.stat()
    files = [[path.name, st.st_size, st.st_mtime_ns]]
    where = store_dir(path)
    with locked(where):
        _, changed = source_index(where, path, files, None, 1)
        if changed:
            note(changed)
        digest = files_digest(files)
        found = None
        for name in (p.stem for p in sorted(where.glob(f"*-seed{seed}.json"))):
            found = found or read_layout(where, name, digest)
        if found is None:
            found = build_array_layout(where, path, seed, fraction, digest)
    doc, store = found
    labels = None if doc["labels"] is None else np.asarray(doc["labels"], dtype=np.int64)
    order = np.asarray(doc["order"], dtype=np.int64)
    notes = doc["notes"] + copies_note(path, doc)
    return Stored(store, order, labels, tuple(doc["class_names"]), notes, doc["hold_out"])


def build_array_layout(where: Path, path: Path, seed: int, fraction: float, digest: str) -> tuple[dict, StoreFile]:
    arrays = read_arrays(path)
    x, x_test = arrays["x"], arrays.get("x_test")
    x_test = x_test if x_test is not None and len(x_test) else None  # an empty test split: hold out instead
    shape = image_shape_of(path, x, "images")
    if x_test is not None and image_shape_of(path, x_test, "test images") != shape:
        raise UserInputError(
            f"{path}: train images are {tuple(x.shape[1:])} but test images are {tuple(x_test.shape[1:])}"
        )
    if len(x) == 0:
        raise UserInputError(f"{path}: the array holds no images")
    y = check_labels(path, arrays.get("y"), len(x), "labels")
    has_test = x_test is not None
    y_test = None if x_test is None else check_labels(path, arrays.get("y_test"), len(x_test), "test labels")
    notes = []
    if has_test and (y is None) != (y_test is None):
        notes.append(f"note: {path}: only one split has labels; ignoring labels")
        y = y_test = None
    if x_test is not None:
        order = np.concatenate([np.arange(len(x), len(x) + len(x_test)), np.arange(len(x))])
        n_test, sources = len(x_test), [x, x_test]
    else:
        (order, n_test), sources = holdout_order(len(x), seed, fraction), [x]
    labels = None if y is None else np.concatenate([y, y_test if y_test is not None else []]).astype(np.int64)[order]
    names = arrays.get("class_names") or ()
    if labels is not None and len(names) <= labels.max():
        names = tuple(str(i) for i in range(int(labels.max()) + 1))
    name = layout_name(shape, seed, False)
    digests = write_rows(where / f"{name}.u8", array_blocks(sources, order), len(order), f"copying {path}")
    doc = {
        "shape": list(shape),
        "seed": seed,
        "order": order.tolist(),
        "n_test": int(n_test),
        "bad": [],
        "labels": None if labels is None else labels.tolist(),
        "class_names": list(names) if labels is not None else [],
        "notes": notes,
        "hold_out": not has_test,
        "copies": copy_groups(digests, order),
        "files_digest": digest,
    }
    return doc, save_layout(where, name, doc)
