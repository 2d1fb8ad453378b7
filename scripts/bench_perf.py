#!/usr/bin/env python3
"""Benchmark (not a test): the costs that grow with the work, measured side by side in
one lab run, since this machine is noisy.

- hand-run parallel iperf3 worker <- head on rail 0, and on both rails at once;
- the weights fan-out of a >= 2 GB lab model (seeded on the head): one plain rsync (the
  pull before), spark_cluster.node.fanout with 4 streams on rail 0 (the role's pull), and on both rails;
- the image ship (docker save | the project's stream helper over rail 0 | docker load);
- a no-op site.yml (wall time, changed count, task entries, seconds per role, the slowest
  tasks), --rounds times; with --baseline REF also the site.yml of commit REF (a detached
  worktree under .cache/bench-baseline/), the two trees in turns so both see the same load.

Run with the lab up and provisioned (`make lab`):  make bench
  make bench BENCH_ARGS="--noop-only --baseline b6a3cd0 --inventory inventory/lab3"
(--noop-only, or any inventory but inventory/lab, measures only the no-op site.yml: the
other parts are two-node.) Writes docs/performance.md (and reports/performance-latest.json).
"""

import argparse
import datetime
import json
import os
import pathlib
import re
import shutil
import statistics
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
    """docker save | python3 -m spark_cluster.node.image_stream over rail 0 | docker load (the role's path; the
    image is already on the worker, so docker load reads the stream and keeps its layers)."""
    image = runtime_image()
    size = int(sh(HEAD, f"docker image inspect --format '{{{{.Size}}}}' {image}"))
    t0 = time.monotonic()
    sh(HEAD, f"docker save {image} | wc -c > /tmp/bench-save-bytes")
    save_s = time.monotonic() - t0
    tar_bytes = int(sh(HEAD, "cat /tmp/bench-save-bytes"))
    head_ip, worker_ip, _ = RAILS[0]
    port = 29610
    recv = subprocess.Popen(["docker", "exec", "-e", f"PYTHONPATH={LIB}", WORKER, "python3", "-m", "spark_cluster.node.image_stream", "recv", "--bind", worker_ip,
                             "--port", str(port), "--allow", head_ip, "--timeout", "600"], stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    t0 = time.monotonic()
    sh(HEAD, f"PYTHONPATH={LIB} python3 -m spark_cluster.node.image_stream send --image {image} --to {worker_ip} --port {port} --bind {head_ip} --timeout 600")
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


# The no-op site.yml: the current tree, and with --baseline an earlier commit's tree, run in
# turns (baseline, current, baseline, current ...) so both see the same machine load. Every
# task and every role is timed: profile_tasks lists all tasks, profile_roles sums per role.
CALLBACKS = "ansible.posix.profile_tasks,ansible.posix.timer,spark_steps,ansible.posix.profile_roles"
# the targets of a no-op site.yml, by the number of lab nodes (docs/performance.md)
NOOP_TARGETS_S = {2: 60, 3: 75}
# a callback's section: `TITLE ****...`; play and task banners carry brackets, so never match
BANNER = re.compile(r"^[A-Z][A-Z ]*[A-Z] \*+\s*$")
# a profile_tasks or profile_roles line: `name ------- 0.05s` (a long name leaves fewer dashes)
TIMING = re.compile(r"^(.+?) -+ (\d+\.\d+)s$")


def section(text, title):
    """The lines of the callback section `title` (`PLAY RECAP`, `TASKS RECAP`, `ROLES RECAP`),
    up to the next section banner; [] where the output has none."""
    lines, found = [], False
    for line in text.splitlines():
        line = line.rstrip()
        if not found:
            found = line.startswith(title + " *") and bool(BANNER.match(line))
        elif BANNER.match(line):
            break
        else:
            lines.append(line)
    return lines


def parse_recap(text):
    """PLAY RECAP, per host: {host: {"ok": 185, "changed": 0, "skipped": 152, ...}}."""
    hosts = {}
    for line in section(text, "PLAY RECAP"):
        found = re.match(r"^(\S+)\s+:\s+(.*)$", line)
        counts = re.findall(r"(\w+)=(\d+)", found.group(2)) if found else []
        if counts:
            hosts[found.group(1)] = {k: int(v) for k, v in counts}
    return hosts


def timings(lines):
    """(name, seconds) of each `name ---- 1.23s` line, in the order listed."""
    return [(m.group(1).strip(), float(m.group(2))) for m in map(TIMING.match, lines) if m]


def parse_tasks(text):
    """profile_tasks' TASKS RECAP: every (task, seconds) it lists (all of them with
    PROFILE_TASKS_TASK_OUTPUT_LIMIT=all), in its order."""
    return timings(section(text, "TASKS RECAP"))


def parse_roles(text):
    """profile_roles' ROLES RECAP: ({role: seconds}, total seconds or None)."""
    roles = dict(timings(section(text, "ROLES RECAP")))
    return roles, roles.pop("total", None)


def slowest(tasks, count=8):
    return sorted(tasks, key=lambda t: -t[1])[:count]


def parse_run(text):
    """What one no-op run's output says: changed (summed over hosts), the recap per host,
    the task entries profile_tasks timed, the task banners shown (a task skipped on every
    host shows none: display_skipped_hosts is off), seconds per role, the slowest tasks."""
    hosts, tasks = parse_recap(text), parse_tasks(text)
    roles, roles_total = parse_roles(text)
    return {"changed": sum(h.get("changed", 0) for h in hosts.values()) if hosts else None,
            "hosts": hosts, "task_entries": len(tasks), "tasks": len(re.findall(r"^TASK \[", text, re.M)),
            "roles": roles, "roles_total": roles_total, "slowest": slowest(tasks)}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def noop_target(nodes):
    """The no-op site.yml target in seconds for this many lab nodes, or None (no target)."""
    return NOOP_TARGETS_S.get(nodes)


def group_hosts(listing, group="spark"):
    """The hosts of `group` and of its children, from `ansible-inventory --list` output."""
    seen, hosts, todo = set(), [], [group]
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.add(name)
        entry = listing.get(name, {})
        hosts += [h for h in entry.get("hosts", []) if h not in hosts]
        todo += entry.get("children", [])
    return hosts


def summary(runs):
    """The medians of one side's rounds (rounds with rc 0 and changed=0 only: a failed
    round's time says nothing, a round that changed something was no no-op): seconds,
    changed, task entries, seconds per role (a role absent from a round counts 0 s there),
    ok/skipped per host."""
    good = [r for r in runs if r["rc"] == 0 and r["changed"] == 0]
    roles = sorted({role for r in good for role in r["roles"]})
    hosts = sorted({h for r in good for h in r["hosts"]})
    return {"rounds": len(runs), "good_rounds": len(good),
            "seconds": median(r["seconds"] for r in good), "changed": median(r["changed"] for r in good),
            "task_entries": median(r["task_entries"] for r in good),
            "roles": {role: median(r["roles"].get(role, 0.0) for r in good) for role in roles},
            "roles_total": median(r["roles_total"] for r in good),
            "hosts": {h: {k: median(r["hosts"].get(h, {}).get(k) for r in good) for k in ("ok", "skipped")}
                      for h in hosts}}


def verdict(seconds, target):
    if target is None:
        return "no target"
    if seconds is None:
        return "no round ended with rc 0"
    return f"{'met' if seconds <= target else 'not met'} ({seconds:.0f} s)"


def _num(value, fmt="{:.0f}"):
    return "-" if value is None else fmt.format(value)


def noop_markdown(noop):
    """The side-by-side Markdown of the no-op site.yml: each round and the median, baseline
    vs current (seconds, changed, task entries), the target by node count, met or not; then
    the median seconds per role of each side and their difference."""
    sides = [s for s in ("baseline", "current") if noop.get(s)]
    names = {s: f"{s} `{noop[s]['ref']}`" for s in sides}
    target = noop.get("target_s")
    rounds = max(len(noop[s]["runs"]) for s in sides)
    lines = [f"#### No-op `site.yml`, {noop['nodes']} lab nodes (inventory `{noop['inventory']}`)", "",
             "| round | " + " | ".join(f"{names[s]}: s | changed | task entries" for s in sides) + " |",
             "|---|" + "---:|---:|---:|" * len(sides)]
    for i in range(rounds):
        cells = []
        for s in sides:
            runs = noop[s]["runs"]
            if i < len(runs):
                r = runs[i]
                secs = f"{r['seconds']:.1f}" + (f" (rc {r['rc']})" if r["rc"] else "")
                cells += [secs, _num(r["changed"]), _num(r["task_entries"])]
            else:
                cells += ["-", "-", "-"]
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    sums = {s: summary(noop[s]["runs"]) for s in sides}
    lines.append("| median | " + " | ".join(f"**{_num(sums[s]['seconds'], '{:.1f}')}** | {_num(sums[s]['changed'], '{:g}')} | "
                                              f"{_num(sums[s]['task_entries'], '{:g}')}" for s in sides) + " |")
    target_name = f"{target} s ({noop['nodes']} nodes)" if target is not None else f"none for {noop['nodes']} nodes"
    verdicts = {s: verdict(sums[s]["seconds"], target) + (f"; {sums[s]['rounds'] - sums[s]['good_rounds']} of {sums[s]['rounds']} "
                                                          "rounds failed or changed something" if sums[s]["good_rounds"] < sums[s]["rounds"] else "")
                for s in sides}
    lines.append(f"| target: {target_name} | " + " | ".join(" | ".join([verdicts[s], "", ""]) for s in sides) + " |")
    lines.append("")
    loads = "; ".join(f"{s} {r['round']}: {r['load_before']} / {r['load_after']}"
                      for r_s in zip(*(noop[s]["runs"] for s in sides)) for s, r in zip(sides, r_s))
    settled = [f"{s} {noop[s]['settle']['seconds']:.0f} s, changed={noop[s]['settle']['changed']}"
               for s in sides if noop[s].get("settle")]
    lines.append(f"Load average before / after each run: {loads}. Medians count the rounds that ended with rc 0 "
                 "and changed=0" + (f"; each tree first ran once to settle the lab to its own configuration "
                                    f"(not counted: {'; '.join(settled)})" if settled else "") + ".")
    hosts = "; ".join(f"{s} " + ", ".join(f"{h} {_num(c['ok'], '{:g}')}/{_num(c['skipped'], '{:g}')}"
                                          for h, c in sums[s]["hosts"].items()) for s in sides)
    lines += ["", f"ok / skipped per host (median): {hosts}."]
    roles = sorted({role for s in sides for role in sums[s]["roles"]},
                   key=lambda role: -max(sums[s]["roles"].get(role) or 0.0 for s in sides))
    lines += ["", f"#### Where the no-op's seconds go, per role (median of the rounds, `ansible.posix.profile_roles`)", "",
              "| role | " + " | ".join(f"{names[s]} s" for s in sides) + (" | current - baseline s |" if len(sides) == 2 else " |"),
              "|---|" + "---:|" * (len(sides) + (len(sides) == 2))]
    rows = [(role, [sums[s]["roles"].get(role) for s in sides]) for role in roles]
    rows.append(("**total**", [sums[s]["roles_total"] for s in sides]))
    for role, values in rows:
        cells = [_num(v, "{:.2f}") for v in values]
        if len(sides) == 2:
            # a role that did not run on one side counts 0 s there
            cells.append("-" if values == [None, None] else f"{(values[1] or 0.0) - (values[0] or 0.0):+.2f}")
        lines.append(f"| {role} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def git(*args, cwd=None, check=True):
    run = subprocess.run(["git", *args], cwd=cwd or ROOT, capture_output=True, text=True)
    if check and run.returncode:
        raise SystemExit(f"git {' '.join(args)}: {run.stderr.strip()}")
    return run.stdout.strip() if run.returncode == 0 else None


def inventory_path(tree, inventory):
    """The inventory in `tree`: the same path relative to the repository as in ROOT."""
    inventory = pathlib.Path(inventory)
    path = inventory if inventory.is_absolute() else ROOT / inventory
    try:
        return tree / path.resolve().relative_to(ROOT)
    except ValueError:
        return path  # outside the repository: the same inventory for both trees


def option_problems(args):
    """Every problem with the options, at once (before anything runs)."""
    problems = []
    if args.rounds < 1:
        problems.append(f"--rounds {args.rounds}: at least 1")
    inventory = inventory_path(ROOT, args.inventory)
    if not inventory.exists():
        problems.append(f"--inventory {args.inventory}: {inventory} does not exist")
    if args.no_site and (args.noop_only or args.baseline):
        problems.append("--no-site skips the no-op site.yml that --noop-only and --baseline measure")
    if args.no_site and inventory.resolve() != (ROOT / "inventory" / "lab").resolve():
        problems.append(f"--no-site with --inventory {args.inventory}: nothing left to measure (the rest of the bench is two-node, inventory/lab only)")
    if args.baseline:
        sha = git("rev-parse", "--verify", "--quiet", f"{args.baseline}^{{commit}}", check=False)
        if not sha:
            problems.append(f"--baseline {args.baseline}: not a commit of this repository")
        else:
            for path in ("site.yml", "ansible.cfg", str(inventory_path(pathlib.Path(), args.inventory))):
                if not pathlib.Path(path).is_absolute() and git("cat-file", "-e", f"{sha}:{path}", check=False) is None:
                    problems.append(f"--baseline {args.baseline}: has no {path}")
    return problems


def baseline_tree(ref):
    """A detached worktree of `ref` under .cache/bench-baseline/<short sha>, made once and
    reused while it stays at that commit, unchanged. Returns (sha, short sha, path)."""
    sha = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    short = git("rev-parse", "--short", sha)
    path = ROOT / ".cache" / "bench-baseline" / short
    if path.exists():
        # a plain folder here would answer for ROOT's own repository: ask for its top level
        top = git("rev-parse", "--show-toplevel", cwd=path, check=False)
        if top is None or pathlib.Path(top).resolve() != path.resolve() or git("rev-parse", "HEAD", cwd=path) != sha:
            raise SystemExit(f"{path} exists but is not a worktree at {ref} ({sha}): remove it "
                             f"(git worktree remove --force {path}, or rm -r it and git worktree prune)")
        if git("status", "--porcelain", "--untracked-files=no", cwd=path):
            raise SystemExit(f"{path}: the baseline's worktree has changes; it must be {ref} as committed "
                             f"(git -C {path} checkout -- .)")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        git("worktree", "add", "--detach", str(path), sha)
    return sha, short, path


def seed_baseline_cache(tree):
    """The baseline tree has no .cache/ of its own, but the lab inventory's group_vars read
    files there through lookups relative to the inventory's folder
    (inventory/lab/group_vars/spark/security.yml: .cache/lab-api-key; serving.yml:
    .cache/lab-runtime-image.ref), so the current tree's .cache/lab-* are copied into it
    before each bench. So are its cached facts (.cache/facts: the fact cache lies beside
    ansible.cfg, gathering is smart), so that the baseline's first round does not gather the
    facts the current tree's finds cached."""
    source, dest = ROOT / ".cache", tree / ".cache"
    dest.mkdir(exist_ok=True)
    for path in sorted(source.glob("lab-*")):
        if path.is_dir():
            shutil.copytree(path, dest / path.name, dirs_exist_ok=True)
        else:
            shutil.copy2(path, dest / path.name)
    if (source / "facts").is_dir():
        shutil.rmtree(dest / "facts", ignore_errors=True)
        shutil.copytree(source / "facts", dest / "facts")


def inventory_nodes(inventory):
    """The hosts of group spark in the inventory, as ansible-inventory reads it."""
    binary = pathlib.Path(sys.executable).with_name("ansible-inventory")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    run = subprocess.run([str(binary), "-i", str(inventory), "--list"], cwd=ROOT, env=env, capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"ansible-inventory -i {inventory} --list: {run.stderr.strip()}")
    return group_hosts(json.loads(run.stdout))


def noop_run(tree, inventory, label, round_no):
    """One no-op site.yml from `tree` (its ansible.cfg, the venv's ansible-playbook), every
    task and role timed; its full log in .cache/bench-noop-<label>-<round>.log."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(tree / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CALLBACKS_ENABLED=CALLBACKS, PROFILE_TASKS_TASK_OUTPUT_LIMIT="all",
               PROFILE_TASKS_SORT_ORDER="descending")
    playbook = pathlib.Path(sys.executable).with_name("ansible-playbook")
    before, t0 = load(), time.monotonic()
    run = subprocess.run([str(playbook), "-i", str(inventory), str(tree / "site.yml")],
                         cwd=tree, env=env, capture_output=True, text=True)
    seconds, after = time.monotonic() - t0, load()
    log = ROOT / ".cache" / f"bench-noop-{label}-{round_no}.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text(run.stdout + run.stderr)
    result = {"round": round_no, "seconds": seconds, "rc": run.returncode, "load_before": before, "load_after": after,
              "log": str(log.relative_to(ROOT)), **parse_run(run.stdout)}
    print(f"no-op site.yml, {label} round {round_no}: {seconds:.0f} s, rc {run.returncode}, changed={result['changed']}, "
          f"{result['task_entries']} task entries (log {result['log']})", flush=True)
    return result


def current_ref():
    ref = git("rev-parse", "--short", "HEAD")
    return ref + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def noop_site(inventory="inventory/lab", baseline=None, rounds=2):
    """The no-op site.yml, `rounds` times per tree: the baseline's rounds first (when one is
    given), then the current tree's. Where the two trees configure the nodes differently
    (a file moved between them), the first run of each tree changes the lab back to what
    that tree wants: with a baseline, each tree starts with one settling run, kept in the
    record but not counted, so the counted rounds are true no-op runs on the same lab."""
    nodes = inventory_nodes(inventory_path(ROOT, inventory))
    noop = {"inventory": str(inventory), "nodes": len(nodes), "hosts": nodes, "target_s": noop_target(len(nodes)),
            "current": {"ref": current_ref(), "runs": []}, "baseline": None}
    sides = [("current", ROOT)]
    if baseline:
        sha, short, tree = baseline_tree(baseline)
        seed_baseline_cache(tree)
        noop["baseline"] = {"ref": short, "sha": sha, "given": baseline, "tree": str(tree.relative_to(ROOT)), "runs": []}
        sides.insert(0, ("baseline", tree))
    for label, tree in sides:
        if baseline:
            noop[label]["settle"] = noop_run(tree, inventory_path(tree, inventory), label, 0)
        for n in range(1, rounds + 1):
            noop[label]["runs"].append(noop_run(tree, inventory_path(tree, inventory), label, n))
    for label, _ in sides:
        mid = summary(noop[label]["runs"])["seconds"]
        print(f"no-op site.yml, {label} ({noop[label]['ref']}), median of {rounds}: "
              f"{'-' if mid is None else f'{mid:.0f} s'}; target {verdict(mid, noop['target_s'])}", flush=True)
    return noop


def noop_compat(noop):
    """The current tree's figures in the shape the full bench's tables read: the median's
    seconds, the worst rc, the most changed, and the run nearest the median's tasks."""
    runs = noop["current"]["runs"]
    mid = summary(runs)["seconds"]
    near = min(runs, key=lambda r: abs(r["seconds"] - mid) if mid is not None else 0)
    return {"seconds": mid if mid is not None else near["seconds"], "rc": max(r["rc"] for r in runs),
            "changed": max((r["changed"] or 0) for r in runs), "tasks": near["tasks"], "slowest": near["slowest"]}


def load():
    return open("/proc/loadavg").read().split()[0]


def two_node_skip(args):
    """Why the two-node parts (iperf3, fan-out, image ship) are skipped, or None."""
    if args.noop_only:
        return "--noop-only"
    if inventory_path(ROOT, args.inventory).resolve() != (ROOT / "inventory" / "lab").resolve():
        return f"--inventory {args.inventory}: iperf3, the fan-out and the image ship measure the two-node inventory/lab only"
    return None


def two_nodes(r, size_gb):
    """iperf3 on rail 0 and both rails, the weights fan-out, the CPU ceilings, the image ship."""
    try:
        r["iperf_rail0"] = iperf(RAILS[:1])
        r["iperf_both"] = iperf(RAILS)
        r["model_bytes"] = seed(size_gb)
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


def arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gb", type=float, default=2.0, help="the lab model's size for the fan-out (GB)")
    parser.add_argument("--no-site", action="store_true", help="skip the no-op site.yml")
    parser.add_argument("--inventory", default="inventory/lab",
                        help="the inventory of the no-op site.yml (default inventory/lab); any other skips the two-node parts")
    parser.add_argument("--baseline", metavar="REF",
                        help="a commit to run the no-op site.yml of too, in turns with the current tree's")
    parser.add_argument("--rounds", type=int, default=2, help="no-op site.yml runs per tree (default 2)")
    parser.add_argument("--noop-only", action="store_true", help="only the no-op site.yml: skip iperf3, fan-out, image ship")
    return parser.parse_args(argv)


def main():
    args = arguments()
    problems = option_problems(args)
    if problems:
        raise SystemExit("bench_perf.py: nothing was run:\n" + "\n".join(f"- {p}" for p in problems))
    skip = two_node_skip(args)
    if skip:
        print(f"iperf3, weights fan-out and image ship skipped ({skip})", flush=True)
    r = {"when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"), "cores": os.cpu_count(), "load": [load()],
         "options": " ".join(sys.argv[1:]), "skipped": skip}
    try:
        if not args.no_site:
            r["noop"] = noop_site(args.inventory, args.baseline, args.rounds)
            r["noop_site"] = noop_compat(r["noop"])
        r["load"].append(load())
        if not skip:
            two_nodes(r, args.size_gb)
    finally:
        (ROOT / "reports").mkdir(exist_ok=True)
        (ROOT / "reports" / "performance-latest.json").write_text(json.dumps(r, indent=2) + "\n")
    doc = ROOT / "docs" / "performance.md"
    doc.write_text(document(render(r), doc.read_text() if doc.exists() else ""))
    print(doc.read_text())


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


