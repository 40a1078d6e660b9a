"""`vaectl explore`'s local server (stdlib http.server): a fixed route table, nothing else.

No path from a URL ever reaches the filesystem: every route is a key in a dict built at start,
pointing at a file chosen here or a function. Unknown paths are 404, foreign Host headers 421
(DNS rebinding), uploads are capped and go through vaectl's own image loader.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import re
import socket
import sys
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np

from .. import layout
from ..errors import UserInputError
from ..infer import prepare_images
from .model import ExploreModel, draws

STATIC = Path(__file__).parent / "static"
VENDOR = Path(__file__).parent / "vendor"
MAX_UPLOAD_BYTES = 8 * 1024 * 1024
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
    ".png": "image/png",
}
LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")


def runtime_files() -> dict[str, dict]:
    """The vendored onnxruntime-web manifest's files: name -> {stored_as, sha256, ...}."""
    return json.loads((VENDOR / "manifest.json").read_text())["files"]


class Route:
    """One fixed route: a file on disk (optionally stored gzipped) or a function returning bytes."""

    def __init__(
        self,
        content_type: str,
        path: Path | None = None,
        make: Callable[[dict], bytes] | None = None,
        gzipped: bool = False,
    ):
        self.content_type, self.path, self.make, self.gzipped = content_type, path, make, gzipped

    def body(self, query: dict) -> bytes:
        return self.path.read_bytes() if self.path is not None else self.make(query)


def _json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def build_routes(model: ExploreModel) -> dict[str, Route]:
    routes = {"/": Route(TYPES[".html"], STATIC / layout.INDEX)}
    for name in layout.PAGE_FILES:
        routes[f"/{name}"] = Route(TYPES[Path(name).suffix], STATIC / name)
    for name, entry in runtime_files().items():
        routes[f"/{layout.runtime_file(name)}"] = Route(
            TYPES[Path(name).suffix], VENDOR / entry["stored_as"], gzipped=entry["stored_as"].endswith(".gz")
        )
    for variant, path in model.decoders.items():  # fixed names: the page starts loading decoder.onnx first thing
        routes[f"/{layout.site_model_file('decoder', variant)}"] = Route(TYPES[".onnx"], path)
    if model.encoder:
        routes[f"/{layout.site_model_file('encoder')}"] = Route(TYPES[".onnx"], model.encoder)
    for name, path in model.run_grids.items():
        routes[f"/{layout.site_grid_file(name)}"] = Route(TYPES[".png"], path)
    info, the_map, run = _json(model.info), _json(model.map), _json(model.run)
    routes[f"/{layout.INFO_JSON}"] = Route(TYPES[".json"], make=lambda q: info)
    routes[f"/{layout.MAP_JSON}"] = Route(TYPES[".json"], make=lambda q: the_map)
    routes[f"/{layout.RUN_JSON}"] = Route(TYPES[".json"], make=lambda q: run)
    routes[f"/{layout.DRAWS_JSON}"] = Route(
        TYPES[".json"],
        make=lambda q: _json(
            draws(model, _str_param(q, "prior"), _int_param(q, "seed"), _int_param(q, "n"), _str_param(q, "label"))
        ),
    )
    return routes


def _int_param(query: dict, name: str) -> int:
    values = query.get(name, [])
    if len(values) != 1 or not re.fullmatch(r"[0-9]{1,12}", values[0]):
        raise UserInputError(f"{name} must be one non-negative integer")
    return int(values[0])


def _str_param(query: dict, name: str) -> str:
    values = query.get(name, [])
    if len(values) != 1 or not re.fullmatch(r"[a-z0-9_:.-]{0,40}", values[0]):
        raise UserInputError(f"{name} must be given once, in lower-case letters, digits and -_:.")
    return values[0]


def decode_upload(data: bytes, image_shape) -> dict:
    """One uploaded image file -> the model's float32 input, through the same loader as the CLI."""
    if not data:
        raise UserInputError("empty upload: choose an image file")
    x = prepare_images(io.BytesIO(data), tuple(image_shape))  # allowlist, bomb limit, resize: as `reconstruct`
    return {"shape": list(x.shape[1:]), "pixels": x.reshape(-1).astype(np.float64).tolist()}


