"""The rendered reports, byte for byte: Markdown and JSON of the link report and the
benchmark for a set of scenarios, compared with files rendered before the renderers
were shared (fixtures/reports). A change to a renderer that alters its output fails
here; regenerate on purpose with ``SPARK_REGEN_GOLDEN=1`` and review the diff."""

import json
import os
import pathlib

import pytest

import test_bench as tb
import test_report as tr
from spark_cluster.reports import bench_matrix as matrix
from spark_cluster.reports import link_report as rep

GOLDEN = pathlib.Path(__file__).parent / "fixtures" / "reports"


def _pinning():
    return {"spark-head": {"problems": [{"variable": "VLLM_HOST_IP", "found": None,
                                         "expected": "198.18.100.10",
                                         "message": "VLLM_HOST_IP is not set"}],
                           "would_pick": {"interface": "wlP9s9", "address": "198.19.0.10"}},
            "spark-worker": {"msg": "pyroute2 missing"}}


def _lab_pairs():
    return [dict(p, rdma_status="not_measured",
                 rdma_reason="no RDMA device for this rail on spark-head, spark-worker")
            for p in tr.PAIRS]


LINK = {
    "link-pass": lambda: rep.build_report(tr.PAIRS, tr.all_probes(), tr.links(),
                                          generated_at=tr.WHEN, collective=tr.collective(),
                                          thresholds=tr.SOCKET_TH),
    "link-lab": lambda: rep.build_report(_lab_pairs(), tr.all_probes(rdma_file=None),
                                         tr.links(rdma_dev=False), generated_at=tr.WHEN),
    "link-fail": lambda: rep.build_report(
        tr.PAIRS, tr.all_probes("ib_write_bw_stale.txt", df="ping_df_mtu_mismatch"),
        tr.links(), pinning=_pinning(), env_file_present={"spark-head": True},
        generated_at=tr.WHEN, collective=tr.collective()),
    "link-three-nodes": tr.three_node_report,
}


def _bench_partial():
    bad = {"thinking": "on", "prompt_tokens": 256, "concurrency": [1, 2], "runs": 2,
           "error": "llama-benchy exited 1", "cells": [], "command": "llama-benchy --pp 256"}
    return matrix.build_report([tb.fixture_item("standin-off", "off"), bad],
                               generated_at=tb.WHEN, server={"api_url": "http://x:8888"})


BENCH = {
    "bench-measured": lambda: tb.full_report(standin=False),
    "bench-standin": lambda: tb.full_report(standin=True),
    "bench-nodrafts": lambda: matrix.build_report([tb.fixture_item("nodrafts-off", "off")],
                                                  generated_at=tb.WHEN),
    "bench-partial": _bench_partial,
}


def _rendered(name):
    if name in LINK:
        report = LINK[name]()
        md = rep.render_markdown(report)
    else:
        report = BENCH[name]()
        md = matrix.render_markdown(report)
    return md, json.dumps(report, indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("name", sorted(LINK) + sorted(BENCH))
def test_rendered_report_is_unchanged(name):
    md, js = _rendered(name)
    md_file, js_file = GOLDEN / (name + ".md"), GOLDEN / (name + ".json")
    if os.environ.get("SPARK_REGEN_GOLDEN"):
        md_file.write_text(md, encoding="utf-8")
        js_file.write_text(js, encoding="utf-8")
    assert md == md_file.read_text(encoding="utf-8")
    assert js == js_file.read_text(encoding="utf-8")


def test_written_files_are_the_rendered_ones(tmp_path):
    """write_report writes exactly what the renderers return (JSON: indent 2, sorted)."""
    for name, module in (("link-pass", rep), ("bench-measured", matrix)):
        report = (LINK.get(name) or BENCH.get(name))()
        paths = module.write_report(report, str(tmp_path / name), formats=("json", "md"))
        md, js = _rendered(name)
        assert pathlib.Path(paths["md"]).read_text(encoding="utf-8") == md
        assert pathlib.Path(paths["json"]).read_text(encoding="utf-8") == js
