"""Non-normative: the reports of `refdec check` (spec clause 11.5.5): text, JSON and JUnit XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from .diagnosis import describe_samples
from .manifest import STATES, dumps_canonical


REPORT_FORMAT = "refdec-check-report"
REPORT_VERSION = 1


@dataclass
class Result:
    """Non-normative: the outcome of one vector (clause 11.5.3 states)."""

    id: str
    kind: str
    state: str
    message: str
    seconds: float = 0.0
    purpose: str = ""
    look_at: list = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = {"id": self.id, "kind": self.kind, "state": self.state, "message": self.message,
             "seconds": round(self.seconds, 3), "purpose": self.purpose, "look_at": list(self.look_at)}
        d.update(self.details)
        return d


def summary(results) -> dict:
    counts = {s: 0 for s in STATES}
    for r in results:
        counts[r.state] += 1
    counts["total"] = len(results)
    return counts


def text_report(results, header: str = "", seconds: float | None = None, quiet: bool = False) -> str:
    """Clause 11.5.5: the text report: one line per vector, details for every vector that did not
    pass, and a summary line."""
    lines = [header] if header else []
    width = max([len(r.id) for r in results] + [8])
    for r in results:
        if quiet and r.state == "pass":
            continue
        lines.append(f"{r.state.upper():<8}{r.id:<{width}}  {r.seconds:7.2f} s  {r.message}")
        if r.state == "pass":
            continue
        d = r.details
        if d.get("samples") and "first" in d["samples"]:
            lines.append(f"{'':8}samples: {describe_samples(d['samples'])}")
        if d.get("diff_image"):
            lines.append(f"{'':8}difference image: {d['diff_image']}")
        if d.get("diagnosis"):
            lines.append(f"{'':8}first diverging stage: {d['diagnosis']['text']}")
        for note in d.get("notes", []):
            lines.append(f"{'':8}note: {note}")
        if d.get("stderr_tail"):
            tail = d["stderr_tail"].strip().splitlines()[-3:]
            lines += [f"{'':8}stderr: {t}" for t in tail]
        if r.look_at:
            word = "clause" if len(r.look_at) == 1 else "clauses"
            lines.append(f"{'':8}if this fails, look at: {word} {', '.join(r.look_at)}")
    s = summary(results)
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    verdict = "all pass" if s["pass"] == s["total"] else "NOT all pass"
    lines.append(f"summary: {s['pass']} pass, {s['fail']} fail, {s['error']} error, {s['timeout']} timeout "
                 f"of {s['total']} vectors{took}: {verdict}")
    return "\n".join(lines) + "\n"


def json_report(results, meta: dict) -> str:
    """Clause 11.5.5: the JSON report."""
    doc = {"format": REPORT_FORMAT, "report_version": REPORT_VERSION, **meta,
           "summary": summary(results), "results": [r.as_dict() for r in results]}
    return dumps_canonical(doc)


def junit_report(results, suite: str = "refdec-conformance", seconds: float = 0.0) -> bytes:
    """Clause 11.5.5: JUnit XML: one testcase per vector; fail is a <failure>, error and timeout an
    <error>."""
    s = summary(results)
    root = ET.Element("testsuites", name=suite, tests=str(s["total"]), failures=str(s["fail"]),
                      errors=str(s["error"] + s["timeout"]), time=f"{seconds:.3f}")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(s["total"]), failures=str(s["fail"]),
                       errors=str(s["error"] + s["timeout"]), skipped="0", time=f"{seconds:.3f}")
    for r in results:
        tc = ET.SubElement(ts, "testcase", classname=f"{suite}.{r.kind}", name=r.id, time=f"{r.seconds:.3f}")
        if r.state == "pass":
            continue
        body = text_report([r]).rsplit("\nsummary:", 1)[0]
        tag = "failure" if r.state == "fail" else "error"
        el = ET.SubElement(tc, tag, message=r.message[:500], type=r.state)
        el.text = body
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
