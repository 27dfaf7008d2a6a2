"""The evidence pack of a pipeline run: what was promoted, by whom, which checks passed with which numbers, and
where the alias is now, as files whose hashes are chained from pack to pack.

Layout, under the ledger directory::

    evidence/<env>/<pipeline_id>/<seq>/         one pack per end of the run (a paused run that resumes ends again)
        pipeline.json                           the run's ledger records: start, every step, end
        <phase>--<step>--<file>                 what the steps saved: preflight JSON, terraform plan review,
                                                approvals, the deploy record, smoke JUnit XML, backup, snapshot
        deploy-<run_id>.json                    every ledger record of each deploy run (verdicts and their numbers)
        approvals.json                          the approvals the run counted, with who and when
        report.md, report.html                  the human report; the HTML page draws the canary timeline (SVG)
        index.json                              sha256 of every file above, and the previous pack's index sha256
    evidence/<env>/<pipeline_id>/<seq>.tar.gz   the same folder as one archive
    evidence/HEAD                               the last pack's index: the chain's head

Stages of :func:`write_pack`: collect, render, index (chained), archive, record (``evidence-pack`` in the
ledger with the index's sha256). :func:`verify_pack` recomputes every hash, the archive's members, the index
against its ledger record, and the link to the previous pack.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from promoter.engine.ledger import Ledger, utcnow
from promoter.errors import RefusedError, UsageError


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"


def evidence_root(ledger: Ledger) -> Path:
    return Path(ledger.root) / "evidence"


# -- collect ---------------------------------------------------------------------------------------------------
def collect(ledger: Ledger, env: str, pipeline_id: str) -> dict[str, Any]:
    """Everything the pack is made of, from the ledger and the steps' saved files."""
    from promoter.engine.pipeline import pipeline_records, staging_dir

    records = pipeline_records(ledger, env, pipeline_id)
    if not records:
        raise UsageError(f"no pipeline run {pipeline_id} in {env}'s ledger")
    steps = [r for r in records if r["kind"] == "pipeline-step" and r.get("status") != "started"]
    deploys: dict[str, list[dict[str, Any]]] = {}
    for step in steps:
        run_id = (step.get("outputs") or {}).get("run_id")
        if step.get("action") == "deploy" and run_id:
            deploys[run_id] = ledger.records(step.get("target_env") or env, run_id=run_id)
    approvals = [{"step": s["step_key"], **(s.get("outputs") or {})} for s in steps
                 if s.get("action") in ("approval", "infra-apply") and s.get("status") in ("passed", "skipped")]
    stage = staging_dir(ledger, env, pipeline_id)
    files = {p.name: p.read_bytes() for p in sorted(stage.iterdir())} if stage.is_dir() else {}
    return {"records": records, "steps": steps, "deploys": deploys, "approvals": approvals, "files": files}


# -- render ----------------------------------------------------------------------------------------------------
def _latest_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    last: dict[str, dict[str, Any]] = {}
    for s in steps:
        last[s["step_key"]] = s
    return list(last.values())


def summary(data: dict[str, Any]) -> dict[str, Any]:
    records = data["records"]
    start = next((r for r in records if r["kind"] == "pipeline-start"), {})
    end = next((r for r in reversed(records) if r["kind"] == "pipeline-end"), {})
    steps = _latest_steps(data["steps"])
    alias = None
    for s in steps:
        if s.get("action") == "status" and s.get("status") == "passed":
            alias = (s.get("outputs") or {}).get("routes")
    return {"pipeline_id": start.get("pipeline_id"), "env": start.get("env"), "phases": start.get("phases"),
            "release": start.get("release"), "artifact_sha256": start.get("artifact_sha256"),
            "git_sha": (start.get("artifact") or {}).get("git_sha"), "started_by": start.get("who"),
            "started": start.get("ts"), "ended": end.get("ts"), "outcome": end.get("outcome"),
            "reason": end.get("reason"), "steps": steps, "alias": alias}


def _verdict_rows(run: list[dict[str, Any]]) -> list[str]:
    rows = []
    for v in run:
        if v["kind"] != "verdict":
            continue
        c = (v.get("observation") or {}).get("canary") or {}
        s = (v.get("observation") or {}).get("stable") or {}
        rows.append(f"| {v.get('step')} % | {v.get('elapsed')} s | {v.get('outcome')} | {v.get('action')} | "
                    f"{c.get('invocations')} | {c.get('error_rate_pct')} % | {c.get('p95_ms')} ms | "
                    f"{s.get('error_rate_pct', '-')} % | {str(v.get('why', '')).replace('|', '/')} |")
    return rows


