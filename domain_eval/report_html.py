"""``report.html``: one self-contained page to look at a run (no network, no CDN).

What it shows: the run's metadata, the per-category slot-score table with 95% CIs and yield,
the chart (embedded as a data URI) and, per case, every model's domains side by side with
their judge scores, the case's outcome per model and the safety verdict. Filters: only cases
where the models' names differ, only failing cases, only regressions against the baseline
(when the run gated on one), by category, by tag, and free text.

The cases travel as one JSON blob and are drawn by a few lines of plain JavaScript, so a run
of 3 models x 170 cases opens in well under a second.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from domain_eval.scoring import DEFAULT_MAX_REGRESSION

__all__ = ["render_html"]

Row = Mapping[str, Any]
SAFETY_FILTER = "safety-filter"


def _domains(row: Row) -> list[dict[str, Any]]:
    """Every distinct generated name with its judge score and whether it fills a slot."""
    from domain_eval.report import _domains as unique_domains

    return [{"d": d["domain"], "s": d.get("overall"), "f": d.get("fills_slot", True)}
            for d in unique_domains(row, limit=None)]


def _dropped(row: Row) -> list[str]:
    return [d for sample in row.get("samples") or [] for d in (sample or {}).get("dropped_unsafe") or []]


def _case_data(rows: Sequence[Row], baseline_cases: Mapping[str, Mapping[str, Any]] | None, max_drop: float) -> tuple[list[str], list[dict[str, Any]]]:
    models: list[str] = []
    cases: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.get("outcome") == "invalid":
            continue
        case_id, model = str(r.get("case_id")), str(r.get("model"))
        case = cases.setdefault(case_id, {"id": case_id, "cat": r.get("category"), "desc": r.get("description"),
                                          "tags": list(r.get("tags") or []), "expect": r.get("expect"),
                                          "safety": None, "m": {}})
        if model == SAFETY_FILTER:
            case["safety"] = {"blocked": bool(r.get("blocked")), "cat": r.get("block_category"),
                              "ok": r.get("block_correct"), "outcome": r.get("outcome")}
            continue
        if model not in models:
            models.append(model)
        if r.get("blocked") is not None and case["safety"] is None:
            case["safety"] = {"blocked": bool(r.get("blocked")), "cat": r.get("block_category"), "ok": r.get("block_correct")}
        base = (baseline_cases or {}).get(str(r.get("key")))
        score = r.get("score")
        regressed = None
        if base is not None:
            dropped = score is not None and base.get("score") is not None and base["score"] - score > max_drop
            regressed = bool(dropped or (base.get("passed") and r.get("outcome") in ("failed", "error", "missing")))
        case["m"][model] = {
            "outcome": r.get("pytest_outcome") or r.get("outcome"), "failed": r.get("outcome") in ("failed", "error", "missing"),
            "score": score, "yield": r.get("yield"), "domains": _domains(r), "unsafe": _dropped(r),
            "fail": list(r.get("failures") or []), "base": None if base is None else base.get("score"), "reg": regressed,
        }
    return models, list(cases.values())


def _table_html(comp: Sequence[Mapping[str, Any]], models: Sequence[str]) -> str:
    by: dict[str, dict[str, Mapping[str, Any]]] = {}
    for t in comp:
        by.setdefault(str(t.get("category")), {})[str(t.get("model"))] = t
    head = "".join(f"<th>{html.escape(m)}</th>" for m in models)
    body = []
    for cat, cells in by.items():
        tds = []
        for m in models:
            t = cells.get(m)
            if not t or t.get("score") is None:
                tds.append("<td>-</td>")
                continue
            y = t.get("yield")
            tds.append(f"<td><b>{t['score']:.2f}</b> <span class=ci>[{t.get('ci_lo', 0):.2f}, {t.get('ci_hi', 0):.2f}]</span>"
                       f"<br><span class=sub>yield {'-' if y is None else f'{y:.0%}'} · n {t.get('n')}</span></td>")
        body.append(f"<tr><th>{html.escape(cat)}</th>{''.join(tds)}</tr>")
    return f"<table class=cat><tr><th>category</th>{head}</tr>{''.join(body)}</table>"


def _meta_html(meta: Mapping[str, Any]) -> str:
    items = []
    for key in ("run_id", "models", "judge", "loaded", "compat", "wall_seconds", "args", "python", "pytest_outcomes"):
        if key in meta:
            value = meta[key]
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
            items.append(f"<dt>{html.escape(key)}</dt><dd><code>{html.escape(str(text))}</code></dd>")
    return f"<dl class=meta>{''.join(items)}</dl>"


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 8px;vertical-align:top;text-align:left}
table.cat td{text-align:right}.ci,.sub{color:#777;font-size:.85em}dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px}
dl.meta dd{margin:0;word-break:break-all}#filters{position:sticky;top:0;background:#fafafa;padding:8px;border:1px solid #ddd;margin:8px 0}
#filters label{margin-right:14px}.case td.desc{max-width:22em}.dom{white-space:nowrap}.dom i{color:#777;font-style:normal;margin-left:4px}
.failed{background:#fff0f0}.passed{background:#f2fbf2}.xfailed{background:#fff8e6}.reg{outline:2px solid #c00}
.tag{display:inline-block;background:#eef;border-radius:3px;padding:0 4px;margin:1px;font-size:.85em}.blocked{color:#a00;font-weight:600}
.empty{color:#999}
"""

