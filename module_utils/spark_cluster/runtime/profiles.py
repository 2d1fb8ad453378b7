"""Serving profiles as data: one named set of model, revision, image and launch settings,
each value with its source (repository, path, commit). Plain functions, stdlib + PyYAML.

A profile lives in ``roles/spark_common/profiles/<name>.yml``::

    name: current
    summary: one line
    sources:                          # named sources, referenced by the settings
      env: {repo: OWNER/NAME, path: .env.dspark.example, commit: <7-40 hex>}
    settings:
      max_model_len: {value: 1048576, source: env, note: optional}
      model: {value: ..., source: {repo: ..., path: ..., commit: ...}}   # or inline

``load`` validates it (every setting has a value and a source that resolves to repo,
path and commit; the settings the roles read are all there) and returns
``{name, summary, settings: {key: value}, sources: {key: source}, notes: {key: note}}``.
roles/spark_common's filter ``spark_profile`` calls it once per name (cached), and the
roles' defaults read ``spark_profile_settings.<key>``: a user picks a profile with one
variable (``spark_profile``) and still overrides any single role variable.

docs/serving.md's launch table is rendered from the data (``launch_table``); a unit test
fails when that copy drifts.
"""

from __future__ import annotations

import os
import re

import yaml

COMMIT_RE = re.compile(r"^[0-9a-f]{7,40}$")
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
DIGEST_REF_RE = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")

# Every setting the roles read, and the role variable that takes its value (launch table order)
VARIABLES = {
    "runtime_source": "runtime_image_source",
    "image_ref": "runtime_image_pull_ref",
    "image_name": "runtime_image_name",
    "build_image_name": "runtime_image_name",
    "recipe_commit": "runtime_image_recipe_version",
    "head_only_switch": "runtime_image_head_only_switch",
    "base_from": "runtime_image_base_from",
    "binary": "serving_binary",
    "runtime_paths": "runtime_image_runtime_paths",
    "kv_cache_dtypes": "serving_image_kv_cache_dtypes",
    "model": "hf_cache_repo",
    "revision": "hf_cache_revision",
    "tokenizer_revision": "serving_tokenizer_revision",
    "served_model_name": "serving_model_name",
    "model_size_gb": "hf_cache_model_size_gb",
    "model_shards": "hf_cache_expected_shards",
    "master_port": "spark_master_port",
    "trust_remote_code": "serving_trust_remote_code",
    "kv_cache_dtype": "serving_kv_cache_dtype",
    "block_size": "serving_block_size",
    "max_model_len": "serving_max_model_len",
    "max_num_seqs": "serving_max_num_seqs",
    "max_num_batched_tokens": "serving_max_num_batched_tokens",
    "long_prefill_token_threshold": "serving_long_prefill_token_threshold",
    "max_cudagraph_capture_size": "serving_max_cudagraph_capture_size",
    "gpu_memory_utilization": "serving_gpu_memory_utilization",
    "enable_prefix_caching": "serving_enable_prefix_caching",
    "enable_prompt_tokens_details": "serving_enable_prompt_tokens_details",
    "async_scheduling": "serving_async_scheduling",
    "enable_chunked_prefill": "serving_enable_chunked_prefill",
    "speculative_config": "serving_speculative_config",
    "tokenizer_mode": "serving_tokenizer_mode",
    "moe_backend": "serving_moe_backend",
    "tool_call_parser": "serving_tool_call_parser",
    "enable_auto_tool_choice": "serving_enable_auto_tool_choice",
    "reasoning_parser": "serving_reasoning_parser",
    "reasoning_config": "serving_reasoning_config",
    "generation_config": "serving_generation_config",
    "enable_flashinfer_autotune": "serving_enable_flashinfer_autotune",
    "thinking_levels": "serving_thinking_levels",
    "default_thinking": "serving_default_thinking",
    "smoke_thinking": "serving_smoke_thinking",
    "runtime_settings": "serving_runtime_settings",
    "memory": "serving_memory_reference",
}
REQUIRED = tuple(VARIABLES)
RUNTIME_SOURCES = ("pull", "build")
# settings that differ by how the image is had (the pulled image's layout is not the built one's)
PER_SOURCE = ("binary", "runtime_paths", "kv_cache_dtypes")
# max_cudagraph_capture_size computed as max_num_seqs x (num_speculative_tokens + 1)
CAPTURE_FROM_SEQS = "seqs_x_draft"
# tokenizer_revision equal to the model revision
SAME_REVISION = "same"


class ProfileError(ValueError):
    """A profile that cannot be used: unknown name, or data that breaks the rules above."""


