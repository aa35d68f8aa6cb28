#!/usr/bin/python3
"""Check a Prometheus text exposition read on stdin.

Run with /usr/bin/python3: Debian's python3-prometheus-client only imports
there. The exposition is parsed with
prometheus_client.parser.text_string_to_metric_families and checked against
the expectations given as arguments:

  --expect-family NAME=TYPE    family NAME (as written in the exposition, e.g.
                               rbac_allowed_total) exists with TYPE, has exactly
                               one '# HELP' and one '# TYPE' line and at least
                               one sample
  --expect-sample SERIES=VALUE the series has exactly VALUE
  --expect-min SERIES=VALUE    the series has at least VALUE
  --expect-max SERIES=VALUE    the series has at most VALUE
  --expect-absent NAME         no family NAME (exposition name) exists
  --expect-no-series NAME      no sample named NAME, whatever its labels
  --exact-families             no family exists beyond the --expect-family ones

SERIES is NAME or NAME{label="value",...} (label order does not matter; the
series must have exactly those labels). VALUE is a float, or NaN/+Inf/-Inf.

Always checked: the text parses (every sample line), no family name occurs
twice, no '# HELP' or '# TYPE' line occurs twice for a name, no series occurs
twice.

The client library reports a counter family under its name without the
'_total' suffix (its OpenMetrics model) while the samples keep the suffix;
this script maps exposition names to library names explicitly.

Exit 0 when everything holds, else print each difference on stderr and exit 1.
Exit 2 on bad arguments.
"""

import argparse
import collections
import math
import re
import sys

from prometheus_client.parser import text_string_to_metric_families

_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')
_NAME_RE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*$')


