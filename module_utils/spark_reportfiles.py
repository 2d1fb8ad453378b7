"""Writing report files on the controller: one timestamped file per format and a
`<prefix>-latest.<ext>` link to the newest. Shared by the link report and the benchmark."""

from __future__ import annotations

import json
import os
import shutil


def point_latest(target, latest):
    """<prefix>-latest.* -> the newest file: a relative symlink, a copy where that fails."""
    try:
        if os.path.lexists(latest):
            os.unlink(latest)
        os.symlink(os.path.basename(target), latest)
    except OSError:
        shutil.copyfile(target, latest)


def write_json(report, path):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, sort_keys=True)
        handle.write("\n")


def write_text(text, path):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_report_files(report, report_dir, formats, prefix, render_markdown, render_png):
    """Write <prefix>-<stamp>.<ext> for each format (json, md, png) and point
    <prefix>-latest.<ext> at it. render_markdown(report) -> str; render_png(report, path).
    The stamp comes from report["generated_at"]. Returns {ext: path} plus
    {"latest_<ext>": path}.
    """
    renderers = {
        "json": write_json,
        "md": lambda rep, path: write_text(render_markdown(rep), path),
        "png": render_png,
    }
    report_dir = os.path.realpath(os.path.expanduser(report_dir))
    os.makedirs(report_dir, exist_ok=True)
    stamp = report["generated_at"].replace("-", "").replace(":", "")
    paths = {}
    for ext in formats:
        if ext not in renderers:
            raise ValueError("unknown report format %r" % ext)
        path = os.path.join(report_dir, "%s-%s.%s" % (prefix, stamp, ext))
        renderers[ext](report, path)
        latest = os.path.join(report_dir, "%s-latest.%s" % (prefix, ext))
        point_latest(path, latest)
        paths[ext] = path
        paths["latest_" + ext] = latest
    return paths
