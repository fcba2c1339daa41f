"""The server's Prometheus metrics, in a registry of their own (nothing process-global is touched,
so several servers or tests in one process do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

WINDOW_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.35, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30)


class ServeMetrics:
    def __init__(self):
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter("kdtool_serve_requests", "HTTP requests by route and status.", ["route", "status"],
                                registry=r)
        self.latency = Histogram("kdtool_serve_request_seconds", "Time from arrival to response of /v1/answer and /v2 infer.",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.questions = Counter("kdtool_serve_questions", "Questions answered.", registry=r)
        self.batch_windows = Histogram("kdtool_serve_batch_windows", "Windows per forward pass (batch size).",
                                       buckets=WINDOW_BUCKETS, registry=r)
        self.batch_seconds = Histogram("kdtool_serve_batch_seconds", "Forward-pass time per batch.",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.request_windows = Histogram("kdtool_serve_request_windows", "Windows per /v1/answer request.",
                                         buckets=WINDOW_BUCKETS, registry=r)
        self.instance_questions = Counter("kdtool_serve_instance_questions", "Questions answered by each engine instance.",
                                          ["instance"], registry=r)
        self.connections_closed = Counter(
            "kdtool_serve_connections_closed", "Connections the server closed to protect itself, by reason "
            "(header_timeout, header_too_large, evicted, refused).", ["reason"], registry=r)
        self.queue = Gauge("kdtool_serve_queue_questions", "Questions admitted and not yet running.", registry=r)
        self.model = Info("kdtool_serve_model", "The model being served.", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
