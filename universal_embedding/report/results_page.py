"""results.html: every metric per domain as a table, and R@1 / mMP@k as inline SVG bar charts.

The page is titled by its run (workdir name, model, checkpoint and step, date: `run_title`) and
ends with the run's provenance (package versions, git commit, devices), so that tabs and saved
copies of several runs tell themselves apart.

Self-contained (no script, no external file). Protocols are told apart by colour (Okabe-Ito
blue / orange, distinct for deuteranopes) and by fill (solid / hatched); every bar carries its
value as text, and the table holds the same numbers for screen readers.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

from universal_embedding.report.table import (
    PROTOCOL_ORDER,
    format_value,
    metric_names,
    metric_titles,
)

_CSS = """*{box-sizing:border-box}
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;color:#111;margin:0 auto;
max-width:1200px;padding:0 12px 40px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.5em}
.scroll{overflow-x:auto}
table{border-collapse:separate;border-spacing:0;margin:.5em 0;border-top:1px solid #bbb;
border-left:1px solid #bbb}
th,td{padding:4px 8px;line-height:20px;border-right:1px solid #bbb;border-bottom:1px solid #bbb}
thead th{background:#f0f0f0}
tbody th{text-align:left;font-weight:normal;position:sticky;left:0;background:#fff}
thead tr:first-child th:first-child{position:sticky;left:0}
td{text-align:right;font-variant-numeric:tabular-nums}
tr.average th,tr.average td{font-weight:700;border-top:2px solid #555}
.charts{display:flex;flex-wrap:wrap;gap:12px 28px}
figure{margin:0;flex:1 1 320px;max-width:460px}
figcaption{font-weight:600;margin:.2em 0}
svg{width:100%;height:auto;display:block}
.run{color:#333;margin:.2em 0 .8em}
dl.prov{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;font-size:13px}
dl.prov dt{font-weight:600}dl.prov dd{margin:0;overflow-wrap:anywhere}"""

RUN_FIELDS = ("workdir", "model", "checkpoint", "date")  # the order of the title's parts


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(
    results: Mapping[str, float], rows: Sequence[str], cols: Sequence[tuple[str, str]], k: int
) -> str:
    metrics = metric_names(k)
    groups = "".join(
        f'<th scope="colgroup" colspan="{len(metrics)}">{_e(knn)} · {_e(p)} index</th>'
        for knn, p in cols
    )
    titles = "".join(f'<th scope="col">{t}</th>' for _ in cols for t in metric_titles(k))
    body = []
    for d in rows:
        cells = "".join(
            f"<td>{format_value(m, results.get(f'{d}:{p}:{knn}:{m}'))}</td>"
            for knn, p in cols
            for m in metrics
        )
        cls = ' class="average"' if d == "average" else ""
        body.append(f'<tr{cls}><th scope="row">{_e(d)}</th>{cells}</tr>')
    return (
        '<div class="scroll"><table><thead><tr><th scope="col" rowspan="2">domain</th>'
        f"{groups}</tr><tr>{titles}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def bar_chart(values: Mapping[str, Mapping[str, float | None]], title: str, chart_id: str) -> str:
    """Horizontal bars, one group per row label, one bar per protocol: {row: {protocol: frac}}."""
    protocols = [p for p in PROTOCOL_ORDER if any(p in v for v in values.values())]
    fills = {"separate": "#0072b2", "common": f"url(#{chart_id}-hatch)"}
    left, width, bar, gap = 64, 240, 12, 10
    group = bar * len(protocols) + gap
    top = 24
    height = top + group * len(values) + 22
    out = [
        f'<svg viewBox="0 0 {left + width + 44} {height}" role="img" '
        f'aria-labelledby="{chart_id}-t" font-size="11" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{chart_id}-t">{_e(title)}, percent</title>'
        f'<defs><pattern id="{chart_id}-hatch" width="4" height="4" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="4" height="4" fill="#e69f00"/>'
        '<rect width="1.5" height="4" fill="#8a5a00"/></pattern></defs>'
    ]
    for i, p in enumerate(protocols):  # legend
        x = left + i * 110
        out.append(
            f'<rect x="{x}" y="4" width="14" height="10" fill="{fills[p]}"/>'
            f'<text x="{x + 18}" y="13">{_e(p)} index</text>'
        )
    for tick in range(0, 101, 25):
        x = left + width * tick / 100
        out.append(
            f'<line x1="{x}" y1="{top - 4}" x2="{x}" y2="{height - 18}" stroke="#ccc"/>'
            f'<text x="{x}" y="{height - 6}" text-anchor="middle" fill="#444">{tick}</text>'
        )
    for g, (row, by) in enumerate(values.items()):
        y0 = top + g * group
        weight = ' font-weight="700"' if row == "average" else ""
        mid = y0 + bar * len(protocols) / 2 + 4
        out.append(f'<text x="{left - 6}" y="{mid}" text-anchor="end"{weight}>{_e(row)}</text>')
        for i, p in enumerate(protocols):
            v, y = by.get(p), y0 + i * bar
            if v is None or math.isnan(v):
                out.append(f'<text x="{left + 3}" y="{y + 9}" fill="#444">n/a</text>')
                continue
            w = max(width * v, 0.5)
            out.append(
                f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar - 2}" fill="{fills[p]}">'
                f"<title>{_e(row)}, {_e(p)}: {100 * v:.1f}</title></rect>"
                f'<text x="{left + w + 3:.1f}" y="{y + 9}">{100 * v:.1f}</text>'
            )
    return "".join(out) + "</svg>"


def run_title(run: Mapping[str, str]) -> str:
    """'<workdir> · <model> · <checkpoint> · <date>' of the run's known fields."""
    return " · ".join(str(run[f]) for f in RUN_FIELDS if run.get(f))


def _run_line(run: Mapping[str, str]) -> str:
    parts = [f"{f}: <strong>{_e(run[f])}</strong>" for f in RUN_FIELDS[1:] if run.get(f)]
    return f'<p class="run">{" · ".join(parts)}</p>' if parts else ""


def provenance_html(prov: Mapping | None) -> str:
    """The provenance object (versions, git commit, devices) as a definition list."""
    if not prov:
        return ""
    rows = [("git commit", prov.get("git_commit") or "not run from a git checkout")]
    rows.append(("devices", ", ".join(prov.get("devices") or []) or "unknown"))
    rows += [(name, version) for name, version in (prov.get("versions") or {}).items()]
    items = "".join(f"<dt>{_e(name)}</dt><dd>{_e(value)}</dd>" for name, value in rows)
    return f'<h2>Provenance</h2><dl class="prov">{items}</dl>'


def render(
    results: Mapping[str, float],
    domains: Sequence[str],
    cols: Sequence[tuple[str, str]],
    k: int,
    title: str = "kNN results",
    run: Mapping[str, str] | None = None,
    provenance: Mapping | None = None,
) -> str:
    """The page: the run's title, one table (every metric, every kNN setup and protocol) and,
    per kNN setup, bar charts of R@1 and mMP@k per domain for both protocols; then the
    provenance. run: {'workdir', 'model', 'checkpoint', 'date'} (any may be missing)."""
    rows = [*domains, "average"]
    heading = f"{title} (k={k})"
    named = run_title(run or {})
    page_title = f"{named} · {heading}" if named else heading
    h1 = f"{run['workdir']}: {heading}" if run and run.get("workdir") else heading
    charts = []
    for knn in dict.fromkeys(knn for knn, _ in cols):
        figs = []
        for metric, name in (("top_1", "R@1"), (f"mp_{k}", f"mMP@{k}")):
            values = {
                d: {p: results.get(f"{d}:{p}:{knn}:{metric}") for kn, p in cols if kn == knn}
                for d in rows
            }
            chart = bar_chart(values, f"{knn} {name} per domain", f"{knn}-{metric}")
            figs.append(f"<figure><figcaption>{name} (%)</figcaption>{chart}</figure>")
        head = f"{_e(knn)}: R@1 and mMP@{k} per domain"
        charts.append(f'<h2>{head}</h2><div class="charts">{"".join(figs)}</div>')
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(page_title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(h1)}</h1>{_run_line(run or {})}<p>Percent, one decimal. <em>skipped</em>: "
        "queries without any relevant image in the index, left out of the means (the average row "
        "gives their total). Separate: each domain searches its own index; common: all "
        f"domains' indexes merged (the official protocol).</p>{_table(results, rows, cols, k)}"
        f"{''.join(charts)}{provenance_html(provenance)}</body></html>"
    )
