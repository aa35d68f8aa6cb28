"""shmetrics for Python: metrics of preforked workers in one shared segment.

Classes shaped like prometheus_client's, writing to a shared-memory segment
that shmetrics-exporter serves (one exporter, however many workers, alive or
dead)::

    import shmetrics
    shmetrics.configure(role="ops", instance="myapp")   # or SHMETRICS_ROLE
    REQUESTS = shmetrics.Counter("http_requests", "Requests served.", ["method"])
    LATENCY = shmetrics.Histogram("http_request_seconds", "Request latency.")

    REQUESTS.labels("GET").inc()
    with LATENCY.time():
        ...

Values are summed (counters, histograms) or combined by their
multiprocess_mode (gauges) over every thread of every process, dead ones
included, by the exporter; this process does not serve them. Errors raise
ValueError or TypeError with the library's message, and SegmentError (an
OSError) when the segment cannot be opened or has no room for another
family.

Existing prometheus_client code can keep its metric definitions and switch
storage in one line: see shmetrics.prometheus_client_backend.
"""

import functools
import math
import os
import threading
import time

from . import _shmetrics
from ._shmetrics import Segment, SegmentError

__all__ = [
    "Counter",
    "Gauge",
    "Histogram",
    "Info",
    "Readyz",
    "Segment",
    "SegmentError",
    "Summary",
    "configure",
    "default_segment",
]

_lock = threading.Lock()
_default = None


def configure(role=None, instance=None, **options):
    """Opens (creating it if needed) the segment that metrics defined
    without segment= write to, and returns it.

    role and instance default to $SHMETRICS_ROLE and $SHMETRICS_INSTANCE
    ("default" when unset); options are Segment's (directory, name, mode,
    lock_timeout and the capacities). Call it before defining metrics, once
    per process tree: workers forked afterwards keep using it."""
    global _default
    role = role if role is not None else os.environ.get("SHMETRICS_ROLE")
    if not role:
        raise ValueError(
            "no role: expected configure(role=...) or $SHMETRICS_ROLE (the exporter serves a role's "
            "segment, e.g. ops or judge)")
    if instance is None:
        instance = os.environ.get("SHMETRICS_INSTANCE") or "default"
    segment = Segment(role, instance=instance, **options)
    with _lock:
        _default = segment
    return segment


def default_segment():
    """The segment configure() opened, or one opened now from
    $SHMETRICS_ROLE and $SHMETRICS_INSTANCE."""
    segment = _default
    if segment is None:
        with _lock:
            if _default is None and not os.environ.get("SHMETRICS_ROLE"):
                raise ValueError(
                    "no segment: call shmetrics.configure(role=..., instance=...) or set $SHMETRICS_ROLE "
                    "before defining metrics, or pass segment=")
        segment = _default if _default is not None else configure()
    return segment


def _label_names(labelnames):
    """Label names as a tuple, taken once (a generator gives its names once);
    a lone str is refused: it would be taken as its letters."""
    if isinstance(labelnames, str):
        raise TypeError("labelnames must be a sequence of str, not a str")
    return tuple(labelnames)


def _full_name(name, namespace, subsystem, unit):
    """prometheus_client's name building: namespace_subsystem_name_unit."""
    full = ""
    if namespace:
        full += namespace + "_"
    if subsystem:
        full += subsystem + "_"
    full += name
    if unit and not full.endswith("_" + unit):
        full += "_" + unit
    return full


class _Timer:
    """A context manager and decorator that passes the seconds its block or
    call took (perf_counter) to `record`."""

    __slots__ = ("_record", "_start")

    def __init__(self, record):
        self._record = record
        self._start = None

    def __enter__(self):
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self._record(max(time.perf_counter() - self._start, 0.0))

    def __call__(self, f):
        record = self._record

        @functools.wraps(f)
        def timed(*args, **kwargs):
            with _Timer(record):
                return f(*args, **kwargs)

        return timed


class _InProgress:
    """A context manager and decorator: inc() on entry, dec() on exit."""

    __slots__ = ("_gauge",)

    def __init__(self, gauge):
        self._gauge = gauge

    def __enter__(self):
        self._gauge.inc()
        return self

    def __exit__(self, *exc):
        self._gauge.dec()

    def __call__(self, f):
        gauge = self._gauge

        @functools.wraps(f)
        def tracked(*args, **kwargs):
            with _InProgress(gauge):
                return f(*args, **kwargs)

        return tracked


class _ExceptionCounter:
    """A context manager and decorator counting the exceptions of a type that
    leave its block or call (they are re-raised)."""

    __slots__ = ("_counter", "_exception")

    def __init__(self, counter, exception):
        self._counter = counter
        self._exception = exception

    def __enter__(self):
        return self

    def __exit__(self, typ, value, traceback):
        if typ is not None and issubclass(typ, self._exception):
            self._counter.inc()

    def __call__(self, f):
        counter, exception = self._counter, self._exception

        @functools.wraps(f)
        def counted(*args, **kwargs):
            with _ExceptionCounter(counter, exception):
                return f(*args, **kwargs)

        return counted


