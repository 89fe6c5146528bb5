#!/usr/bin/env python3
"""check-docs.py - the documentation keeps up with the code.

    python3 tests/check-docs.py [SOURCE_ROOT] [--strict]

Checks, and ends with "N passed, N failed" like the other tests:

  1. every option key of src/api/config.c's option table (the `options[]` array)
     has a row in README.md's Options table (a line "| `key` | ..." under
     "## Options");
  2. every option key appears in docs/tuning.md (as `key`);
  3. every relative link in README.md, CHANGELOG.md, CONTRIBUTING.md and the
     Markdown files under docs/ ([text](path), images too; not inside code
     blocks) points to a file or directory that exists, and a link's
     #anchor (to a Markdown file, or "#anchor" within the page) to one of
     that page's headings (GitHub's ids: lower case, punctuation dropped,
     spaces as '-', a repeated heading's id suffixed -1, -2, ...) or of its
     <a id="..."> / <a name="..."> tags.

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


def slug(heading):
    """GitHub's id of a heading: its text without Markdown, lower case,
    punctuation dropped, spaces as '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def prose_lines(path):
    """(line number, line) of every line of a page outside fenced code blocks."""
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
        yield n, line


def anchors(path):
    """The ids a page's headings and <a id/name> tags give, outside code blocks."""
    ids, seen = set(), {}
    for _, line in prose_lines(path):
        ids.update(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", line))
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            ids.add(base if n == 0 else "%s-%d" % (base, n))
    return ids


def doc_files(root):
    """README.md, CHANGELOG.md, CONTRIBUTING.md and every .md under docs/."""
    files = [os.path.join(root, f) for f in ("README.md", "CHANGELOG.md", "CONTRIBUTING.md")
             if os.path.exists(os.path.join(root, f))]
    for top, dirs, names in os.walk(os.path.join(root, "docs")):
        dirs.sort()
        files += [os.path.join(top, f) for f in sorted(names) if f.endswith(".md")]
    return files


def links(path):
    """(line number, target) of every link outside fenced code blocks and code spans."""
    for n, line in prose_lines(path):
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

    files = doc_files(root)
    nlinks = nanchors = 0
    ids = {}
    for path in files:
        for n, target in links(path):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                continue  # a URL (http:, mailto:)
            rel, _, frag = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), rel)) if rel else path
            where = "%s:%d: link to '%s'" % (os.path.relpath(path, root), n, target)
            if rel:
                nlinks += 1
                ok = os.path.exists(dest)
                result(ok, "link", os.path.relpath(dest, root),
                       "%s %s" % (where, "resolves" if ok else "points to no file"))
                if not ok:
                    continue
            if frag and dest.endswith(".md"):
                nanchors += 1
                if dest not in ids:
                    ids[dest] = anchors(dest)
                ok = frag in ids[dest]
                result(ok, "anchor", "%s#%s" % (os.path.relpath(dest, root), frag),
                       "%s %s" % (where, "finds its heading" if ok else
                                  "names no heading or anchor of %s" % os.path.relpath(dest, root)))

    for note in notes:
        print(note)
    print("%d option keys, %d README option rows, %d relative links and %d anchors in %d files"
          % (len(keys), len(rows), nlinks, nanchors, len(files)))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