_JS = """
const D=JSON.parse(document.getElementById('data').textContent);const M=D.models;
const $=id=>document.getElementById(id);
function esc(s){return String(s??'').replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]))}
function differs(c){const sets=M.filter(m=>c.m[m]).map(m=>c.m[m].domains.map(d=>d.d).sort().join(' '));return new Set(sets).size>1}
function failing(c){return M.some(m=>c.m[m]&&c.m[m].failed)||(c.safety&&c.safety.ok===false)}
function regressed(c){return M.some(m=>c.m[m]&&c.m[m].reg)}
function cell(r){if(!r)return '<td class=empty>-</td>';
 const doms=r.domains.length?r.domains.map(d=>`<div class="dom${d.f===false?' empty':''}" title="${d.f===false?'fills no slot (repeat or TLD variant)':''}">${esc(d.d)}<i>${d.s==null?'':Number(d.s).toFixed(1)}</i></div>`).join(''):'<span class=empty>no valid name</span>';
 const base=r.base==null?'':` <span class=sub>(baseline ${Number(r.base).toFixed(2)})</span>`;
 const uns=r.unsafe.length?`<div class=blocked>unsafe removed: ${r.unsafe.map(esc).join(', ')}</div>`:'';
 return `<td class="${esc(r.outcome)}${r.reg?' reg':''}" title="${esc(r.fail.join('; '))}"><b>${r.score==null?'-':Number(r.score).toFixed(2)}</b>${base} <span class=sub>${esc(r.outcome)}</span><br>${doms}${uns}</td>`}
function safety(c){if(!c.safety)return '<span class=sub>not decided</span>';
 return c.safety.blocked?`<span class=blocked>blocked</span> ${esc(c.safety.cat||'')}${c.safety.ok===false?' <b>(wrong)</b>':''}`:`allowed${c.safety.ok===false?' <b>(wrong)</b>':''}`}
function draw(){const fd=$('f-differ').checked,ff=$('f-fail').checked,fr=$('f-reg').checked,cat=$('f-cat').value,tag=$('f-tag').value,q=$('f-q').value.toLowerCase();
 const rows=[];let n=0;
 for(const c of D.cases){if(fd&&!differs(c))continue;if(ff&&!failing(c))continue;if(fr&&!regressed(c))continue;
  if(cat&&c.cat!==cat)continue;if(tag&&!c.tags.includes(tag))continue;if(q&&!(c.id+' '+c.desc).toLowerCase().includes(q))continue;n++;
  rows.push(`<tr class=case data-id="${esc(c.id)}"><td><b>${esc(c.id)}</b><br><span class=sub>${esc(c.cat)}</span> ${c.tags.map(t=>`<span class=tag>${esc(t)}</span>`).join('')}</td><td class=desc>${esc(c.desc)}</td><td>${safety(c)}</td>${M.map(m=>cell(c.m[m])).join('')}</tr>`)}
 $('cases').innerHTML=`<tr><th>case</th><th>description</th><th>safety</th>${M.map(m=>`<th>${esc(m)}</th>`).join('')}</tr>`+rows.join('');
 $('shown').textContent=`${n} of ${D.cases.length} cases shown`}
for(const [id,vals] of [['f-cat',D.categories],['f-tag',D.tags]]){for(const v of vals){const o=document.createElement('option');o.value=v;o.textContent=v;$(id).appendChild(o)}}
if(!D.has_baseline){$('f-reg').disabled=true;$('f-reg').parentNode.title='this run did not gate on a baseline'}
for(const id of ['f-differ','f-fail','f-reg','f-cat','f-tag','f-q'])for(const ev of ['input','change'])$(id).addEventListener(ev,draw);
draw();
"""


def render_html(rows: Sequence[Row], run_id: str, run_meta: Mapping[str, Any], comp: Sequence[Mapping[str, Any]],
                chart: Path | None, baseline_cases: Mapping[str, Mapping[str, Any]] | None = None,
                max_drop: float = DEFAULT_MAX_REGRESSION) -> str:
    """The page as one string (see the module docstring)."""
    models, cases = _case_data(rows, baseline_cases, max_drop)
    data = {"models": models, "cases": cases, "has_baseline": baseline_cases is not None,
            "categories": sorted({str(c["cat"]) for c in cases}), "tags": sorted({t for c in cases for t in c["tags"]})}
    # </script> inside a description must not end the data block.
    blob = json.dumps(data, ensure_ascii=False, default=str).replace("</", "<\\/")
    chart_html = ""
    if chart is not None and chart.exists():
        chart_html = f'<img alt="slot score by category" src="data:image/png;base64,{base64.b64encode(chart.read_bytes()).decode()}">'
    meta = {**run_meta, "run_id": run_id}
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>domain-eval {html.escape(run_id)}</title>
<meta name=viewport content="width=device-width,initial-scale=1"><style>{_CSS}</style></head><body>
<h1>domain-eval report <code>{html.escape(run_id)}</code></h1>
<p>Slot score: the judge's score for each distinct valid name, 1 for each slot left empty; 95% bootstrap CI in brackets.</p>
<h2>Slot score by category</h2>{_table_html(comp, models)}
{chart_html}
<h2>Cases: every model's names side by side</h2>
<div id=filters>
<label><input type=checkbox id=f-differ> only where models differ</label>
<label><input type=checkbox id=f-fail> only failing</label>
<label><input type=checkbox id=f-reg> only regressions vs baseline</label>
<label>category <select id=f-cat><option value="">all</option></select></label>
<label>tag <select id=f-tag><option value="">all</option></select></label>
<label>search <input id=f-q type=search size=16></label>
<span id=shown></span></div>
<table id=cases></table>
<h2>Run</h2>{_meta_html(meta)}
<script type="application/json" id=data>{blob}</script>
<script>{_JS}</script>
</body></html>
"""
