#!/usr/bin/env python3
"""check-layers.py - the module graph of src/ runs one way: down.

    tools/check-layers.py [SRC_DIR]        (default: src/ beside this script's parent)
    tools/check-layers.py --self-test [SRC_DIR]

src/ is a stack of layers (docs/design.md), each a folder of modules; the
table below lists them from the bottom up, and within a layer the modules in
the order they may use each other. A module is a header and the .c files of
its name (a few files belong to a module of another name: MEMBERS). Rules:

  1. a file includes only headers of its own module or of modules listed
     before it (never one above: no upward include);
  2. a file calls only functions of its own module or of modules listed
     before it (the function's module is the one whose .c defines it, or
     whose header defines it inline): no upward call, so no loop;
  3. outside src/api/, no file calls a public entry point (cua_*) but the few
     that are plain utilities (PUBLIC_OK): process-wide code uses internal
     calls, not the public API;
  4. a header declares only functions of its own module (each module's
     header owns its declarations);
  5. every .c and .h under src/ belongs to a module of the table.

It prints each violation (file, line, what, from which layer to which) and
"N violations"; exit status 1 when there is any. --self-test checks the
checker on a small tree with an upward include, an upward call and a public
call, and on a copy of the real tree with an upward include added.
"""
import os
import re
import shutil
import sys
import tempfile

# Bottom to top. Within a layer, modules in order: a module may use the ones before it.
LAYERS = [
    ("base", ["internal", "addrmap", "devstat", "history"]),
    ("backend", ["backend", "host", "fault", "cuda", "supplier"]),
    ("core", ["sizeclass", "heap", "segment"]),
    ("arena", ["types", "events", "nvtx", "stream", "tcache", "copy", "check", "stats",
               "place", "policy", "offload", "walk", "arena", "combine"]),
    ("process", ["registry", "pressure", "prometheus", "reserve", "janitor"]),
    ("api", ["config", "api", "torch", "cupy"]),
]

# Files whose module has another name than the file.
MEMBERS = {
    "base/error.c": "base/internal",
    "base/lock.c": "base/internal",
    "base/lockrank.h": "base/internal",
    "backend/staging.c": "backend/backend",
    "backend/host_stream.c": "backend/host",
    "backend/host_impl.h": "backend/host",
    "core/segment_check.c": "core/segment",
    "core/segment_pick.c": "core/segment",
    "core/segment_alias.c": "core/segment",
    "core/segment_handles.c": "core/segment",
    "api/hooks.h": "api/torch",
}

# Public functions that are plain utilities, callable from any layer.
PUBLIC_OK = {"cua_last_error", "cua_status_name", "cua_call_name"}


def ranks():
    r = {}
    for layer, mods in LAYERS:
        for m in mods:
            r[layer + "/" + m] = len(r)
    return r


def module_of(rel):
    if rel in MEMBERS:
        return MEMBERS[rel]
    return os.path.splitext(rel)[0]


