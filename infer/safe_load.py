"""Open untrusted ONNX files with onnxruntime without letting them read any other file.

An ONNX tensor may keep its bytes "externally": in another file named by a path inside the model
(`../../etc/passwd`, an absolute path, a symlink or hardlink beside the model), or, with
onnxruntime's `*/_ORT_MEM_ADDR_/*` tag, at a raw address in this process. onnxruntime has followed
such references out of the model's directory (before 1.24.3), still follows a hardlink placed
beside the model, and resolves the references of a model loaded from bytes against the working
directory. vaectl exports never use external data, so the rule here is simple: the model file is
read once into memory, its protobuf is walked (a few dozen lines, no `onnx` package needed) and
any tensor with an external-data reference, anywhere, refuses the whole file before onnxruntime
sees it. As a second layer the bytes are given to onnxruntime with its external-initializers
folder pointed at a path below the null device, where no folder can exist, and only the CPU execution provider is enabled
(EP-context nodes, which can name cache files, are not run by it).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserInputError
from ..threads import choose_threads

# protobuf's own limit on one message; a bigger "model" is not something we should read into memory
MAX_MODEL_BYTES = 2 * 1024**3 - 1
MAX_GRAPH_NESTING = 64
# Where onnxruntime is told to look for external data: below the null device, where no folder can exist.
NO_FOLDER = os.path.join(os.devnull, "vaectl-no-external-data")

# Message types and, for each, the fields that hold messages which may (transitively) hold a
# TensorProto. Field numbers are from onnx.proto (IR version 10); other fields are skipped.
_MODEL, _GRAPH, _NODE, _ATTRIBUTE, _TENSOR, _SPARSE, _FUNCTION, _TRAINING = range(8)
_CHILDREN = {
    _MODEL: {7: _GRAPH, 20: _TRAINING, 25: _FUNCTION},
    _TRAINING: {1: _GRAPH, 2: _GRAPH},
    _GRAPH: {1: _NODE, 5: _TENSOR, 15: _SPARSE},
    _NODE: {5: _ATTRIBUTE},
    _ATTRIBUTE: {5: _TENSOR, 6: _GRAPH, 10: _TENSOR, 11: _GRAPH, 22: _SPARSE, 23: _SPARSE},
    _FUNCTION: {7: _NODE, 11: _ATTRIBUTE},
    _SPARSE: {1: _TENSOR, 2: _TENSOR},
    _TENSOR: {},
}
_TENSOR_EXTERNAL_DATA = 13  # repeated StringStringEntryProto: location, offset, length, ...
_TENSOR_DATA_LOCATION = 14  # enum: 0 DEFAULT, 1 EXTERNAL
_TENSOR_NAME = 8
_MODEL_GRAPH = 7


class _Malformed(Exception):
    pass


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed("bad varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview, start: int, end: int):
    """Yield (field number, wire type, value) for one message; value is an int or a (start, end) span."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _Malformed("field number 0")
        value: int | tuple[int, int] | None
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 5:
            value, pos = None, pos + 4
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            value, pos = (pos, pos + length), pos + length
        else:  # groups (3, 4) are not used by onnx.proto
            raise _Malformed(f"unsupported wire type {wire}")
        if pos > end:
            raise _Malformed("truncated")
        yield field, wire, value


def find_external_tensors(data: bytes) -> list[str]:
    """Names of tensors that reference external data, anywhere in a serialized ModelProto.

    Raises _Malformed when the bytes are not a protobuf message with a graph.
    """
    buf = memoryview(data)
    found: list[str] = []
    has_graph = False
    stack = [(_MODEL, 0, len(buf), 0)]
    while stack:
        kind, start, end, depth = stack.pop()
        if depth > MAX_GRAPH_NESTING * 4:
            raise _Malformed("nesting too deep")
        children = _CHILDREN[kind]
        external, name = False, "<unnamed>"
        for field, wire, value in _fields(buf, start, end):
            if kind == _MODEL and field == _MODEL_GRAPH and wire == 2:
                has_graph = True
            if kind == _TENSOR:
                if field == _TENSOR_EXTERNAL_DATA or (field == _TENSOR_DATA_LOCATION and (wire != 0 or value != 0)):
                    external = True
                elif field == _TENSOR_NAME and wire == 2:
                    name = bytes(buf[value[0] : value[1]]).decode("utf-8", "replace")
            elif field in children and wire == 2:
                stack.append((children[field], value[0], value[1], depth + 1))
        if external:
            found.append(name)
    if not has_graph:
        raise _Malformed("no graph")
    return found


def read_model_bytes(path, role_hint: str = "model") -> bytes:
    """Read an ONNX file into memory and refuse it if it references any external data."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_MODEL_BYTES:
                raise UserInputError(f"{path}: {size:,} bytes is too large for an ONNX {role_hint}")
            data = f.read()
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserInputError(f"{path}: is a directory, not an ONNX file") from None
    except PermissionError:
        raise UserInputError(f"{path}: permission denied") from None
    except OSError as e:
        raise UserInputError(f"{path}: cannot read ({e.strerror})") from None
    check_model_bytes(data, str(path))
    return data


def check_model_bytes(data: bytes, source: str) -> None:
    if not data:
        raise UserInputError(f"{source}: empty file, not an ONNX model")
    if data[4:8] == b"ORTM":  # ORT's flatbuffer format: not something vaectl exports
        raise UserInputError(f"{source}: an ORT-format model; vaectl reads only .onnx files it exported")
    if data[:4] == b"PK\x03\x04":  # a zip archive: what torch.save (and so `vaectl train`) writes
        raise UserInputError(
            f"{source}: a PyTorch checkpoint, not an ONNX graph; export it first (vaectl export {source} --out DIR) "
            "and give the graphs it writes in DIR"
        )
    try:
        external = find_external_tensors(data)
    except _Malformed as e:
        raise UserInputError(f"{source}: not an ONNX model, or corrupt or truncated ({e})") from None
    if external:
        shown = ", ".join(external[:3]) + (", ..." if len(external) > 3 else "")
        raise UserInputError(
            f"{source}: refused: the model references external data files (tensors {shown}); "
            "vaectl exports keep all weights inside the .onnx file, so this file was not made by vaectl export"
        )


def create_session(data: bytes, source: str, threads: int | None = None):
    """An onnxruntime InferenceSession on already-checked model bytes, CPU only."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # warnings about unused initializers etc. are not the user's concern
    # threads: given, else VAECTL_THREADS, else the free cores; onnxruntime's own default (every core) makes
    # its threads wait for each other on a busy machine, as torch's do (vaectl/threads.py)
    opts.intra_op_num_threads = choose_threads(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.load_model_format", "ONNX")
    # second layer: should anything still look for external data, it looks in NO_FOLDER and finds nothing
    opts.add_session_config_entry("session.model_external_initializers_file_folder_path", NO_FOLDER)
    try:
        return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own pybind exception types for bad models
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserInputError(f"{source}: onnxruntime cannot load this model ({first[:300]})") from None


def model_metadata(session, source: str) -> dict[str, str]:
    """The graph's metadata_props as a dict; UserInputError when a value is not UTF-8 text (a corrupt file:
    onnxruntime decodes them only when asked)."""
    try:
        return dict(session.get_modelmeta().custom_metadata_map)
    except UnicodeDecodeError:
        raise UserInputError(f"{source}: its metadata is not valid text: the file is corrupt") from None
