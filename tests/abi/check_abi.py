#!/usr/bin/env python3
"""libfaultline's ABI: the shared library exports exactly the functions that
include/faultline/*.h declare, and the version script lists exactly those.

usage: check_abi.py LIBFAULTLINE.so INCLUDE_DIR VERSION_SCRIPT

Fails (exit 1) naming every difference: an internal symbol that leaks (it
should be static, or not listed), a declared function the library does not
export (listed in neither place, or not defined), a data symbol.
"""
import re
import subprocess
import sys
from pathlib import Path


def header_functions(include_dir):
    """Names of the fl_ functions the public headers declare."""
    names = set()
    for h in sorted(Path(include_dir).glob("*.h")):
        text = h.read_text()
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)  # comments
        text = re.sub(r"//[^\n]*", " ", text)
        text = re.sub(r"^\s*#.*?(?<!\\)$", " ", text, flags=re.M | re.S)  # directives
        # A declaration: a return type, the name, its parameter list.
        for m in re.finditer(r"[\w*]\s*\*?\s*\b(fl_\w+)\s*\(", text):
            names.add(m.group(1))
    return names


def script_functions(path):
    """Names the version script exports (its global: lists)."""
    text = re.sub(r"/\*.*?\*/", " ", Path(path).read_text(), flags=re.S)
    text = re.sub(r"#[^\n]*", " ", text)
    names = set()
    for block in re.findall(r"global:(.*?)(?:local:|})", text, flags=re.S):
        names.update(n.strip() for n in block.split(";") if n.strip())
    return names


def exported(lib):
    """(name, nm type) of every symbol the shared library exports."""
    out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True,
                         capture_output=True, text=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        kind, name = parts[-2], parts[-1].split("@")[0]
        syms.append((name, kind))
    return syms


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    lib, include_dir, script = sys.argv[1:]
    declared = header_functions(include_dir)
    listed = script_functions(script)
    syms = exported(lib)
    versions = {n for n, k in syms if k == "A"}  # the version nodes (FAULTLINE_0)
    functions = {n for n, k in syms if k in "TtWwiI" and n not in versions}
    other = sorted(f"{n} ({k})" for n, k in syms if k not in "TtWwiIA")
    bad = []
    if not declared:
        bad.append(f"no fl_ function found in {include_dir}/*.h")
    for n in sorted(functions - declared):
        bad.append(f"exported but not declared in include/faultline/: {n}")
    for n in sorted(declared - functions):
        bad.append(f"declared in include/faultline/ but not exported: {n}")
    for n in sorted(listed - declared):
        bad.append(f"{script} lists {n}, which no header declares")
    for n in sorted(declared - listed):
        bad.append(f"{script} does not list {n} (declared in a header)")
    for s in other:
        bad.append(f"exported data or other symbol: {s}")
    for line in bad:
        print(f"ABI: {line}")
    print(f"{len(functions)} functions exported, {len(declared)} declared, "
          f"{len(listed)} in the version script, version nodes: {' '.join(sorted(versions)) or 'none'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
