"""``report.html`` of a screening run: one self-contained file a reader can open anywhere (Qt-free).

Thumbnails are embedded as base64 PNGs (made at scoring time and kept in the state database), so
the report works offline, by e-mail or from a USB stick, and never re-reads the source images.
Everything shown comes from the run's results and the model card; patient names and IDs never
appear, and with ``--anonymize`` study keys, paths and descriptions are replaced by hashes (in
the reasons of failed DICOM exports too). The report says when a reduced-resolution decode made the
scores (``--fast-decode``, or the default for a model whose card validated it).
Machine-readable hooks (``data-count``, ``data-verdict``, ``class="study"``) let tests and scripts
check the numbers without scraping prose.
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

from PIL import Image

from desktop.screening.anonymize import Aliases
from desktop.screening.decoding import decoding_text
from desktop.screening.heat_legend import legend_rgb, legend_text
from desktop.screening.render import (
    format_probability,
    operating_points_text,
    task_word,
    verdict_text,
)
from desktop.screening.run import ScreenResult, export_error_rows
from desktop.screening.state import DECODE_EXACT, ScreenState, mode_codecs
from models.fsutil import atomic_write_text
from models.scope import Indications
from models.trust import BANNER, model_warnings, performance_lines

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#202124}
.banner{background:#fce8e6;border:1px solid #d93025;padding:.6em;font-weight:bold}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .5em}
th{background:#f1f3f4}img{display:block;max-width:160px}
.likely{background:#fce8e6}.suspicious{background:#fef7e0}.failed{color:#5f6368}
.weak{background:#d93025;color:#fff;padding:.6em;font-weight:bold;font-size:1.1em}
.not_indicated{color:#5f6368}.legend img{max-width:none;display:inline-block;vertical-align:middle;margin-right:1em}td.key{font-size:.75em;color:#5f6368;word-break:break-all;max-width:14em}
"""


def _e(v: object) -> str:
    return html.escape(str(v), quote=True)


def _count_table(title: str, attr: str, counts: Mapping[str, int]) -> list[str]:
    out = [f"<h2>{_e(title)}</h2>", "<table>", "<tr><th>value</th><th>studies</th></tr>"]
    for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        out.append(f'<tr {attr}="{_e(k)}"><td>{_e(k or "—")}</td><td>{n}</td></tr>')
    out.append("</table>")
    return out


def render_report(res: ScreenResult, card: Mapping, model_id: str, state: ScreenState,
                  alias: Aliases | Callable[[str, str], str]) -> str:
    """The report's HTML text; :func:`write_report` writes it atomically. Sections in the order
    a reader needs them: what model (and how good), how much was screened, the worklist, then
    what got no verdict and why."""
    text = getattr(alias, "text", lambda s: s)
    if isinstance(alias, Aliases):
        export_errors = export_error_rows(res, alias)
    else:  # a bare callable: it aliases the study keys
        export_errors = [(alias(k, "study"), r) for k, r in res.export_errors]
    out = _head(res, card)
    out += _model_section(res, card, model_id)
    out += _counts_section(res, len(export_errors))
    out += _worklist_section(res, card, state, alias)
    out += _not_indicated_section(res, state, alias, text)
    out += _problems_section(res, alias, export_errors)
    out += ["</body></html>", ""]
    return "\n".join(out)


def _head(res: ScreenResult, card: Mapping) -> list[str]:
    return [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>mura-screen report — {_e(card['name'])}</title>", f"<style>{_CSS}</style></head><body>",
        f"<h1>Screening report: {_e(task_word(card))}</h1>",
        f'<p class="banner">{_e(_banner(card["intended_use"]))}</p>',
        *[f'<p class="weak" data-warning="{_e(w)}">{_e(BANNER)}: {_e(w)}</p>' for w in model_warnings(card)],
        f"<p>Generated {_e(time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()))}"
        f"{'' if res.complete else ' — <b>incomplete run</b>: only part of the source was screened'}.</p>",
    ]


