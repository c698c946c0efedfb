"""A loopback Ollama registry serving an existing ``OLLAMA_MODELS`` directory, so pulls are
tested for real without the internet (notes/inference-backends.md section 3)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_MANIFEST = re.compile(r"^/v2/(?P<name>[^/]+/[^/]+)/manifests/(?P<tag>[^/]+)$")
_BLOB = re.compile(r"^/v2/[^/]+/[^/]+/blobs/sha256:(?P<digest>[0-9a-f]{64})$")
_DIRECT = re.compile(r"^/direct/sha256-(?P<digest>[0-9a-f]{64})$")
_RANGE = re.compile(r"^bytes=(?P<start>\d+)-(?P<end>\d*)$")


def _handler(store: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, *, body: bool) -> None:
            if manifest := _MANIFEST.match(self.path):
                path = store / "manifests" / "registry.ollama.ai" / manifest["name"]
                self._file(
                    path / manifest["tag"],
                    body,
                    "application/vnd.docker.distribution.manifest.v2+json",
                )
            elif blob := _BLOB.match(self.path):
                # Ollama wants the blob redirected to a differently named host.
                port = self.headers.get("Host", "").rpartition(":")[2]
                self.send_response(307)
                self.send_header(
                    "Location", f"http://localhost:{port}/direct/sha256-{blob['digest']}"
                )
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif direct := _DIRECT.match(self.path):
                self._file(
                    store / "blobs" / f"sha256-{direct['digest']}", body, "application/octet-stream"
                )
            else:
                self.send_error(404)

        def _file(self, path: Path, body: bool, content_type: str) -> None:
            if not path.is_file():
                self.send_error(404)
                return
            size = path.stat().st_size
            start, end = 0, size - 1
            wanted = _RANGE.match(self.headers.get("Range", ""))
            if wanted:
                start = int(wanted["start"])
                end = int(wanted["end"]) if wanted["end"] else size - 1
            self.send_response(206 if wanted else 200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Accept-Ranges", "bytes")
            if wanted:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if body:
                with path.open("rb") as source:
                    source.seek(start)
                    remaining = end - start + 1
                    while remaining > 0:
                        chunk = source.read(min(remaining, 1 << 20))
                        if not chunk:
                            break
                        self.wfile.write(chunk)
                        remaining -= len(chunk)

    return Handler


@contextmanager
def loopback_registry(store: Path) -> Iterator[str]:
    """Serve ``store`` as a registry on a free loopback port; yields ``127.0.0.1:PORT``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(store))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
