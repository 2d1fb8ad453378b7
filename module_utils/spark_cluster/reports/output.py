"""What the controller's reports share (the link report ``link_report``, the benchmark
``bench_data``, the status report): the Markdown pieces (value cells, the
"Generated ..." line, table heads, bullet sections), the PNG figure's set-up and
save, and writing the files: one timestamped file per format and a
`<prefix>-latest.<ext>` link to the newest. matplotlib is imported lazily (Agg)."""

from __future__ import annotations

import json
import os
import shutil


# ---------------------------------------------------------------------- Markdown

def fmt(value, spec="%.2f"):
    """A table cell: ``spec % value``, or "n/a" when the value is unknown (None)."""
    return "n/a" if value is None else spec % value


def generated_line(report, tail=""):
    """"Generated <stamp> (schema <name> v<n>)." and what follows on that line."""
    return "Generated %s (schema %s v%s).%s" % (
        report["generated_at"], report["schema"], report["schema_version"], tail)


def table_head(*columns):
    """A Markdown table's header and rule lines."""
    return ["| %s |" % " | ".join(columns), "|" + "---|" * len(columns)]


def bullet_section(title, items):
    """"## title" and one bullet per item, then a blank line; nothing without items."""
    if not items:
        return []
    return ["## " + title, ""] + ["- " + item for item in items] + [""]


# ---------------------------------------------------------------------- PNG

def figure(width_ratios, figsize):
    """A figure of len(width_ratios) panels side by side: (fig, axes)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, len(width_ratios), figsize=figsize,
                        gridspec_kw={"width_ratios": width_ratios})


def label_bars(ax, bars, labels):
    """Write each label above its bar (small, centred)."""
    for bar, label in zip(bars, labels):
        ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=7)


def save_figure(fig, path):
    """Lay out, write as PNG (100 dpi), free the figure; returns path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------- files

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
