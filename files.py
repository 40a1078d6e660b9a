"""Torch-free file helpers: the one atomic writer, the one overwrite rule for output directories, PNG grids.

Every file vaectl writes goes through write_temp_beside (then os.replace) or append_text, and this is
where an OSError of the filesystem (no space, read-only, no permission, quota) becomes one WriteFailedError
naming the file and what survived it; callers that know more (training, generate --out-dir) reword what
survived, never the mapping itself.

Every command that writes into a directory (train, export, generate and data-images --out-dir, explore
--site) claims it through claim_out_dir: the one rule for earlier output (see there).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import OutputExistsError, UserInputError, WriteFailedError, arg, note, plural


def temp_path_beside(path: Path) -> Path:
    """A fresh hidden name beside `path` for a write in progress: .NAME.XXXXXXXX.tmp."""
    return path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"


def remove_stale_temp_files(directory: Path, names) -> None:
    """Delete temp files of writes of `names` (glob patterns allowed) that a crash (SIGKILL, power loss) cut short."""
    for name in names:
        for path in directory.glob(f".{name}.*.tmp"):
            with contextlib.suppress(OSError):  # best effort: a read-only directory is reported by the next write
                path.unlink(missing_ok=True)


def os_error_reason(e: OSError) -> str:
    """'No space left on device', 'Read-only file system', ...: what the OS said, without the path."""
    return e.strerror or str(e) or type(e).__name__


def write_failed(path, e: OSError) -> WriteFailedError:
    """The one mapping of a failed write: what the OS said, and that the previous file (if any) is unchanged."""
    path = Path(path)
    survived = f"the previous {path.name} is unchanged" if path.exists() else "nothing was written"
    return WriteFailedError(path, os_error_reason(e), survived)


def write_temp_beside(path, write: Callable[[io.BufferedWriter], object], fsync: bool = True) -> Path:
    """Write through `write(f)` into a new temp file beside `path` (fsynced) and return its name.

    The caller publishes it with os.replace or deletes it; on any failure here nothing is left behind.
    The file gets the permissions open() would give (mkstemp's 0600 would surprise users).
    An OSError while writing (a full disk at write, flush, fsync or close) raises WriteFailedError.
    """
    path = Path(path)
    tmp = temp_path_beside(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _new_file_mode(path))
    except OSError as e:
        raise write_failed(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
    except OSError as e:
        _unlink_quietly(tmp)
        raise write_failed(path, e) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def append_text(path, text: str) -> None:
    """Append `text` to a log such as metrics.jsonl, fsynced. On failure the file is cut back to its old length
    (best effort), so no torn line is left; raises WriteFailedError."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, _new_file_mode(path))
    except OSError as e:
        raise write_failed(path, e) from None
    size = os.fstat(fd).st_size
    try:
        with os.fdopen(fd, "ab") as f:
            f.write(text.encode())
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        with contextlib.suppress(OSError):
            os.truncate(path, size)
        raise WriteFailedError(path, os_error_reason(e), "the lines before are unchanged") from None


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], object], fsync: bool = True) -> None:
    """Write through `write(f)` into a temp file beside `path`, fsync, then os.replace.

    A crash or an exception at any point leaves the old file byte-identical and no temp file behind.
    fsync=False skips both fsyncs (still never a half-written file if the process dies; only a power
    loss can lose it): for writing thousands of small files, where fsync dominates the run time.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise UserInputError(f"{path}: directory {directory} does not exist")
    tmp = write_temp_beside(path, write, fsync)
    try:
        os.replace(tmp, path)
    except OSError as e:
        _unlink_quietly(tmp)
        raise write_failed(path, e) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if fsync:
        fsync_dir(directory)


def make_out_dir(path, *, parents: bool = False, what: str = "output directory") -> bool:
    """Create `path` if missing and prove it writable; returns True when it was created here.

    claim_out_dir (the overwrite rule) comes through here; parents=True also creates missing parents.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserInputError(f"{path}: exists and is not a directory")
    created = not path.exists()
    if created and not parents:
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise UserInputError(f"{path}: parent directory {parent} does not exist")
    try:
        path.mkdir(parents=parents, exist_ok=True)
    except OSError as e:
        raise UserInputError(f"{path}: cannot write the {what} here ({e.strerror or e})") from None
    import tempfile  # here, not at the top: it loads shutil, bz2 and lzma, which a single-file writer never needs

    try:
        fd, probe = tempfile.mkstemp(prefix=".vaectl-write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserInputError(
            f"{path}: cannot write the {what} here: the directory is not writable ({e.strerror or e})"
        ) from None
    return created


