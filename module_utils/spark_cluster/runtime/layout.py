"""A parallel layout the model accepts: tensor (TP) x pipeline (PP) = nodes x GPUs/node.

vLLM splits attention heads across the tensor-parallel ranks and refuses, after a long
start, a TP size that does not divide the model's ``num_attention_heads`` (and, for
grouped KV heads, one that neither divides nor is a multiple of ``num_key_value_heads``);
pipeline stages split the layers, so PP cannot exceed ``num_hidden_layers``.
``model_dims`` reads those numbers from the model's ``config.json`` (hub cache),
``choose_layout`` checks a requested layout or picks one (the largest TP that fits,
the rest as PP), and raises ``LayoutError`` naming the numbers and the options.

Plain Python 3.11+ (stdlib); used by ``library/serving_layout.py`` and the tests.
"""

from __future__ import annotations

import json
import os

HEAD_KEYS = ("num_attention_heads", "n_heads", "n_head", "num_heads")
KV_KEYS = ("num_key_value_heads", "n_kv_heads", "num_kv_heads")
LAYER_KEYS = ("num_hidden_layers", "n_layers", "num_layers", "n_layer")


class LayoutError(ValueError):
    """The requested or any possible layout does not fit the model or the cluster."""


def _first(config, keys):
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return key, value
    return None, None


def model_dims(config):
    """{heads, kv_heads, layers, model_type, fields} from a config.json dict (the text
    config of multimodal models too); LayoutError when heads or layers are missing."""
    if not isinstance(config, dict):
        raise LayoutError("config.json is not a JSON object")
    for nested in ("text_config", "language_config", "llm_config"):
        if isinstance(config.get(nested), dict) and not _first(config, HEAD_KEYS)[0]:
            config = dict(config[nested], model_type=config.get("model_type"))
    head_key, heads = _first(config, HEAD_KEYS)
    kv_key, kv_heads = _first(config, KV_KEYS)
    layer_key, layers = _first(config, LAYER_KEYS)
    missing = [what for what, value in (("attention heads (%s)" % "/".join(HEAD_KEYS), heads),
                                        ("layers (%s)" % "/".join(LAYER_KEYS), layers))
               if value is None]
    if missing:
        raise LayoutError("config.json has no %s: cannot check the parallel layout"
                          % " and no ".join(missing))
    return {"heads": heads, "kv_heads": kv_heads, "layers": layers,
            "model_type": config.get("model_type"),
            "fields": {k: v for k, v in ((head_key, heads), (kv_key, kv_heads),
                                         (layer_key, layers)) if k}}


def read_config(hub_dir, repo, revision="main", config_path=None):
    """config.json of repo@revision in a hub cache (or config_path), as a dict."""
    if not config_path:
        rdir = os.path.join(hub_dir, "models--" + repo.replace("/", "--"))
        commit = revision
        ref = os.path.join(rdir, "refs", revision)
        if os.path.isfile(ref):
            with open(ref, encoding="utf-8") as handle:
                commit = handle.read().strip()
        config_path = os.path.join(rdir, "snapshots", commit, "config.json")
    try:
        with open(config_path, encoding="utf-8") as handle:
            return json.load(handle), config_path
    except FileNotFoundError as exc:
        raise LayoutError("%s not found: the model %s@%s is not in the hub cache %s yet "
                          "(run site.yml: playbooks/cache.yml downloads it)"
                          % (config_path, repo, revision, hub_dir)) from exc
    except (OSError, ValueError) as exc:
        raise LayoutError("cannot read %s: %s" % (config_path, exc)) from exc


def tp_fits(tp, dims):
    """None when TP splits the model, else why not."""
    heads, kv = dims["heads"], dims.get("kv_heads")
    if heads % tp:
        return "TP=%d does not divide the %d attention heads" % (tp, heads)
    if kv and kv > 1 and kv % tp and tp % kv:
        return ("TP=%d neither divides nor is a multiple of the %d key/value heads"
                % (tp, kv))
    return None


def pp_fits(pp, dims):
    if pp > dims["layers"]:
        return "PP=%d exceeds the %d layers" % (pp, dims["layers"])
    return None