def report_markdown(data: dict[str, Any]) -> str:
    s = summary(data)
    lines = [f"# Promotion {s['pipeline_id']} ({s['env']}: {' + '.join(s['phases'] or [])})", "",
             f"- **Promoted**: {s['release']}, artifact sha256 `{s['artifact_sha256']}`"
             + (f", git {s['git_sha']}" if s["git_sha"] else ""),
             f"- **Started by**: {s['started_by']} at {s['started']}",
             f"- **Outcome**: {s['outcome']} at {s['ended']}: {s['reason']}", ""]
    if s["alias"]:
        lines.append("- **Alias now**: " + ", ".join(f"version {r['version']} ({r.get('release')}) "
                                                     f"{r['percent']:g} %" for r in s["alias"]))
        lines.append("")
    lines += ["## Steps", "", "| step | action | outcome | what happened |", "|---|---|---|---|"]
    for step in s["steps"]:
        detail = str(step.get("detail", "")).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {step['step_key']} | {step.get('action')} | {step.get('status')} | {detail} |")
    if data["approvals"]:
        lines += ["", "## Approvals", "", "| step | approver | identity | when | ref |", "|---|---|---|---|---|"]
        for a in data["approvals"]:
            lines.append(f"| {a['step']} | {a.get('approver', '-')} | {a.get('identity') or '-'} | "
                         f"{a.get('ts') or a.get('applied') or '-'} | {a.get('ref') or '-'} |")
    for run_id, run in data["deploys"].items():
        end = next((r for r in reversed(run) if r["kind"] == "run-end"), {})
        lines += ["", f"## Deploy run {run_id}: {end.get('outcome')}", "", str(end.get("reason", "")), "",
                  "| step | elapsed | verdict | action | canary n | canary errors | canary p95 | stable errors | why |",
                  "|---|---|---|---|---|---|---|---|---|", *_verdict_rows(run)]
    lines += ["", "Files of this pack and their sha256: `index.json`.", ""]
    return "\n".join(lines)


def timeline(run: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Canary weight (%) and canary error rate (%) over seconds since the run started (pure)."""
    start = next((r for r in run if r["kind"] == "run-start"), None)
    if start is None:
        return {"weight": [], "errors": []}
    t0 = _epoch(start["ts"])
    candidate = None
    weight: list[tuple[float, float]] = [(0.0, 0.0)]
    errors: list[tuple[float, float]] = []
    for r in run:
        if r["kind"] == "step" and r.get("name") == "publish" and r.get("version"):
            candidate = str(r["version"])
        elif r["kind"] == "alias-change":
            after = r.get("after") or {}
            weights = after.get("weights") or {}
            if candidate and candidate in weights:
                pct = float(weights[candidate]) * 100
            else:
                pct = 100.0 if candidate and str(after.get("version")) == candidate else 0.0
            weight.append((_epoch(r["ts"]) - t0, round(pct, 2)))
        elif r["kind"] == "verdict":
            c = (r.get("observation") or {}).get("canary") or {}
            if c.get("error_rate_pct") is not None:
                errors.append((_epoch(r["ts"]) - t0, float(c["error_rate_pct"])))
    end = next((r for r in reversed(run) if r["kind"] == "run-end"), None)
    if end is not None:
        weight.append((_epoch(end["ts"]) - t0, weight[-1][1]))
    return {"weight": weight, "errors": errors}


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def svg_chart(series: dict[str, list[tuple[float, float]]], threshold: float, title: str) -> str:
    """An inline SVG: the canary's weight as a step line, its error rate as points, the rollback threshold."""
    w, h, pad = 640, 240, 40
    points = series["weight"] + series["errors"]
    span = max([t for t, _ in points] + [1.0])
    top = max([100.0] + [e for _, e in series["errors"]] + [threshold])

    def x(t: float) -> float:
        return round(pad + (w - 2 * pad) * t / span, 1)

    def y(v: float) -> float:
        return round(h - pad - (h - 2 * pad) * v / top, 1)

    step_path = []
    for i, (t, v) in enumerate(series["weight"]):
        if i:
            step_path.append(f"L{x(t)},{y(series['weight'][i - 1][1])}")
        step_path.append(f"{'M' if i == 0 else 'L'}{x(t)},{y(v)}")
    dots = "".join(f'<circle cx="{x(t)}" cy="{y(e)}" r="3" fill="#c0392b"><title>{e:g} % errors at {t:.0f} s'
                   f'</title></circle>' for t, e in series["errors"])
    error_line = " ".join(f"{x(t)},{y(e)}" for t, e in series["errors"])
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
        f'aria-label="{html.escape(title)}">'
        f'<rect width="{w}" height="{h}" fill="#fff"/>'
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#999"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#999"/>'
        f'<text x="{pad}" y="{pad - 10}" font-size="12">{html.escape(title)}</text>'
        f'<text x="{w - pad}" y="{h - 10}" font-size="11" text-anchor="end">{span:.0f} s</text>'
        f'<text x="5" y="{y(100)}" font-size="11">100 %</text>'
        f'<line x1="{pad}" y1="{y(threshold)}" x2="{w - pad}" y2="{y(threshold)}" stroke="#e67e22" '
        f'stroke-dasharray="4 3"><title>rollback threshold {threshold:g} %</title></line>'
        f'<path d="{" ".join(step_path)}" fill="none" stroke="#2c7be5" stroke-width="2"><title>canary weight'
        f'</title></path>'
        f'<polyline points="{error_line}" fill="none" stroke="#c0392b" stroke-width="1"/>{dots}'
        f'<text x="{w - pad}" y="{pad - 10}" font-size="11" text-anchor="end" fill="#2c7be5">canary weight %</text>'
        f'<text x="{w - pad}" y="{pad + 4}" font-size="11" text-anchor="end" fill="#c0392b">canary error rate %'
        f'</text></svg>'
    )


