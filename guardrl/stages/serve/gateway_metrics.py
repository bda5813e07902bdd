"""The gateway's Prometheus metrics (``GET /metrics``), in a registry of its own.

======================================  =====================================================================
``guardrl_gateway_requests_total``      chat completion requests answered, by HTTP ``status``
``guardrl_gateway_blocked_total``       completions blocked, by ``side`` (``request`` | ``response``)
``guardrl_gateway_rewritten_total``     requests rewritten before forwarding
``guardrl_gateway_guard_errors_total``  sides the guard could not judge, by ``side`` (``request`` |
                                        ``response`` | ``rewrite``): error, timeout or unparsable verdict
``guardrl_gateway_upstream_errors_total``  upstream failures, by ``code`` (``upstream_unavailable`` |
                                        ``upstream_timeout`` | ``upstream_error``)
``guardrl_gateway_stage_seconds``       latency histogram by ``stage`` (``judge_request``, ``rewrite``,
                                        ``upstream``, ``judge_response``, ``total``)
======================================  =====================================================================
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


class GatewayMetrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("guardrl_gateway_requests", "Chat completion requests answered", ["status"],
                                registry=r)
        self.blocked = Counter("guardrl_gateway_blocked", "Completions blocked", ["side"], registry=r)
        self.rewritten = Counter("guardrl_gateway_rewritten", "Requests rewritten before forwarding", registry=r)
        self.guard_errors = Counter("guardrl_gateway_guard_errors", "Sides the guard could not judge", ["side"],
                                    registry=r)
        self.upstream_errors = Counter("guardrl_gateway_upstream_errors", "Upstream failures", ["code"], registry=r)
        self.latency = Histogram("guardrl_gateway_stage_seconds", "Latency per stage", ["stage"], registry=r,
                                 buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.latency.labels(name).observe(time.perf_counter() - t0)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
