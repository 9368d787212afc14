"""``vidcurate report``: one self-contained HTML file about a run.

Histograms of each score with the active thresholds drawn on them, the filter funnel, duration
and resolution distributions, a gallery of animated thumbnails at low, median and high values of
each score (captions beside them when the caption stage ran), and the error table. Charts are
inline SVG and thumbnails inline animated WebP: the file needs nothing but a browser.
"""

from __future__ import annotations

import html
import json
import os

import numpy as np

from pipeline.stats import stats
from pipeline.tables import read_table
from pipeline.thumbnails import thumbnail
from transforms import storage
from transforms.filters import reason_column
from transforms.stages import STAGES, labelled_columns

GALLERY_COLUMNS = (*(c.name for s in STAGES for c in s.columns if c.summarised), "duration_s")
PALETTE = {"bar": "#4f7cac", "kept": "#3a9d5d", "rejected": "#c8553d", "line": "#d1495b"}


def _esc(x) -> str:
    return html.escape(str(x))


def histogram_svg(values, thresholds=(), bins: int = 30, width: int = 460, height: int = 170, label: str = "") -> str:
    """An SVG histogram with vertical threshold lines ``(name, value)``."""
    vals = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if vals.size == 0:
        return "<p class=muted>no values</p>"
    lo, hi = float(vals.min()), float(vals.max())
    for _, t in thresholds:
        lo, hi = min(lo, t), max(hi, t)
    if hi <= lo:
        hi = lo + 1.0
    counts, edges = np.histogram(vals, bins=bins, range=(lo, hi))
    pad_l, pad_b, pad_t = 36, 22, 8
    w, h = width - pad_l - 6, height - pad_b - pad_t
    top = max(1, int(counts.max()))
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(label)} histogram">']
    bw = w / bins
    for i, c in enumerate(counts):
        bh = h * c / top
        parts.append(f'<rect x="{pad_l + i * bw:.1f}" y="{pad_t + h - bh:.1f}" width="{max(bw - 1, 1):.1f}" '
                     f'height="{bh:.1f}" fill="{PALETTE["bar"]}"><title>{edges[i]:.3g}–{edges[i + 1]:.3g}: {c}</title></rect>')
    parts.append(f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" stroke="#888"/>')
    parts.append(f'<text x="{pad_l}" y="{height - 6}" class="tick">{lo:.3g}</text>')
    parts.append(f'<text x="{pad_l + w}" y="{height - 6}" class="tick" text-anchor="end">{hi:.3g}</text>')
    parts.append(f'<text x="{pad_l - 4}" y="{pad_t + 10}" class="tick" text-anchor="end">{top}</text>')
    for k, (name, t) in enumerate(thresholds):
        x = pad_l + w * (t - lo) / (hi - lo)
        right = x > pad_l + w * 0.6  # label on the left of lines near the right edge
        parts.append(f'<line x1="{x:.1f}" y1="{pad_t}" x2="{x:.1f}" y2="{pad_t + h}" stroke="{PALETTE["line"]}" '
                     f'stroke-width="2" stroke-dasharray="4 3"/><text x="{x + (-3 if right else 3):.1f}" '
                     f'y="{pad_t + 12 + 13 * k}" class="thr" text-anchor="{"end" if right else "start"}">'
                     f'{_esc(name)} {t:.3g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def funnel_svg(funnel: list[dict], total: int, width: int = 620) -> str:
    if not funnel:
        return "<p class=muted>No clip was rejected.</p>"
    row_h = 26
    label_w = 230
    height = row_h * len(funnel) + 8
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="filter funnel">']
    for i, f in enumerate(funnel):
        y = 4 + i * row_h
        full = (width - label_w - 130) * f["clips"] / max(1, total)
        only = (width - label_w - 130) * f["only_this"] / max(1, total)
        parts.append(f'<text x="0" y="{y + 16}" class="lbl">{_esc(f["filter"])}</text>'
                     f'<rect x="{label_w}" y="{y + 3}" width="{full:.1f}" height="18" fill="{PALETTE["rejected"]}" opacity="0.45"/>'
                     f'<rect x="{label_w}" y="{y + 3}" width="{only:.1f}" height="18" fill="{PALETTE["rejected"]}"/>'
                     f'<text x="{label_w + 6 + full:.1f}" y="{y + 16}" class="tick">{f["clips"]} of {total} '
                     f'({f["only_this"]} only this)</text>')
    parts.append("</svg>")
    return "".join(parts)


def pick_samples(clips: list[dict], column: str) -> list[tuple[str, dict]]:
    scored = sorted((c for c in clips if c.get(column) is not None), key=lambda c: c[column])
    if not scored:
        return []
    picks = [("low", scored[0]), ("median", scored[len(scored) // 2]), ("high", scored[-1])]
    seen, out = set(), []
    for label, c in picks:
        if c["clip_id"] not in seen:
            seen.add(c["clip_id"])
            out.append((label, c))
    return out


def active_thresholds(summary: dict | None, column: str, clips: list[dict]) -> list[tuple[str, float]]:
    """Absolute bounds from the run's config plus percentile cuts recomputed over the clips."""
    if not summary or "config" not in summary:
        return []
    from pipeline.config import config_from_dict
    from transforms.filters import bounds, percentile_thresholds

    try:
        cfg = config_from_dict(summary["config"], migrate=True)
    except Exception:  # noqa: BLE001 - an old summary without today's keys: no lines drawn
        return []
    values = {column: [c.get(column) for c in clips]}
    out = [(reason, value) for reason, col, _, value in bounds(cfg) if col == column]
    out += [(reason, value) for reason, col, _, value in percentile_thresholds(values, cfg) if col == column]
    return out


CSS = """
:root{--bg:#f6f7f9;--card:#fff;--ink:#1d2430;--muted:#6b7585;--line:#e3e6eb}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:var(--bg);color:var(--ink)}
header{background:#1d2430;color:#fff;padding:22px 32px}header h1{margin:0;font-size:22px}header p{margin:4px 0 0;color:#b9c2d0}
main{padding:24px 32px;max-width:1280px;margin:auto}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px;margin-bottom:20px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px}
.card .v{font-size:24px;font-weight:600}.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 20px;margin-bottom:18px}
section h2{margin:0 0 12px;font-size:17px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:18px}
.chart{width:100%;height:auto}.tick{font-size:10px;fill:#6b7585}.thr{font-size:10px;fill:#d1495b;font-weight:600}.lbl{font-size:11px;fill:#1d2430}
figure img{cursor:zoom-in}figure.big{grid-column:span 2}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line)}th{color:var(--muted);font-weight:600}
.muted{color:var(--muted)}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:14px}
figure{margin:0;background:#fafbfc;border:1px solid var(--line);border-radius:8px;overflow:hidden}
figure img{width:100%;display:block;background:#000}figure figcaption{padding:8px 10px;font-size:12px}
.tag{display:inline-block;padding:1px 7px;border-radius:9px;font-size:11px;font-weight:600;color:#fff}
.kept{background:#3a9d5d}.rejected{background:#c8553d}
"""


def _figure(row: dict, run_dir: str, note: str) -> str:
    uri = thumbnail(row, run_dir, count=6, width=160)
    img = f"<img src='{uri}' alt='clip {_esc(row['clip_id'])}'>" if uri else "<p class=muted>no preview</p>"
    return (f"<figure>{img}<figcaption>{note}<div class=muted>{_esc(os.path.basename(row['source']))} "
            f"{row['start_time']:.1f}–{row['end_time']:.1f}s {row['width']}x{row['height']}</div></figcaption></figure>")


def duplicates_section(clips: list[dict], run_dir: str, counts: dict, groups: int = 6, members: int = 4) -> str:
    """The largest groups of duplicates: the kept clip, then the clips rejected as its copies."""
    by_id = {c["clip_id"]: c for c in clips}
    found: dict[str, list[dict]] = {}
    for c in clips:
        if c.get("duplicate_of"):
            found.setdefault(c["duplicate_of"], []).append(c)
    rows = []
    for kept_id, dups in sorted(found.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:groups]:
        kept = by_id.get(kept_id)  # absent: a clip of the run given to --dedup-against
        figs = [_figure(kept, run_dir, "<span class='tag kept'>kept</span>") if kept else
                f"<figure><p class=muted>{_esc(kept_id)} (earlier run)</p></figure>"]
        figs += [_figure(d, run_dir, f"<span class='tag rejected'>{_esc(d['duplicate_kind'])}</span> "
                                     f"similarity {d['duplicate_similarity']:.3f}") for d in dups[:members]]
        more = f"<p class=muted>and {len(dups) - members} more</p>" if len(dups) > members else ""
        rows.append(f"<div class=gallery>{''.join(figs)}</div>{more}")
    return (f"<section><h2>Duplicates</h2><p class=muted>{counts['duplicates']} clip(s) in {counts['groups']} group(s) "
            f"rejected as copies of the clip each group keeps; the largest groups:</p>{''.join(rows)}</section>")


def build_report(run_dir: str, samples_per_score: bool = True) -> str:
    from pipeline import rundir

    run_dir = rundir.resolve(run_dir)
    s = stats(run_dir)
    clips_table = read_table(run_dir, "clips")
    clips = clips_table.to_pylist() if clips_table is not None else []
    errors = read_table(run_dir, "errors")
    errors = errors.to_pylist() if errors is not None else []
    summary = None
    if storage.isfile(os.path.join(run_dir, "summary.json")):
        summary = json.loads(storage.read_bytes(os.path.join(run_dir, "summary.json")))
    v, c = s["videos"], s["clips"]
    cards = [("videos", v["total"]), ("videos failed", v["error"]), ("hours in", f"{v['hours']:.2f}"),
             ("clips", c["total"]), ("clips kept", c["kept"]), ("hours kept", f"{c['hours_kept']:.2f}"),
             ("shards", c["shards"])]
    out = [f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content='width=device-width,initial-scale=1'>"
           f"<title>vidcurate report: {_esc(os.path.basename(storage.absolute(run_dir)))}</title><style>{CSS}</style></head><body>",
           f"<header><h1>vidcurate report</h1><p>{_esc(storage.absolute(run_dir))}</p></header><main>",
           "<div class=cards>" + "".join(f"<div class=card><div class=k>{_esc(k)}</div><div class=v>{_esc(x)}</div></div>" for k, x in cards) + "</div>"]
    out.append(f"<section><h2>Filter funnel</h2><p class=muted>Light bar: clips the filter rejects; dark: clips only it rejects.</p>{funnel_svg(s['funnel'], c['total'])}</section>")
    charts = []
    score_cols = [col for col in s["scores"] if col not in ("width", "height")]
    for col in score_cols:
        thr = active_thresholds(summary, col, clips)
        charts.append(f"<div><h3>{_esc(col)}</h3>{histogram_svg([x.get(col) for x in clips], thr, label=col)}</div>")
    res = {}
    for x in clips:
        key = f"{x['width']}x{x['height']}"
        res[key] = res.get(key, 0) + 1
    res_rows = "".join(f"<tr><td>{_esc(k)}</td><td>{n}</td></tr>" for k, n in sorted(res.items(), key=lambda kv: -kv[1]))
    out.append(f"<section><h2>Score distributions</h2><div class=grid>{''.join(charts)}</div></section>")
    out.append(f"<section><h2>Resolutions</h2><table><tr><th>width x height</th><th>clips</th></tr>{res_rows}</table></section>")
    if s.get("written"):
        rows_ = "".join(f"<tr><td>{_esc(k)}</td><td>{v['clips']}</td><td>{v['mean_frames']:g}</td></tr>"
                        for k, v in s["written"].items())
        out.append("<section><h2>Written clips</h2><table><tr><th>size@fps</th><th>kept clips</th>"
                   f"<th>mean frames</th></tr>{rows_}</table></section>")
    if s.get("shard_sets"):
        rows_ = "".join(f"<tr><td>{_esc(k)}</td><td>{v['shards']}</td><td>{v['clips']}</td></tr>"
                        for k, v in s["shard_sets"].items())
        out.append("<section><h2>Shard sets</h2><table><tr><th>bucket (write.bucket_by)</th><th>shards</th>"
                   f"<th>clips</th></tr>{rows_}</table></section>")
    for column in labelled_columns():
        if s.get(column):
            counts = "".join(f"<tr><td>{_esc(k)}</td><td>{v['clips']}</td><td>{v['kept']}</td></tr>"
                           for k, v in s[column].items())
            out.append(f"<section><h2>{_esc(column.replace('_', ' ').capitalize())}</h2><table><tr>"
                       f"<th>{_esc(column)}</th><th>clips</th><th>kept</th></tr>{counts}</table></section>")
    if samples_per_score:
        figs = []
        for col in GALLERY_COLUMNS:
            for label, row in pick_samples(clips, col):
                uri = thumbnail(row, run_dir)
                img = f"<img src='{uri}' alt='clip {_esc(row['clip_id'])}'>" if uri else "<p class=muted>no preview</p>"
                state = "kept" if row["keep"] else "rejected"
                reasons = ", ".join(row["reject_reasons"] or [])
                caption = f"<div>{_esc(row['caption'])}</div>" if row.get("caption") else ""
                figs.append(f"<figure>{img}<figcaption><b>{_esc(col)}</b> {label}: {row[col]:.3g} "
                            f"<span class='tag {state}'>{state}</span><div class=muted>{_esc(os.path.basename(row['source']))} "
                            f"{row['start_time']:.1f}–{row['end_time']:.1f}s {_esc(reasons)}</div>{caption}</figcaption></figure>")
        out.append(f"<section><h2>Sample clips</h2><div class=gallery>{''.join(figs)}</div></section>")
    if s.get("dedup"):
        out.append(duplicates_section(clips, run_dir, s["dedup"]) if samples_per_score else "")
    err_rows = "".join(f"<tr><td>{_esc(os.path.basename(e['source'] or ''))}</td><td>{_esc(e['stage'])}</td>"
                       f"<td>{_esc(e['error_type'])}</td><td>{_esc(e['message'])}</td></tr>" for e in errors)
    out.append("<section><h2>Errors</h2>" + (f"<table><tr><th>source</th><th>stage</th><th>type</th><th>message</th></tr>{err_rows}</table>"
                                               if errors else "<p class=muted>No errors.</p>") + "</section>")
    reason_names = sorted({r for x in clips for r in x["reject_reasons"] or []})
    legend = "".join(f"<tr><td>{_esc(r)}</td><td>{_esc(reason_column(r) or '')}</td></tr>" for r in reason_names)
    if legend:
        out.append(f"<section><h2>Reject reasons</h2><table><tr><th>reason</th><th>column</th></tr>{legend}</table></section>")
    # Click a thumbnail to show it twice as large.
    out.append("<script>document.querySelectorAll('figure img').forEach(function(img){"
               "img.addEventListener('click',function(){img.parentElement.classList.toggle('big');});});</script>")
    out.append("</main></body></html>")
    return "".join(out)


def write_report(run_dir: str, path: str) -> str:
    storage.put_bytes(path, build_report(run_dir).encode("utf-8"))
    return path
