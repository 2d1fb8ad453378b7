"""The serving benchmark's load generator: llama-benchy (PyPI), run on the controller.

llama-benchy measures what the recipe and the launchers (sparkrun, spark-vllm-docker)
publish: per-request decode tok/s after the first token, the batch's total tok/s and
TTFT, over prompt lengths (``--pp``) x concurrency (``--concurrency``). This module
builds its command line, the small launcher it runs through, its offline inputs (a
local tokenizer and text corpus), and reads its JSON output; and pairs every cell with
the ``/metrics`` deltas only this project measures (speculative-decoding acceptance).

* **API key**: llama-benchy takes it only as ``--api-key`` (argv, visible in ``ps``).
  The launcher (``LAUNCHER``, written next to the run) reads it from its stdin and puts
  it into llama-benchy's in-process ``sys.argv``: ``/proc/<pid>/cmdline`` never holds it.
* **Offline**: ``--tokenizer`` takes a local ``tokenizer.json`` (llama-benchy loads it with
  the ``tokenizers`` library, no hub access); the corpus is read from llama-benchy's cache
  (``~/.cache/llama-benchy/<md5 of the book URL>.txt``) before any download, so a local
  text file seeded there under its own URL is never fetched.
* **/metrics per cell**: llama-benchy runs ``--post-run-cmd`` after every batch, its
  per-cell warm-up batch included, in a fixed order (concurrency levels in order,
  warm-up then ``runs`` batches each). The launcher's ``snapshot`` mode appends the
  spec-decode counters to a JSON-lines file there; a cell's window is from the snapshot
  after its warm-up to the one after its last batch, so only measured requests count.

Plain Python 3.11+; ``tokenizers`` (llama-benchy's dependency) only for the word-level
tokenizer, prometheus_client (through ``bench_data``) only to parse snapshots.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import statistics

from .bench_data import metric_deltas, parse_metrics, spec_rates
from .diagnosis import scrub

TOOL = "llama-benchy"
TOOL_VERSION = "0.4.0"
# The tool's default book (its --book-url default), named for the report.
TOOL_DEFAULT_BOOK = "https://www.gutenberg.org/files/1661/1661-0.txt"
GENERATED_CORPUS = "spark-cluster:generated-corpus/v1"
WORD_LEVEL = "word-level"
# What a snapshot keeps of /metrics (the counters the acceptance needs, and tokens)
SNAPSHOT_PREFIXES = ("vllm:spec_decode_", "vllm:generation_tokens", "vllm:prompt_tokens")

LAUNCHER = r'''"""spark-cluster bench launcher (written by module_utils/spark_cluster/reports/bench_tool.py).