def _unescape(value):
    out = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == '\\' and i + 1 < len(value):
            nxt = value[i + 1]
            out.append({'n': '\n', '\\': '\\', '"': '"'}.get(nxt, '\\' + nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return ''.join(out)


def parse_series_spec(spec):
    """'name{a="b"}=1.5' -> (name, frozenset(labels), 1.5); raises ValueError."""
    if '{' in spec:
        name, rest = spec.split('{', 1)
        close = rest.rfind('}')
        if close < 0:
            raise ValueError('missing "}" in %r' % spec)
        label_text, tail = rest[:close], rest[close + 1:]
        if not tail.startswith('='):
            raise ValueError('missing "=VALUE" after the labels in %r' % spec)
        value_text = tail[1:]
        labels = {}
        pos = 0
        while pos < len(label_text):
            m = _LABEL_RE.match(label_text, pos)
            if not m or m.end() == pos:
                raise ValueError('bad labels %r in %r' % (label_text, spec))
            labels[m.group(1)] = _unescape(m.group(2))
            pos = m.end()
    else:
        if '=' not in spec:
            raise ValueError('missing "=VALUE" in %r' % spec)
        name, value_text = spec.split('=', 1)
        labels = {}
    name = name.strip()
    if not _NAME_RE.match(name):
        raise ValueError('bad metric name %r in %r' % (name, spec))
    return name, frozenset(labels.items()), float(value_text.strip())


def format_series(name, labels):
    if not labels:
        return name
    return '%s{%s}' % (name, ','.join('%s="%s"' % kv for kv in sorted(labels)))


def library_family_name(exposition_name, typ):
    """The name prometheus_client 0.16 gives a family written as exposition_name."""
    if typ == 'counter' and exposition_name.endswith('_total'):
        return exposition_name[:-len('_total')]
    return exposition_name


def exposition_family_name(library_name, typ, type_lines):
    """Inverse of library_family_name, for messages: a counter family is
    written NAME_total unless the text has a '# TYPE NAME' line."""
    if typ == 'counter' and library_name not in type_lines:
        return library_name + '_total'
    return library_name


def same_value(got, want):
    if math.isnan(want):
        return math.isnan(got)
    return got == want


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--expect-family', action='append', default=[], metavar='NAME=TYPE')
    ap.add_argument('--expect-sample', action='append', default=[], metavar='SERIES=VALUE')
    ap.add_argument('--expect-min', action='append', default=[], metavar='SERIES=VALUE')
    ap.add_argument('--expect-max', action='append', default=[], metavar='SERIES=VALUE')
    ap.add_argument('--expect-absent', action='append', default=[], metavar='NAME')
    ap.add_argument('--expect-no-series', action='append', default=[], metavar='NAME')
    ap.add_argument('--exact-families', action='store_true')
    args = ap.parse_args(argv)

    try:
        expected_families = []
        for spec in args.expect_family:
            name, sep, typ = spec.partition('=')
            if not sep or not _NAME_RE.match(name) or not typ:
                raise ValueError('bad --expect-family %r (want NAME=TYPE)' % spec)
            expected_families.append((name, typ))
        value_checks = []
        for kind, specs in (('==', args.expect_sample), ('>=', args.expect_min), ('<=', args.expect_max)):
            for spec in specs:
                value_checks.append((kind,) + parse_series_spec(spec))
    except ValueError as e:
        print('parse_exposition.py: %s' % e, file=sys.stderr)
        return 2

    text = sys.stdin.read()
    problems = []

    # Parse. The generator is lazy, so a bad line raises while iterating.
    families = []
    try:
        for family in text_string_to_metric_families(text):
            families.append(family)
    except Exception as e:  # the library raises ValueError, sometimes others
        problems.append('exposition does not parse: %s: %s' % (type(e).__name__, e))

    # Raw HELP/TYPE lines: the library merges consecutive duplicates silently,
    # so count them on the text itself.
    help_lines = collections.Counter()
    type_lines = {}
    type_counts = collections.Counter()
    for line in text.splitlines():
        parts = line.split(None, 3)
        if len(parts) >= 3 and parts[0] == '#' and parts[1] == 'HELP':
            help_lines[parts[2]] += 1
        elif len(parts) >= 3 and parts[0] == '#' and parts[1] == 'TYPE':
            type_counts[parts[2]] += 1
            type_lines[parts[2]] = parts[3] if len(parts) == 4 else ''
    for name, n in sorted(help_lines.items()):
        if n != 1:
            problems.append('"# HELP %s" appears %d times, want once' % (name, n))
    for name, n in sorted(type_counts.items()):
        if n != 1:
            problems.append('"# TYPE %s" appears %d times, want once' % (name, n))

    # Families by library name; each once.
    by_name = collections.defaultdict(list)
    for family in families:
        by_name[family.name].append(family)
    for lib_name, fams in sorted(by_name.items()):
        if len(fams) != 1:
            problems.append('family %s appears %d times (types %s), want once'
                            % (exposition_family_name(lib_name, fams[0].type, type_lines), len(fams),
                               ', '.join(f.type for f in fams)))

    # Series: each once; index values.
    series = {}
    for family in families:
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            if key in series:
                problems.append('series %s appears twice' % format_series(*key))
            series[key] = sample.value

    # Expected families.
    expected_lib_names = set()
    for name, typ in expected_families:
        lib_name = library_family_name(name, typ)
        expected_lib_names.add(lib_name)
        fams = by_name.get(lib_name)
        if not fams:
            present = sorted(exposition_family_name(f.name, f.type, type_lines) for f in families)
            problems.append('family %s (%s) missing; present: %s'
                            % (name, typ, ', '.join(present) or '(none)'))
            continue
        family = fams[0]
        if family.type != typ:
            problems.append('family %s has type %s, want %s' % (name, family.type, typ))
        if name not in type_lines:
            problems.append('no "# TYPE %s" line (family written under another name?)' % name)
        elif type_lines[name] != typ:
            problems.append('"# TYPE %s" line says %r, want %r' % (name, type_lines[name], typ))
        if help_lines.get(name, 0) != 1:
            problems.append('family %s has %d "# HELP" lines, want 1' % (name, help_lines.get(name, 0)))
        if not family.documentation:
            problems.append('family %s has empty HELP text' % name)
        if not family.samples:
            problems.append('family %s has no samples' % name)
        # The library renames the samples of a counter written without
        # '_total' to NAME_total; a histogram's are NAME_bucket, NAME_sum and
        # NAME_count, a summary's NAME_sum and NAME_count; everything else
        # keeps the family's name.
        sample_name = name + '_total' if typ == 'counter' and lib_name == name else name
        allowed = ({name + '_bucket', name + '_sum', name + '_count'} if typ == 'histogram'
                   else {name + '_sum', name + '_count'} if typ == 'summary'
                   else {sample_name})
        for sample in family.samples:
            if sample.name not in allowed:
                problems.append('family %s has a sample named %s, want %s'
                                % (name, sample.name, ' or '.join(sorted(allowed))))

    if args.exact_families:
        for lib_name, fams in sorted(by_name.items()):
            if lib_name not in expected_lib_names:
                problems.append('unexpected family %s (%s)'
                                % (exposition_family_name(lib_name, fams[0].type, type_lines), fams[0].type))

    for name in args.expect_absent:
        for family in families:
            if exposition_family_name(family.name, family.type, type_lines) == name or family.name == name:
                problems.append('family %s present, want absent' % name)

    for name in args.expect_no_series:
        found = sorted(format_series(*k) for k in series if k[0] == name)
        if found:
            problems.append('series %s present, want none' % ', '.join(found))

    for kind, name, labels, want in value_checks:
        key = (name, labels)
        if key not in series:
            same_name = sorted(format_series(*k) for k in series if k[0] == name)
            problems.append('series %s missing (series named %s: %s)'
                            % (format_series(name, labels), name, ', '.join(same_name) or 'none'))
            continue
        got = series[key]
        ok = {'==': same_value(got, want), '>=': got >= want, '<=': got <= want}[kind]
        if not ok:
            problems.append('series %s = %r, want %s %r' % (format_series(name, labels), got, kind, want))

    if problems:
        for p in problems:
            print('parse_exposition.py: %s' % p, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
