#!/usr/bin/env python3
"""Layout checks of the `reco` crate (src/), run by scripts/test:

- no import cycle between its modules: every `crate::a::b` path in a module's code (in `use`
  lines or inline, tests excluded) is an edge from that module to the deepest module file the
  path names; the strongly connected components of that graph must all be single modules;
- no function longer than 80 lines outside tests (`fn` to its closing brace, by indentation).

Prints what it finds and exits 1 on a cycle or a long function.
"""
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
MAX_FN_LINES = 80


def module_of(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts)


def without_tests(text: str) -> str:
    """The text before a `#[cfg(test)]` module (tests may import anything)."""
    at = text.find("#[cfg(test)]")
    return text if at < 0 else text[:at]


def paths_used(text: str):
    """Every `crate::...` path, with `use crate::{a, b::{c, d}}` groups expanded."""
    code = re.sub(r"//[^\n]*", "", text)
    for m in re.finditer(r"\buse\s+crate::([^;]+);", code, re.S):
        yield from expand(m.group(1).replace("\n", " "))
    for m in re.finditer(r"(?<!use )\bcrate::((?:[a-z_][a-z0-9_]*::)*[A-Za-z_][A-Za-z0-9_]*)", code):
        yield m.group(1)


def expand(tree: str):
    tree = tree.strip()
    brace = tree.find("{")
    if brace < 0:
        yield tree.split(" as ")[0].strip()
        return
    prefix, inner = tree[:brace], tree[brace + 1 : tree.rfind("}")]
    depth, start, parts = 0, 0, []
    for i, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    parts.append(inner[start:])
    for p in parts:
        if p.strip():
            yield from expand(prefix + p.strip())


def target(path: str, modules: set) -> str | None:
    """The deepest module a `a::b::c` path names (an item's module, or the module itself)."""
    parts = [p for p in path.split("::") if p and p != "self"]
    for n in range(len(parts), 0, -1):
        cand = "::".join(parts[:n])
        if cand in modules:
            return cand
    return None


def cycles(graph: dict) -> list:
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def long_functions(path: Path, text: str):
    lines = without_tests(text).split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(pub(\([a-z]+\))? )?(const )?(unsafe )?(async )?fn (\w+)", lines[i])
        if m and not lines[i].rstrip().endswith(";"):
            indent, name, start = m.group(1), m.group(7), i
            j = i + 1
            while j < len(lines) and not (lines[j].startswith(indent + "}") and len(lines[j]) - len(lines[j].lstrip()) == len(indent)):
                j += 1
            length = j - start + 1
            if length > MAX_FN_LINES:
                yield name, start + 1, length
            i = j
        i += 1


def main():
    files = sorted(SRC.rglob("*.rs"))
    modules = {module_of(f) for f in files}
    graph, failed = {}, False
    for f in files:
        text = f.read_text()
        me = module_of(f)
        for p in paths_used(without_tests(text)):
            t = target(p, modules)
            if t is not None and t != me and not me.startswith(t + "::") and t != "":
                graph.setdefault(me, set()).add(t)
        for name, line, length in long_functions(f, text):
            print(f"check_layout: {f.relative_to(SRC.parent)}:{line}: fn {name} is {length} lines (at most {MAX_FN_LINES})")
            failed = True
    for comp in cycles(graph):
        print(f"check_layout: import cycle between {', '.join(comp)}")
        failed = True
    edges = sum(len(v) for v in graph.values())
    print(f"check_layout: {len(modules)} modules, {edges} import edges, {'problems above' if failed else 'no cycle, no function over ' + str(MAX_FN_LINES) + ' lines'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
