"""Non-normative: one worker process of `refdec check -j N` (see workers.py for the pool).

    python -m refdec.conformance.worker

Reads its set-up (the manifest, the check options, the input copies) on the first line of stdin,
then one vector id per line, and writes one JSON result per line on stdout.
"""

from __future__ import annotations

import json
import os
import signal
import sys


def _json_default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def main() -> int:
    """A worker: set-up on the first line of stdin, then one vector id per line. SIGTERM (from the
    checker, on an interrupt) ends the decoder it runs (run_command's cleanup), then the worker."""
    from pathlib import Path

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)                      # anything printed by mistake goes to stderr, not the protocol
    from .manifest import load_manifest
    from .runner import Checker, CheckOptions, Inputs

    init = json.loads(sys.stdin.readline())
    manifest = load_manifest(Path(init["manifest"]))
    opts = CheckOptions.from_json(init["options"])
    inputs = Inputs.from_json(manifest, init["inputs"]) if init["inputs"] else None
    checker = Checker(manifest, opts, inputs)
    by_id = {v["id"]: v for v in manifest.vectors}
    for line in sys.stdin:
        vid = json.loads(line)["vector"]
        res = checker.check(by_id[vid])
        out.write(json.dumps({"result": res.as_dict()}, default=_json_default) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