def _model_section(res: ScreenResult, card: Mapping, model_id: str) -> list[str]:
    """Which model, where it was validated and what it scored, and how the images were decoded."""
    thr = {k: float(v) for k, v in card["thresholds"].items()}
    mode = getattr(res, "decode", DECODE_EXACT)
    decode_text = decoding_text(card, mode_codecs(mode))
    return [
        "<h2>Model</h2>", "<table>",
        f"<tr><th>name</th><td>{_e(card['name'])}</td></tr>",
        f"<tr><th>version</th><td>{_e(card['version'])}</td></tr>",
        f'<tr><th>model id</th><td data-model-id="{_e(model_id)}">{_e(model_id)}</td></tr>',
        "<tr><th>validated performance</th><td>"
        + "<br>".join(f'<span class="performance">{_e(line)}</span>' for line in performance_lines(card))
        + "</td></tr>",
        f"<tr><th>indicated for</th><td>{_e(Indications.from_card(card).summary())}</td></tr>",
        f"<tr><th>inference precision</th><td>{_e(card.get('validation', {}).get('precision', '—'))}</td></tr>",
        f"<tr><th>intended use</th><td>{_e(card['intended_use'])}</td></tr>",
        f"<tr><th>operating points</th><td>{_e(operating_points_text(thr))}</td></tr>",
        f'<tr><th>decoding</th><td data-decode="{_e(mode)}">{_e(decode_text)}</td></tr>',
        "</table>",
    ]


def _counts_section(res: ScreenResult, n_export_errors: int) -> list[str]:
    ranked = res.ranked
    counts = {
        "studies": len(res.results),
        "images": sum(len(r.study.images) for r in res.results),
        "scored_images": sum(len(r.image_probs) for r in ranked),
        "not_indicated_studies": len(res.not_indicated),
        "not_indicated_images": len(getattr(res, "refusals", [])),
        "failed_files": len(res.failures),
        "skipped_files": len(res.discovery.skipped),
        "duplicates": len(res.discovery.duplicates),
        "export_errors": n_export_errors,
    }
    out = ["<h2>Counts</h2>", "<table>"]
    out += [f'<tr><th>{_e(k.replace("_", " "))}</th><td data-count="{k}">{n}</td></tr>' for k, n in counts.items()]
    out.append("</table>")
    out += _count_table("Studies per verdict", "data-verdict", Counter(r.verdict for r in ranked))
    out += _count_table("Studies per body part", "data-body-part",
                        Counter(r.body_part or "unknown" for r in ranked))
    return out


def _worklist_section(res: ScreenResult, card: Mapping, state: ScreenState,
                      alias: Aliases | Callable[[str, str], str]) -> list[str]:
    """The ranked studies, most suspicious first, each with its heatmap thumbnail."""
    word = task_word(card)
    thr = {k: float(v) for k, v in card["thresholds"].items()}
    identity = getattr(alias, "identity", None) or Aliases("", False).identity
    out = [
        "<h2>Worklist (most suspicious first)</h2>",
        f'<p class="legend"><img alt="heatmap colour scale" src="data:image/png;base64,{_legend_png(card)}">'
        f"{_e(legend_text(card))}</p>",
        "<table>",
        "<tr><th>rank</th><th>image + heatmap</th><th>patient</th><th>accession · date</th>"
        "<th>modality · body part</th><th>description</th><th>P</th>"
        f"<th>verdict (suspicious ≥ {format_probability(thr['suspicious'])}, likely ≥ "
        f"{format_probability(thr['likely'])})</th><th>images (failed)</th><th>study</th></tr>",
    ]
    for rank, r in enumerate(res.ranked, 1):
        key = alias(r.study.key, "study")
        thumb = state.best_thumbnail(key)
        img = "—" if thumb is None else f'<img alt="study {rank}" src="{data_uri(thumb)}">'
        ids = identity(r.study)
        header_part = f" ({ids['body_part_header']})" if ids["body_part_header"] else ""
        out.append(
            f'<tr class="study {_e(r.verdict)}" data-study="{_e(key)}">'
            f"<td>{rank}</td><td>{img}</td>"
            f'<td class="patient"><b>{_e(ids["patient_id"] or "—")}</b><br>{_e(ids["patient_name"])}</td>'
            f'<td>{_e(ids["accession"] or "—")}<br>{_e(ids["study_date"])}</td>'
            f"<td>{_e(ids['modality'] or '—')}<br>{_e(r.body_part or '—')}{_e(header_part)}</td>"
            f"<td>{_e(ids['description'])}</td>"
            f"<td>{_e(format_probability(r.probability))}</td><td>{_e(verdict_text(r.verdict, word))}</td>"
            f'<td>{len(r.study.images)} ({r.n_failed})</td><td class="key">{_e(key)}</td></tr>')
    out.append("</table>")
    return out