@dataclass(frozen=True)
class Output:
    """What one writer puts into a directory: `what` it is, for messages ("generated images"), and the names
    of its files, as regular expressions over paths relative to the directory ("api/draws/[^/]+")."""

    what: str
    names: tuple[str, ...]

    def owns(self, relative: str) -> bool:
        return any(re.fullmatch(name, relative) for name in self.names)

    @property
    def depth(self) -> int:
        """How many folders deep its files go (0: only in the directory itself)."""
        return max(name.count("/") for name in self.names)


def earlier_output(directory, output: Output) -> list[Path]:
    """The files in `directory` (and its folders, as deep as `output`'s names go) that `output`'s writer
    writes, sorted."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found, level = [], [directory]
    for _ in range(output.depth + 1):
        entries = sorted(p for d in level for p in d.iterdir())
        found += [p for p in entries if p.is_file() and output.owns(p.relative_to(directory).as_posix())]
        level = [p for p in entries if p.is_dir() and not p.is_symlink()]
    return sorted(found)


def describe_files(directory: Path, files: list[Path]) -> str:
    """'last.pt, config.json, images/ (4 files)' or '000000.png ... 000019.png (20 files)': files, briefly."""
    top = [p.name for p in files if p.parent == directory]
    shown = top if len(top) <= 5 else [f"{top[0]} ... {top[-1]} ({len(top)} files)"]
    folders: dict[str, int] = {}
    for p in files:
        if p.parent != directory:
            folders[p.parent.name] = folders.get(p.parent.name, 0) + 1
    return ", ".join(shown + [f"{name}/ ({plural(count, 'file')})" for name, count in sorted(folders.items())])


@dataclass
class Claim:
    """An output directory a writer may use (claim_out_dir); `earlier` are its files from an earlier run."""

    path: Path
    output: Output
    earlier: list[Path] = field(default_factory=list)
    created: bool = False
    overwrite: bool = False

    def clear(self, keep: Iterable = ()) -> list[Path]:
        """Delete the earlier files (but those in `keep`, which this run is replacing itself) and the folders
        they leave empty; nothing else. Notes what went and what stayed. Returns the deleted files."""
        keep = {Path(p) for p in keep}
        gone = [p for p in self.earlier if p not in keep]
        for p in gone:
            try:
                p.unlink(missing_ok=True)
            except OSError as e:
                raise UserInputError(f"{p}: cannot remove it ({os_error_reason(e)})") from None
        for folder in sorted({p.parent for p in gone} - {self.path}):
            remove_stale_temp_files(folder, ["*"])
            with contextlib.suppress(OSError):  # rmdir only succeeds when empty: never removes the user's files
                folder.rmdir()
        self.earlier = [p for p in self.earlier if p in keep]
        if gone:
            mine = {p.name for p in keep}
            kept = sorted(
                p.name + ("/" if p.is_dir() else "")
                for p in self.path.iterdir()
                if not p.name.startswith(".") and p.name not in mine and not (p.is_dir() and not any(p.iterdir()))
            )
            note(
                (f"{arg('overwrite', True)}: " if self.overwrite else "")
                + f"removed {self.output.what} from {self.path} ({describe_files(self.path, gone)})"
                + (f"; kept what vaectl did not write: {', '.join(kept)}" if kept else "")
            )
        return gone


def claim_out_dir(
    path,
    output: Output,
    *,
    overwrite: bool = False,
    param: str = "out_dir",
    reuse: Callable[[list[Path]], bool] | None = None,
    instead: str | None = None,
    parents: bool = False,
    create: bool = True,
) -> Claim:
    """The one overwrite rule: may this writer put its `output` into directory `path`?

    A directory that already holds files of this writer's (by name: Output.names) holds an earlier run's
    output, and writing there would mix the two or replace the earlier one; that is refused (OutputExistsError,
    naming the files, nothing touched) unless `overwrite`, or unless `reuse(earlier)` says the earlier files are
    this run's own (an export of the same training run). Files of anyone else are never counted, refused over
    or removed. Then the directory is created (create=True; parents=True makes missing parents) and proved
    writable. Nothing is deleted here: the writer calls Claim.clear() when it is ready to replace the earlier
    files (train at once; export when its new graphs are verified). `param` names the argument that chose the
    directory, `instead` the alternative the message offers (default: another directory).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserInputError(f"{path}: exists and is not a directory")
    earlier = earlier_output(path, output)
    if earlier and not overwrite and not (reuse is not None and reuse(earlier)):
        raise OutputExistsError(
            f"{path}: already holds {output.what} ({describe_files(path, earlier)}); "
            f"{instead or 'choose another ' + arg(param)}, or give {arg('overwrite', True)}: it deletes those "
            "files and nothing else"
        )
    created = make_out_dir(path, parents=parents) if create else False
    return Claim(path, output, earlier, created, overwrite)


