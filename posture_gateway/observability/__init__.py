"""What operators watch: Prometheus metrics, structured logs, request ids and the access log.

- :mod:`.settings`: the ``metrics:`` configuration block.
- :mod:`.metrics`: ``GET /metrics`` (bearer token) or a separate listener; multi-process mode.
- :mod:`.logs`: text (default) or JSON lines on stderr, with the request id on every line.
- :mod:`.requests`: request ids (``X-Request-ID``) and the one-line-per-request access log.
"""
