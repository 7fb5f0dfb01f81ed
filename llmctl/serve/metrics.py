"""Counters for GET /metrics, written in Prometheus' text exposition format (version 0.0.4)."""

from __future__ import annotations

import threading

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Histogram:
    def __init__(self, buckets):
        self.buckets, self.counts, self.sum, self.count = buckets, [0] * len(buckets), 0.0, 0

    def observe(self, value: float) -> None:
        for i, edge in enumerate(self.buckets):
            if value <= edge:
                self.counts[i] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        out = [f'{name}_bucket{{{labels}{sep}le="{edge}"}} {n}' for edge, n in zip(self.buckets, self.counts)]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        braces = f"{{{labels}}}" if labels else ""
        return out + [f"{name}_sum{braces} {self.sum:.6f}", f"{name}_count{braces} {self.count}"]


class Metrics:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.latency: dict[str, Histogram] = {}
        self.tokens = 0
        self.prompt_tokens = 0
        self.disconnects = 0
        self.batch = Histogram(BATCH_BUCKETS)
        self.wait = Histogram(LATENCY_BUCKETS)
        self.prefill = Histogram(BATCH_BUCKETS)
        self.gauges = {}  # name -> (help, callable)

    def request(self, path: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[(path, status)] = self.requests.get((path, status), 0) + 1
            self.latency.setdefault(path, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def add_tokens(self, n: int) -> None:
        with self.lock:
            self.tokens += n

    def add_prompt_tokens(self, n: int) -> None:
        with self.lock:
            self.prompt_tokens += n

    def disconnected(self) -> None:
        with self.lock:
            self.disconnects += 1

    def observe_batch(self, size: int) -> None:
        with self.lock:
            self.batch.observe(size)

    def observe_prefill(self, size: int) -> None:
        with self.lock:
            self.prefill.observe(size)

    def observe_wait(self, seconds: float) -> None:
        with self.lock:
            self.wait.observe(seconds)

    def render(self) -> str:
        with self.lock:
            out = ["# HELP llmctl_requests_total HTTP requests answered, by path and status.",
                   "# TYPE llmctl_requests_total counter"]
            out += [f'llmctl_requests_total{{path="{p}",status="{s}"}} {n}' for (p, s), n in sorted(self.requests.items())]
            out += ["# HELP llmctl_request_duration_seconds Time from request to the last byte of the answer.",
                    "# TYPE llmctl_request_duration_seconds histogram"]
            for path, hist in sorted(self.latency.items()):
                out += hist.lines("llmctl_request_duration_seconds", f'path="{path}"')
            out += ["# HELP llmctl_generated_tokens_total Tokens generated.", "# TYPE llmctl_generated_tokens_total counter",
                    f"llmctl_generated_tokens_total {self.tokens}",
                    "# HELP llmctl_prompt_tokens_total Prompt tokens read.", "# TYPE llmctl_prompt_tokens_total counter",
                    f"llmctl_prompt_tokens_total {self.prompt_tokens}",
                    "# HELP llmctl_disconnects_total Requests whose client left before the answer ended.",
                    "# TYPE llmctl_disconnects_total counter", f"llmctl_disconnects_total {self.disconnects}",
                    "# HELP llmctl_batch_size Sequences in each decoding step.", "# TYPE llmctl_batch_size histogram"]
            out += self.batch.lines("llmctl_batch_size")
            out += ["# HELP llmctl_queue_wait_seconds Time a sequence waited before joining the batch.",
                    "# TYPE llmctl_queue_wait_seconds histogram"]
            out += self.wait.lines("llmctl_queue_wait_seconds")
            out += ["# HELP llmctl_prefill_size Prompts prefilled in each forward pass (packed end to end).",
                    "# TYPE llmctl_prefill_size histogram"]
            out += self.prefill.lines("llmctl_prefill_size")
            for name, (help_, value) in sorted(self.gauges.items()):
                out += [f"# HELP {name} {help_}", f"# TYPE {name} gauge", f"{name} {value()}"]
        return "\n".join(out) + "\n"