run ARGS...              llama-benchy ARGS, the API key read from stdin (never in argv)
snapshot URL FILE        append the spec-decode counters of URL (/metrics) to FILE
"""
import json
import sys
import time
import urllib.request

KEEP = %(keep)r


def snapshot(url, path):
    record = {"t": time.time()}
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            text = response.read().decode("utf-8", "replace")
        keep = [line for line in text.splitlines()
                if line.startswith(KEEP) or (line.startswith("# TYPE ")
                                             and line[7:].startswith(KEEP))]
        record["text"] = "\n".join(keep) + "\n"
    except Exception as exc:  # recorded, the cell says why it is not measured
        record["error"] = "%%s: %%s" %% (type(exc).__name__, exc)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def run(args):
    key = sys.stdin.readline().strip()
    sys.argv = ["llama-benchy"] + args + (["--api-key", key] if key else [])
    from llama_benchy.__main__ import main
    main()


if __name__ == "__main__":
    if sys.argv[1:2] == ["snapshot"] and len(sys.argv) == 4:
        snapshot(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["run"]:
        run(sys.argv[2:])
    else:
        sys.exit(__doc__)
''' % {"keep": SNAPSHOT_PREFIXES}


# ---------------------------------------------------------------------- command line

def extra_body(thinking):
    """llama-benchy's --extra-body value switching thinking (the chat template kwarg the
    current image reads). Its parser splits entries on commas: one key, no comma."""
    return "chat_template_kwargs=" + json.dumps({"thinking": bool(thinking)}, separators=(",", ":"))


def snapshot_argv(python, launcher, api_url, path):
    return [python, launcher, "snapshot", api_url.rstrip("/") + "/metrics", path]


def tool_argv(python, launcher, *, api_url, model, tokenizer, prompt_tokens, output_tokens,
              concurrency, runs, thinking, result_path, snapshots_path, book_url=None,
              exact_output=True, unique_prompts=True, latency_mode="api"):
    """The launcher's argv for one llama-benchy run: one prompt length, every
    concurrency level, one thinking mode. The key is never in it (stdin)."""
    argv = [python, launcher, "run",
            "--base-url", api_url.rstrip("/") + "/v1",
            "--model", model, "--served-model-name", model,
            "--tokenizer", tokenizer,
            "--pp", str(int(prompt_tokens)), "--tg", str(int(output_tokens)), "--depth", "0",
            "--concurrency", *[str(int(c)) for c in concurrency],
            "--runs", str(int(runs)),
            "--latency-mode", latency_mode,
            # its coherence probe sends no chat_template_kwargs: with the profile's default
            # thinking it spends its 100 tokens thinking; serving's smoke test checks answers
            "--skip-coherence",
            "--extra-body", extra_body(thinking),
            "--format", "json", "--save-result", result_path,
            "--post-run-cmd", shlex.join(snapshot_argv(python, launcher, api_url,
                                                       snapshots_path))]
    if exact_output:
        argv.append("--exact-tg")
    if unique_prompts:
        argv.append("--no-cache")
    if book_url:
        argv += ["--book-url", book_url]
    return argv


def shown_argv(argv):
    """The argv as the report shows it (the launcher's run arguments, scrubbed)."""
    args = list(argv[3:]) if len(argv) > 3 and argv[2] == "run" else list(argv)
    return scrub(shlex.join([TOOL] + args))


# ---------------------------------------------------------------------- offline inputs

WORDS = (
    "the of and to in is was that for on with as by at from it this be are were which "
    "river light stone window garden morning evening letter market harbour bridge road "
    "winter summer station clock table paper quiet sudden careful distant narrow bright "
    "walked opened closed found turned watched carried wrote asked answered remembered "
    "doctor friend stranger captain engineer teacher farmer sailor painter merchant "
    "north south east west hill valley forest field village city tower lamp door key"
).split()


def generated_corpus(n_words=60000):
    """A deterministic text of common words (a linear congruential sequence), for a
    server that counts words (the lab's stand-in) or any run without a book."""
    state, out, sentence = 12345, [], 0
    for i in range(n_words):
        state = (1103515245 * state + 12345) % (1 << 31)
        word = WORDS[(state >> 8) % len(WORDS)]
        if sentence == 0:
            word = word.capitalize()
        sentence += 1
        if sentence >= 8 + (state >> 20) % 9 or i == n_words - 1:
            word += "."
            sentence = 0
        out.append(word)
    return " ".join(out) + "\n"


def word_level_tokenizer(text):
    """tokenizer.json (a dict) of a whitespace word-level tokenizer over ``text``'s
    words: one token per word, decoded with single spaces."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0}
    for word in text.split():
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return json.loads(tokenizer.to_str())


def corpus_url(path, text):
    """The book URL a local corpus is known by: its path and content hash (a changed
    file is a new URL, so llama-benchy never reads a stale cache entry)."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return "file://%s#sha256=%s" % (os.path.abspath(path), digest)


def tool_cache_file(book_url, home=None):
    """Where llama-benchy caches the text of ``book_url`` (read before any download)."""
    home = home or os.path.expanduser("~")
    return os.path.join(home, ".cache", "llama-benchy",
                        hashlib.md5(book_url.encode()).hexdigest() + ".txt")


def corpus_plan(corpus, read=None):
    """(book_url, text to seed or None, description) for ``corpus``: '' (the tool's
    default book, downloaded once and cached by the tool), ``generated``, or a path."""
    if not corpus:
        return None, None, "llama-benchy's default book (%s), cached by the tool" % TOOL_DEFAULT_BOOK
    if corpus == "generated":
        return GENERATED_CORPUS, generated_corpus(), "generated word corpus (%s)" % GENERATED_CORPUS
    read = read or (lambda p: open(p, encoding="utf-8").read())
    text = read(corpus)
    return corpus_url(corpus, text), text, "local corpus %s" % corpus


# ---------------------------------------------------------------------- its output

def _median(values):
    values = [v for v in values or [] if v is not None]
    return statistics.median(values) if values else None


def _metric(bench, key):
    value = bench.get(key) or {}
    return value if isinstance(value, dict) else {}


def parse_tool_result(data):
    """llama-benchy's ``--format json`` -> (meta, cells). A cell per prompt length x
    concurrency: per-stream decode tok/s (median and mean of the per-request values),
    the batch total (aggregate tok/s), TTFT (median and max, s), prefill tok/s."""
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ValueError("not llama-benchy JSON output (no 'benchmarks' list)")
    meta = {k: data.get(k) for k in ("version", "timestamp", "latency_mode", "latency_ms",
                                     "model", "max_concurrency")}
    cells = []
    for bench in data["benchmarks"]:
        if bench.get("is_context_prefill_phase"):
            continue
        per_req = list(_metric(bench, "tg_req_throughput").get("values") or [])
        ttft_ms = list(_metric(bench, "e2e_ttft").get("values") or [])
        ttft = [v / 1000.0 for v in ttft_ms]
        cells.append({
            "prompt_tokens": int(bench["prompt_size"]),
            "output_tokens": int(bench["response_size"]),
            "concurrency": int(bench["concurrency"]),
            "depth": int(bench.get("context_size") or 0),
            "requests": len(ttft),
            "per_stream_tok_s": _median(per_req),
            "per_stream_tok_s_mean": _metric(bench, "tg_req_throughput").get("mean"),
            "per_stream_tok_s_min": min(per_req) if per_req else None,
            "per_stream_tok_s_max": max(per_req) if per_req else None,
            "aggregate_tok_s": _metric(bench, "tg_throughput").get("mean"),
            "prefill_tok_s": _metric(bench, "pp_throughput").get("mean"),
            "ttft_s": _median(ttft),
            "ttft_s_max": max(ttft) if ttft else None,
        })
    return meta, cells


def parse_snapshots(text):
    """The launcher's snapshot file (JSON lines) -> [{t, text} or {t, error}]."""
    out = []
    for line in (text or "").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"error": "unreadable snapshot line"})
    return out