def _bind(owner, methods, resolve):
    """Sets owner's update methods to those of the series resolve() gives
    ({owner's name: the series' name}). A series the segment refused (it was
    full, or its registration lock was not had in time) drops its updates,
    counted by the exporter; then the methods are wrappers that ask for the
    series again at most once a second, and rebind once it is had, so a
    moment's contention does not lose a series for the life of the process."""
    child = resolve()
    if child.attached:
        for mine, theirs in methods.items():
            setattr(owner, mine, getattr(child, theirs))
        return
    state = {"child": child, "next": time.monotonic() + 1.0}

    def retrying(mine, theirs):
        def call(*args, **kwargs):
            now = time.monotonic()
            if now >= state["next"]:
                state["next"] = now + 1.0
                fresh = resolve()
                if fresh.attached:
                    for m, t in methods.items():
                        setattr(owner, m, getattr(fresh, t))
                    state["child"] = fresh
            return getattr(state["child"], theirs)(*args, **kwargs)

        call.__name__ = mine
        return call

    for mine, theirs in methods.items():
        setattr(owner, mine, retrying(mine, theirs))


# The series objects the C module makes get prometheus_client's helpers.
_shmetrics.Counter.count_exceptions = lambda self, exception=Exception: _ExceptionCounter(self, exception)
_shmetrics.Gauge.track_inprogress = lambda self: _InProgress(self)
_shmetrics.Gauge.time = lambda self: _Timer(self.set)
_shmetrics.Histogram.time = lambda self: _Timer(self.observe)


class _Metric:
    """A family: labels() gives a series; without label names, the family is
    its one series (its update methods are the series', bound at definition,
    so an unlabelled metric costs what a held child does)."""

    _type = None
    _updates = ()

    def __init__(self, family, labelnames):
        self._family = family
        self._labelnames = tuple(labelnames)
        if self._labelnames:
            self.labels = family.labels
        else:
            _bind(self, {m: m for m in self._updates}, family.labels)

    @property
    def name(self):
        return self._family.name

    def labels(self, *values, **named):
        raise ValueError(f"{self._type} {self._family.name} has no label names: update it directly")

    def _missing_labels(self, *args, **kwargs):
        raise ValueError(
            f"{self._type} {self._family.name} has label names {self._labelnames!r}: "
            f"expected .labels(...) first")

    def __repr__(self):
        return f"shmetrics.{type(self).__name__}({self._family.name})"


def _labelled_only(method):
    def missing(self, *args, **kwargs):
        self._missing_labels()

    missing.__name__ = method
    return missing


class Counter(_Metric):
    """A counter: Counter(name, documentation, labelnames=(), namespace='',
    subsystem='', unit='', *, segment=None, value_type='float').

    The series' name ends in _total (added when absent, as prometheus_client
    does). value_type='int' keeps exact 64-bit integer counts and refuses
    fractional increments."""

    _type = "counter"
    _updates = ("inc", "count_exceptions")
    inc = _labelled_only("inc")
    count_exceptions = _labelled_only("count_exceptions")

    def __init__(self, name, documentation, labelnames=(), namespace="", subsystem="", unit="", registry=None,
                 *, segment=None, value_type="float"):
        labelnames = _label_names(labelnames)
        full = _full_name(name[:-6] if name.endswith("_total") else name, namespace, subsystem, unit) + "_total"
        segment = segment or default_segment()
        super().__init__(segment.counter_family(full, documentation, labelnames, value_type, unit), labelnames)


class Gauge(_Metric):
    """A gauge: Gauge(name, documentation, labelnames=(), namespace='',
    subsystem='', unit='', *, multiprocess_mode='all', segment=None,
    value_type='float').

    Each process holds its own value; the exporter combines them by
    multiprocess_mode, named as prometheus_client names them: all, liveall
    (a sample per process, labelled pid), sum, livesum, max, livemax, min,
    livemin, mostrecent, livemostrecent. The live modes forget a dead
    process's value."""

    _type = "gauge"
    _updates = ("set", "inc", "dec", "set_to_current_time", "track_inprogress", "time")
    set = _labelled_only("set")
    inc = _labelled_only("inc")
    dec = _labelled_only("dec")
    set_to_current_time = _labelled_only("set_to_current_time")
    track_inprogress = _labelled_only("track_inprogress")
    time = _labelled_only("time")

    def __init__(self, name, documentation, labelnames=(), namespace="", subsystem="", unit="", registry=None,
                 *, multiprocess_mode="all", segment=None, value_type="float"):
        labelnames = _label_names(labelnames)
        segment = segment or default_segment()
        family = segment.gauge_family(_full_name(name, namespace, subsystem, unit), documentation, labelnames,
                                      multiprocess_mode, value_type, unit)
        super().__init__(family, labelnames)

    def set_function(self, f):
        raise ValueError(
            "Gauge.set_function is not supported: the exporter, not this process, is scraped, so nothing "
            "would call the function; set the gauge when the value changes instead")


