"""A threaded HTTP/1.1 WSGI server with keep-alive, on loopback, for moto's application.

werkzeug's development server answers every request with ``Connection: close``, so each AWS call of the
function, the fronts and the engine costs a new TCP connection and a new server thread; under load that was a
third of moto's time. This server keeps connections open (HTTP/1.1 persistent connections, as AWS endpoints
do), reads each request body whole (``Content-Length`` or chunked) before the application sees it, so the next
request on the connection always starts where it should, and writes each reply in one piece with its length.

What it gives the application (the WSGI environ) follows werkzeug where moto depends on it: ``PATH_INFO``
percent-decoded as latin-1 text, ``RAW_URI`` with the path as sent, header names with underscores dropped
except S3 object metadata, whose original spelling moto keeps (:mod:`moto.core.request`).
``promoter.socket`` is the connection's socket, for a fault that cuts the connection instead of answering.
A ``HEAD`` reply keeps the ``Content-Length`` the application set and has no body.
"""

from __future__ import annotations

import io
import logging
import sys
import traceback
from collections.abc import Callable
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote_to_bytes

log = logging.getLogger("promoter.sandbox.wsgi")

SOCKET_KEY = "promoter.socket"
NO_BODY = {204, 304}
_OWN_HEADERS = {"content-length", "connection", "transfer-encoding", "keep-alive"}


class RequestAborted(Exception):
    """Raised by an application that has cut the connection itself: nothing is written back."""


@lru_cache(maxsize=1)
def _preserving() -> tuple[Callable[[str], bool], Callable[[str], str], str]:
    try:
        from moto.core.request import (
            PRESERVED_HEADER_NAMES_ENVIRON_KEY,
            environ_key_for_header,
            should_preserve_original_header_name,
        )
    except ImportError:  # an older moto: no header name is preserved
        return (lambda _name: False), (lambda name: "HTTP_" + name.upper().replace("-", "_")), \
            "moto.preserved_header_names"
    return should_preserve_original_header_name, environ_key_for_header, PRESERVED_HEADER_NAMES_ENVIRON_KEY


class WSGIRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "promoter-sandbox"
    sys_version = ""
    timeout = 300  # an idle persistent connection is closed after this many seconds
    access_log = False

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _environ(self, body: bytes) -> dict[str, Any]:
        preserve, key_for, preserved_key = _preserving()
        path, _, query = self.path.partition("?")
        host, port = self.server.server_address[:2]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query,
            "RAW_URI": self.path,
            "REQUEST_URI": self.path,
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_PORT": str(self.client_address[1]),
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            SOCKET_KEY: self.connection,
        }
        names: dict[str, str] = {}
        for name, value in self.headers.items():
            lowered = name.lower()
            if lowered in ("content-length", "transfer-encoding"):
                continue  # the body is read whole: its length is CONTENT_LENGTH
            if "_" in name and not preserve(name):
                continue  # as werkzeug: an underscored name could stand in for a dashed one
            key = key_for(name)
            if "_" in name:
                if key in environ:
                    continue  # never let an underscored header replace a dashed one
                names[key] = name
            value = value.replace("\r\n", "")
            environ[key] = f"{environ[key]},{value}" if key in environ and key.startswith("HTTP_") else value
        environ[preserved_key] = names
        return environ

    def _serve(self) -> None:
        body = self._read_body()
        environ = self._environ(body)
        started: list[Any] = []
        chunks: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            started[:] = [status, headers]
            return chunks.append

        try:
            result = self.server.app(environ, start_response)  # type: ignore[attr-defined]
            try:
                for chunk in result:
                    if chunk:
                        chunks.append(chunk)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except (RequestAborted, ConnectionError):
            self.close_connection = True
            return
        except Exception:
            log.error("unhandled error serving %s %s\n%s", self.command, self.path, traceback.format_exc())
            started[:] = ["500 Internal Server Error", [("Content-Type", "text/plain")]]
            chunks[:] = [b"internal error in the sandbox's AWS endpoint"]
        status, headers = started
        code = int(status.split(" ", 1)[0])
        payload = b"".join(chunks)
        declared = next((v for k, v in headers if k.lower() == "content-length"), None)
        send_body = self.command != "HEAD" and code not in NO_BODY and not 100 <= code < 200
        length = declared if (self.command == "HEAD" and declared is not None) else str(len(payload))
        lines = [f"{self.protocol_version} {status}", f"Date: {self.date_time_string()}"]
        lines += [f"{k}: {v}" for k, v in headers if k.lower() not in _OWN_HEADERS]
        if code not in NO_BODY:
            lines.append(f"Content-Length: {length}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + payload if send_body else head)
        if self.access_log or code >= 400:
            self.log_request(code, len(payload))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_") and name[3:].isalpha() and name[3:].isupper():
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} - {format % args}\n")


class WSGIServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: Any, *, access_log: bool = False) -> None:
        handler = type("Handler", (WSGIRequestHandler,), {"access_log": access_log})
        super().__init__(address, handler)
        self.app = app


def serve(app: Any, host: str, port: int, *, access_log: bool = False) -> None:
    """Serve ``app`` until the process is stopped."""
    server = WSGIServer((host, port), app, access_log=access_log)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
