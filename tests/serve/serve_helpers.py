"""Start a real `llmctl serve` subprocess on a free loopback port and talk to it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers import ONE_THREAD, cli_env

KEY = "test-key-123"


class Server:
    """`python -m llmctl serve MODEL --port 0 ARGS`; stdout lines are collected as they come."""

    def __init__(self, model, *args: str, tmp: Path, env: dict | None = None):
        self.err_path = Path(tmp) / f"serve-{time.monotonic_ns()}.err"
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "llmctl", "serve", str(model), "--port", "0", *args],
                                     env=cli_env(ONE_THREAD | (env or {})), stdout=subprocess.PIPE,
                                     stderr=self.err, text=True)
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(300) or self.proc.poll() is not None:
            self.stop()
            raise AssertionError(f"the server did not start:\n{self.stderr()}")
        first = self.lines[0]
        self.url = json.loads(first)["url"] if first.startswith("{") else first.split(" ready on ")[1].split()[0]

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self.ready.set()
        self.ready.set()

    def stderr(self) -> str:
        self.err.flush()
        return self.err_path.read_text()

    def client(self, key: str | None = KEY, **kwargs):
        import openai

        return openai.OpenAI(base_url=self.url + "/v1", api_key=key or "none", max_retries=0, **kwargs)

    def http(self, key: str | None = KEY):
        import httpx

        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"} if key else {},
                            timeout=120)

    def metrics(self, key: str | None = KEY) -> dict[str, float]:
        """{'name{labels}': value} from GET /metrics."""
        text = self.http(key).get("/metrics").text
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line and not line.startswith("#")}

    def wait_stderr(self, text: str, count: int = 1) -> None:
        while self.stderr().count(text) < count:
            assert self.proc.poll() is None, self.stderr()
            time.sleep(0.05)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(120)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.err.close()
