"""Re-create the vendored onnxruntime-web files from the npm tarball (stdlib only).

    cd /tmp && npm pack onnxruntime-web@1.30.0
    python explore/vendor/refresh.py /tmp/onnxruntime-web-1.30.0.tgz

Writes, next to this script: the ESM bundle and its WASM loader as they are, the .wasm gzipped
(served with Content-Encoding: gzip), LICENSE, NOTICE and manifest.json (version, files, sha256).
Only the single-threaded-capable WASM build the page loads is kept; tests/test_explore.py checks the hashes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
import tarfile
from pathlib import Path

VERSION = "1.30.0"
HERE = Path(__file__).resolve().parent
# What the page fetches with ort.env.wasm.numThreads = 1 (checked in the browser tests: no other request).
FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
GZIPPED = ("ort-wasm-simd-threaded.wasm",)

# The npm tarball carries no LICENSE file: the bundle's banner and package.json say MIT, Microsoft.
MIT = """MIT License

Copyright (c) Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

NOTICE = """onnxruntime-web {version} (https://www.npmjs.com/package/onnxruntime-web), files: {files}.
Copyright (c) Microsoft Corporation. Licensed under the MIT License (LICENSE in this folder;
package.json: "license": "{license}").

The WebAssembly binary is ONNX Runtime compiled with Emscripten; it contains third-party code
(among others protobuf, abseil, Eigen, MLAS, flatbuffers, ONNX) under the licences listed in
ONNX Runtime's ThirdPartyNotices.txt: https://github.com/microsoft/onnxruntime/blob/v{version}/ThirdPartyNotices.txt
(the npm tarball does not include that file).
"""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def refresh(tarball: Path, out: Path = HERE) -> dict:
    with tarfile.open(tarball) as tar:
        package = json.load(tar.extractfile("package/package.json"))
        if package["version"] != VERSION:
            raise SystemExit(f"{tarball}: onnxruntime-web {package['version']}, expected {VERSION}")
        contents = {name: tar.extractfile(f"package/dist/{name}").read() for name in FILES}
    manifest = {"package": "onnxruntime-web", "version": VERSION, "files": {}}
    for name, data in contents.items():
        stored = name + ".gz" if name in GZIPPED else name
        # mtime=0 and no file name in the header: the same tarball always gives the same bytes
        blob = gzip.compress(data, compresslevel=9, mtime=0) if name in GZIPPED else data
        (out / stored).write_bytes(blob)
        manifest["files"][name] = {
            "stored_as": stored,
            "bytes": len(data),
            "sha256": sha256(data),
            "stored_bytes": len(blob),
            "stored_sha256": sha256(blob),
        }
    (out / "LICENSE").write_text(MIT)
    (out / "NOTICE").write_text(NOTICE.format(version=VERSION, files=", ".join(FILES), license=package["license"]))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    for name, entry in refresh(Path(sys.argv[1]))["files"].items():
        print(f"{name}: {entry['bytes']:,} bytes, stored {entry['stored_bytes']:,} ({entry['stored_as']})")
