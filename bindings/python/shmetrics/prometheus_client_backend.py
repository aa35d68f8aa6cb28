"""prometheus_client's own metrics, stored in a shmetrics segment.

An application written for python3-prometheus-client switches its storage
in one line, before its metrics are defined::

    import shmetrics.prometheus_client_backend
    shmetrics.prometheus_client_backend.install(instance="myapp", role="ops")

    from prometheus_client import Counter, Histogram   # unchanged from here
    REQUESTS = Counter("http_requests", "Requests.", ["method"])

Its Counter, Gauge, Histogram, Summary (count and sum: prometheus_client's
Summary has no quantiles) and Info then write every value to the segment,
through the value-class hook prometheus_client's own multiprocess mode uses
(prometheus_client.values.ValueClass). shmetrics-exporter serves them: no
PROMETHEUS_MULTIPROC_DIR, no files per process, no mark_process_dead, no
MultiProcessCollector. A gauge's multiprocess_mode means what it means
there.

What the segment cannot hold raises ValueError when the metric is defined:
Enum, a labelled Info, a definition the segment refuses (a name registered
otherwise by another process, a full segment: SegmentError).
Gauge.set_function raises too: nothing in this process is scraped. A value's
get() is NaN (the values live in the segment; read them from the exporter),
and exemplars are dropped, as in prometheus_client's multiprocess mode.
"""

import inspect
import math
import threading

import shmetrics

__all__ = ["install"]

_lock = threading.Lock()
_installed = None  # (segment, families)


class _Value:
    """One series' value as prometheus_client holds it. Its update methods
    are the series' own (bound by shmetrics._bind, so a call goes straight to
    the library; a series the segment refused is asked for again, at most
    once a second)."""

    __slots__ = ("inc", "set")

    def __init__(self):
        self.inc = _ignore
        self.set = self._no_set

    @staticmethod
    def _no_set(value):
        raise ValueError("this value cannot be set: only a gauge's can")

    def get(self):
        return math.nan

    def set_exemplar(self, exemplar):
        pass

    def get_exemplar(self):
        return None


def _ignore(amount):
    pass


# A histogram's buckets and a summary's count: the whole observation is
# recorded once, by the _sum value's inc (the library counts the bucket, the
# count and the sum together, so a scrape never sees one without the other).
_COUNTED_WITH_SUM = _Value()


def _value_class(families):
    def value_class(typ, metric_name, name, labelnames, labelvalues, help_text, multiprocess_mode="", **kwargs):
        family = families.get((typ, metric_name))
        if family is None:
            raise ValueError(
                f"{typ} {metric_name} was not registered with shmetrics: define metrics after "
                "shmetrics.prometheus_client_backend.install()")
        if typ in ("histogram", "summary"):
            if name != metric_name + "_sum":
                return _COUNTED_WITH_SUM
            methods = {"inc": "observe"}
        elif typ == "gauge":
            methods = {"inc": "inc", "set": "set"}
        else:
            methods = {"inc": "inc"}
        value = _Value()
        shmetrics._bind(value, methods, lambda: family.labels(*labelvalues))
        return value

    return value_class


def _register(segment, families, metric, signature, args, kwargs, metrics):
    """Registers the family of a prometheus_client metric being defined (not
    of a child made by labels()), raising what the segment refuses.
    `signature`: prometheus_client's MetricWrapperBase.__init__'s."""
    bound = signature.bind(metric, *args, **kwargs)
    bound.apply_defaults()
    a = bound.arguments
    a["labelnames"] = tuple(a["labelnames"])  # once: a generator gives its names once
    if a["_labelvalues"]:
        return bound
    typ = metric._type
    labelnames = tuple(a["labelnames"])
    unit = a["unit"]
    full = metrics._build_full_name(typ, a["name"], a["namespace"], a["subsystem"], unit)
    doc = a["documentation"]
    if typ == "counter":
        family = segment.counter_family(full + "_total", doc, labelnames, "float", unit)
    elif typ == "gauge":
        family = segment.gauge_family(full, doc, labelnames, metric._multiprocess_mode, "float", unit, nan="drop")
    elif typ == "histogram":
        bounds = [b for b in metric._upper_bounds if b != math.inf]
        family = segment.histogram_family(full, doc, labelnames, bounds, unit, nan="drop")
    elif typ == "summary":
        family = segment.summary_family(full, doc, labelnames, unit, nan="drop")
    elif typ == "info":
        if labelnames:
            raise ValueError(
                f"Info {full}: label names are not supported by the shmetrics backend (a process holds one "
                "value of an info metric); put them in the info() dict")
        return bound
    elif typ == "stateset":
        raise ValueError(
            f"Enum {full} is not supported by the shmetrics backend: use a Gauge per state "
            "(multiprocess_mode='livemax') instead")
    else:
        raise ValueError(f"{type(metric).__name__} {full} (type {typ}) is not supported by the shmetrics backend")
    families[(typ, full)] = family
    return bound


def install(instance=None, role=None, segment=None, **options):
    """Makes python3-prometheus-client store its metrics in the segment of
    `role` (default $SHMETRICS_ROLE) of `instance` (default
    $SHMETRICS_INSTANCE, else "default"), or in `segment`; options are
    shmetrics.Segment's. Returns the segment.

    Call it once, before any metric is defined (in a preforked server, in the
    master before the workers fork, or at the top of the application
    module). Raises RuntimeError when metrics were already defined in
    prometheus_client's default registry (they would not be stored), or when
    installed already with another segment."""
    global _installed
    from prometheus_client import metrics, registry, values

    with _lock:
        if _installed is not None:
            if segment is None or segment is _installed[0]:
                return _installed[0]
            raise RuntimeError("shmetrics.prometheus_client_backend is installed already, with another segment")
        defined = sorted(
            metric._name
            for metric in list(registry.REGISTRY._collector_to_names)
            if isinstance(metric, metrics.MetricWrapperBase))
        if defined:
            raise RuntimeError(
                "install() must run before the application's metrics are defined; defined already (their "
                f"values would not be stored in the segment): {', '.join(defined)}")
        if segment is None:
            segment = shmetrics.configure(role=role, instance=instance, **options)
        families = {}

        original_init = metrics.MetricWrapperBase.__init__
        signature = inspect.signature(original_init)

        def init(self, *args, **kwargs):
            bound = _register(segment, families, self, signature, args, kwargs, metrics)
            original_init(*bound.args, **bound.kwargs)

        original_info = metrics.Info.info
        info_lock = threading.Lock()

        def info(self, val):
            original_info(self, val)  # prometheus_client's checks, and its own copy
            keys = tuple(sorted(val))
            with info_lock:
                held = getattr(self, "_shmetrics_info", None)
                if held is None:
                    held = self._shmetrics_info = segment.info(self._name + "_info", self._documentation, keys)
                elif held.labelnames != keys:
                    raise ValueError(
                        f"Info {self._name}: keys {list(keys)} differ from the first info() call's "
                        f"{list(held.labelnames)} (the segment fixes them)")
                held.set([str(val[k]) for k in keys])

        def set_function(self, f):
            raise ValueError(
                "Gauge.set_function is not supported by the shmetrics backend: the exporter, not this process, "
                "is scraped, so nothing would call the function; set the gauge when the value changes instead")

        metrics.MetricWrapperBase.__init__ = init
        metrics.Info.info = info
        metrics.Gauge.set_function = set_function
        values.ValueClass = _value_class(families)
        _installed = (segment, families)
        return segment
