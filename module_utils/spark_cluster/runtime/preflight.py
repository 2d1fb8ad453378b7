"""One preflight that names every problem (plain functions, stdlib only).

Each check of the controller and of every node gathers its refusals as lines (the same
per-item messages the checks always had) instead of failing on the first; ``aggregate``
turns them into one failure listing all of them, by where they were found, before any
host is changed. roles/spark_common's filters call these; the roles' validate entry points
fail on their own list when run outside the preflight (``spark_preflight_gather`` unset).
"""

from __future__ import annotations

import re

DIGEST_REF_RE = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SECRET_NAME_RE = re.compile(r"(?i)token|secret|password|key")


def runtime_image_problems(source, pull_ref, recipe_repo, recipe_version, base_image, base_from,
                           allow_moving=False, build_vars=None):
    """The pins of the runtime image (runtime_image_source pull or build), one line each."""
    problems = []
    if source not in ("pull", "build"):
        return [f"runtime_image_source is {source!r}: set pull (a prebuilt image by digest) or build (the recipe)"]
    if source == "pull":
        if not pull_ref:
            problems.append("runtime_image_pull_ref is empty: runtime_image_source pull needs the image by digest "
                            "(NAME@sha256:<64 hex digits>); the profile has none (spark_profile seed builds), so set "
                            "it, or runtime_image_source: build")
        elif not (allow_moving or DIGEST_REF_RE.match(pull_ref)):
            problems.append(f"runtime_image_pull_ref is {pull_ref!r}: name the image by digest (NAME@sha256:<64 hex "
                            "digits>) so every node runs the reviewed image (a tag only with "
                            "runtime_image_recipe_allow_moving_ref: true)")
        return problems
    if not recipe_version or not (allow_moving or COMMIT_RE.match(str(recipe_version))):
        problems.append(f"runtime_image_recipe_version is {str(recipe_version or '')!r}: set it to the full commit "
                        f"(40 hex digits) of {recipe_repo} you reviewed (a branch or tag only with "
                        "runtime_image_recipe_allow_moving_ref: true)")
    if not base_image or not (allow_moving or re.search(r"@sha256:[0-9a-f]{64}$", str(base_image))):
        problems.append(f"runtime_image_base_image is {str(base_image or '')!r}: the recipe's overlay builds FROM the "
                        f"moving tag {base_from or 'of its Dockerfile'} and publishes no digest. Resolve it with "
                        f"`docker buildx imagetools inspect {base_from}`, review it and set runtime_image_base_image "
                        "to NAME@sha256:<64 hex digits> (or use runtime_image_source: pull)")
    build_vars = build_vars or {}
    if any("\n" in str(v) for v in build_vars.values()) or any(SECRET_NAME_RE.search(k) for k in build_vars):
        problems.append(f"the recipe build variables must be plain, non-secret values on one line: {sorted(build_vars)}")
    return problems


def free_space_problem(host, data_root, free_bytes, need_gb, what):
    """The free-space refusal (the same words as the build's and the load's), or None."""
    if int(free_bytes) >= int(float(need_gb) * 1e9):
        return None
    return (f"{host}: Docker's data-root {data_root} has {int(free_bytes) / 1e9:.1f} GB free; {what} needs "
            f"{float(need_gb):.1f} GB. Free space there (`docker system df`, `docker image prune`) or move the "
            "data-root, then re-run.")


def serving_problems(host, *, bind_address, bind_any, api_key_present, key_required, levels, default_level,
                     smoke_levels, kv_dtype, image_kv_dtypes, kv_fit_problems=()):
    """The serving settings a start would refuse, one line each (before anything changes)."""
    problems = []
    address = str(bind_address or "").strip().strip("[]")
    if not bind_any and address in ("0.0.0.0", "::", "*", ""):
        problems.append(f"{host}: serving_api_bind_address is {bind_address!r}: the API would answer on every "
                        "interface (Wi-Fi, management, the rails). Set the address clients use (default 127.0.0.1), "
                        "or serving_api_bind_any: true if you mean it (and firewall_api_clients).")
    if key_required and not api_key_present:
        problems.append(f"{host}: serving_api_key is empty: export SPARK_API_KEY on the controller or set "
                        "serving_api_key from Vault (or serving_api_key_required: false for an open API)")
    accepted = list(levels or {})
    for variable, level in [("serving_default_thinking", default_level)] + [
            (f"serving_smoke_thinking.{k}", v) for k, v in sorted((smoke_levels or {}).items())]:
        if level not in accepted:
            problems.append(f"{host}: {variable} is {level!r}: this image accepts the thinking levels "
                            f"{', '.join(accepted)} (serving_thinking_levels; the recipe's start exits 2 on another)")
    if image_kv_dtypes and kv_dtype not in image_kv_dtypes:
        problems.append(f"{host}: serving_kv_cache_dtype is {kv_dtype!r}: the runtime image is known to take "
                        f"{', '.join(image_kv_dtypes)} (serving_image_kv_cache_dtypes, from the profile); add it "
                        "there if you know your image takes it")
    problems += [f"{host}: {p}" for p in kv_fit_problems or []]
    return problems


def aggregate(controller, nodes, dropped=()):
    """(count, message) of every problem: ``controller`` a list of lines, ``nodes``
    {host: [lines]}, ``dropped`` the hosts that fell out of the play (unreachable, or a
    check that could not run). count 0: nothing to refuse."""
    lines = []
    for line in controller or []:
        lines.append(f"- controller: {line}")
    for host in sorted(nodes or {}):
        for line in nodes[host] or []:
            line = str(line)
            lines.append(f"- {line}" if line.startswith(f"{host}:") else f"- {host}: {line}")
    for host in sorted(set(dropped or ())):
        lines.append(f"- {host}: no result (unreachable, or one of its checks failed before it could report); "
                     "see its error above")
    seen, unique = set(), []
    for line in lines:
        if line not in seen:
            seen.add(line)
            unique.append(line)
    if not unique:
        return 0, "preflight: no problem found"
    return len(unique), (f"preflight found {len(unique)} problem(s); nothing was changed on any host. "
                         "Fix them all, then re-run:\n" + "\n".join(unique))
