#!/usr/bin/python3
"""Check an OpenMetrics exposition read on stdin with python3-prometheus-client's
strict parser (prometheus_client.openmetrics.parser).

Run with /usr/bin/python3: Debian's python3-prometheus-client only imports
there. Arguments:

  --expect-family NAME=TYPE   an OpenMetrics family NAME (a counter's without
                              _total) of TYPE exists, with samples
  --expect-sample SERIES=V    a sample (NAME or NAME{l="v",...}, the labels
                              exactly) has value V
  --expect-unit NAME=UNIT     the family NAME has UNIT
  --expect-created NAME       every series of the family NAME has a _created
                              sample, within a day of now

The parse itself checks what the format requires: # EOF last, metadata before
samples, no clashing names, histogram buckets in order and cumulative, +Inf
equal to _count, counter-like samples neither negative nor NaN.
Exit 0 when everything holds, else print each difference on stderr and exit 1.
"""

import argparse
import re
import sys
import time

from prometheus_client.openmetrics.parser import text_string_to_metric_families

_SERIES_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def series_key(spec):
    m = _SERIES_RE.match(spec)
    if not m:
        raise ValueError('bad series %r' % spec)
    labels = dict(_LABEL_RE.findall(m.group(2) or ''))
    return m.group(1), frozenset(labels.items())


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--expect-family', action='append', default=[])
    p.add_argument('--expect-sample', action='append', default=[])
    p.add_argument('--expect-unit', action='append', default=[])
    p.add_argument('--expect-created', action='append', default=[])
    args = p.parse_args()
    text = sys.stdin.read()
    problems = []
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser raises ValueError and friends
        print('check_openmetrics.py: the strict OpenMetrics parser refused it: %s' % e, file=sys.stderr)
        return 1
    by_name = {f.name: f for f in families}
    samples = {}
    for f in families:
        for s in f.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    for spec in args.expect_family:
        name, typ = spec.split('=', 1)
        f = by_name.get(name)
        if f is None:
            problems.append('no family %s' % name)
        elif f.type != typ:
            problems.append('family %s has type %s, want %s' % (name, f.type, typ))
        elif not f.samples:
            problems.append('family %s has no samples' % name)
    for spec in args.expect_sample:
        series, want = spec.rsplit('=', 1)
        got = samples.get(series_key(series))
        if got is None:
            problems.append('no sample %s' % series)
        elif got != float(want):
            problems.append('sample %s = %r, want %s' % (series, got, want))
    for spec in args.expect_unit:
        name, unit = spec.split('=', 1)
        f = by_name.get(name)
        if f is None or f.unit != unit:
            problems.append('family %s has unit %r, want %r' % (name, f.unit if f else None, unit))
    now = time.time()
    for name in args.expect_created:
        f = by_name.get(name)
        if f is None:
            problems.append('no family %s' % name)
            continue
        groups = {}
        for s in f.samples:
            labels = {k: v for k, v in s.labels.items() if k != 'le'}
            key = frozenset(labels.items())
            groups.setdefault(key, []).append(s)
        for key, group in groups.items():
            created = [s.value for s in group if s.name == name + '_created']
            if len(created) != 1 or not now - 86400 < created[0] <= now + 1:
                problems.append('family %s series %s has _created %r' % (name, dict(key), created))
    for msg in problems:
        print('check_openmetrics.py: ' + msg, file=sys.stderr)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
