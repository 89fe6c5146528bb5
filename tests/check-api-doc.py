#!/usr/bin/env python3
"""check-api-doc.py - every public function of include/cuarena.h is documented.

    python3 tests/check-api-doc.py [include/cuarena.h]

For each declaration that starts with CUA_API, the doc comment (/** ... */)
must stand directly above it (nothing but whitespace between, no blank line)
and must
  - say something: at least four words besides the function's own name;
  - name every parameter, as a word (`size`, *out, "the stream" ...);
  - say what it returns, unless it returns void: a word "return"/"returns";
    for a cua_status the statuses too (a CUA_... name) or "as <function>"
    pointing to one that lists them.
Prints one line per problem and "N functions, N undocumented"; the exit
status is 1 when one is not documented. Python's standard library only.
`--self-test` checks the checker on small headers, good and bad.
"""
import re
import sys

DECL_RE = re.compile(r'^CUA_API\b', re.M)
IDENT_RE = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')


def parse_decl(text):
    """(return type, name, [parameter names]) of one declaration ending in ';'."""
    head, _, rest = text.partition('(')
    params = rest.rsplit(')', 1)[0]
    head = head[len('CUA_API'):].strip()
    name = IDENT_RE.findall(head)[-1]
    ret = head[: head.rfind(name)].strip()
    names = []
    depth = 0
    cur = ''
    for ch in params + ',':  # split on commas outside parentheses
        if ch == '(':
            depth += 1
        elif ch == ')':
            depth -= 1
        if ch == ',' and depth == 0:
            p = cur.strip()
            cur = ''
            if not p or p == 'void' or p == '...':
                continue
            m = re.search(r'\(\s*\*\s*([A-Za-z_]\w*)\s*\)', p)  # a function pointer
            ids = [m.group(1)] if m else IDENT_RE.findall(re.sub(r'\[.*?\]', '', p))
            if ids:
                names.append(ids[-1])
        else:
            cur += ch
    return ret, name, names


def doc_above(src, start):
    """The /** ... */ comment that ends right above offset start, or None."""
    before = src[:start]
    stripped = before.rstrip()
    gap = before[len(stripped):]
    if not stripped.endswith('*/') or gap.count('\n') > 1:
        return None
    open_at = stripped.rfind('/*')
    if open_at < 0 or not stripped.startswith('/**', open_at):
        return None
    # the comment must start its line (not a trailing /**< member comment)
    line_start = stripped.rfind('\n', 0, open_at) + 1
    if stripped[line_start:open_at].strip():
        return None
    return stripped[open_at + 3 : -2]


def check(path, src=None):
    if src is None:
        src = open(path, encoding='utf-8').read()
    problems = []
    count = 0
    for m in DECL_RE.finditer(src):
        end = src.find(';', m.start())
        ret, name, params = parse_decl(src[m.start() : end])
        count += 1
        line = src.count('\n', 0, m.start()) + 1
        doc = doc_above(src, m.start())
        where = '%s:%d: %s' % (path, line, name)
        if doc is None:
            problems.append('%s: no doc comment (/** ... */) directly above it' % where)
            continue
        text = ' '.join(w.strip('*') for w in doc.split())
        words = [w for w in re.findall(r"[A-Za-z][\w'-]*", text) if w != name]
        if len(words) < 4:
            problems.append('%s: the doc comment says too little: "%s"' % (where, text.strip()))
        for p in params:
            if not re.search(r'(?<![\w])%s(?![\w])' % re.escape(p), text):
                problems.append('%s: the doc comment does not mention the argument `%s`'
                                % (where, p))
        if ret != 'void':
            if not re.search(r'\breturn(s|ed)?\b', text, re.I):
                problems.append('%s: the doc comment does not say what it returns (%s)'
                                % (where, ret))
            elif ret == 'cua_status' and not re.search(
                    r'\bCUA_[A-Z_]+\b|\bas (cua_\w+|the|for)\b', text):
                problems.append('%s: the doc comment does not name the statuses it returns'
                                % where)
    for p in problems:
        print(p)
    bad = len({p.split(': ')[0] + p.split(': ')[1] for p in problems})
    print('%d functions, %d undocumented' % (count, bad))
    return 1 if problems or count == 0 else 0


SELF_TESTS = [
    # (header text, expected exit status, a problem that must be reported)
    ('/** Frees `ptr` now. Returns CUA_OK, CUA_ERR_INVALID_POINTER. */\n'
     'CUA_API cua_status cua_x(void *ptr);\n', 0, None),
    ('CUA_API cua_status cua_x(void *ptr);\n', 1, 'no doc comment'),
    ('/* Frees `ptr` now. Returns CUA_OK, CUA_ERR_INVALID_POINTER. */\n'
     'CUA_API cua_status cua_x(void *ptr);\n', 1, 'no doc comment'),
    ('/** Frees `ptr` now. Returns CUA_OK. */\n\nCUA_API cua_status cua_x(void *ptr);\n',
     1, 'no doc comment'),
    ('/** Frees it. */\nCUA_API cua_status cua_x(void *ptr);\n', 1, 'too little'),
    ('/** Frees the block now, in stream order. Returns CUA_OK. */\n'
     'CUA_API cua_status cua_x(void *ptr);\n', 1, 'argument `ptr`'),
    ('/** Frees `ptr` now, in the order of its stream. */\n'
     'CUA_API cua_status cua_x(void *ptr);\n', 1, 'does not say what it returns'),
    ('/** Frees `ptr` now, in the order of its stream. Returns a status. */\n'
     'CUA_API cua_status cua_x(void *ptr);\n', 1, 'name the statuses'),
    ('/** Fill *cfg with the defaults of an arena. */\n'
     'CUA_API void cua_y(cua_arena_config *cfg);\n', 0, None),
    ('/** Calls `fn` with `user` for each one. Returns CUA_OK. */\n'
     'CUA_API cua_status cua_z(void (*fn)(int, void *), void *user,\n'
     '                         size_t n);\n', 1, 'argument `n`'),
]


def self_test():
    import contextlib
    import io
    bad = 0
    for i, (text, want, problem) in enumerate(SELF_TESTS):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            got = check('sample%d.h' % i, text)
        if got != want or (problem and problem not in out.getvalue()):
            bad += 1
            print('self-test %d: exit %d (expected %d), output:\n%s' % (i, got, want, out.getvalue()))
    print('%d passed, %d failed' % (len(SELF_TESTS) - bad, bad))
    return 1 if bad else 0


if __name__ == '__main__':
    if sys.argv[1:] == ['--self-test']:
        sys.exit(self_test())
    sys.exit(check(sys.argv[1] if len(sys.argv) > 1 else 'include/cuarena.h'))
