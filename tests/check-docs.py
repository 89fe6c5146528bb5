#!/usr/bin/env python3
"""check-docs.py - the documentation keeps up with the code.

    python3 tests/check-docs.py [SOURCE_ROOT] [--strict]

Checks, and ends with "N passed, N failed" like the other tests:

  1. every option key of src/api/config.c's option table (the `options[]` array)
     has a row in README.md's Options table (a line "| `key` | ..." under
     "## Options");
  2. every option key appears in docs/tuning.md (as `key`);
  3. every relative link in README.md and docs/*.md ([text](path), images
     too; not inside code blocks) points to a file or directory that exists.

KNOWN_GAPS can list what is known to be missing while another piece of work
brings it (a listed gap is a note, not a failure, until it is fixed; then the
note says the entry can go). --strict treats listed gaps as failures too.
Exit status 0 when nothing failed.
"""

import os
import re
import sys

# (check, item): why it is tolerated for now.
KNOWN_GAPS = {}  # none now

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def option_keys(root):
    text = open(os.path.join(root, "src", "api", "config.c"), encoding="utf-8").read()
    m = re.search(r"static const struct option options\[\]\s*=\s*\{(.*?)\n\};", text, re.S)
    if not m:
        raise SystemExit("check-docs: no option table (static const struct option options[]) in src/api/config.c")
    keys = re.findall(r'\.name\s*=\s*"([A-Za-z0-9_]+)"', m.group(1))
    if not keys:
        raise SystemExit("check-docs: the option table in src/api/config.c has no .name entries")
    return keys


def readme_option_rows(root):
    """The keys of the rows of README.md's Options table."""
    rows, in_section = set(), False
    for line in open(os.path.join(root, "README.md"), encoding="utf-8"):
        if line.startswith("## "):
            in_section = line.strip().lower() == "## options"
            continue
        if in_section:
            m = re.match(r"\|\s*`([A-Za-z0-9_]+)`\s*\|", line)
            if m:
                rows.add(m.group(1))
    return rows


def links(path):
    """(line number, target) of every link outside fenced code blocks and code spans."""
    fence = None
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        stripped = line.lstrip()
        if fence:
            if stripped.startswith(fence):
                fence = None
            continue
        if stripped.startswith("```") or stripped.startswith("~~~"):
            fence = stripped[:3]
            continue
        line = re.sub(r"`[^`]*`", "", line)
        for m in LINK.finditer(line):
            yield n, m.group(1)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    strict = "--strict" in sys.argv[1:]
    root = os.path.abspath(args[0] if args else os.path.join(os.path.dirname(__file__), ".."))
    passed = failed = 0
    notes = []

    def result(ok, check, item, what):
        nonlocal passed, failed
        gap = KNOWN_GAPS.get((check, item))
        if ok:
            passed += 1
            if gap:
                notes.append("note: %s is fine now; its KNOWN_GAPS entry can go" % what)
        elif gap and not strict:
            passed += 1
            notes.append("note: %s (known gap: %s)" % (what, gap))
        else:
            failed += 1
            print("FAIL: " + what)

    keys = option_keys(root)
    rows = readme_option_rows(root)
    tuning = open(os.path.join(root, "docs", "tuning.md"), encoding="utf-8").read()
    for k in keys:
        result(k in rows, "readme-option", k,
               "option '%s' of src/api/config.c has %s in README.md's Options table"
               % (k, "a row" if k in rows else "no row"))
        present = "`%s`" % k in tuning
        result(present, "tuning-option", k,
               "option '%s' of src/api/config.c %s in docs/tuning.md"
               % (k, "appears" if present else "does not appear"))

    docs = os.path.join(root, "docs")
    files = [os.path.join(root, "README.md")] + sorted(
        os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md"))
    nlinks = 0
    for path in files:
        for n, target in links(path):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
                continue  # a URL (http:, mailto:) or an anchor in the same page
            nlinks += 1
            rel = target.split("#", 1)[0]
            dest = os.path.normpath(os.path.join(os.path.dirname(path), rel))
            item = os.path.relpath(dest, root)
            ok = os.path.exists(dest)
            result(ok, "link", item, "%s:%d: link to '%s' %s" % (
                os.path.relpath(path, root), n, target, "resolves" if ok else "points to no file"))

    for note in notes:
        print(note)
    print("%d option keys, %d README option rows, %d relative links in %d files"
          % (len(keys), len(rows), nlinks, len(files)))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
