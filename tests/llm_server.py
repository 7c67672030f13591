"""A real OpenAI-compatible server for the tests (`python -m llama_cpp.server` with the embedded
SmolLM2 model) and a real HTTP proxy in front of it that can fail or stall chosen requests."""
from __future__ import annotations

import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from daemons import Daemon, free_port


class LlamaServer(Daemon):
    """`python -m llama_cpp.server` on 127.0.0.1; ready when uvicorn says it is running (read from its log)."""

    def __init__(self, model: str, log: Path, n_ctx: int = 2048):
        self.port = free_port()
        super().__init__(
            [sys.executable, "-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1", "--port", str(self.port),
             "--n_ctx", str(n_ctx), "--model_alias", "smollm2"],
            log, ready="Uvicorn running on", merge_output=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait_ready(self, timeout: float = 180) -> None:
        super().wait_ready(timeout)


class Proxy:
    """An HTTP proxy on 127.0.0.1 that answers the next requests by `plan`, then forwards.

    Plan steps: "500" (a server error), "400" (a client error), "429" (too many requests, with
    `Retry-After: 1`), "stall" (no answer for `stall_s` seconds, past the client's timeout, then
    the connection closes), "truncated" (a 200 whose JSON body is cut short), "reset" (a 200 whose
    connection closes halfway through the promised body), "empty" (a 200 with no choices),
    "forward".
    `log` records (step, path, Authorization header) per request.
    """

    def __init__(self, upstream: str, stall_s: float = 8.0):
        self.upstream = upstream.rstrip("/")
        self.stall_s = stall_s
        self.plan: list[str] = []
        self.log: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with proxy.lock:
                    step = proxy.plan.pop(0) if proxy.plan else "forward"
                    proxy.log.append((step, self.path, self.headers.get("Authorization")))
                if step in ("500", "400", "429", "truncated", "empty", "reset"):
                    whole = b'{"id": "x", "choices": [{"text": "injected", "finish_reason": "stop"}], "usage": {}}'
                    payload = {"truncated": whole[:30], "empty": b'{"id": "x", "choices": []}', "reset": whole}.get(
                        step, b'{"error": {"message": "injected by the test proxy"}}')
                    self.send_response(200 if step in ("truncated", "empty", "reset") else int(step))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    if step == "429":
                        self.send_header("Retry-After", "1")
                    self.end_headers()
                    self.wfile.write(payload[: len(payload) // 2] if step == "reset" else payload)
                    if step == "reset":
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)
                    return
                if step == "stall":
                    time.sleep(proxy.stall_s)
                    self.close_connection = True
                    return
                path = self.path[len("/v1"):] if self.path.startswith("/v1") else self.path
                request = urllib.request.Request(
                    proxy.upstream + path, data=body, headers={"Content-Type": "application/json"}, method="POST"
                )
                try:
                    with urllib.request.urlopen(request, timeout=300) as response:
                        status, payload = response.status, response.read()
                except urllib.error.HTTPError as e:
                    status, payload = e.code, e.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def steps(self) -> list[str]:
        return [step for step, _, _ in self.log]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
