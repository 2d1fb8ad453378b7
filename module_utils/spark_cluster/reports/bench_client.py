"""The serving benchmark's HTTP client (httpx): the refusal checks (server up, model,
spec-decode counters) and one streamed run with ``/metrics`` snapshots around it.

Everything it measures is computed by the pure part, ``bench_data``; the clock is
injectable, httpx is imported when a client is made. Plain Python 3.11+.
"""

from __future__ import annotations

import time

from .bench_data import (
    COUNTERS, PROMPTS, SPEC_KEYS, BenchRefusal, BenchRunError, metric_deltas, parse_metrics,
    parse_sse_line, request_body, spec_rates, summarize_stream)

class BenchClient:
    """Talks to the OpenAI-compatible API. ``clock`` returns seconds (monotonic)."""

    def __init__(self, api_url, model, api_key=None, timeout=600.0, connect_timeout=10.0,
                 clock=time.perf_counter, transport=None):
        import httpx

        self.httpx = httpx
        self.api_url = api_url.rstrip("/")
        self.model = model
        self.clock = clock
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
            ids = [m.get("id") for m in models.json().get("data") or []]
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
        return {"api_url": self.api_url, "model": self.model, "models": ids,
                "health": health.status_code, "metrics": snap}

    def stream(self, body):
        """POST the streamed request; returns (t_sent, [(t, chunk)]) on this client's clock."""
        events = []
        t_sent = self.clock()
        try:
            with self.client.stream("POST", "/v1/chat/completions", json=body) as resp:
                if resp.status_code != 200:
                    resp.read()
                    raise BenchRunError("POST /v1/chat/completions returned HTTP %d: %s"
                                        % (resp.status_code, resp.text[:300]))
                for line in resp.iter_lines():
                    chunk = parse_sse_line(line)
                    if chunk is None:
                        continue
                    stamp = self.clock()
                    if chunk == "[DONE]":
                        break
                    events.append((stamp, chunk))
        except self.httpx.HTTPError as exc:
            raise BenchRunError("streaming request failed: %s" % exc) from exc
        return t_sent, events

    def run_once(self, prompt, thinking, effort, max_tokens, temperature=None, repetition=1,
                 include_usage=True):
        """One measured run: /metrics, stream, /metrics. Errors end up in ``error``."""
        run = {"prompt": prompt, "thinking": "on" if thinking else "off",
               "repetition": repetition, "reasoning_effort": effort or None, "error": None}
        body = request_body(self.model, PROMPTS.get(prompt, prompt), thinking, effort,
                            max_tokens, temperature, include_usage)
        try:
            before = self.metrics()
            t_sent, events = self.stream(body)
            after = self.metrics()
        except (BenchRunError, BenchRefusal) as exc:
            run["error"] = str(exc)
            return run
        run.update(summarize_stream(events, t_sent, thinking=bool(thinking)))
        delta = metric_deltas(before, after)
        run["metrics_delta"] = delta
        run.update(spec_rates(delta))
        if run["output_tokens"] == 0:
            run["error"] = "the stream carried no output tokens"
        return run

    def run(self, prompt, thinking, effort, repetitions, max_tokens, temperature=None,
            include_usage=True):
        return [self.run_once(prompt, thinking, effort, max_tokens, temperature, rep,
                              include_usage)
                for rep in range(1, int(repetitions) + 1)]
