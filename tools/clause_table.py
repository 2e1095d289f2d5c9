"""The clause -> function table of refdec's executable specification, generated from the @clause
marks (refdec/clauses.py) and written between the markers of refdec/README.md.

    python tools/clause_table.py           # rewrite the table in refdec/README.md
    python tools/clause_table.py --check   # exit 1 if the committed table is stale
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "refdec" / "README.md"
BEGIN, END = "<!-- clause table: begin (tools/clause_table.py) -->", "<!-- clause table: end -->"


def _key(number: str):
    return [int(part) if part.isdigit() else part for part in number.split(".")]


def clause_table() -> str:
    """Markdown: one row per clause, the normative functions that implement it and the fast-path
    accelerations registered against them."""
    sys.path.insert(0, str(ROOT))
    from refdec.clauses import CLAUSE_FUNCTIONS, NORMATIVE_MODULES
    from refdec.fast import REGISTRY

    for module in NORMATIVE_MODULES:
        importlib.import_module(f"refdec.{module}")
    rows: dict[tuple, list] = {}
    for number, title, function in CLAUSE_FUNCTIONS:
        rows.setdefault((number, title), []).append(function)
    lines = ["| clause | title | refdec (literal) | refdec/fast (registered accelerations) |", "|---|---|---|---|"]
    for (number, title), functions in sorted(rows.items(), key=lambda item: _key(item[0][0])):
        literal = ", ".join(f"`{f.__module__}.{f.__qualname__}`" for f in functions)
        fast = sorted({f"`{a.name}`" for a in REGISTRY if a.literal in functions or a.clause == number})
        lines.append(f"| {number} | {title} | {literal} | {', '.join(fast)} |")
    return "\n".join(lines) + "\n"


def render(text: str) -> str:
    """text with the table between the markers replaced by the generated one."""
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{clause_table()}{END}{tail}"


def main(argv) -> int:
    text = README.read_text()
    new = render(text)
    if "--check" in argv:
        if new != text:
            print(f"{README} is stale: run python tools/clause_table.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    print(f"wrote the clause table of {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