def cell_windows(concurrency, runs):
    """{concurrency: (snapshot index after its warm-up, index after its last batch)}."""
    per = int(runs) + 1
    return {int(c): (i * per, i * per + int(runs)) for i, c in enumerate(concurrency)}


NOT_MEASURED = "not measured"


def acceptance(snapshots, concurrency, runs):
    """{concurrency: acceptance of the cell} from the /metrics snapshots.

    Every rate is a ratio of counter deltas over the cell's measured batches; where the
    window is missing (the tool stopped early, a snapshot failed) or the drafts did not
    move, the cell says ``not measured`` and why: a rate is never a 0 % made up."""
    expected = len(concurrency) * (int(runs) + 1)
    out = {}
    for conc, (first, last) in cell_windows(concurrency, runs).items():
        cell = {"acceptance": NOT_MEASURED, "acceptance_rate": None,
                "mean_accepted_per_draft": None, "per_position": {}, "metrics_delta": None}
        if last >= len(snapshots):
            cell["why"] = ("%d of %d /metrics snapshots taken: the tool stopped before this "
                           "cell's last batch" % (len(snapshots), expected))
        elif snapshots[first].get("error") or snapshots[last].get("error"):
            cell["why"] = "/metrics could not be read: %s" % (
                snapshots[first].get("error") or snapshots[last].get("error"))
        else:
            before = parse_metrics(snapshots[first]["text"])
            after = parse_metrics(snapshots[last]["text"])
            delta = metric_deltas(before, after)
            cell["metrics_delta"] = delta
            rates = spec_rates(delta)
            if not before["spec_decode"] or not after["spec_decode"]:
                cell["why"] = "/metrics has no vllm:spec_decode_* counters"
            elif not delta.get("drafts"):
                cell["why"] = ("the spec-decode counters did not move (0 drafts counted over "
                               "the cell's batches)")
            else:
                cell.update(rates, acceptance="measured")
        out[conc] = cell
    return out


# ---------------------------------------------------------------------- one run

def prepare(work_dir, tokenizer, corpus, home=None):
    """Write the launcher, the word-level tokenizer and seed the corpus in the tool's
    cache. Returns {launcher, tokenizer, book_url, corpus, tokenizer_note}."""
    os.makedirs(work_dir, exist_ok=True)
    launcher = os.path.join(work_dir, "spark_bench_launcher.py")
    with open(launcher, "w", encoding="utf-8") as handle:
        handle.write(LAUNCHER)
    book_url, text, corpus_note = corpus_plan(corpus)
    if text is not None:
        cache = tool_cache_file(book_url, home)
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        if not os.path.exists(cache):
            with open(cache, "w", encoding="utf-8") as handle:
                handle.write(text)
    tokenizer_path, note = tokenizer, "%s (the model's tokenizer)" % tokenizer
    if tokenizer == WORD_LEVEL:
        tokenizer_path = os.path.join(work_dir, "word-level-tokenizer.json")
        with open(tokenizer_path, "w", encoding="utf-8") as handle:
            json.dump(word_level_tokenizer(text if text is not None else generated_corpus()),
                      handle)
        note = ("word-level (one token per whitespace word): prompt lengths are the "
                "server's only where it counts words, as the lab's stand-in does")
    return {"launcher": launcher, "tokenizer": tokenizer_path, "book_url": book_url,
            "corpus": corpus_note, "tokenizer_note": note}


