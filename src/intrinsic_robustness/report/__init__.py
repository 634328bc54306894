"""The run report: ``report.json``, ``report.md``, a self-contained ``report.html`` and PNG figures.

Built from a run directory's files only (no model is run again), so it can be re-rendered at any time
with ``irob report RUN_DIR``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from intrinsic_robustness.layout import RunLayout
from intrinsic_robustness.storage import atomic_path, write_json, write_text

log = logging.getLogger(__name__)

PNG_DPI = 110


def _figures(layout: RunLayout, report: dict[str, Any], settings: dict[str, Any]) -> dict[str, bytes]:
    """Every registered figure that has something to show, as PNG bytes, in registry order (the one place a
    figure function's ``(fig, ax)`` becomes bytes)."""
    import matplotlib

    matplotlib.use("Agg", force=True)  # files, never windows
    from intrinsic_robustness.report.plots import FIGURES

    images = {}
    for name in FIGURES.names():
        drawn = FIGURES.get(name)(report, layout, settings)
        if drawn is not None:
            images[name] = _png(drawn[0])
    return images


def _png(fig: Any) -> bytes:
    """A figure as PNG bytes (tight box); the figure is closed."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=PNG_DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()


def write_report(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Write the report of ``run_dir`` into ``out`` (default ``RUN_DIR/report``); return the paths."""
    from intrinsic_robustness.report.data import collect
    from intrinsic_robustness.storage import read_json

    layout = RunLayout(Path(run_dir))
    out_dir = Path(out) if out is not None else layout.report_dir
    settings = read_json(layout.config_file)["report"] if layout.config_file.is_file() else {}
    report = collect(layout.root)
    return _write(report, layout, out_dir, settings)


def refresh_report(report_json: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                   confidence: float | None = None) -> dict[str, Path]:
    """Re-derive a report.json written earlier (see :mod:`.refresh`) and re-render it, beside it by default.

    Figures that need the run directory (samples, adversarial examples) are kept as they are.
    """
    from intrinsic_robustness.report.data import FORMAT
    from intrinsic_robustness.report.refresh import refresh
    from intrinsic_robustness.storage import read_versioned

    path = Path(report_json)
    out_dir = Path(out) if out is not None else path.parent
    report = refresh(read_versioned(path, FORMAT), confidence)
    kept = {k: v for k, v in (report.get("figures") or {}).items() if (out_dir / v).is_file()}
    return _write(report, RunLayout(path.parent), out_dir, {}, kept)


def _write(report: dict[str, Any], layout: RunLayout, out_dir: Path, settings: dict[str, Any],
           kept: dict[str, str] | None = None) -> dict[str, Path]:
    from intrinsic_robustness.report.flags import all_flags
    from intrinsic_robustness.report.render import html_page, markdown

    report["flags"] = all_flags(report, settings.get("tolerance", 0.0))
    images = _figures(layout, report, settings)
    paths: dict[str, Path] = {k: out_dir / v for k, v in (kept or {}).items() if k not in images}
    files: dict[str, str] = {k: v for k, v in (kept or {}).items() if k not in images}
    images.update({k: (out_dir / v).read_bytes() for k, v in files.items()})
    for name, png in images.items():
        if name in files:
            continue
        path = out_dir / f"{name}.png"
        with atomic_path(path) as tmp:
            tmp.write_bytes(png)
        paths[name] = path
        files[name] = path.name
    report["figures"] = files
    write_text(out_dir / "report.md", markdown(report, files))
    write_text(out_dir / "report.html", html_page(report, images))
    write_json(out_dir / "report.json", report)
    paths.update(json=out_dir / "report.json", md=out_dir / "report.md", html=out_dir / "report.html")
    log.info("report written to %s", out_dir)
    return paths