def layouts(world, dims):
    """Every (tp, pp) with tp x pp = world that the model accepts, largest TP first."""
    out = []
    for tp in range(world, 0, -1):
        if world % tp == 0 and not tp_fits(tp, dims) and not pp_fits(world // tp, dims):
            out.append((tp, world // tp))
    return out


def _nodes_that_fit(dims, gpus_per_node, nodes):
    """Node counts near `nodes` whose GPUs TP alone can split (for the options list)."""
    near = []
    for n in range(2, max(nodes * 2, 8) + 1):
        if n != nodes and not tp_fits(n * gpus_per_node, dims):
            near.append(n)
    near.sort(key=lambda n: (abs(n - nodes), n))
    return sorted(near[:3])


def choose_layout(nodes, gpus_per_node, dims, tp=0, pp=0, allow_pipeline=True):
    """{tp, pp, world, chosen, reason, options}: check tp/pp when given (0 = choose), else
    the largest TP the model accepts, the rest pipeline stages. LayoutError otherwise."""
    nodes, gpus_per_node, tp, pp = int(nodes), int(gpus_per_node), int(tp or 0), int(pp or 0)
    if nodes < 1 or gpus_per_node < 1 or tp < 0 or pp < 0:
        raise LayoutError("nodes (%d) and GPUs per node (%d) must be >= 1, TP/PP >= 0"
                          % (nodes, gpus_per_node))
    world = nodes * gpus_per_node
    fits = layouts(world, dims)
    if not allow_pipeline:
        fits = [f for f in fits if f[1] == 1]
    shown = ", ".join("TP=%d x PP=%d" % f for f in fits) or "none"
    model = "%d attention heads%s, %d layers" % (
        dims["heads"], ", %d key/value heads" % dims["kv_heads"] if dims.get("kv_heads") else "",
        dims["layers"])

    def refuse(problem):
        options = []
        if fits:
            options.append("a layout the model accepts: %s (serving_tensor_parallel_size: %d, "
                           "serving_pipeline_parallel_size: %d, or both 0 to choose)"
                           % ((shown,) + fits[0]))
        elif not allow_pipeline and layouts(world, dims):
            options.append("allow pipeline parallelism (serving_allow_pipeline_parallel: "
                           "true): %s" % ", ".join("TP=%d x PP=%d" % f
                                                   for f in layouts(world, dims)))
        near = _nodes_that_fit(dims, gpus_per_node, nodes)
        if near:
            counts = [str(n) for n in near]
            options.append("a cluster of %s nodes, whose %s GPUs tensor parallelism alone "
                           "splits" % (" or ".join([", ".join(counts[:-1]), counts[-1]]
                                                   if len(counts) > 1 else counts),
                                       "/".join(str(n * gpus_per_node) for n in near)))
        raise LayoutError(
            "%s. The cluster has %d node(s) x %d GPU(s) = %d GPUs; the model has %s. "
            "Options: %s." % (problem, nodes, gpus_per_node, world, model,
                              "; ".join(options) or "none with this model"))

    if tp and pp:
        if tp * pp != world:
            refuse("TP=%d x PP=%d = %d does not use the %d GPUs (TP x PP must equal nodes x "
                   "GPUs per node)" % (tp, pp, tp * pp, world))
    elif tp:
        if world % tp:
            refuse("TP=%d does not divide the %d GPUs" % (tp, world))
        pp = world // tp
    elif pp:
        if world % pp:
            refuse("PP=%d does not divide the %d GPUs" % (pp, world))
        tp = world // pp
    else:
        if not fits:
            refuse("no tensor x pipeline split of %d GPUs fits the model" % world)
        tp, pp = fits[0]
        why = ("TP=%d: tensor parallelism over all %d GPUs" % (tp, world) if pp == 1 else
               "TP=%d x PP=%d: TP=%d does not split the model (%s), so %d pipeline stages "
               "of %d GPU(s)" % (tp, pp, world, tp_fits(world, dims), pp, tp))
        return {"tp": tp, "pp": pp, "world": world, "chosen": True, "reason": why,
                "options": [list(f) for f in fits], "model": model}
    problem = tp_fits(tp, dims) or pp_fits(pp, dims)
    if problem:
        refuse(problem)
    if pp > 1 and not allow_pipeline:
        refuse("PP=%d but serving_allow_pipeline_parallel is false" % pp)
    return {"tp": tp, "pp": pp, "world": world, "chosen": False,
            "reason": "TP=%d x PP=%d as set: the model accepts it" % (tp, pp),
            "options": [list(f) for f in fits], "model": model}