def run_tool(argv, api_key=None, timeout=None, run=None, home=None):
    """Run the launcher; the key goes to its stdin. (rc, output tail, timed_out).
    ``home``: the HOME the tool caches under (default: this process's)."""
    import subprocess

    run = run or subprocess.run
    env = dict(os.environ, HOME=home) if home else None
    try:
        proc = run(argv, input=(api_key or "") + "\n", capture_output=True, text=True,
                   timeout=timeout, check=False, env=env)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"")
        out = out.decode("utf-8", "replace") if isinstance(out, bytes) else out
        return None, scrub(out[-4000:], [api_key]), True
    out = (proc.stdout or "") + (proc.stderr or "")
    return proc.returncode, scrub(out[-4000:], [api_key]), False


def measure(work_dir, python, *, api_url, model, api_key, tokenizer, corpus, prompt_tokens,
            output_tokens, concurrency, runs, thinking, timeout=None, exact_output=True,
            unique_prompts=True, home=None, run=None):
    """One llama-benchy run (one prompt length, every concurrency level, one thinking
    mode) with /metrics around every batch. Returns the item the report takes."""
    mode = "on" if thinking else "off"
    tag = "pp%d-thinking-%s" % (int(prompt_tokens), mode)
    prep = prepare(work_dir, tokenizer, corpus, home)
    result_path = os.path.join(work_dir, tag + ".json")
    snapshots_path = os.path.join(work_dir, tag + ".metrics.jsonl")
    for path in (result_path, snapshots_path):
        if os.path.exists(path):
            os.unlink(path)
    argv = tool_argv(python, prep["launcher"], api_url=api_url, model=model,
                     tokenizer=prep["tokenizer"], prompt_tokens=prompt_tokens,
                     output_tokens=output_tokens, concurrency=concurrency, runs=runs,
                     thinking=thinking, result_path=result_path,
                     snapshots_path=snapshots_path, book_url=prep["book_url"],
                     exact_output=exact_output, unique_prompts=unique_prompts)
    rc, tail, timed_out = run_tool(argv, api_key, timeout, run, home)
    item = {"thinking": mode, "prompt_tokens": int(prompt_tokens),
            "output_tokens": int(output_tokens), "concurrency": [int(c) for c in concurrency],
            "runs": int(runs), "command": shown_argv(argv), "rc": rc, "timed_out": timed_out,
            "output_tail": tail, "tokenizer": prep["tokenizer_note"], "corpus": prep["corpus"],
            "error": None, "tool": None, "cells": []}
    try:
        with open(result_path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except (OSError, ValueError) as exc:
        item["error"] = ("%s wrote no result (%s)%s; its output ends: %s" % (
            TOOL, exc, ", timed out after %s s" % timeout if timed_out else
            ", exit code %s" % rc, tail[-600:]))
        return item
    try:
        with open(snapshots_path, encoding="utf-8") as handle:
            snapshots = parse_snapshots(handle.read())
    except OSError:
        snapshots = []
    return combine(item, raw, snapshots)


def combine(item, raw, snapshots):
    """The item with the tool's cells, each with its acceptance from the snapshots."""
    meta, cells = parse_tool_result(raw)
    accepted = acceptance(snapshots, item["concurrency"], item["runs"])
    item["tool"] = meta
    item["snapshots"] = len(snapshots)
    for cell in cells:
        cell["thinking"] = item["thinking"]
        cell.update(accepted.get(cell["concurrency"]) or {
            "acceptance": NOT_MEASURED, "why": "no /metrics window for this cell"})
    item["cells"] = cells
    if item["rc"] not in (0, None) or item["timed_out"]:
        item["error"] = "%s %s; partial results kept: %s" % (
            TOOL, "timed out" if item["timed_out"] else "exited %s" % item["rc"],
            item["output_tail"][-400:])
    return item


def plan_problems(prompt_lengths, concurrency, output_tokens, runs, max_model_len=None):
    """Every problem of a matrix, at once (empty: it can run)."""
    problems = []
    for name, values in (("bench_prompt_lengths", prompt_lengths),
                         ("bench_concurrency", concurrency)):
        if not values:
            problems.append("%s is empty" % name)
        bad = [v for v in values or [] if not isinstance(v, int) or isinstance(v, bool) or v < 1]
        if bad:
            problems.append("%s must hold positive integers, got %s" % (name, bad))
    if not isinstance(output_tokens, int) or output_tokens < 2:
        problems.append("bench_output_tokens must be an integer >= 2 (decode speed needs "
                        "tokens after the first), got %r" % (output_tokens,))
    if not isinstance(runs, int) or runs < 1:
        problems.append("bench_runs must be >= 1, got %r" % (runs,))
    if max_model_len and not problems:
        long = [p for p in prompt_lengths if p + output_tokens > int(max_model_len)]
        if long:
            problems.append("prompt length(s) %s + %d output tokens exceed the server's "
                            "max_model_len %s" % (long, output_tokens, max_model_len))
    return problems
