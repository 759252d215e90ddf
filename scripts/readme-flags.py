#!/usr/bin/env python3
"""Prints the README's table of arena-bootstrap flags from `arena-bootstrap --help` (stdin):
flag, variable, default, the first sentence of the help. The test
bootstrap-server/tests/readme_flags.rs keeps the README's table and --help in step.

    target/debug/arena-bootstrap --help | python3 scripts/readme-flags.py
"""
import re
import sys

text = sys.stdin.read()
opts = re.split(r"\n(?=      --|  -h)", text.split("Options:\n", 1)[1])
for o in opts:
    lines = o.strip().split("\n", 1)
    m = re.match(r"(--[\w-]+)", lines[0].strip())
    if not m or m.group(1) in ("--help", "--version"):
        continue
    desc = " ".join(l.strip() for l in lines[1:]) if len(lines) > 1 else ""
    env = re.search(r"\[env: (\w+)", desc)
    default = re.search(r"\[default: ([^\]]+)\]", desc)
    d = re.sub(r"\s*\[(env|default):[^\]]*\]", "", desc)
    first = re.split(r"(?<!e\.g)\. (?=[A-Z])|; ", d, 1)[0].strip().rstrip(".")
    if len(first) > 120:
        first = first[:117].rsplit(" ", 1)[0] + " …"
    if first.count("(") > first.count(")"):
        first += ")"
    print(f"| `{m.group(1)}` | `{env.group(1) if env else ''}` | {('`' + default.group(1) + '`') if default else '—'} | {first} |")