def _problems_section(res: ScreenResult, alias: Aliases | Callable[[str, str], str],
                      export_errors: list[tuple[str, str]]) -> list[str]:
    """Failed DICOM exports, files that could not be scored, skipped files and duplicates."""
    out = [f"<h2>DICOM exports that failed ({len(export_errors)})</h2><ul>"]
    out += [f'<li class="export-error" data-study="{_e(k)}">study {_e(k)}: {_e(reason)}</li>'
            for k, reason in export_errors]
    out.append("</ul>")
    out.append(f"<h2>Files that could not be scored ({len(res.failures)})</h2><ul>")
    out += [f'<li class="failed-file">{_e(alias(p, "file"))}: {_e(reason)}</li>' for p, reason in res.failures]
    out.append("</ul>")
    out.append(f"<h2>Skipped files and duplicates ({len(res.discovery.skipped) + len(res.discovery.duplicates)})"
               "</h2><ul>")
    out += [f'<li class="skipped-file">{_e(alias(p, "file"))}: {_e(reason)}</li>'
            for p, reason in res.discovery.skipped]
    out += [f'<li class="duplicate-file">{_e(alias(p, "file"))}: same SOP Instance UID as '
            f'{_e(alias(q, "file"))}</li>' for p, q in res.discovery.duplicates]
    out.append("</ul>")
    return out


def data_uri(picture: bytes) -> str:
    """A data: URI for a stored thumbnail, JPEG (since 2026-12) or PNG (states written before)."""
    mime = "image/jpeg" if picture[:3] == b"\xff\xd8\xff" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(picture).decode()}"


def _legend_png(card: Mapping) -> str:
    buf = io.BytesIO()
    Image.fromarray(legend_rgb(card, width=360)).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode()


def _not_indicated_section(res: ScreenResult, state: ScreenState, alias, text) -> list[str]:
    """Studies with no verdict: apart from the worklist, never ranked, each with its reason."""
    rows = res.not_indicated
    out = [f"<h2>Not indicated ({len(rows)}): no verdict, outside what the model was trained for</h2>"]
    if not rows:
        return out
    identity = getattr(alias, "identity", None) or Aliases("", False).identity
    out += ["<table>", "<tr><th>image</th><th>patient</th><th>accession · date</th><th>modality</th>"
            "<th>why</th><th>images</th><th>description</th><th>study</th></tr>"]
    for r in rows:
        ids = identity(r.study)
        thumb = state.best_thumbnail(alias(r.study.key, "study"))
        img = "—" if thumb is None else f'<img alt="not indicated" src="{data_uri(thumb)}">'
        key = alias(r.study.key, "study")
        out.append(f'<tr class="study not_indicated" data-study="{_e(key)}"><td>{img}</td>'
                   f'<td class="patient"><b>{_e(ids["patient_id"] or "—")}</b><br>{_e(ids["patient_name"])}</td>'
                   f'<td>{_e(ids["accession"] or "—")}<br>{_e(ids["study_date"])}</td><td>{_e(ids["modality"] or "—")}</td>'
                   f"<td>{_e(r.scope)}</td><td>{len(r.study.images)}</td><td>{_e(text(r.study.description))}</td>"
                   f'<td class="key">{_e(key)}</td></tr>')
    out.append("</table>")
    return out


def write_report(path: str | Path, res: ScreenResult, card: Mapping, model_id: str, state: ScreenState,
                 alias: Aliases | Callable[[str, str], str]) -> Path:
    """Write ``report.html`` atomically: a crash leaves the previous report, never half of one."""
    return atomic_write_text(path, render_report(res, card, model_id, state, alias))


def _banner(intended_use: str) -> str:
    """The card's intended use, led by the disclaimer unless the card already says it."""
    lead = "Research use only — not for diagnostic use."
    return intended_use if "not for diagnostic use" in intended_use.lower() else f"{lead} {intended_use}"
