#!/usr/bin/env python3
"""Fails when the top-level modules of a crate import each other in a cycle.

For each crate source folder given, every `crate::name` path (also inside `crate::{...}`
groups, and `super::name` in a file directly under the folder) is an edge from the module
whose file holds it to module `name`. A name the crate root re-exports (`pub use
module::{A, B}` in lib.rs or main.rs) counts as its module. Comments are ignored. Prints
each cycle found and exits 1 if there is any.

Usage: scripts/module-cycles.py CRATE_SRC...
"""

import os
import re
import sys


def strip_comments(text):
    return re.sub(r"//.*", "", text)


def module_files(src):
    """Files under `src`, by the top-level module they belong to."""
    modules = {}
    for root, _, files in os.walk(src):
        for name in files:
            if name.endswith(".rs"):
                path = os.path.join(root, name)
                top = os.path.relpath(path, src).split(os.sep)[0].removesuffix(".rs")
                modules.setdefault(top, []).append(path)
    return modules


def reexports(src, modules):
    """Names the crate root re-exports, with the module each comes from."""
    names = {}
    for root in ("lib.rs", "main.rs"):
        path = os.path.join(src, root)
        if not os.path.exists(path):
            continue
        text = strip_comments(open(path, encoding="utf-8").read())
        for m in re.finditer(r"pub(?:\(crate\))?\s+use\s+(\w+)::([^;]*);", text, re.S):
            if m.group(1) in modules:
                for name in re.findall(r"\b[A-Za-z_]\w*\b", m.group(2)):
                    names.setdefault(name, m.group(1))
    return names


def edges(src, modules, aliases):
    """Each module's set of the other modules it imports."""
    graph = {}
    for module, paths in modules.items():
        if module in ("lib", "main"):
            continue
        targets = set()

        def add(name):
            target = name if name in modules else aliases.get(name)
            if target and target not in ("lib", "main"):
                targets.add(target)

        for path in paths:
            text = strip_comments(open(path, encoding="utf-8").read())
            for m in re.finditer(r"crate::\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}", text):
                for part in re.split(r",(?![^{]*\})", m.group(1)):
                    add(part.strip().split("::")[0].strip())
            for m in re.finditer(r"crate::(\w+)", text):
                add(m.group(1))
            if os.path.dirname(path) == src.rstrip("/"):
                for m in re.finditer(r"\bsuper::(\w+)", text):
                    add(m.group(1))
        graph[module] = targets - {module}
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main(srcs):
    bad = False
    for src in srcs:
        modules = module_files(src)
        graph = edges(src, modules, reexports(src, modules))
        for cycle in cycles(graph):
            bad = True
            print(f"{src}: modules import each other in a cycle: {', '.join(cycle)}")
    if not bad:
        print(f"module-cycles: no cycle in {len(srcs)} crates")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.setrecursionlimit(10_000)
    sys.exit(main(sys.argv[1:]))