def report_html(data: dict[str, Any], markdown: str, threshold: float) -> str:
    s = summary(data)
    charts = "".join(f"<h2>Deploy run {html.escape(run_id)}</h2>"
                     + svg_chart(timeline(run), threshold, f"canary of run {run_id}")
                     for run_id, run in data["deploys"].items())
    rows = "".join(f"<tr><td>{html.escape(st['step_key'])}</td><td>{html.escape(str(st.get('action')))}</td>"
                   f"<td class='{html.escape(str(st.get('status')))}'>{html.escape(str(st.get('status')))}</td>"
                   f"<td>{html.escape(str(st.get('detail', '')))}</td></tr>" for st in s["steps"])
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Promotion {html.escape(str(s['pipeline_id']))}</title><style>"
        "body{font-family:sans-serif;max-width:980px;margin:2em auto}td,th{border:1px solid #ddd;padding:4px}"
        "table{border-collapse:collapse}.passed,.skipped{color:#1e8449}.failed{color:#c0392b}.waiting{color:#b9770e}"
        "</style></head><body>"
        f"<h1>Promotion {html.escape(str(s['pipeline_id']))} ({html.escape(str(s['env']))})</h1>"
        f"<p>{html.escape(str(s['release']))}, artifact sha256 <code>{html.escape(str(s['artifact_sha256']))}</code>, "
        f"started by {html.escape(str(s['started_by']))}; outcome <b>{html.escape(str(s['outcome']))}</b>: "
        f"{html.escape(str(s['reason']))}</p>"
        f"<table><tr><th>step</th><th>action</th><th>outcome</th><th>what happened</th></tr>{rows}</table>"
        f"{charts}<h2>Report</h2><pre>{html.escape(markdown)}</pre></body></html>\n"
    )


# -- write and verify ----------------------------------------------------------------------------------------------
def _head(ledger: Ledger) -> dict[str, Any] | None:
    path = evidence_root(ledger) / "HEAD"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_pack(ledger: Ledger, env: str, pipeline_id: str, *, threshold: float | None = None) -> dict[str, Any]:
    data = collect(ledger, env, pipeline_id)
    base = evidence_root(ledger) / env / pipeline_id
    seq = len([p for p in base.iterdir() if p.is_dir()]) + 1 if base.is_dir() else 1
    folder = base / f"{seq:02d}"
    folder.mkdir(parents=True)
    markdown = report_markdown(data)
    limit = threshold if threshold is not None else _threshold(data)
    files: dict[str, bytes] = {
        "pipeline.json": _json(data["records"]).encode(),
        "approvals.json": _json(data["approvals"]).encode(),
        "report.md": markdown.encode(),
        "report.html": report_html(data, markdown, limit).encode(),
        **{f"deploy-{run_id}.json": _json(run).encode() for run_id, run in data["deploys"].items()},
        **data["files"],
    }
    for name, content in files.items():
        (folder / name).write_bytes(content)
    head = _head(ledger)
    index = {"pipeline_id": pipeline_id, "env": env, "seq": seq, "created": utcnow(),
             "files": {name: _sha(content) for name, content in sorted(files.items())},
             "previous": head}
    index_bytes = _json(index).encode()
    (folder / "index.json").write_bytes(index_bytes)
    archive = base / f"{seq:02d}.tar.gz"
    _archive(folder, archive)
    link = {"index": str(folder / "index.json"), "index_sha256": _sha(index_bytes), "pipeline_id": pipeline_id,
            "env": env, "seq": seq}
    evidence_root(ledger).mkdir(parents=True, exist_ok=True)
    (evidence_root(ledger) / "HEAD").write_text(_json(link))
    ledger.append(env, "evidence-pack", pipeline_id=pipeline_id, seq=seq, folder=str(folder), archive=str(archive),
                  index_sha256=link["index_sha256"], previous=head)
    return {"folder": str(folder), "archive": str(archive), "index_sha256": link["index_sha256"],
            "report": str(folder / "report.md"), "html": str(folder / "report.html"), "files": len(files) + 1}


