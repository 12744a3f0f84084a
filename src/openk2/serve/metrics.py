"""`/metrics` in Prometheus' text format (prometheus_client), one registry per app.

Requests by route and status, prompt and generated tokens, prefix-cache hits, the engine's queue
depth and running batch, and histograms of time to first token, inter-token latency and request
latency (vLLM's names, `openk2:` prefixed).
"""

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openk2.llm.engine import InProcessEngine

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ServerMetrics:
    def __init__(self, engine: InProcessEngine) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "openk2:requests", "Finished requests", ["route", "status"], registry=registry
        )
        self.prompt_tokens = Counter(
            "openk2:prompt_tokens", "Prompt tokens of finished requests", registry=registry
        )
        self.generation_tokens = Counter("openk2:generation_tokens", "Generated tokens", registry=registry)
        self.time_to_first_token = Histogram(
            "openk2:time_to_first_token_seconds", "From arrival to the first token", buckets=_LATENCY_BUCKETS,
            registry=registry,
        )  # fmt: skip
        self.inter_token_latency = Histogram(
            "openk2:inter_token_latency_seconds", "Between consecutive tokens of a reply", buckets=_LATENCY_BUCKETS,
            registry=registry,
        )  # fmt: skip
        self.request_latency = Histogram(
            "openk2:e2e_request_latency_seconds", "From arrival to the last token", buckets=_LATENCY_BUCKETS,
            registry=registry,
        )  # fmt: skip
        scheduler = engine.scheduler
        Gauge("openk2:num_requests_waiting", "Queued requests", registry=registry).set_function(
            lambda: scheduler.waiting
        )
        Gauge("openk2:num_requests_running", "Requests in the running batch", registry=registry).set_function(
            lambda: scheduler.running
        )
        stats = scheduler.stats
        Gauge("openk2:decoding_steps", "Decoding steps run since start", registry=registry).set_function(
            lambda: stats.steps
        )
        Gauge(
            "openk2:admitted_prompt_tokens", "Prompt tokens of admitted requests", registry=registry
        ).set_function(lambda: stats.prompt_tokens)
        Gauge(
            "openk2:prefilled_tokens",
            "Prompt tokens computed, not found in the prefix cache",
            registry=registry,
        ).set_function(lambda: stats.prefilled_tokens)
        cache = engine.prefix_cache
        Gauge(
            "openk2:prefix_cache_hit_rate", "Prompt tokens found in the prefix cache", registry=registry
        ).set_function(lambda: cache.stats.hit_rate if cache is not None else 0.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestClock:
    """Times one request's tokens into the histograms."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics
        self._started = time.perf_counter()
        self._last: float | None = None

    def tokens(self, count: int) -> None:
        if count <= 0:
            return
        now = time.perf_counter()
        if self._last is None:
            self._metrics.time_to_first_token.observe(now - self._started)
        else:
            self._metrics.inter_token_latency.observe((now - self._last) / count)
        self._last = now

    def done(self, prompt_tokens: int, generated_tokens: int) -> None:
        self._metrics.request_latency.observe(time.perf_counter() - self._started)
        self._metrics.prompt_tokens.inc(prompt_tokens)
        self._metrics.generation_tokens.inc(generated_tokens)


ROUTES = {
    "/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/version", "/metrics",
    "/tokenize", "/detokenize", "/update_weights_from_disk",
}  # fmt: skip


def route_label(path: str) -> str:
    """The route a path belongs to: labels must not grow with what clients send."""
    if path in ROUTES:
        return path
    return "/v1/models/{id}" if path.startswith("/v1/models/") else "other"


class CountRequests:
    """ASGI middleware counting responses by route and status (outermost, so refusals count too)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(route_label(scope["path"]), str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counted)
