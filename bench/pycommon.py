"""What the Python benchmark programs share: CPU pinning and the histogram
scenarios' values (bench/common.h's histogram_value), so client_python and
shmetrics observe the same values."""
import os
import time


def pin(cpu):
    try:
        n = os.cpu_count() or 1
        os.sched_setaffinity(0, {cpu % n})
    except OSError:
        pass


def unpin():
    try:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    except OSError:
        pass


def histogram_value(n):
    h = (n * 2654435761) & 0xFFFFFFFF
    h ^= h >> 15
    e = h % 14
    return ((1 << e) + ((h >> 8) & ((1 << e) - 1))) / 1024.0


def timed_loop(reps, n, body):
    """ns per iteration of body(n)'s loop of n, per repetition (after a
    warm-up of n / 10), pinned to CPU 0."""
    pin(0)
    body(n // 10)
    per_rep = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        body(n)
        per_rep.append((time.perf_counter_ns() - t0) / n)
    unpin()
    return per_rep


def timed_observes(reps, n, child):
    """timed_loop of child.observe(v), v cycling over 1,024 histogram_values:
    py_histogram_observe's loop, the same on both sides."""
    values = [histogram_value(i) for i in range(1024)]

    def body(count):
        for i in range(count):
            child.observe(values[i & 1023])

    return timed_loop(reps, n, body)