class Histogram(_Metric):
    """A histogram: Histogram(name, documentation, labelnames=(),
    namespace='', subsystem='', unit='', buckets=DEFAULT_BUCKETS, *,
    segment=None).

    Bounds are fixed at definition (sorted, finite; a trailing +Inf is
    implicit and may be given). NaN observations raise ValueError."""

    _type = "histogram"
    _updates = ("observe", "time")
    # prometheus_client's defaults, so a definition means the same here.
    DEFAULT_BUCKETS = (.005, .01, .025, .05, .075, .1, .25, .5, .75, 1.0, 2.5, 5.0, 7.5, 10.0, math.inf)
    observe = _labelled_only("observe")
    time = _labelled_only("time")

    def __init__(self, name, documentation, labelnames=(), namespace="", subsystem="", unit="", registry=None,
                 buckets=DEFAULT_BUCKETS, *, segment=None):
        labelnames = _label_names(labelnames)
        bounds = []
        for b in buckets:  # numbers, or numbers' strings as prometheus_client takes them
            try:
                bounds.append(float(b))
            except (TypeError, ValueError):
                raise TypeError(f"histogram {name}: bucket {b!r} is not a number") from None
        if bounds and bounds[-1] == math.inf:
            bounds.pop()
        if "le" in labelnames:
            raise ValueError(f"histogram {name}: the label name 'le' is reserved for the buckets")
        segment = segment or default_segment()
        family = segment.histogram_family(_full_name(name, namespace, subsystem, unit), documentation, labelnames,
                                          bounds, unit)
        super().__init__(family, labelnames)


class Summary(_Metric):
    """A summary: Summary(name, documentation, labelnames=(), namespace='',
    subsystem='', unit='', *, segment=None): the count and sum of
    observations, without quantiles, as prometheus_client's. NaN
    observations raise ValueError."""

    _type = "summary"
    _updates = ("observe", "time")
    observe = _labelled_only("observe")
    time = _labelled_only("time")

    def __init__(self, name, documentation, labelnames=(), namespace="", subsystem="", unit="", registry=None,
                 *, segment=None):
        labelnames = _label_names(labelnames)
        if "quantile" in labelnames:
            raise ValueError(f"summary {name}: the label name 'quantile' is reserved")
        segment = segment or default_segment()
        family = segment.summary_family(_full_name(name, namespace, subsystem, unit), documentation, labelnames,
                                        unit)
        super().__init__(family, labelnames)


class Info:
    """An info metric: Info(name, documentation, *, segment=None); then
    .info({"version": "1.2.3", ...}).

    The series is name_info with the dict's keys as labels, value 1. Each
    process holds one value; the exporter shows every distinct value held by
    a live process. The keys are fixed by the first info() call of any
    process (in sorted order)."""

    def __init__(self, name, documentation, labelnames=(), namespace="", subsystem="", unit="", registry=None,
                 *, segment=None):
        if _label_names(labelnames):
            raise ValueError(
                f"info {name}: label names are not supported (a process holds one value of an info metric); "
                "put them in the info() dict")
        if unit:
            raise ValueError(f"info {name}: an info metric has no unit")
        full = _full_name(name, namespace, subsystem, "")
        self._name = full[:-5] if full.endswith("_info") else full
        self._documentation = documentation
        self._segment = segment or default_segment()
        self._info = None
        self._lock = threading.Lock()

    def info(self, val):
        """Replaces this process's value with the dict `val` (str to str)."""
        if not isinstance(val, dict):
            raise TypeError(f"info {self._name}: info() takes a dict of str label values, not {type(val).__name__}")
        keys = tuple(sorted(val))
        with self._lock:
            if self._info is None:
                self._info = self._segment.info(self._name + "_info", self._documentation, keys)
            elif self._info.labelnames != keys:
                raise ValueError(
                    f"info {self._name}: keys {list(keys)} differ from the first info() call's "
                    f"{list(self._info.labelnames)}")
            self._info.set([val[k] for k in keys])

    def clear(self):
        """Removes this process's value."""
        with self._lock:
            if self._info is not None:
                self._info.clear()


class Readyz:
    """Outcomes of readiness checks: Readyz(*, segment=None).observe(ok).

    The exporter serves readyz_checks_total, readyz_failures_total,
    readyz_success_ratio_1m and _5m and readyz_status from them."""

    def __init__(self, *, segment=None):
        self._recorder = (segment or default_segment()).readyz()
        self.observe = self._recorder.observe
