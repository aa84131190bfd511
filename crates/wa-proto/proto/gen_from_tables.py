#!/usr/bin/env python3
"""Turns the field tables of shared/protocol/proto-subset.md into proto/wa.proto.

The tables are facts of WhatsApp's schema (names, numbers, types); this script only
writes them as proto2. Run from the workspace root:

    python3 crates/wa-proto/proto/gen_from_tables.py ../shared/protocol/proto-subset.md crates/wa-proto/proto/tables-*.md

Every file after the first adds tables in the same layout (proto/tables-*.md); a section
whose name is already known adds only the fields whose numbers it lacks. Merged fields are
placed in field-number order among the existing ones: prost, like protobufjs, writes fields
in declaration order. Output: crates/wa-proto/proto/wa.proto,
or the path after -o. Hand edits belong in proto/extra.proto or a tables file, not in the
generated file.
"""
import re
import sys

args = sys.argv[1:]
out_path = "crates/wa-proto/proto/wa.proto"
if "-o" in args:
    i = args.index("-o")
    out_path = args[i + 1]
    del args[i:i + 2]
src = []
for path in args:
    src += open(path).read().splitlines()
    src.append("## (end of file)")
sections = []  # (fullname, kind, rows, note)
cur = None
for line in src:
    m = re.match(r"^### (\S+)( \(enum\))?", line)
    if m:
        cur = [m.group(1), "enum" if m.group(2) else "message", [], ""]
        sections.append(cur)
        continue
    if line.startswith("## "):
        cur = None
        continue
    if cur is None:
        continue
    if line.startswith("Source:") and not cur[3]:
        cur[3] = line
        continue
    if not line.startswith("|") or line.startswith("|---") or line.startswith("| field |") or line.startswith("| value | number |"):
        continue
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    cur[2].append(cells)

# Tree of nested definitions.
class Def:
    def __init__(self, name, kind):
        self.name, self.kind, self.fields, self.values, self.children = name, kind, [], [], {}

root = Def("", "message")
by_full = {}
stray = []
for full, kind, rows, note in sections:
    parts = full.split(".")
    node = root
    for i, p in enumerate(parts):
        if p not in node.children:
            node.children[p] = Def(p, "message")
        node = node.children[p]
    node.kind = kind
    by_full[full] = node
    known = {f[1] for f in node.fields} | {v for _, v in node.values}
    added = set() if known else None  # numbers merged into an existing section
    for r in rows:
        if kind == "enum":
            if len(r) >= 4:  # a field row that strayed into an enum table
                stray.append((full, r))
                continue
            num = int(re.match(r"-?\d+", r[1]).group(0))
            if num not in known:
                node.values.append((r[0], num))
        else:
            if len(r) < 4:
                continue
            num = int(re.match(r"\d+", r[1]).group(0))
            if num not in known:
                # A later table's field goes before the first field with a larger number, so
                # merged fields keep number order while a table's own order (PreKeySignalMessage
                # lists 5 first, as libsignal writes it) is left alone.
                at = next((j for j, f in enumerate(node.fields) if f[1] > num and f[1] not in added), len(node.fields)) if added is not None else len(node.fields)
                node.fields.insert(at, (r[0], num, r[2], r[3]))
                if added is not None:
                    added.add(num)

SCALARS = {"bytes", "string", "bool", "uint32", "uint64", "int32", "int64", "sint32", "sint64",
           "fixed32", "fixed64", "sfixed32", "sfixed64", "double", "float"}

def resolve(scope, t):
    """Proto scoping: look up t from the innermost scope outwards."""
    if t in SCALARS:
        return t
    scope_parts = scope.split(".") if scope else []
    for i in range(len(scope_parts), -1, -1):
        cand = ".".join(scope_parts[:i] + [t])
        if cand in by_full:
            return t
    return None

missing = set()

def shouty(name):
    # the prefix prost strips from enum values (heck's SHOUTY_SNAKE of the enum name)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.upper()

def emit(node, scope, indent, out):
    pad = "  " * indent
    if node.kind == "enum":
        out.append(f"{pad}enum {node.name} {{")
        vals = node.values
        if not any(v == 0 for _, v in vals):
            pass  # proto2 enums need no zero value
        seen = set()
        for n, v in vals:
            if v in seen:
                continue
            seen.add(v)
            out.append(f"{pad}  {shouty(node.name)}_{n} = {v};")
        out.append(f"{pad}}}")
        return
    out.append(f"{pad}message {node.name} {{")
    for child in node.children.values():
        emit(child, f"{scope}.{child.name}" if scope else child.name, indent + 1, out)
    used = set()
    for name, num, typ, label in node.fields:
        if num in used:
            continue
        r = resolve(scope, typ)
        if r is None:
            missing.add((scope, typ))
            continue
        used.add(num)
        lab = "repeated" if label.startswith("repeated") else "optional"
        packed = " [packed = true]" if "[packed]" in label else ""
        out.append(f"{pad}  {lab} {typ} {name} = {num}{packed};")
    out.append(f"{pad}}}")

out = ["// Generated by proto/gen_from_tables.py from the field tables of the protocol",
       "// reference (proto-subset.md) and proto/tables-*.md. Do not edit; regenerate.",
       'syntax = "proto2";', "package wa;", ""]
for child in root.children.values():
    emit(child, child.name, 0, out)
    out.append("")
open(out_path, "w").write("\n".join(out) + "\n")
for s in stray:
    print("stray row in enum", s, file=sys.stderr)
for m in sorted(missing):
    print("missing type", m, file=sys.stderr)