def strip(text):
    """Comments and string/char literals blanked, line breaks kept."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + re.sub(r"[^\n]", " ", text[i + 1:j]) + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


DEF_C = re.compile(r"^(?!static\b)[A-Za-z_][\w \t\*]*?\b((?:_cua|cua)_\w+)\s*\([^;]*?\)\s*\{",
                   re.M | re.S)
DEF_INLINE = re.compile(r"^static\s+inline\b[^;{]*?\b((?:_cua|cua)_\w+)\s*\(", re.M)
CALL = re.compile(r"\b((?:_cua|cua)_\w+)\s*\(")
# A prototype: a return type before the name, a ';' after the parameters.
PROTO = re.compile(r"^[ \t]*(?:extern\s+)?[A-Za-z_][\w \t\*]*?\b((?:_cua|cua)_\w+)\s*\([^;{}]*?\)"
                   r"(?:\s*__attribute__\s*\(\([^;]*?\)\))?\s*;", re.M | re.S)
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def scan(src):
    files = {}
    for dirpath, _, names in os.walk(src):
        for name in names:
            if name.endswith((".c", ".h")):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, src).replace(os.sep, "/")
                with open(path, encoding="utf-8") as f:
                    files[rel] = f.read()
    return files


def check(src):
    rank = ranks()
    files = scan(src)
    bad = []
    owner = {}
    stripped = {rel: strip(t) for rel, t in files.items()}
    for rel, t in stripped.items():
        mod = module_of(rel)
        if mod not in rank:
            bad.append("%s: belongs to no module of the layer table (%s)" % (rel, mod))
            continue
        pat = DEF_C if rel.endswith(".c") else DEF_INLINE
        for m in pat.finditer(t):
            owner.setdefault(m.group(1), mod)
    for rel, t in sorted(stripped.items()):
        mod = module_of(rel)
        if mod not in rank:
            continue
        raw = files[rel]
        for m in INCLUDE.finditer(raw):
            inc = m.group(1)
            line = raw.count("\n", 0, m.start()) + 1
            if inc == "cuarena.h" or "/" not in inc:
                if inc != "cuarena.h" and not os.path.exists(os.path.join(src, inc)):
                    continue
                if inc == "cuarena.h":
                    continue
            imod = module_of(inc)
            if imod not in rank:
                bad.append("%s:%d: includes \"%s\", which belongs to no module" % (rel, line, inc))
            elif rank[imod] > rank[mod]:
                bad.append("%s:%d: upward include of \"%s\" (%s is above %s)"
                           % (rel, line, inc, imod, mod))
        protos = [(m.group(1), t.count("\n", 0, m.start(1)) + 1) for m in PROTO.finditer(t)]
        for fn, line in protos:
            fmod = owner.get(fn)
            if rel.endswith(".h") and fmod and fmod != mod:
                bad.append("%s:%d: declares %s, a function of %s: declare it in that module's "
                           "header" % (rel, line, fn, fmod))
        seen = set(protos)
        for m in CALL.finditer(t):
            fn = m.group(1)
            line = t.count("\n", 0, m.start()) + 1
            key = (fn, line)
            if key in seen:
                continue
            seen.add(key)
            fmod = owner.get(fn)
            if fmod and rank[fmod] > rank[mod]:
                bad.append("%s:%d: upward call of %s (%s is above %s)" % (rel, line, fn, fmod, mod))
            if (fn.startswith("cua_") and fn not in PUBLIC_OK and fmod and fmod != mod
                    and not mod.startswith("api/")):
                bad.append("%s:%d: calls the public entry point %s (of %s): use an internal "
                           "function" % (rel, line, fn, fmod))
    return bad


def self_test():
    global LAYERS, MEMBERS
    saved = LAYERS, MEMBERS
    LAYERS = [("low", ["a"]), ("high", ["b"])]
    MEMBERS = {}
    try:
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "low"))
            os.makedirs(os.path.join(d, "high"))

            def write(rel, text):
                with open(os.path.join(d, rel), "w", encoding="utf-8") as f:
                    f.write(text)
            write("low/a.h", "int _cua_a(void);\n")
            write("low/a.c", '#include "low/a.h"\nint _cua_a(void) { return 1; }\n')
            write("high/b.h", "int _cua_b(void);\nint cua_pub(void);\n")
            write("high/b.c", '#include "high/b.h"\n#include "low/a.h"\n'
                  'int _cua_b(void) { return _cua_a(); }\nint cua_pub(void) { return 0; }\n')
            clean = check(d)
            assert clean == [], clean
            # an upward include and an upward call, in a comment-free file
            write("low/a.c", '#include "low/a.h"\n#include "high/b.h"\n'
                  '/* _cua_b() in a comment is no call */\n'
                  'int _cua_a(void) { return _cua_b() + cua_pub(); }\n')
            found = check(d)
            assert any("upward include" in x for x in found), found
            assert any("upward call of _cua_b" in x for x in found), found
            assert any("public entry point cua_pub" in x for x in found), found
            assert not any(":3:" in x for x in found), found
    finally:
        LAYERS, MEMBERS = saved
    print("check-layers self-test: passed")


def real_tree_test(src):
    """The real tree is clean, and a copy with one upward include is not."""
    assert check(src) == [], "the tree itself has violations: run without --self-test"
    with tempfile.TemporaryDirectory() as d:
        copy = os.path.join(d, "src")
        shutil.copytree(src, copy)
        heap = os.path.join(copy, "core", "heap.c")
        with open(heap, encoding="utf-8") as f:
            text = f.read()
        with open(heap, "w", encoding="utf-8") as f:
            f.write(text.replace('#include "core/heap.h"',
                                 '#include "core/heap.h"\n#include "arena/arena.h"', 1))
        found = check(copy)
        assert any("core/heap.c" in x and "upward include" in x for x in found), found
    print("check-layers: an upward include added to core/heap.c is found")


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("-")]
    src = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    if "--self-test" in argv:
        self_test()
        real_tree_test(src)
        return 0
    bad = check(src)
    for b in bad:
        print(b)
    print("%d violations" % len(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
