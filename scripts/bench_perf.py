#!/usr/bin/env python3
"""Benchmark (not a test): the costs that grow with the work, measured side by side in
one lab run, since this machine is noisy.

- hand-run parallel iperf3 worker <- head on rail 0, and on both rails at once;
- the weights fan-out of a >= 2 GB lab model (seeded on the head): one plain rsync (the
  pull before), spark_cluster.node.fanout with 4 streams on rail 0 (the role's pull), and on both rails;
- the image ship (docker save | the project's stream helper over rail 0 | docker load);
- a no-op site.yml (wall time, changed count, the slowest tasks).

Run with the lab up and provisioned (`make lab`):  make bench
Writes docs/performance.md (and reports/performance-latest.json).
"""

import argparse
import datetime
import json
import os
import pathlib
import re
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEAD, WORKER = "spark-head", "spark-worker"
RAILS = [("198.18.100.10", "198.18.100.11", "enp1s0f1np1"), ("198.18.101.10", "198.18.101.11", "enP2p1s0f1np1")]
HUB = "/var/lib/spark-hf/hub"
LIB = "/usr/local/lib/spark-cluster"
BENCH_REPO = "spark-lab/bench-fanout"
BENCH_DIR = "models--spark-lab--bench-fanout"
COMPOSE = "/etc/spark-cluster/compose.yml"  # names the image the runtime runs
IPERF_PORT = 5221  # inside the firewall's probe range (5201-5240, rails only)
# outside figures (docs/sources.md): the field report's TCP rate between two Sparks (4 streams),
# its weights; the runtime image's size
FIELD_TCP_GBPS = 16.4
WEIGHTS_GB, IMAGE_GB = 167.0, 22.7


def sh(container, cmd, check=True):
    run = subprocess.run(["docker", "exec", container, "sh", "-c", cmd], capture_output=True, text=True)
    if check and run.returncode:
        raise SystemExit(f"{container}: {cmd}\n{run.stdout}\n{run.stderr}")
    return run.stdout


def rx(iface):
    return int(sh(WORKER, f"cat /sys/class/net/{iface}/statistics/rx_bytes"))


def iperf(rails, processes=2, streams=2, seconds=5):
    """Parallel iperf3, head -> worker (the fan-out's direction: workers pull), on the given
    rails at once: `processes` client processes per rail, `streams` streams each. Gb/s."""
    jobs = []
    for r, (head_ip, worker_ip, _) in enumerate(rails):
        for p in range(processes):
            jobs.append((head_ip, worker_ip, IPERF_PORT + r * processes + p))
    for head_ip, _, port in jobs:
        sh(HEAD, f"iperf3 -s -1 -D -B {head_ip} -p {port}")
    time.sleep(0.5)
    clients = " & ".join(f"iperf3 -J -R -c {h} -B {w} -p {p} -P {streams} -t {seconds} > /tmp/bench-{p}.json" for h, w, p in jobs)
    sh(WORKER, f"{clients} & wait")
    return sum(json.loads(sh(WORKER, f"cat /tmp/bench-{p}.json"))["end"]["sum_received"]["bits_per_second"] for _, _, p in jobs) / 1e9


def seed(size_gb, shards=8):
    # /var/tmp: the node's /tmp is a tmpfs mounted over the image's, where docker cp writes
    subprocess.run(["docker", "cp", str(ROOT / "tests" / "lab" / "hub_seed.py"), f"{HEAD}:/var/tmp/hub_seed.py"], check=True)
    code = (f"import sys; sys.path[:0] = ['/var/tmp', '{LIB}']; import hub_seed as s; "
            f"print(s.seed_fake_repo('{HUB}', '{BENCH_REPO}', shards={shards}, shard_bytes={int(size_gb * 1e9 / shards)}))")
    sh(HEAD, f"python3 -c \"{code}\"")
    return int(sh(HEAD, f"du -sbL {HUB}/{BENCH_DIR}/blobs | cut -f1").split()[0])


