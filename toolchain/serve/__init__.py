"""``kdtool serve``: a bundle (or model directory) answering questions over HTTP.

- :mod:`.config`: :class:`ServeConfig`, everything the command takes.
- :mod:`.batcher`: dynamic micro-batching of the windows of concurrent requests on one worker thread,
  with a bounded admission count (a full queue is refused, never grown).
- :mod:`.metrics`: the Prometheus metrics the server exports.
- :mod:`.app`: the FastAPI application (routes, limits, authentication, access log).
- :mod:`.server`: open and warm the engine, then run the app on uvicorn until SIGTERM / Ctrl-C.
"""

from kdtool.serve.config import ServeConfig

__all__ = ["ServeConfig"]
