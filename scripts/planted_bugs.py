#!/usr/bin/env python3
"""The planted bugs of issue 17: each is a plausible mistake that a real cluster would
suffer from. Each is planted alone in a scratch copy of the repository
(.cache/planted/), and the unit tests that own the file must fail. Prints one line per
bug (KILLED / SURVIVED) and exits 1 if any survived. docs/testing.md has the list.

Usage: scripts/planted_bugs.py [index ...]
"""

import pathlib
import shutil
import subprocess
import sys

SRC = pathlib.Path(__file__).resolve().parents[1]
WORK = SRC / ".cache" / "planted"
REPORT = "module_utils/spark_cluster/reports/link_report.py"
INVENTORY = "module_utils/spark_cluster/runtime/inventory.py"
# (the Spark situation the bug breaks, file, original text, planted text, unit test files)
BUGS = [
    ("GID: one twin without RDMA turns RDMA off for both", "module_utils/spark_cluster/link/roce.py",
     "    if not devices:\n", "    if without_rdma:\n", "test_roce.py"),
    ("GID: the HCA-less twin is not named", "module_utils/spark_cluster/link/roce.py",
     "    if without_rdma:\n        message +=", "    if False:\n        message +=", "test_roce.py"),
    ("a peer route via a gateway on the rail is accepted", "module_utils/spark_cluster/link/pinning.py",
     'ok = answer.get("dev") == interface and not via_gateway', 'ok = answer.get("dev") == interface',
     "test_pinning.py"),
    ("rails /23 and /24 overlapping: only equal subnets refused", INVENTORY,
     "if na.overlaps(nb):", "if na == nb:", "test_inventory.py"),
    ("a broadcast address accepted as a rail address", INVENTORY,
     "iface.ip in (net.network_address, net.broadcast_address)", "iface.ip == net.network_address",
     "test_inventory.py"),
    ("a management /25 inside a rail /24 accepted", INVENTORY,
     "if iface.network.overlaps(mnet):", "if iface.network.subnet_of(mnet):", "test_inventory.py"),
    ("MTU 9216 (top of the range) rejected", INVENTORY,
     "MTU_MIN <= mtu <= MTU_MAX", "MTU_MIN <= mtu < MTU_MAX", "test_inventory.py"),
    ("ib_write_bw ran and failed: 'not measured'", REPORT,
     'if rdma_probe and rdma_probe.get("measured") and not rdma_probe.get("ok"):', "if False:",
     "test_report.py"),
    ("RDMA device without a resolved GID: 'not measured'", REPORT,
     'elif not rdma_probe and pair.get("rdma_status") == FAIL:', "elif False:", "test_report.py"),
    ("perftest missing on a node with RDMA: 'not measured' (report)", REPORT,
     'elif rdma_probe and not rdma_probe.get("measured") and rdma_probe.get("rdma_hardware"):',
     "elif False:", "test_report.py"),
    ("perftest missing on a node with RDMA: 'no RDMA hardware' (link_probe)", "library/link_probe.py",
     '"rdma_hardware": True, "hca": hca,', '"rdma_hardware": False, "hca": hca,', "test_modules.py"),
    ("defect 1: nodes with RDMA may end 'incomplete'", REPORT,
     "    if rdma_nodes:\n        _unmeasured", "    if False:\n        _unmeasured", "test_report.py"),
    ("defect 2: serving_environment may carry pinned/secret keys", INVENTORY,
     "            check_settings({key: value})\n", "            pass\n",
     "test_inventory.py test_modules.py"),
    ("defect 3: no mlx5_core, named interfaces described anyway", "module_utils/spark_cluster/link/cx7.py",
     "    elif not fallback_reason:\n", "    elif False:\n", "test_cx7.py"),
]


def plant(index, name, path, old, new, tests):
    work = WORK / f"bug{index}"
    shutil.rmtree(work, ignore_errors=True)
    for folder in ("library", "module_utils", "tests"):
        shutil.copytree(SRC / folder, work / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(SRC / "ansible.cfg", work / "ansible.cfg")
    target = work / path
    text = target.read_text()
    if text.count(old) != 1:
        shutil.rmtree(work, ignore_errors=True)
        return "STALE", [f"{path} no longer holds the original text once"]
    target.write_text(text.replace(old, new))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
                         + [f"tests/unit/{t}" for t in tests.split()],
                         cwd=work, capture_output=True, text=True, check=False)
    shutil.rmtree(work, ignore_errors=True)
    failed = [line for line in run.stdout.splitlines() if line.startswith("FAILED")]
    if run.returncode == 1 and failed:
        return "KILLED", failed[:1]
    return ("SURVIVED" if run.returncode == 0 else f"ERROR rc={run.returncode}"), []


def main(only):
    verdicts = []
    for index, bug in enumerate(BUGS):
        if only and str(index) not in only:
            continue
        verdict, detail = plant(index, *bug)
        verdicts.append(verdict)
        print(f"{index:2} {verdict:8} {bug[0]}  {' '.join(detail)}", flush=True)
    return 0 if all(v == "KILLED" for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