def profiles_dir():
    """roles/spark_common/profiles of the repository this package lives in
    (module_utils/spark_cluster/runtime/, controller side)."""
    root = os.path.abspath(__file__)
    for _ in range(4):
        root = os.path.dirname(root)
    return os.path.join(root, "roles", "spark_common", "profiles")


def names(directory=None):
    """The profiles there, sorted."""
    directory = directory or profiles_dir()
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    return sorted(n[:-4] for n in entries if n.endswith(".yml") and NAME_RE.match(n[:-4]))


def _source(key, raw, sources, problems):
    if isinstance(raw, str):
        if raw not in sources:
            problems.append(f"settings.{key}.source names {raw!r}, not one of sources: {', '.join(sorted(sources))}")
            return None
        raw = sources[raw]
    if not isinstance(raw, dict):
        problems.append(f"settings.{key}.source must name a source or be {{repo, path, commit}}")
        return None
    missing = [field for field in ("repo", "path", "commit") if not str(raw.get(field) or "").strip()]
    if missing:
        problems.append(f"settings.{key}.source lacks {', '.join(missing)}")
        return None
    if not COMMIT_RE.match(str(raw["commit"])):
        problems.append(f"settings.{key}.source commit {raw['commit']!r} is not a commit (7-40 hex digits)")
        return None
    return {"repo": str(raw["repo"]), "path": str(raw["path"]), "commit": str(raw["commit"])}


def check(data, name):
    """Problems (list of str) of one profile's parsed data; [] when it is usable."""
    if not isinstance(data, dict):
        return ["the file is not a mapping"]
    problems = []
    if data.get("name") != name:
        problems.append(f"name is {data.get('name')!r}, expected {name!r} (the file's name)")
    sources = data.get("sources") or {}
    if not isinstance(sources, dict):
        problems.append("sources must be a mapping")
        sources = {}
    settings = data.get("settings")
    if not isinstance(settings, dict):
        return problems + ["settings must be a mapping"]
    for key, entry in settings.items():
        if key not in VARIABLES:
            problems.append(f"settings.{key} is not a known setting (known: {', '.join(VARIABLES)})")
            continue
        if not isinstance(entry, dict) or "value" not in entry or "source" not in entry:
            problems.append(f"settings.{key} needs value and source")
            continue
        _source(key, entry["source"], sources, problems)
    missing = [key for key in REQUIRED if key not in settings]
    if missing:
        problems.append(f"settings lack {', '.join(missing)}")
    if problems:
        return problems
    values = {key: settings[key]["value"] for key in settings}
    if values["runtime_source"] not in RUNTIME_SOURCES:
        problems.append(f"runtime_source is {values['runtime_source']!r}, not one of {', '.join(RUNTIME_SOURCES)}")
    if values["runtime_source"] == "pull" and not DIGEST_REF_RE.match(str(values["image_ref"] or "")):
        problems.append(f"image_ref {values['image_ref']!r} is not NAME@sha256:<64 hex> (a pull profile names its image by digest)")
    for key in PER_SOURCE:
        if not isinstance(values[key], dict) or set(values[key]) != set(RUNTIME_SOURCES):
            problems.append(f"{key} must give a value for each runtime source ({', '.join(RUNTIME_SOURCES)})")
    levels = values["thinking_levels"]
    if not isinstance(levels, dict) or not levels:
        problems.append("thinking_levels must map each level to its chat template kwargs")
    else:
        for level in [values["default_thinking"]] + list((values["smoke_thinking"] or {}).values()):
            if level not in levels:
                problems.append(f"thinking level {level!r} is not one of {', '.join(levels)}")
    return problems


def load(name, directory=None):
    """The validated profile ``name`` (see the module doc); ProfileError otherwise."""
    directory = directory or profiles_dir()
    known = names(directory)
    if name not in known:
        raise ProfileError(f"spark_profile {name!r} is not a profile: choose one of {', '.join(known) or '(none found)'} "
                           f"(roles/spark_common/profiles/<name>.yml)")
    path = os.path.join(directory, f"{name}.yml")
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    problems = check(data, name)
    if problems:
        raise ProfileError(f"profile {path}: " + "; ".join(problems))
    sources = data.get("sources") or {}
    out = {"name": name, "summary": str(data.get("summary") or ""), "settings": {}, "sources": {}, "notes": {},
           "path": path}
    for key, entry in data["settings"].items():
        out["settings"][key] = entry["value"]
        out["sources"][key] = _source(key, entry["source"], sources, [])
        if entry.get("note"):
            out["notes"][key] = " ".join(str(entry["note"]).split())
    return out


_CACHE = {}


def cached(name, directory=None):
    """``load`` once per (directory, name, file mtime) in this process."""
    directory = directory or profiles_dir()
    path = os.path.join(directory, f"{name}.yml")
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        stamp = None
    key = (directory, name, stamp)
    if key not in _CACHE:
        _CACHE[key] = load(name, directory)
    return _CACHE[key]