def _new_file_mode(path: Path) -> int:
    """The replaced file's mode, or 0o666 minus the umask for a new file."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def fsync_dir(directory) -> None:
    """Make renames into `directory` durable (best effort: not every filesystem allows it)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path, data: bytes, fsync: bool = True) -> None:
    atomic_write(path, lambda f: f.write(data), fsync)


def to_uint8_images(images: np.ndarray) -> np.ndarray:
    """Float (N, C, H, W) in [0, 1] -> uint8 (N, H, W) or (N, H, W, 3). Refuses non-finite values."""
    if not np.isfinite(images).all():
        raise ValueError("decoder output contains NaN or inf; refusing to write it as an image")
    x = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
    return x[:, 0] if x.shape[1] == 1 else x.transpose(0, 2, 3, 1)


def make_grid(images: np.ndarray, nrow: int = 8, padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """uint8 (N, H, W[, 3]) -> one uint8 image with `nrow` images per row."""
    if images.ndim not in (3, 4) or len(images) == 0:
        raise ValueError(f"expected a non-empty stack of images, got shape {images.shape}")
    n, h, w = images.shape[:3]
    ncol = max(1, min(nrow, n))
    nrows = (n + ncol - 1) // ncol
    shape = (nrows * (h + padding) + padding, ncol * (w + padding) + padding) + images.shape[3:]
    grid = np.full(shape, pad_value, dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, ncol)
        y, x = padding + r * (h + padding), padding + c * (w + padding)
        grid[y : y + h, x : x + w] = im
    return grid


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    # The format from the name, not format="PNG": then Pillow imports its PNG plugin alone, not the five
    # it loads for a named format (JPEG's pulls in subprocess), a few ms of every `vaectl generate`.
    buf.name = "image.png"
    Image.fromarray(image).save(buf)
    return buf.getvalue()


def save_png(path, image: np.ndarray, fsync: bool = True) -> None:
    """Save a uint8 (H, W) or (H, W, 3) array as PNG, atomically."""
    atomic_write_bytes(path, png_bytes(image), fsync)


def save_grid(path, images: np.ndarray, nrow: int = 8) -> None:
    save_png(path, make_grid(images, nrow=nrow))
