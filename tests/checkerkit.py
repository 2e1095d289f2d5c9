"""Helpers for the tests of `refdec check` that need no torch: small vector sets cloned from the
committed vectors/ (quick subset), fake decoders written as Python scripts, a run of the checker
as a subprocess, and a validator for the subset of JSON Schema that spec/report.schema.json uses."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT

VECTORS = ROOT / "vectors"
PY = sys.executable
requires_vectors = pytest.mark.skipif(not (VECTORS / "manifest.json").is_file(), reason="vectors/ is not committed")


def committed():
    return json.loads((VECTORS / "manifest.json").read_text())


def quick(kind: str) -> list[dict]:
    """The committed quick subset's vectors of one kind, in manifest order."""
    return [v for v in committed()["vectors"] if "quick" in v["subsets"] and v["kind"] == kind]


def make_set(dest: Path, picks) -> Path:
    """A vector set in `dest` holding the committed vectors `picks` ([(new id, source vector)]):
    clones share their files; only the files used are copied."""
    data = committed()
    dest.mkdir(parents=True, exist_ok=True)
    vectors, models = [], {}
    for new_id, src in picks:
        v = json.loads(json.dumps(src))
        v["id"] = new_id
        for key in ("bitstream", "model", "golden"):
            if key in v:
                f = dest / v[key]["file"]
                if not f.exists():
                    f.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(VECTORS / v[key]["file"], f)
        models[v["model"]["name"]] = data["models"][v["model"]["name"]]
        vectors.append(v)
    data["vectors"] = vectors
    data["models"] = models
    data.pop("statistics", None)
    (dest / "manifest.json").write_text(json.dumps(data, indent=1, sort_keys=True))
    return dest


def fake_decoder(folder: Path, body: str, name: str = "fake.py") -> Path:
    """A decoder script: `body` runs with IN, OUT (argv[1], argv[2]) and the usual imports."""
    path = folder / name
    path.write_text("import os, signal, subprocess, sys, time\nIN, OUT = sys.argv[1], sys.argv[2]\n"
                    + textwrap.dedent(body))
    return path


def child_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env["OPENBLAS_NUM_THREADS"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_check(*argv, cwd=None, timeout=300, env=None) -> subprocess.CompletedProcess:
    """`python -m refdec check ARGV` in a process of its own (its memory and signals are its own)."""
    return subprocess.run([PY, "-m", "refdec", "check", *map(str, argv)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env or child_env())


def report(path):
    doc = json.loads(Path(path).read_text())
    return doc, {r["id"]: r for r in doc["results"]}


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a dead child nobody has reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --- the subset of JSON Schema (draft 2020-12) that spec/report.schema.json uses ----------------------

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _type_ok(value, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def validate(value, schema: dict, root: dict | None = None, where: str = "$") -> list[str]:
    """Every violation of `schema` by `value`: type, const, enum, properties, required,
    additionalProperties (false), items, minimum, pattern, oneOf and local $ref."""
    root = root or schema
    errors: list[str] = []
    if "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        errors += validate(value, node, root, where)
    unknown = set(schema) - {"$schema", "$id", "$ref", "$defs", "title", "description", "type", "const", "enum",
                             "properties", "required", "additionalProperties", "items", "minimum", "pattern",
                             "oneOf"}
    assert not unknown, f"validator does not know {unknown} at {where}"
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_type_ok(value, n) for n in names):
            return errors + [f"{where}: {type(value).__name__} is not {names}"]
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        errors.append(f"{where}: {value} < {schema['minimum']}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if "oneOf" in schema:
        ok = [s for s in schema["oneOf"] if not validate(value, s, root, where)]
        if len(ok) != 1:
            errors.append(f"{where}: {value!r} matches {len(ok)} of oneOf")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{where}: missing {key!r}")
        for key, v in value.items():
            if key in props:
                errors += validate(v, props[key], root, f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{where}: unexpected key {key!r}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            errors += validate(v, schema["items"], root, f"{where}[{i}]")
    return errors