def rail1_daemon(start):
    """A second, temporary rsync daemon on the head's rail-1 address (the role's config with
    rail 1's addresses), so a split fan-out can use both rails. Stopped after the bench."""
    conf, pid = "/tmp/bench-rsyncd-rail1.conf", "/run/bench-rsyncd-rail1.pid"
    if start:
        sh(HEAD, f"sed -e 's/^address = .*/address = {RAILS[1][0]}/' -e 's/^hosts allow = .*/hosts allow = {RAILS[1][1]}/' "
                 f"-e 's#^lock file = .*#lock file = /run/bench-rsyncd-rail1.lock#' /etc/spark-cluster/rsyncd-hf.conf > {conf} && "
                 f"sed -i '1i pid file = {pid}' {conf} && "
                 f"rsync --daemon --config={conf} && sleep 0.5")
    else:
        sh(HEAD, f"test -f {pid} && kill $(cat {pid}); rm -f {conf}", check=False)


def fan_out(streams, rails=1, dest="/var/tmp/bench-fanout"):
    """Pull the bench model from the head's rsync daemon(s): streams=1 is one plain rsync
    (the pull before spark_cluster.node.fanout), more is spark_cluster.node.fanout as the role runs it (one file
    per stream, each blob checked against its hash on arrival), sources on `rails` rails.
    Returns seconds, bytes copied, bytes received on the rails used."""
    sh(WORKER, f"rm -rf {dest} && mkdir -p {dest}")
    used = RAILS[:rails]
    before, t0 = sum(rx(r[2]) for r in used), time.monotonic()
    if streams == 1:
        sh(WORKER, f"rsync -a --partial-dir=.rsync-partial rsync://{used[0][0]}/hf-hub/{BENCH_DIR}/ {dest}/")
    else:
        sources = " ".join(f"--source rsync://{r[0]}/hf-hub/{BENCH_DIR}/" for r in used)
        out = sh(WORKER, f"PYTHONPATH={LIB} python3 -m spark_cluster.node.fanout {sources} --dest {dest} --streams {streams} -- --archive --partial-dir=.rsync-partial")
        summary = json.loads(out.splitlines()[-1])
        if not summary["ok"]:
            raise SystemExit(f"fan-out failed: {summary}")
    seconds, crossed = time.monotonic() - t0, sum(rx(r[2]) for r in used) - before
    copied = int(sh(WORKER, f"du -sb {dest}/blobs | cut -f1").split()[0])
    sh(WORKER, f"rm -rf {dest}")
    return seconds, copied, crossed


def runtime_image():
    """The image the head's runtime runs, as its compose file names it."""
    found = re.search(r'^\s*image:\s*"?([^"\s]+)"?\s*$', sh(HEAD, f"cat {COMPOSE}"), re.M)
    if not found:
        raise SystemExit(f"spark-head: no image: line in {COMPOSE}; is the lab provisioned (make lab)?")
    return found.group(1)


def cpu_ceilings():
    """What one node's CPU allows without any network, on the seeded model (head): a local
    rsync of its blobs (rsync's own per-byte work: checksums, pipes, copies) and sha256 over
    them (the fan-out's check on arrival). Gb/s of payload."""
    blobs = f"{HUB}/{BENCH_DIR}/blobs"
    total = int(sh(HEAD, f"du -sbL {blobs} | cut -f1").split()[0])
    sh(HEAD, "rm -rf /var/tmp/bench-local && sync")
    t0 = time.monotonic()
    sh(HEAD, f"rsync -aL {blobs}/ /var/tmp/bench-local/")
    rsync_s = time.monotonic() - t0
    sh(HEAD, "rm -rf /var/tmp/bench-local")
    t0 = time.monotonic()
    sh(HEAD, f"python3 -c \"import hashlib, pathlib; [hashlib.file_digest(open(p, 'rb'), 'sha256') "
             f"for p in pathlib.Path('{blobs}').iterdir()]\"")
    sha_s = time.monotonic() - t0
    return {"bytes": total, "rsync_local_s": rsync_s, "sha256_s": sha_s}