# --------------------------------------------------------------------------- derived values

def thinking_kwargs(levels, level):
    """The chat template kwargs of one thinking level; ProfileError naming the accepted ones."""
    if not isinstance(levels, dict) or level not in levels:
        accepted = ", ".join(levels) if isinstance(levels, dict) else "(none)"
        raise ProfileError(f"thinking level {level!r} is not accepted by this image: choose one of {accepted} "
                           "(serving_default_thinking, serving_smoke_thinking)")
    return dict(levels[level])


def capture_size(value, max_num_seqs, speculative_config):
    """--max-cudagraph-capture-size: 0 (not passed), a number, or computed from the sequences
    and the draft length like the recipe (seqs x (k + 1))."""
    if value in (None, "", 0, False):
        return 0
    if value == CAPTURE_FROM_SEQS:
        k = int((speculative_config or {}).get("num_speculative_tokens") or 0)
        return int(max_num_seqs) * (k + 1)
    return int(value)


def kv_fit(memory, utilization, max_model_len, max_num_seqs):
    """What the profile's measured KV pool says about this launch: (problems, notes).

    ``memory`` is the profile's measurement {gpu_memory_utilization, kv_cache_tokens}. A
    request of max_model_len tokens must fit the pool (vLLM refuses to start otherwise);
    max_num_seqs above what fits at full length is a ceiling, not a refusal (extra requests
    queue). With a lower utilization than measured, or no measurement, nothing is claimed."""
    if not memory:
        return [], ["KV pool: no measurement for this profile; the memory guard checks utilization x total only"]
    measured_util = float(memory["gpu_memory_utilization"])
    tokens = int(memory["kv_cache_tokens"])
    if float(utilization) < measured_util:
        return [], [f"KV pool: measured at utilization {measured_util:g}, this launch uses {float(utilization):g}: "
                    "not checked (fewer KV tokens than measured)"]
    concurrency = tokens / int(max_model_len)
    notes = [f"KV pool: {tokens} tokens measured at utilization {measured_util:g} = {concurrency:.2f} requests of "
             f"{int(max_model_len)} tokens at once; max_num_seqs {int(max_num_seqs)} is a ceiling (the rest queue)"]
    if int(max_model_len) > tokens:
        return [f"serving_max_model_len {int(max_model_len)} is more than the KV pool measured for this profile "
                f"({tokens} tokens at utilization {measured_util:g}): vLLM would refuse to start; lower it or raise "
                "serving_gpu_memory_utilization"], notes
    return [], notes


# --------------------------------------------------------------------------- the launch table

def _cell(value):
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, (dict, list)):
        text = yaml.safe_dump(value, default_flow_style=True, width=1000, sort_keys=False).strip()
        return f"`{text}`"
    return f"`{value}`"


def _short(source):
    return f"{source['repo'].split('/')[-1]} `{source['path']}` @{source['commit'][:7]}"


TABLE_KEYS = tuple(k for k in VARIABLES if k != "runtime_settings")


def launch_table(profiles):
    """Markdown table: one row per setting, one column per profile, each value's source."""
    order = [p["name"] for p in profiles]
    head = "| setting | role variable | " + " | ".join(f"`{n}`" for n in order) + " | source |"
    rule = "|---|---|" + "---|" * len(order) + "---|"
    lines = [head, rule]
    for key in TABLE_KEYS:
        cells = [_cell(p["settings"][key]) for p in profiles]
        shorts = [_short(p["sources"][key]) for p in profiles]
        if len(set(shorts)) == 1:
            source = shorts[0]
        else:
            source = "; ".join(f"{p['name']}: {s}" for p, s in zip(profiles, shorts))
        lines.append(f"| {key} | `{VARIABLES[key]}` | " + " | ".join(cells) + " | " + source + " |")
    env_keys = sorted({k for p in profiles for k in (p["settings"]["runtime_settings"] or {})})
    lines += ["", "| environment (`serving_runtime_settings`) | " + " | ".join(f"`{n}`" for n in order) + " |",
              "|---|" + "---|" * len(order)]
    for key in env_keys:
        cells = []
        for p in profiles:
            env = p["settings"]["runtime_settings"] or {}
            cells.append(f"`{env[key]}`" if key in env and env[key] != "" else ("empty" if key in env else "-"))
        lines.append(f"| `{key}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


BEGIN = "<!-- profile-table:begin (scripts/profile_table.py --write; a unit test checks it) -->"
END = "<!-- profile-table:end -->"


def replace_block(text, table):
    """Document text with the block between the markers replaced by ``table``."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + table + text[end:]


def block(text):
    """The document's copy of the table (between the markers)."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].lstrip("\n")
