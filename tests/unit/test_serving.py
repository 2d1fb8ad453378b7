"""module_utils/spark_cluster/runtime/serving.py (phase parsing, build progress, smoke checks) and the
lab stand-in's API, against log lines of the field notes."""

import importlib.util
import pathlib
import threading

import pytest
import yaml

from spark_cluster.runtime import serving as s

ROOT = pathlib.Path(__file__).resolve().parents[2]

# vLLM start-up, in the order of the field notes (docker compose prefixes)
VLLM_LOG = [
    "spark-runtime  | INFO 11-28 10:00:01 [multiproc_executor.py:99] mq_connect_ip=192.168.100.10",
    "spark-runtime  | INFO 11-28 10:00:01 [parallel_state.py:1] distributed_init_method=tcp://192.168.100.10:25000",
    "spark-runtime  | Loading safetensors checkpoint shards:   2% Completed | 1/48 [00:03<02:21,  3.01s/it]",
    "spark-runtime  | Loading safetensors checkpoint shards:  25% Completed | 12/48 [00:40<02:00,  3.3s/it]",
    "spark-runtime  | Loading safetensors checkpoint shards: 100% Completed | 48/48 [02:42<00:00,  3.4s/it]",
    "spark-runtime  | INFO 11-28 10:03:00 [gpu_model_runner.py:1] Model loading took 78.12 GiB and 162.3 seconds",
    "spark-runtime  | INFO 11-28 10:03:30 [backends.py:1] torch.compile takes 24.10 s in total",
    "spark-runtime  | INFO 11-28 10:05:00 [flashinfer] FlashInfer autotune: running autotuning 3/17",
    "spark-runtime  | INFO 11-28 10:10:00 DeepGEMM warmup: 120/400",
    "spark-runtime  | INFO 11-28 10:18:00 [kv_cache_utils.py:1] GPU KV cache size: 1,048,576 tokens",
    "spark-runtime  | Capturing CUDA graphs (mixed prefill-decode, PIECEWISE): 40%| 27/67 [00:10<00:15]",
    "spark-runtime  | INFO 11-28 10:19:00 [core.py:1] init engine (profile, create kv cache, warmup model) took 960.12 seconds",
    "spark-runtime  | INFO:     Application startup complete.",
]


@pytest.mark.parametrize("upto, phase, detail", [
    (0, "starting", "starting"),
    (1, "rendezvous", "rendezvous (waiting for all ranks)"),
    (2, "rendezvous", "rendezvous (waiting for all ranks)"),
    (3, "loading", "loading checkpoint shards 1/48"),
    (4, "loading", "loading checkpoint shards 12/48"),
    (5, "loading", "loading checkpoint shards 48/48"),
    (6, "loaded", "weights loaded"),
    (7, "compile", "torch.compile"),
    (8, "autotune", "autotune / JIT warmup 3/17"),
    (9, "autotune", "autotune / JIT warmup 120/400"),
    (10, "kv_cache", "KV cache allocated"),
    (11, "cuda_graphs", "capturing CUDA graphs 27/67"),
    (12, "engine_init", "engine initialised"),
    (13, "ready", "API ready"),
])
def test_phase_follows_the_vllm_log(upto, phase, detail):
    got = s.parse_phase(VLLM_LOG[:upto])
    assert got["phase"] == phase
    assert got["detail"] == detail
    assert not got["error"]


def test_phase_reports_the_last_error_after_it():
    lines = VLLM_LOG[:2] + ["RuntimeError: ifa != nullptr. Unable to find address for: enP7s7"]
    got = s.parse_phase(lines)
    assert got["phase"] == "rendezvous"
    assert "Unable to find address for: enP7s7" in got["error"]


def test_phase_never_goes_back():
    got = s.parse_phase(VLLM_LOG[:6] + ["INFO mq_connect_ip=192.168.100.10 (echo)"])
    assert got["phase"] == "loaded"


def test_worker_waiting_line():
    lines = ["INFO [standin] headless worker rank 1: mq_connect_ip=198.18.100.11",
             "INFO [standin] waiting for master at 198.18.100.10:29501 (attempt 1: Connection refused)"]
    assert "waiting for master" in s.worker_waiting(lines)
    assert s.worker_waiting(["nothing here"]) == ""
    assert "connected to master" in s.worker_waiting(lines + ["connected to master 198.18.100.10:29501"])


@pytest.mark.parametrize("lines, step, last", [
    (["Sending build context to Docker daemon  101.4kB", "Step 2/6 : COPY server.py /usr/local/bin/vllm",
      " ---> 40fbcb3d150b"], "Step 2/6 : COPY server.py /usr/local/bin/vllm", "---> 40fbcb3d150b"),
    (["#5 [2/7] RUN pip install vllm", "#5 12.3 Collecting torch"], "#5 [2/7] RUN pip install vllm",
     "#5 12.3 Collecting torch"),
    ([], "", ""),
])
def test_build_progress(lines, step, last):
    got = s.build_progress(lines)
    assert got == {"step": step, "last_line": last}


def test_chat_request_refuses_invalid_reasoning_effort():
    assert s.chat_request("m", False, "none", "q")["reasoning_effort"] == "none"
    assert s.chat_request("m", True, "max", "q")["chat_template_kwargs"] == {"thinking": True}
    with pytest.raises(ValueError, match="non-think"):
        s.chat_request("m", False, "non-think", "q")


