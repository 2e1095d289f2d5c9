"""Non-normative: the reports of `refdec check` (spec clause 11.5.5): the text lines printed as
vectors finish, the summary, JSON (schema: spec/report.schema.json) and JUnit XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from .diagnosis import describe_samples
from .manifest import STATES, dumps_canonical


REPORT_FORMAT = "refdec-check-report"
REPORT_VERSION = 2

# Every key of a result object in the JSON report, always present (clause 11.5.5): null when it
# does not apply, [] for an empty list.
RESULT_KEYS = ("id", "kind", "state", "message", "seconds", "timeout_s", "purpose", "look_at",
               "expected_error", "reported_error", "error_class", "exit_code", "signal", "command",
               "stdout_bytes", "stderr_bytes", "stderr_tail", "output", "evidence", "diff_image",
               "samples", "diagnosis", "trace", "notes")
SAMPLE_KEYS = ("equal", "shape", "expected_shape", "differing_samples", "total_samples", "share",
               "differing_pixels", "max_abs_diff", "psnr_db", "first")
DIAGNOSIS_KEYS = ("method", "stage", "clause", "index", "expected", "got", "wavefront", "differing_elements",
                  "total_elements", "diverging_stages", "missing_stages", "latent_wavefronts", "text")
SUMMARY_KEYS = ("total", "run", "not_run", "pass", "fail", "error", "timeout", "valid", "valid_run", "decoded",
                "invalid", "invalid_run", "rejected", "class_expected", "class_other", "class_none", "all_pass")
_LISTS = ("look_at", "notes")


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
        d = {k: ([] if k in _LISTS else None) for k in RESULT_KEYS}
        d.update({k: v for k, v in self.details.items() if k in RESULT_KEYS and v is not None})
        d.update(id=self.id, kind=self.kind, state=self.state, message=self.message,
                 seconds=round(self.seconds, 3), purpose=self.purpose, look_at=list(self.look_at))
        if d["samples"] is not None:
            d["samples"] = {k: d["samples"].get(k) for k in SAMPLE_KEYS}
        if d["diagnosis"] is not None:
            d["diagnosis"] = {k: d["diagnosis"].get(k) for k in DIAGNOSIS_KEYS}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Result":
        base = ("id", "kind", "state", "message", "seconds", "purpose", "look_at")
        return cls(d["id"], d["kind"], d["state"], d["message"], d.get("seconds", 0.0), d.get("purpose", ""),
                   list(d.get("look_at", [])), {k: v for k, v in d.items() if k not in base})


def summary(results, selected=None, folder_ok: bool = True) -> dict:
    """Counts for the summary (clause 11.5.5); `selected` are the vectors chosen to run (default:
    those with a result)."""
    selected = list(selected) if selected is not None else [{"id": r.id, "kind": r.kind} for r in results]
    s = {k: 0 for k in SUMMARY_KEYS}
    s["total"] = len(selected)
    s["valid"] = sum(v["kind"] == "valid" for v in selected)
    s["invalid"] = s["total"] - s["valid"]
    for r in results:
        s[r.state] += 1
        s["run"] += 1
        if r.kind == "valid":
            s["valid_run"] += 1
            s["decoded"] += r.state == "pass"
        else:
            s["invalid_run"] += 1
            s["rejected"] += r.state == "pass"
        cls = r.details.get("error_class")
        if cls in ("expected", "other", "none"):
            s[f"class_{cls}"] += 1
    s["not_run"] = s["total"] - s["run"]
    s["all_pass"] = s["pass"] == s["total"] and folder_ok
    return s


def _details(r: Result) -> list[str]:
    """The lines under a vector that did not pass: clause 11.5.4 analysis, evidence, clauses."""
    lines = []
    d = r.details
    pad = " " * 8
    if d.get("samples") and d["samples"].get("first"):
        lines.append(f"{pad}samples: {describe_samples(d['samples'])}")
    if d.get("diagnosis"):
        lines.append(f"{pad}first diverging stage: {d['diagnosis']['text']}")
    for note in d.get("notes") or []:
        lines.append(f"{pad}note: {note}")
    if d.get("stderr_tail"):
        tail = d["stderr_tail"].strip().splitlines()[-3:]
        lines += [f"{pad}stderr: {t}" for t in tail]
    if d.get("evidence"):
        lines.append(f"{pad}evidence: {d['evidence']}")
    if r.look_at:
        word = "clause" if len(r.look_at) == 1 else "clauses"
        lines.append(f"{pad}look at: {word} {', '.join(r.look_at)}")
    return lines


def result_line(r: Result, width: int = 40) -> str:
    return f"{r.state.upper():<8}{r.id:<{width}}  {r.seconds:7.2f} s  {r.message}"


def result_text(r: Result, width: int = 40) -> str:
    lines = [result_line(r, width)]
    if r.state != "pass":
        lines += _details(r)
    return "\n".join(lines)


def summary_lines(s: dict, seconds: float | None = None, interrupted: bool = False, folder: dict | None = None,
                  evidence: str | None = None, not_passed=()) -> list[str]:
    """Clause 11.5.5: the summary. Decoded passes and rejection passes are counted apart, and a
    decoder that decodes no valid vector is told so whatever it does with the invalid ones."""
    took = f" in {seconds:.1f} s" if seconds is not None else ""

    def vectors(n):
        return f"{n} vector" + ("" if n == 1 else "s")

    bad = f"{s['fail']} fail, {s['error']} error, {s['timeout']} timeout"
    if interrupted:
        head = f"interrupted after {s['run']} of {vectors(s['total'])} ({s['not_run']} not run){took}: NOT all pass"
    elif s["not_run"]:
        head = f"{s['run']} of {vectors(s['total'])} run{took} (stopped at the first failure): NOT all pass: {bad}"
    elif s["all_pass"]:
        head = f"{vectors(s['total'])}{took}: all pass"
    else:
        head = f"{vectors(s['total'])}{took}: NOT all pass: {bad}"
    lines = []
    if not_passed:
        lines.append(f"not passed ({len(not_passed)}):")
        lines += [f"  {r.state.upper():<8}{r.id}: {r.message}" for r in not_passed]
    lines.append(f"summary: {head}")
    if s["valid"]:
        left = f" ({s['valid'] - s['valid_run']} not run)" if s["valid_run"] < s["valid"] else ""
        lines.append(f"  valid:   {s['decoded']} of {s['valid']} decoded bit-exact{left}")
    if s["invalid"]:
        cls = (f"; error class: {s['class_expected']} as expected, {s['class_other']} another, "
               f"{s['class_none']} none named" if s["rejected"] else "")
        left = f" ({s['invalid'] - s['invalid_run']} not run)" if s["invalid_run"] < s["invalid"] else ""
        lines.append(f"  invalid: {s['rejected']} of {s['invalid']} rejected as required{left}{cls}")
    if s["valid_run"] and not s["decoded"] and s["rejected"]:
        lines.append("  warning: no valid vector was decoded; the rejections only show that the decoder "
                     "rejects streams, not that it decodes them")
    if folder is not None and not folder.get("intact", True):
        what = "; ".join(f"{k} {', '.join(folder[k][:5])}" for k in ("changed", "added", "removed") if folder[k])
        lines.append(f"  vectors folder CHANGED during the run ({what}): an error")
    if evidence:
        lines.append(f"  evidence of the vectors that did not pass: {evidence}")
    return lines


def text_report(results, header: str = "", seconds: float | None = None, quiet: bool = False) -> str:
    """Clause 11.5.5: the whole text report at once (the live lines, then the summary)."""
    lines = [header] if header else []
    width = max([len(r.id) for r in results] + [8])
    for r in results:
        if quiet and r.state == "pass":
            continue
        lines.append(result_text(r, width))
    lines += summary_lines(summary(results), seconds)
    return "\n".join(lines) + "\n"


def json_report(results, meta: dict, summary_counts: dict) -> str:
    """Clause 11.5.5: the JSON report (spec/report.schema.json); `meta` holds every top-level key
    but format, report_version, summary and results."""
    doc = {"format": REPORT_FORMAT, "report_version": REPORT_VERSION, **meta,
           "summary": summary_counts, "results": [r.as_dict() for r in results]}
    return dumps_canonical(doc)


def junit_report(results, suite: str = "refdec-conformance", seconds: float = 0.0, not_run=(),
                 interrupted: bool = False, folder: dict | None = None) -> bytes:
    """Clause 11.5.5: JUnit XML: one testcase per vector; fail is a <failure>, error and timeout an
    <error>, a vector not run (interrupt, --fail-fast) <skipped>; a vectors folder changed by the
    run is one more testcase with an <error>."""
    s = summary(results)
    changed = folder is not None and not folder.get("intact", True)
    tests = s["run"] + len(not_run) + changed
    errors = s["error"] + s["timeout"] + changed
    attrs = dict(tests=str(tests), failures=str(s["fail"]), errors=str(errors), time=f"{seconds:.3f}")
    root = ET.Element("testsuites", name=suite, **attrs)
    ts = ET.SubElement(root, "testsuite", name=suite, skipped=str(len(not_run)), **attrs)
    props = ET.SubElement(ts, "properties")
    ET.SubElement(props, "property", name="interrupted", value="true" if interrupted else "false")
    for r in results:
        tc = ET.SubElement(ts, "testcase", classname=f"{suite}.{r.kind}", name=r.id, time=f"{r.seconds:.3f}")
        if r.state == "pass":
            continue
        tag = "failure" if r.state == "fail" else "error"
        el = ET.SubElement(tc, tag, message=r.message[:500], type=r.state)
        el.text = result_text(r, len(r.id))
    for v in not_run:
        tc = ET.SubElement(ts, "testcase", classname=f"{suite}.{v['kind']}", name=v["id"], time="0.000")
        ET.SubElement(tc, "skipped", message="not run (interrupted)" if interrupted else "not run (--fail-fast)")
    if changed:
        tc = ET.SubElement(ts, "testcase", classname=f"{suite}.run", name="vectors-folder-intact", time="0.000")
        el = ET.SubElement(tc, "error", message="the vectors folder changed during the run", type="error")
        el.text = "\n".join(f"{k}: {', '.join(folder[k])}" for k in ("changed", "added", "removed") if folder[k])
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


__all__ = ["REPORT_FORMAT", "REPORT_VERSION", "Result", "STATES", "json_report", "junit_report", "result_line",
           "result_text", "summary", "summary_lines", "text_report"]