def _threshold(data: dict[str, Any]) -> float:
    """The error-rate threshold the verdicts were judged against, as they recorded it."""
    for run in data["deploys"].values():
        for r in run:
            for check in r.get("checks") or [] if r["kind"] == "verdict" else []:
                if "error" in str(check.get("name")) and isinstance(check.get("threshold"), int | float):
                    return float(check["threshold"])
    return 0.0


def _archive(folder: Path, archive: Path) -> None:
    """A gzip'd tar of the folder with fixed owners and times: the archive depends only on the files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(folder.iterdir()):
            info = tarfile.TarInfo(f"{folder.parent.name}/{folder.name}/{path.name}")
            content = path.read_bytes()
            info.size, info.mtime, info.mode, info.uid, info.gid = len(content), 0, 0o644, 0, 0
            tar.addfile(info, io.BytesIO(content))
    import gzip

    archive.write_bytes(gzip.compress(buf.getvalue(), mtime=0))


def find_pack(ledger: Ledger, pipeline_id: str, env: str | None = None) -> dict[str, Any]:
    """The latest ``evidence-pack`` record of a run (searching every environment's ledger when ``env`` is None)."""
    envs = [env] if env else sorted(p.stem for p in (Path(ledger.root) / "ledger").glob("*.jsonl"))
    found = [r for e in envs for r in ledger.records(e, kind="evidence-pack") if r.get("pipeline_id") == pipeline_id]
    if not found:
        raise UsageError(f"no evidence pack for run {pipeline_id} in {ledger.root}",
                         hint="promoter history lists the runs; each promote run ends with its pack")
    return found[-1]


def verify_pack(ledger: Ledger, pipeline_id: str, env: str | None = None) -> dict[str, Any]:
    """Recompute every hash; raise RefusedError naming each mismatch."""
    record = find_pack(ledger, pipeline_id, env)
    folder = Path(record["folder"])
    problems: list[str] = []
    index_path = folder / "index.json"
    try:
        index_bytes = index_path.read_bytes()
        index = json.loads(index_bytes)
    except (OSError, ValueError) as exc:
        raise RefusedError(f"evidence pack {folder}: index.json unreadable: {exc}") from None
    if _sha(index_bytes) != record.get("index_sha256"):
        problems.append(f"index.json sha256 {_sha(index_bytes)[:12]} differs from the ledger's "
                        f"{str(record.get('index_sha256'))[:12]}")
    for name, digest in index["files"].items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif _sha(path.read_bytes()) != digest:
            problems.append(f"{name} changed (sha256 {_sha(path.read_bytes())[:12]}, index {digest[:12]})")
    extra = sorted({p.name for p in folder.iterdir()} - set(index["files"]) - {"index.json"})
    problems += [f"{name} is not in the index" for name in extra]
    archive = Path(record["archive"])
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = {Path(m.name).name: _sha(tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()}
    except (OSError, tarfile.TarError) as exc:
        problems.append(f"archive {archive.name} unreadable: {exc}")
        members = {}
    for name, digest in {**index["files"], "index.json": _sha(index_bytes)}.items():
        if members and members.get(name) != digest:
            problems.append(f"archive member {name} differs from the pack")
    previous = index.get("previous")
    if previous:
        try:
            if _sha(Path(previous["index"]).read_bytes()) != previous["index_sha256"]:
                problems.append(f"the previous pack's index {previous['index']} changed since this pack chained to it")
        except OSError:
            problems.append(f"the previous pack's index {previous['index']} is missing")
    result = {"pipeline_id": pipeline_id, "folder": str(folder), "archive": str(archive), "ok": not problems,
              "files": len(index["files"]) + 1, "problems": problems, "previous": previous,
              "verified_at": datetime.now(UTC).isoformat(timespec="seconds")}
    if problems:
        error = RefusedError(f"evidence pack of {pipeline_id} does not verify: " + "; ".join(problems))
        error.details = {"verify": result}
        raise error
    return result
