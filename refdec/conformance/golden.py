"""Non-normative: the element-wise failure analysis of spec clause 11.5.4, in a process of its own.

    python -m refdec.conformance.golden REQUEST.json

`refdec check` compares a decoder's trace with the manifest's stage hashes first (streamed, in
bounded memory) and starts this helper only for a trace that differs or is partial. The helper
decodes the vector with refdec (clause 11.3 trace), confirms the golden stages it needs against
the manifest's hashes, maps the decoder's stage files and prints one JSON line
{"diagnosis": ..., "notes": [...], "golden": true|false}. A traced decode of a 1920x1080 image
holds about 1.4 GB; it is held here, for the seconds of the analysis, and never by the checker.

REQUEST: {"stream", "models" (a model file or a folder), "trace" (a folder), "stages" (the manifest's {name:
{"shape", "sha256"}}), "compare" (stage names), "problems" ({name: text}),
"latent_wavefronts" (N of a partial trace, or null)}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def analyse(req: dict) -> dict:
    from ..decoder import decode
    from ..errors import RefdecError
    from ..model_file import ModelStore
    from .diagnosis import diagnose_trace
    from .hashes import stage_hash
    from .traces import TraceError, open_stage

    compare = [n for n in req["compare"] if n not in req.get("problems", {})]
    try:
        golden = decode(Path(req["stream"]).read_bytes(), ModelStore([req["models"]]), trace=True).stages
    except RefdecError as exc:
        return {"diagnosis": None, "golden": False,
                "notes": [f"refdec cannot decode this vector ({exc}); stage hashes only"]}
    golden = {n: golden[n] for n in compare if n in golden}
    bad = [n for n in compare if n not in golden or stage_hash(golden[n]) != req["stages"][n]["sha256"]]
    if bad:
        return {"diagnosis": None, "golden": False,
                "notes": [f"refdec's stage tensors differ from the manifest ({', '.join(bad[:3])}); stage hashes only"]}
    problems = dict(req.get("problems", {}))
    got = {}
    for name in compare:
        try:
            got[name] = open_stage(Path(req["trace"]) / f"{name}.npy")
        except TraceError as exc:
            problems[name] = str(exc)
    diag = diagnose_trace(golden, got, problems, req.get("latent_wavefronts"))
    return {"diagnosis": diag, "golden": True, "notes": []}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    req = json.loads(Path(argv[0]).read_text())
    print(json.dumps(analyse(req)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