def test_check_models():
    payload = {"data": [{"id": "deepseek-ai/DeepSeek-V4-Flash-DSpark"}]}
    assert s.check_models(200, payload, "deepseek-ai/DeepSeek-V4-Flash-DSpark") == []
    assert "not other" in s.check_models(200, payload, "other")[0]
    assert "HTTP 0" in s.check_models(0, "connection refused", "m")[0]


def chat(content, reasoning):
    return {"choices": [{"message": {"role": "assistant", "content": content, "reasoning": reasoning}}]}


def test_check_chat_ok_and_null_content_bug():
    ok = s.check_chat(200, chat("42", "6*7"), True)
    assert ok["ok"] and not ok["warnings"] and not ok["null_content"]
    bug = s.check_chat(200, chat(None, "42"), False)
    assert bug["ok"] and bug["null_content"]
    assert "reasoning field" in bug["warnings"][0]
    empty = s.check_chat(200, chat(None, None), False)
    assert not empty["ok"] and "no content" in empty["problems"][0]
    bad = s.check_chat(400, {"message": "Invalid reasoning_effort"}, False)
    assert not bad["ok"] and "HTTP 400" in bad["problems"][0]
    legacy = s.check_chat(200, {"choices": [{"message": {"content": None, "reasoning_content": "42"}}]}, False)
    assert legacy["null_content"]


def test_smoke_summary():
    checks = [s.check_chat(200, chat("42", "x"), True), s.check_chat(200, chat(None, "42"), False)]
    ok, message, problems, warnings = s.smoke_summary([], checks)
    assert ok and not problems and len(warnings) == 1
    assert "thinking off: ok (content null, answer in reasoning)" in message


# --------------------------------------------------------------------------- the stand-in

def load_standin():
    spec = importlib.util.spec_from_file_location("standin_server", ROOT / "tests/lab/standin/server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=[False, True], ids=["normal", "null-content-bug"])
def standin_api(request):
    server_mod = load_standin()
    api = server_mod.Api("deepseek-ai/DeepSeek-V4-Flash-DSpark", null_content_bug=request.param,
                         token_delay=0)
    httpd = server_mod.make_http_server("127.0.0.1", 0, api)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", request.param
    httpd.shutdown()
    httpd.server_close()


def test_smoke_checks_against_the_standin(standin_api):
    base, bug = standin_api
    model = "deepseek-ai/DeepSeek-V4-Flash-DSpark"
    assert s.http_json(f"{base}/health")[0] == 200
    status, payload = s.http_json(f"{base}/v1/models")
    assert s.check_models(status, payload, model) == []
    on = s.check_chat(*s.http_json(f"{base}/v1/chat/completions", s.chat_request(model, True, "high", "q")), True)
    off = s.check_chat(*s.http_json(f"{base}/v1/chat/completions", s.chat_request(model, False, "none", "q")), False)
    assert on["ok"] and off["ok"]
    assert on["reasoning"] and on["content"]
    assert off["null_content"] is bug
    status, payload = s.http_json(f"{base}/v1/chat/completions",
                                  {"model": model, "messages": [{"role": "user", "content": "q"}],
                                   "reasoning_effort": "non-think"})
    assert status == 400 and "reasoning_effort" in payload["message"]


def test_standin_counters_advance_by_known_amounts():
    server_mod = load_standin()
    assert server_mod.spec_counts(10, thinking=False) == {
        "drafts": 4, "draft_tokens": 20, "accepted": 8, "per_pos": [4, 4, 0, 0, 0], "generation": 10}
    assert server_mod.spec_counts(10, thinking=True)["accepted"] == 5


def test_serving_doc_documents_every_launch_setting():
    """Every profile's runtime settings and every launch variable appear in docs/serving.md's table
    (rendered from the profiles: tests/unit/test_profiles.py checks it is current), and the
    runtime settings go to compose's environment (which wins over the env file): none
    pinned or secret."""
    from spark_cluster.runtime import profiles as sp
    from spark_cluster.runtime.runtime_env import check_settings

    defaults = yaml.safe_load((ROOT / "roles/serving/defaults/main.yml").read_text())
    table = sp.block((ROOT / "docs" / "serving.md").read_text())
    for name in sp.names():
        settings = sp.load(name)["settings"]["runtime_settings"]
        for key in settings:
            assert f"`{key}`" in table, (name, key)
        assert check_settings(settings).keys() == settings.keys()
    for var in ("serving_binary", "serving_max_num_seqs", "serving_kv_cache_dtype", "serving_block_size",
                "serving_max_num_batched_tokens", "serving_enable_prefix_caching",
                "serving_enable_flashinfer_autotune", "serving_reasoning_config",
                "serving_default_thinking", "serving_gpu_memory_utilization",
                "serving_long_prefill_token_threshold", "serving_async_scheduling"):
        assert f"`{var}`" in table, var
        assert "spark_profile_settings" in str(defaults[var]), var
    assert sp.load("seed")["settings"]["runtime_settings"]["VLLM_DSPARK_CONFIDENCE_SCHEDULER"] == "off"
