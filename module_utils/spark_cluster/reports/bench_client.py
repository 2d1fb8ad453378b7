"""The serving benchmark's HTTP client (httpx): the refusal checks before any load
(server up, model served, spec-decode counters present) and ``/metrics`` snapshots.
The load itself is llama-benchy's (``bench_tool``); what a snapshot means is
``bench_data``'s. httpx is imported when a client is made. Plain Python 3.11+.
"""

from __future__ import annotations

from .bench_data import COUNTERS, SPEC_KEYS, BenchRefusal, parse_metrics


class BenchClient:
    """Talks to the OpenAI-compatible API."""

    def __init__(self, api_url, model, api_key=None, timeout=600.0, connect_timeout=10.0,
                 transport=None):
        import httpx

        self.httpx = httpx
        self.api_url = api_url.rstrip("/")
        self.model = model
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = "Bearer %s" % api_key
        kwargs = {"base_url": self.api_url, "headers": headers,
                  "timeout": httpx.Timeout(timeout, connect=connect_timeout)}
        if transport is not None:
            kwargs["transport"] = transport
        self.client = httpx.Client(**kwargs)

    def close(self):
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _loopback_hint(self):
        host = self.httpx.URL(self.api_url).host
        if host in ("localhost", "::1") or host.startswith("127."):
            return (" Note: %s is the loopback of the machine running the benchmark "
                    "(bench_run_from), not the head's; the API bound on the head's "
                    "127.0.0.1 is reachable only there or through a tunnel "
                    "(ssh -L 8888:127.0.0.1:8888 <head>)." % host)
        return ""

    def _get(self, path):
        try:
            return self.client.get(path)
        except self.httpx.ConnectError as exc:
            raise BenchRefusal(
                "server_down",
                "the serving API at %s is not up (GET %s: %s). Nothing will be measured. "
                "Start or check the serving stack on the head (ansible-playbook site.yml; "
                "systemctl status spark-runtime; journalctl -u spark-runtime shows the "
                "start-up phase) and rerun once the log says 'Application startup "
                "complete.' (a first start takes ~20 min), or set bench_api_url.%s"
                % (self.api_url, path, exc, self._loopback_hint())) from exc
        except self.httpx.TimeoutException as exc:
            raise BenchRefusal(
                "server_down",
                "the serving API at %s did not answer GET %s in time (%s): check the "
                "address/port (bench_api_url) and that the head is reachable from where "
                "the benchmark runs." % (self.api_url, path, exc)) from exc
        except self.httpx.HTTPError as exc:
            raise BenchRefusal("server_down", "GET %s%s failed: %s"
                               % (self.api_url, path, exc)) from exc

    def metrics(self):
        resp = self._get("/metrics")
        if resp.status_code != 200:
            raise BenchRefusal("no_metrics", "GET %s/metrics returned HTTP %d: the benchmark "
                               "needs vLLM's Prometheus endpoint" % (self.api_url,
                                                                     resp.status_code))
        return parse_metrics(resp.text)

    def preflight(self):
        """The refusal checks, in order; returns what was found. Raises BenchRefusal."""
        health = self._get("/health")
        if health.status_code != 200:
            raise BenchRefusal(
                "not_healthy",
                "GET %s/health returned HTTP %d (200 expected): the engine is not ready or "
                "has died. Nothing will be measured. Check journalctl -u spark-runtime on "
                "the head; rerun when /health answers 200." % (self.api_url,
                                                               health.status_code))
        models = self._get("/v1/models")
        if models.status_code in (401, 403):
            raise BenchRefusal(
                "unauthorized",
                "GET %s/v1/models returned HTTP %d: the API wants a key. Set SPARK_API_KEY "
                "in the environment or the vault variable serving_api_key."
                % (self.api_url, models.status_code))
        if models.status_code != 200:
            raise BenchRefusal("no_models", "GET %s/v1/models returned HTTP %d"
                               % (self.api_url, models.status_code))
        try:
            listed = [m for m in models.json().get("data") or [] if isinstance(m, dict)]
            ids = [m.get("id") for m in listed]
        except (ValueError, AttributeError) as exc:
            raise BenchRefusal("no_models", "GET %s/v1/models did not return a model list: %s"
                               % (self.api_url, exc)) from exc
        if self.model not in ids:
            raise BenchRefusal(
                "wrong_model",
                "the server at %s serves %s, not %r (bench_model). Nothing will be "
                "measured: point bench_api_url at the right server or set bench_model to "
                "the served name." % (self.api_url, ", ".join(map(str, ids)) or "no model",
                                      self.model))
        snap = self.metrics()
        if not snap["spec_decode"]:
            missing = [n + "_total" for n, k in COUNTERS.items()
                       if k in SPEC_KEYS and snap.get(k) is None]
            raise BenchRefusal(
                "no_spec_decode",
                "speculative decoding is off on %s: /metrics has no %s. The benchmark "
                "measures draft acceptance and refuses rather than report zeros: start "
                "vLLM with --speculative-config '{\"method\":\"dspark\","
                "\"num_speculative_tokens\":5}'." % (self.api_url, ", ".join(missing)))
        max_len = next((m.get("max_model_len") for m in listed if m.get("id") == self.model),
                       None)
        return {"api_url": self.api_url, "model": self.model, "models": ids,
                "max_model_len": max_len, "health": health.status_code, "metrics": snap}