def render_noop_only(r):
    """A run that measured the no-op site.yml alone (--noop-only, or an inventory other than
    the two-node lab)."""
    noop = r["noop"]
    against = f"baseline `{noop['baseline']['ref']}` vs current" if noop.get("baseline") else "current tree"
    lines = [
        f"### {r['when']}: no-op site.yml on {noop['nodes']} lab nodes, {against} (lab figures, side by side)",
        "",
        f"Written by `make bench` (scripts/bench_perf.py {r.get('options', '')}".rstrip() + f") on {r['when']}: {r['cores']} cores, "
        f"load average {' / '.join(r['load'])} (start / end). Only the no-op `site.yml` was measured "
        f"(iperf3, fan-out and image ship skipped: {r.get('skipped')}); both trees ran on the same lab one after the other, each first settling it to its own configuration (the load of each run is below).",
        "",
        noop_markdown(noop).rstrip(),
        "",
        "#### The current tree's slowest tasks (its round nearest the median)",
        "",
        "| task | s |",
        "|---|---|",
    ]
    lines += [f"| {name} | {s:.1f} |" for name, s in r["noop_site"]["slowest"]]
    return "\n".join(lines) + "\n"


def render(r):
    if "iperf_rail0" not in r:
        return render_noop_only(r)
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
        f"| image ship: save -> spark_cluster.node.image_stream (rail 0) -> `docker load` | {img['ship_s']:.1f} s = {ship:.2f} Gb/s |",
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
    if "noop" in r:
        lines += ["", noop_markdown(r["noop"]).rstrip()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