def image_ship():
    """docker save | spark_image_stream.py over rail 0 | docker load (the role's path; the
    image is already on the worker, so docker load reads the stream and keeps its layers)."""
    image = runtime_image()
    size = int(sh(HEAD, f"docker image inspect --format '{{{{.Size}}}}' {image}"))
    t0 = time.monotonic()
    sh(HEAD, f"docker save {image} | wc -c > /tmp/bench-save-bytes")
    save_s = time.monotonic() - t0
    tar_bytes = int(sh(HEAD, "cat /tmp/bench-save-bytes"))
    head_ip, worker_ip, _ = RAILS[0]
    port = 29610
    recv = subprocess.Popen(["docker", "exec", WORKER, "python3", f"{LIB}/spark_image_stream.py", "recv", "--bind", worker_ip,
                             "--port", str(port), "--allow", head_ip, "--timeout", "600"], stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    t0 = time.monotonic()
    sh(HEAD, f"python3 {LIB}/spark_image_stream.py send --image {image} --to {worker_ip} --port {port} --bind {head_ip} --timeout 600")
    recv.wait(timeout=900)
    ship_s = time.monotonic() - t0
    # the alternatives' ceilings: compression (gzip -1, the cheapest here) and docker load alone
    t0 = time.monotonic()
    gz_bytes = int(sh(HEAD, f"docker save {image} | gzip -1 | wc -c"))
    gzip_s = time.monotonic() - t0
    sh(WORKER, f"docker save {image} -o /var/tmp/bench-image.tar")
    t0 = time.monotonic()
    sh(WORKER, "docker load -i /var/tmp/bench-image.tar >/dev/null")
    load_s = time.monotonic() - t0
    sh(WORKER, "rm -f /var/tmp/bench-image.tar")
    return {"image": image, "image_bytes": size, "tar_bytes": tar_bytes, "save_s": save_s, "ship_s": ship_s,
            "gzip_bytes": gz_bytes, "gzip_s": gzip_s, "load_s": load_s}


def noop_site():
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    playbook = pathlib.Path(sys.executable).with_name("ansible-playbook")
    t0 = time.monotonic()
    run = subprocess.run([str(playbook), "-i", str(ROOT / "inventory" / "lab"), str(ROOT / "site.yml")],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    (ROOT / ".cache").mkdir(exist_ok=True)
    (ROOT / ".cache" / "bench-noop-site.log").write_text(run.stdout + run.stderr)
    changed = sum(int(c) for c in re.findall(r"changed=(\d+)", run.stdout))
    slow = re.findall(r"^(.+?) -{2,} ([\d.]+)s$", run.stdout, re.M)[:8]
    tasks = len(re.findall(r"^TASK \[", run.stdout, re.M))
    return {"seconds": seconds, "rc": run.returncode, "changed": changed, "tasks": tasks,
            "slowest": [(n.strip(), float(s)) for n, s in slow]}


def load():
    return open("/proc/loadavg").read().split()[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--no-site", action="store_true", help="skip the no-op site.yml")
    args = parser.parse_args()
    r = {"when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"), "cores": os.cpu_count(), "load": [load()]}
    if not args.no_site:
        r["noop_site"] = noop_site()
        print(f"no-op site.yml: {r['noop_site']['seconds']:.0f} s, changed={r['noop_site']['changed']}", flush=True)
    r["load"].append(load())
    try:
        r["iperf_rail0"] = iperf(RAILS[:1])
        r["iperf_both"] = iperf(RAILS)
        r["model_bytes"] = seed(args.size_gb)
        r["fanout_1"] = fan_out(1)
        r["fanout_4"] = fan_out(4)
        r["cpu"] = cpu_ceilings()
        rail1_daemon(True)
        try:
            r["fanout_4_both"] = fan_out(4, rails=2)
        finally:
            rail1_daemon(False)
        r["iperf_rail0_after"] = iperf(RAILS[:1])
        r["image"] = image_ship()
    finally:
        r["load"].append(load())
        sh(HEAD, f"rm -rf {HUB}/{BENCH_DIR}", check=False)
        (ROOT / "reports").mkdir(exist_ok=True)
        (ROOT / "reports" / "performance-latest.json").write_text(json.dumps(r, indent=2) + "\n")
    doc = ROOT / "docs" / "performance.md"
    doc.write_text(document(render(r), doc.read_text() if doc.exists() else ""))
    print((ROOT / "docs" / "performance.md").read_text())


# docs/performance.md is a dated log, newest first: a hand-written head (title, what is true
# now), the newest `make bench` run (this script writes it), then the earlier entries (a
# new run moves the previous one down to the top of them).
TITLE = "# Performance log (lab figures; newest first)"
LATEST = "## Newest `make bench` run (scripts/bench_perf.py writes this part)"
HISTORY = "## Earlier entries, newest first (`make bench` moves its previous run here)"


def kept_history(text):
    """The earlier entries of docs/performance.md, from their HISTORY heading on."""
    at = text.find(HISTORY)
    return "\n" + text[at:] if at >= 0 else ""


def document(run, text):
    """The new docs/performance.md: the kept head, the new run, the previous run moved down
    to the top of the earlier entries, then those entries."""
    latest, history = text.find(LATEST), text.find(HISTORY)
    head = text[:latest] if latest >= 0 else (text[:history] if history >= 0 else TITLE + "\n\n")
    previous = text[latest + len(LATEST):history if history > latest else len(text)].strip() if latest >= 0 else ""
    earlier = text[history + len(HISTORY):].strip() if history >= 0 else ""
    parts = [head.rstrip() + "\n\n" + LATEST + "\n\n" + run.rstrip() + "\n\n" + HISTORY]
    parts += [p for p in (previous, earlier) if p]
    return "\n\n".join(parts) + "\n"


def gbps(nbytes, seconds):
    return nbytes * 8 / seconds / 1e9


def render(r):
    iperf0 = (r["iperf_rail0"] + r["iperf_rail0_after"]) / 2
    f1s, f1b, f1x = r["fanout_1"]
    f4s, f4b, f4x = r["fanout_4"]
    fbs, fbb, fbx = r["fanout_4_both"]
    f1, f4, fb = gbps(f1b, f1s), gbps(f4b, f4s), gbps(fbb, fbs)
    img = r["image"]
    ship = gbps(img["tar_bytes"], img["ship_s"])
    save = gbps(img["tar_bytes"], img["save_s"])
    ratio = max(f1, f4) / iperf0
    lines = [
        f"### {r['when']}: fan-out, image ship, no-op re-run (lab figures, side by side)",
        "",
        f"Written by `make bench` (scripts/bench_perf.py) on {r['when']}: {r['cores']} cores, load average "
        f"{' / '.join(r['load'])} (start / after the no-op site.yml / end). The lab's rails are veth pairs: their rate",
        "is this machine's CPU, not a NIC's, so only ratios measured in the same run mean anything.",
        "",
        "#### Raw figures",
        "",
        "| what | figure |",
        "|---|---|",
        f"| iperf3 head -> worker, rail 0, 2 processes x 2 streams (before / after the fan-out) | {r['iperf_rail0']:.1f} / {r['iperf_rail0_after']:.1f} Gb/s |",
        f"| iperf3 head -> worker, both rails at once, 2 x 2 streams each | {r['iperf_both']:.1f} Gb/s |",
        f"| fan-out, {f1b / 1e9:.2f} GB lab model, 1 plain rsync (the pull before), rail 0 | {f1s:.1f} s = {f1:.2f} Gb/s ({f1x / 1e9:.2f} GB crossed rail 0) |",
        f"| fan-out, same model, spark_cluster.node.fanout 4 streams (as `hf_cache` pulls it now, each blob hashed on arrival), rail 0 | {f4s:.1f} s = {f4:.2f} Gb/s ({f4x / 1e9:.2f} GB crossed rail 0) |",
        f"| fan-out, same model, spark_cluster.node.fanout 4 streams over both rails (a second, temporary rsync daemon on rail 1) | {fbs:.1f} s = {fb:.2f} Gb/s ({fbx / 1e9:.2f} GB crossed the rails) |",
        f"| image: `docker save` of {img['image']} ({img['tar_bytes'] / 1e6:.0f} MB tar) to a pipe | {img['save_s']:.1f} s = {save:.2f} Gb/s |",
        f"| image ship: save -> spark_image_stream.py (rail 0) -> `docker load` | {img['ship_s']:.1f} s = {ship:.2f} Gb/s |",
        f"| `docker save` piped into `gzip -1` (a compressed ship's ceiling) | {img['gzip_s']:.1f} s = {gbps(img['tar_bytes'], img['gzip_s']):.2f} Gb/s of tar, "
        f"{img['gzip_bytes'] / img['tar_bytes']:.2f} of the size |",
        f"| `docker load -i` of the tar on the worker (layers already there) | {img['load_s']:.1f} s = {gbps(img['tar_bytes'], img['load_s']):.2f} Gb/s |",
    ]
    if "cpu" in r:
        c = r["cpu"]
        lines += [
            f"| no network: local `rsync -a` of the same blobs on the head (rsync's own CPU ceiling) | {c['rsync_local_s']:.1f} s = {gbps(c['bytes'], c['rsync_local_s']):.2f} Gb/s |",
            f"| no network: sha256 of the same blobs on the head (the check on arrival, one core) | {c['sha256_s']:.1f} s = {gbps(c['bytes'], c['sha256_s']):.2f} Gb/s |",
        ]
    if "noop_site" in r:
        n = r["noop_site"]
        lines.append(f"| no-op `site.yml`, two lab nodes | {n['seconds']:.0f} s, rc {n['rc']}, changed={n['changed']} |")
    lines += [
        "",
        "#### Ratios (same run)",
        "",
        f"- weights fan-out / parallel iperf3 on rail 0: 1 stream **{f1 / iperf0:.2f}x**, 4 streams **{f4 / iperf0:.2f}x** (target 0.8x)",
        f"- fan-out over both rails, 4 streams / parallel iperf3 on both rails: **{fb / r['iperf_both']:.2f}x**",
        f"- both rails / rail 0 alone (iperf3): **{r['iperf_both'] / r['iperf_rail0']:.2f}x** (on veth pairs both rails share the same CPUs)",
        f"- image ship / parallel iperf3 on rail 0: **{ship / iperf0:.2f}x** (target 0.6x); `docker save` alone: {save / iperf0:.2f}x",
    ]
    if "cpu" in r:
        c = r["cpu"]
        local, sha = gbps(c["bytes"], c["rsync_local_s"]), gbps(c["bytes"], c["sha256_s"])
        lines += [
            f"- rsync with no network at all / parallel iperf3 on rail 0: **{local / iperf0:.2f}x**; sha256 on one core: "
            f"{sha / iperf0:.2f}x. Where a fan-out ratio stays below these, the network path costs; where it",
            "  reaches them, the ceiling is this machine's CPU (two cores shared by sender, receiver and the",
            "  check), not the rail: iperf3 moves bytes without touching them, a verified copy cannot.",
        ]
    lines += [
        "",
        "#### On real Sparks, from these ratios",
        "",
        f"At the field report's TCP rate between two Sparks ({FIELD_TCP_GBPS} Gb/s, one rail; [sources](sources.md)), the",
        f"{WEIGHTS_GB:.0f} GB of weights at the best fan-out ratio measured here ({ratio:.2f}x) would take about "
        f"**{WEIGHTS_GB * 8 / (FIELD_TCP_GBPS * ratio):.0f} s** per worker "
        f"(at the rail's full rate: {WEIGHTS_GB * 8 / FIELD_TCP_GBPS:.0f} s);",
        f"the {IMAGE_GB} GB image at the ship ratio ({ship / iperf0:.2f}x) about **{IMAGE_GB * 8 / (FIELD_TCP_GBPS * ship / iperf0):.0f} s** "
        f"(at full rate: {IMAGE_GB * 8 / FIELD_TCP_GBPS:.0f} s). The lab's ratios are a 2-core machine's:",
        "on a Spark (20 cores, 200 Gb/s ConnectX-7) the CPU share per stream is smaller; real numbers need a run there.",
    ]
    if "noop_site" in r:
        lines += ["", "#### Where the no-op site.yml spends its time (slowest tasks)", "", "| task | s |", "|---|---|"]
        lines += [f"| {name} | {s:.1f} |" for name, s in r["noop_site"]["slowest"]]
        n = r["noop_site"]
        if n.get("tasks"):
            lines += [
                "",
                f"{n['tasks']} tasks ran (most on both nodes at once): {n['seconds'] / n['tasks']:.2f} s per task on average,",
                "and no single task takes more than a few seconds. The cost is the round trip of each task",
                "(over the lab's docker connection: a `docker exec` and the node's Python start per module),",
                "not work on the nodes: the 60 s target needs far fewer tasks (roles that render their",
                "files on the controller and hand them to one `spark_node_files` call), not faster ones.",
                "On real Sparks the ssh connection with ControlPersist and pipelining costs less per task.",
            ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