def allowed_hosts(host: str, port: int) -> Callable[[str], bool]:
    """A check of the Host header: the bound address or localhost names, at our port. Bound to all
    interfaces, any IP literal is allowed (rebinding attacks come through DNS names)."""
    wildcard = host in ("0.0.0.0", "::")
    bound = f"[{host}]" if ":" in host else host
    names = {f"{n}:{port}" for n in (*LOCAL_NAMES, bound)}

    def ok(header: str) -> bool:
        header = header.strip().lower()
        if header in names:
            return True
        if not wildcard or not header.endswith(f":{port}"):
            return False
        literal = header[: -len(f":{port}")].strip("[]")
        try:
            ipaddress.ip_address(literal)
            return True
        except ValueError:
            return False

    return ok


class ExploreHandler(BaseHTTPRequestHandler):
    server_version = "vaectl-explore"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds: a client that stops sending mid-request frees its thread
    routes: dict[str, Route] = {}
    host_ok: Callable[[str], bool] = staticmethod(lambda h: False)
    image_shape: tuple = ()

    def log_message(self, format, *args):  # noqa: A002  (quiet: the page is the interface)
        pass

    def handle(self):
        with contextlib.suppress(ConnectionError, TimeoutError):  # the browser went away mid-response
            super().handle()

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        gzipped: bool = False,
        head: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._send(status, (message + "\n").encode())

    def _guard(self) -> bool:
        if not self.host_ok(self.headers.get("Host", "")):
            self.close_connection = True
            self._error(HTTPStatus.MISDIRECTED_REQUEST, "421: unexpected Host header (only this machine's address)")
            return False
        return True

    def _get(self, head: bool) -> None:
        if not self._guard():
            return
        path, _, query = self.path.partition("?")
        route = self.routes.get(path)
        if route is None:
            self._error(HTTPStatus.NOT_FOUND, "404: not found")
            return
        try:
            body = route.body(parse_qs(query, keep_blank_values=True))
        except UserInputError as e:
            self._error(HTTPStatus.BAD_REQUEST, str(e))
            return
        except OSError as e:  # a graph deleted or unreadable while serving
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"cannot read {route.path.name}: {e.strerror or e}")
            return
        self._send(HTTPStatus.OK, body, route.content_type, route.gzipped, head)

    def do_GET(self):
        self._get(head=False)

    def do_HEAD(self):
        self._get(head=True)

    def do_POST(self):
        if not self._guard():
            return
        if self.path != f"/{layout.UPLOAD}":
            self.close_connection = True
            self._error(HTTPStatus.NOT_FOUND, "404: not found")
            return
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            self.close_connection = True
            self._error(HTTPStatus.LENGTH_REQUIRED, "send one image file as the request body")
            return
        if int(length) > MAX_UPLOAD_BYTES:
            self.close_connection = True  # the body stays unread
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"image file is {int(length):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}",
            )
            return
        data = self.rfile.read(int(length))
        try:
            body = _json(decode_upload(data, self.image_shape))
        except UserInputError as e:
            message = str(e).replace("<image>: ", "")
            self._error(HTTPStatus.UNPROCESSABLE_ENTITY, message.splitlines()[0])
            return
        self._send(HTTPStatus.OK, body, TYPES[".json"])

    def do_PUT(self):
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "405: method not allowed")

    do_DELETE = do_PATCH = do_OPTIONS = do_PUT


class ExploreServer(ThreadingHTTPServer):
    daemon_threads = True
    # Ctrl-C stops at once: server_close() would otherwise join every handler thread, one of which may be
    # waiting out its 60 s timeout on a client that went quiet
    block_on_close = False

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def make_server(model: ExploreModel, host: str = "127.0.0.1", port: int = 0) -> ExploreServer:
    """A server bound to host:port (0: a free port), not yet serving: call serve_forever()."""
    handler = type(
        "Handler", (ExploreHandler,), {"routes": build_routes(model), "image_shape": tuple(model.info["image_shape"])}
    )
    server_class = ExploreServer
    if ":" in host:  # an IPv6 address
        server_class = type("ExploreServer6", (ExploreServer,), {"address_family": socket.AF_INET6})
    try:
        server = server_class((host, port), handler)
    except OSError as e:
        raise UserInputError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    handler.host_ok = staticmethod(allowed_hosts(host, server.server_address[1]))
    return server


def server_url(server: ExploreServer) -> str:
    host, port = server.server_address[:2]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}/"
