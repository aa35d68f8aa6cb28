// shmetrics._shmetrics: the C++ writer library as a CPython extension.
//
// The update methods (Counter.inc, Gauge.set/inc/dec, Histogram.observe) are
// METH_FASTCALL methods over the library's inline hot path: argument
// checks, then the same relaxed stores a C++ worker makes. Every refusal
// raises: ValueError or TypeError with the library's message, SegmentError
// (an OSError) when a segment cannot be opened, created or registered in.
// The classes users meet are in __init__.py; this module is their engine.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <shmetrics/shmetrics.h>
#include <shmetrics/shm/segment_file.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <ctime>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

PyObject* segment_error = nullptr;  // shmetrics.SegmentError, an OSError

// Sets the Python error for the exception being handled. Call in a catch (...).
void raise_current() {
  try {
    throw;
  } catch (const shmetrics::shm::SegmentError& e) {
    PyErr_SetString(segment_error, e.what());
  } catch (const std::invalid_argument& e) {
    PyErr_SetString(PyExc_ValueError, e.what());
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  } catch (...) {
    PyErr_SetString(PyExc_RuntimeError, "shmetrics: unknown C++ exception");
  }
}

// Runs `register_` (which may wait for the registration lock) without the
// GIL; false with the Python error set when it threw.
template <typename F>
bool without_gil(F&& register_) {
  std::exception_ptr error;
  Py_BEGIN_ALLOW_THREADS
  try {
    register_();
  } catch (...) {
    error = std::current_exception();
  }
  Py_END_ALLOW_THREADS
  if (!error) return true;
  try {
    std::rethrow_exception(error);
  } catch (...) {
    raise_current();
  }
  return false;
}

// A str argument as UTF-8 (the view lives as long as `o`); false with
// TypeError naming `what` otherwise.
bool utf8_of(PyObject* o, const char* what, std::string_view& out) {
  if (!PyUnicode_Check(o)) {
    PyErr_Format(PyExc_TypeError, "%s must be a str, not %.100s", what, Py_TYPE(o)->tp_name);
    return false;
  }
  Py_ssize_t size = 0;
  const char* data = PyUnicode_AsUTF8AndSize(o, &size);
  if (data == nullptr) return false;
  out = std::string_view(data, static_cast<std::size_t>(size));
  return true;
}

bool string_of(PyObject* o, const char* what, std::string& out) {
  std::string_view v;
  if (!utf8_of(o, what, v)) return false;
  out.assign(v);
  return true;
}

// Label names: any iterable of str (a lone str is refused: it would be
// taken as its letters).
bool names_of(PyObject* o, std::vector<std::string>& out) {
  if (o == nullptr || o == Py_None) return true;
  if (PyUnicode_Check(o)) {
    PyErr_SetString(PyExc_TypeError, "labelnames must be a sequence of str, not a str");
    return false;
  }
  PyObject* seq = PySequence_Fast(o, "labelnames must be a sequence of str");
  if (seq == nullptr) return false;
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
  bool ok = true;
  for (Py_ssize_t i = 0; i < n && ok; ++i) {
    std::string name;
    ok = string_of(PySequence_Fast_GET_ITEM(seq, i), "a label name", name);
    if (ok) out.push_back(std::move(name));
  }
  Py_DECREF(seq);
  return ok;
}

bool value_type_of(const char* v, shmetrics::ValueType& out) {
  const std::string_view s = v == nullptr ? "float" : v;
  if (s == "float") out = shmetrics::ValueType::kDouble;
  else if (s == "int") out = shmetrics::ValueType::kInteger;
  else {
    PyErr_Format(PyExc_ValueError, "value_type \"%s\" is invalid: expected \"float\" or \"int\"", v);
    return false;
  }
  return true;
}

// ------------------------------------------------------------------ updates

// A number as the library takes it: an int of 64 bits (exact), or a float
// (anything with __float__ or __index__, and ints beyond 64 bits, which only
// double cells can hold).
struct Number {
  bool is_int = false;
  bool negative = false;
  std::uint64_t magnitude = 0;  // |value| when is_int
  double d = 0;
};

bool number_of(PyObject* o, const char* what, Number& out) {
  if (PyLong_Check(o)) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow == 0) {
      if (v == -1 && PyErr_Occurred()) return false;
      out.is_int = true;
      out.negative = v < 0;
      out.magnitude = v < 0 ? 0 - static_cast<std::uint64_t>(v) : static_cast<std::uint64_t>(v);
      out.d = static_cast<double>(v);
      return true;
    }
    if (overflow > 0) {
      const unsigned long long u = PyLong_AsUnsignedLongLong(o);
      if (!(u == static_cast<unsigned long long>(-1) && PyErr_Occurred())) {
        out.is_int = true;
        out.magnitude = u;
        out.d = static_cast<double>(u);
        return true;
      }
      PyErr_Clear();
    }
    out.d = PyLong_AsDouble(o);  // beyond 64 bits: a double (OverflowError past 1e308)
    return !(out.d == -1.0 && PyErr_Occurred());
  }
  if (PyFloat_CheckExact(o)) {
    out.d = PyFloat_AS_DOUBLE(o);
    return true;
  }
  out.d = PyFloat_AsDouble(o);
  if (out.d == -1.0 && PyErr_Occurred()) {
    // Not a number: said so. Anything else (KeyboardInterrupt, MemoryError,
    // an error of the object's own __float__) goes through as it is.
    if (!PyErr_ExceptionMatches(PyExc_TypeError)) return false;
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "%s must be a number, not %.100s", what, Py_TYPE(o)->tp_name);
    return false;
  }
  return true;
}

// The one value of an update method, given by position or as `name`
// (prometheus_client's: amount, value); null when not given. An exemplar,
// by position after it or by name, is accepted and ignored (exemplars are not
// stored, as in prometheus_client's multiprocess mode).
bool update_argument(const char* method, const char* name, PyObject* const* args, Py_ssize_t nargsf,
                     PyObject* kwnames, PyObject*& value) {
  const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (nargs > 2) {
    PyErr_Format(PyExc_TypeError, "%s() takes at most 2 arguments (%zd given)", method, nargs);
    return false;
  }
  value = nargs >= 1 ? args[0] : nullptr;
  bool exemplar = nargs == 2;
  const Py_ssize_t nkw = kwnames == nullptr ? 0 : PyTuple_GET_SIZE(kwnames);
  for (Py_ssize_t i = 0; i < nkw; ++i) {
    PyObject* key = PyTuple_GET_ITEM(kwnames, i);
    if (PyUnicode_CompareWithASCIIString(key, name) == 0 && value == nullptr) {
      value = args[nargs + i];
    } else if (PyUnicode_CompareWithASCIIString(key, "exemplar") == 0 && !exemplar) {
      exemplar = true;
    } else {
      PyErr_Format(PyExc_TypeError, "%s() got an unexpected or repeated keyword argument %R", method, key);
      return false;
    }
  }
  return true;
}

struct CounterObject {
  PyObject_HEAD
  shmetrics::Counter handle;
  bool is_double;
};

PyObject* counter_inc(PyObject* self_, PyObject* const* args, Py_ssize_t nargsf, PyObject* kwnames) {
  auto* self = reinterpret_cast<CounterObject*>(self_);
  PyObject* amount = nullptr;
  if (PyVectorcall_NARGS(nargsf) == 0 && kwnames == nullptr) {  // inc(): the common call, first
    self->handle.inc();
    Py_RETURN_NONE;
  }
  if (!update_argument("inc", "amount", args, nargsf, kwnames, amount)) return nullptr;
  if (amount == nullptr) {
    self->handle.inc();
    Py_RETURN_NONE;
  }
  Number n;
  if (!number_of(amount, "a counter increment", n)) return nullptr;
  if (n.is_int) {
    if (n.negative)
      return PyErr_Format(PyExc_ValueError, "counter increment %R is negative: counters only go up", amount);
    self->handle.inc(n.magnitude);
    Py_RETURN_NONE;
  }
  if (!(n.d >= 0) || std::isinf(n.d))
    return PyErr_Format(PyExc_ValueError, "counter increment %R is invalid: expected a finite number >= 0", amount);
  if (!self->is_double && (n.d != std::floor(n.d) || n.d >= 18446744073709551616.0))
    return PyErr_Format(PyExc_ValueError,
                        "counter increment %R is not an integer below 2**64: the family counts 64-bit integers "
                        "(value_type=\"int\")",
                        amount);
  self->handle.inc(n.d);
  Py_RETURN_NONE;
}

PyObject* counter_attached(PyObject* self, void*) {
  return PyBool_FromLong(reinterpret_cast<CounterObject*>(self)->handle.attached());
}

struct GaugeObject {
  PyObject_HEAD
  shmetrics::Gauge handle;
  bool integer;
  bool drop_nan;  // the prometheus_client backend: NaN dropped and counted, not raised
};

enum class GaugeOp { kSet, kInc, kDec };

// The checks the library makes silently (it drops and counts), raised.
template <GaugeOp op>
PyObject* gauge_update(PyObject* self_, PyObject* const* args, Py_ssize_t nargsf, PyObject* kwnames) {
  auto* self = reinterpret_cast<GaugeObject*>(self_);
  constexpr const char* method = op == GaugeOp::kSet ? "set" : op == GaugeOp::kInc ? "inc" : "dec";
  PyObject* value = nullptr;
  if (!update_argument(method, op == GaugeOp::kSet ? "value" : "amount", args, nargsf, kwnames, value))
    return nullptr;
  if (value == nullptr) {
    if constexpr (op == GaugeOp::kSet) {
      return PyErr_Format(PyExc_TypeError, "set() takes the value to set");
    } else {
      op == GaugeOp::kInc ? self->handle.inc() : self->handle.dec();
      Py_RETURN_NONE;
    }
  }
  Number n;
  if (!number_of(value, "a gauge value", n)) return nullptr;
  if (std::isnan(n.d)) {
    if (!self->drop_nan) return PyErr_Format(PyExc_ValueError, "gauge value %R is NaN: expected a number", value);
    self->handle.set(n.d);  // dropped and counted by the library
    Py_RETURN_NONE;
  }
  if (self->integer) {
    std::int64_t v = 0;
    if (n.is_int) {
      if (n.magnitude > (n.negative ? std::uint64_t{1} << 63 : (std::uint64_t{1} << 63) - 1))
        return PyErr_Format(PyExc_ValueError, "gauge value %R is out of range: expected a 64-bit signed integer",
                            value);
      v = n.negative ? static_cast<std::int64_t>(0 - n.magnitude) : static_cast<std::int64_t>(n.magnitude);
    } else {
      if (n.d != std::floor(n.d) || !(n.d >= -9223372036854775808.0 && n.d < 9223372036854775808.0))
        return PyErr_Format(PyExc_ValueError,
                            "gauge value %R is invalid: the family holds 64-bit integers (value_type=\"int\")",
                            value);
      v = static_cast<std::int64_t>(n.d);
    }
    if constexpr (op == GaugeOp::kSet) self->handle.set(v);
    else if constexpr (op == GaugeOp::kInc) self->handle.inc(v);
    else self->handle.dec(v);
    Py_RETURN_NONE;
  }
  if constexpr (op == GaugeOp::kSet) self->handle.set(n.d);
  else if constexpr (op == GaugeOp::kInc) self->handle.inc(n.d);
  else self->handle.dec(n.d);
  Py_RETURN_NONE;
}

PyObject* gauge_set_to_current_time(PyObject* self, PyObject*) {
  reinterpret_cast<GaugeObject*>(self)->handle.set_to_current_time();
  Py_RETURN_NONE;
}

PyObject* gauge_attached(PyObject* self, void*) {
  return PyBool_FromLong(reinterpret_cast<GaugeObject*>(self)->handle.attached());
}

struct HistogramObject {
  PyObject_HEAD
  shmetrics::Histogram handle;
  bool drop_nan;  // the prometheus_client backend: NaN dropped and counted, not raised
};

PyObject* histogram_observe(PyObject* self_, PyObject* const* args, Py_ssize_t nargsf, PyObject* kwnames) {
  auto* self = reinterpret_cast<HistogramObject*>(self_);
  PyObject* amount = PyVectorcall_NARGS(nargsf) == 1 && kwnames == nullptr ? args[0] : nullptr;  // observe(v): the common call
  if (amount == nullptr && !update_argument("observe", "amount", args, nargsf, kwnames, amount)) return nullptr;
  if (amount == nullptr) return PyErr_Format(PyExc_TypeError, "observe() takes the value observed");
  double d;
  if (PyFloat_CheckExact(amount)) {
    d = PyFloat_AS_DOUBLE(amount);
  } else {
    Number n;
    if (!number_of(amount, "an observation", n)) return nullptr;
    d = n.d;
  }
  if (std::isnan(d) && !self->drop_nan)
    return PyErr_Format(PyExc_ValueError, "observation %R is NaN: expected a number", amount);
  self->handle.observe(d);
  Py_RETURN_NONE;
}

PyObject* histogram_attached(PyObject* self, void*) {
  return PyBool_FromLong(reinterpret_cast<HistogramObject*>(self)->handle.attached());
}

PyMethodDef counter_methods[] = {
    {"inc", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(counter_inc)), METH_FASTCALL | METH_KEYWORDS,
     "inc(amount=1, exemplar=None): adds amount (an int, or a float for value_type=\"float\"; never negative); "
     "exemplars are not stored"},
    {nullptr, nullptr, 0, nullptr}};
PyGetSetDef counter_getset[] = {
    {"attached", counter_attached, nullptr, "False when the segment had no room for the series", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyMethodDef gauge_methods[] = {
    {"set", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(gauge_update<GaugeOp::kSet>)),
     METH_FASTCALL | METH_KEYWORDS, "set(value): this process's value"},
    {"inc", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(gauge_update<GaugeOp::kInc>)),
     METH_FASTCALL | METH_KEYWORDS, "inc(amount=1)"},
    {"dec", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(gauge_update<GaugeOp::kDec>)),
     METH_FASTCALL | METH_KEYWORDS, "dec(amount=1)"},
    {"set_to_current_time", gauge_set_to_current_time, METH_NOARGS, "set(time.time())"},
    {nullptr, nullptr, 0, nullptr}};
PyGetSetDef gauge_getset[] = {
    {"attached", gauge_attached, nullptr, "False when the segment had no room for the series", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyMethodDef histogram_methods[] = {
    {"observe", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(histogram_observe)),
     METH_FASTCALL | METH_KEYWORDS,
     "observe(amount, exemplar=None): counts amount in its bucket and adds it to the sum; exemplars are not stored"},
    {nullptr, nullptr, 0, nullptr}};
PyGetSetDef histogram_getset[] = {
    {"attached", histogram_attached, nullptr, "False when the segment had no room for the series", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

// Heap types without a constructor of their own (made by Family.labels) and
// open to attributes set from Python (__init__.py adds time() and
// track_inprogress()).
PyTypeObject* counter_type = nullptr;
PyTypeObject* gauge_type = nullptr;
PyTypeObject* histogram_type = nullptr;

PyType_Slot counter_slots[] = {{Py_tp_methods, counter_methods}, {Py_tp_getset, counter_getset},
                               {Py_tp_doc, const_cast<char*>("A counter series: inc().")}, {0, nullptr}};
PyType_Spec counter_spec = {"shmetrics._shmetrics.Counter", sizeof(CounterObject), 0,
                            Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION, counter_slots};
PyType_Slot gauge_slots[] = {{Py_tp_methods, gauge_methods}, {Py_tp_getset, gauge_getset},
                             {Py_tp_doc, const_cast<char*>("A gauge series: set(), inc(), dec().")}, {0, nullptr}};
PyType_Spec gauge_spec = {"shmetrics._shmetrics.Gauge", sizeof(GaugeObject), 0,
                          Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION, gauge_slots};
PyType_Slot histogram_slots[] = {{Py_tp_methods, histogram_methods}, {Py_tp_getset, histogram_getset},
                                 {Py_tp_doc, const_cast<char*>("A histogram series: observe().")}, {0, nullptr}};
PyType_Spec histogram_spec = {"shmetrics._shmetrics.Histogram", sizeof(HistogramObject), 0,
                              Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION, histogram_slots};

// A new series object holding `handle`.
template <typename Object, typename Handle>
Object* new_child(PyTypeObject* type, const Handle& handle) {
  Object* o = PyObject_New(Object, type);
  if (o != nullptr) new (&o->handle) Handle(handle);
  return o;
}

// ---------------------------------------------------------------- families

enum class Kind { kCounter, kGauge, kHistogram };

struct FamilyObject {
  PyObject_HEAD
  Kind kind;
  bool flag;             // counter: double cells; gauge: integer cells
  bool drop_nan;         // gauge, histogram: NaN dropped and counted (the prometheus_client backend)
  PyObject* name;        // str
  PyObject* labelnames;  // tuple of str
  PyObject* children;    // dict: tuple of label values (str) -> child
  union {
    shmetrics::CounterFamily counter;
    shmetrics::GaugeFamily gauge;
    shmetrics::HistogramFamily histogram;
  };
};

PyTypeObject* family_type = nullptr;

// A new child of `f` for label values already made str. Resolving them may
// wait for the segment's registration lock (a new series): without the GIL,
// so the process's other threads run meanwhile.
PyObject* make_child(FamilyObject* f, const std::vector<std::string_view>& values) {
  shmetrics::Counter counter;
  shmetrics::Gauge gauge;
  shmetrics::Histogram histogram;
  if (!without_gil([&] {
        switch (f->kind) {
          case Kind::kCounter: counter = f->counter.labels(values); break;
          case Kind::kGauge: gauge = f->gauge.labels(values); break;
          case Kind::kHistogram: histogram = f->histogram.labels(values); break;
        }
      }))
    return nullptr;
  switch (f->kind) {
    case Kind::kCounter: {
      auto* o = new_child<CounterObject>(counter_type, counter);
      if (o != nullptr) o->is_double = f->flag;
      return reinterpret_cast<PyObject*>(o);
    }
    case Kind::kGauge: {
      auto* o = new_child<GaugeObject>(gauge_type, gauge);
      if (o != nullptr) {
        o->integer = f->flag;
        o->drop_nan = f->drop_nan;
      }
      return reinterpret_cast<PyObject*>(o);
    }
    case Kind::kHistogram: {
      auto* o = new_child<HistogramObject>(histogram_type, histogram);
      if (o != nullptr) o->drop_nan = f->drop_nan;
      return reinterpret_cast<PyObject*>(o);
    }
  }
  PyErr_SetString(PyExc_RuntimeError, "shmetrics: family of no kind");
  return nullptr;
}

bool attached(PyObject* child) {
  if (Py_IS_TYPE(child, counter_type)) return reinterpret_cast<CounterObject*>(child)->handle.attached();
  if (Py_IS_TYPE(child, gauge_type)) return reinterpret_cast<GaugeObject*>(child)->handle.attached();
  return reinterpret_cast<HistogramObject*>(child)->handle.attached();
}

// labels(*values) or labels(**values): the child of those label values, as
// prometheus_client takes them (each made str). Children are kept while
// attached, so a label set is looked up once; a refused one (the segment
// full) is not kept, so values from outside cannot grow the cache.
PyObject* family_labels(PyObject* self_, PyObject* const* args, Py_ssize_t nargsf, PyObject* kwnames) {
  auto* f = reinterpret_cast<FamilyObject*>(self_);
  const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  const Py_ssize_t nkw = kwnames == nullptr ? 0 : PyTuple_GET_SIZE(kwnames);
  const Py_ssize_t want = PyTuple_GET_SIZE(f->labelnames);
  if (nargs != 0 && nkw != 0)
    return PyErr_Format(PyExc_ValueError, "labels() of %U takes label values by position or by name, not both",
                        f->name);
  if (nargs + nkw != want)
    return PyErr_Format(PyExc_ValueError, "labels() of %U takes %zd label values (%R), got %zd", f->name, want,
                        f->labelnames, nargs + nkw);
  PyObject* key = PyTuple_New(want);
  if (key == nullptr) return nullptr;
  for (Py_ssize_t i = 0; i < want; ++i) {
    PyObject* v = nullptr;
    if (nkw == 0) {
      v = args[i];
    } else {
      PyObject* label = PyTuple_GET_ITEM(f->labelnames, i);
      for (Py_ssize_t k = 0; k < nkw && v == nullptr; ++k) {
        const int eq = PyUnicode_Compare(PyTuple_GET_ITEM(kwnames, k), label);
        if (eq == 0) v = args[k];
      }
      if (v == nullptr) {
        Py_DECREF(key);
        return PyErr_Format(PyExc_ValueError, "labels() of %U takes the label names %R, got %R", f->name,
                            f->labelnames, kwnames);
      }
    }
    PyObject* s = PyUnicode_CheckExact(v) ? Py_NewRef(v) : PyObject_Str(v);
    if (s == nullptr) {
      Py_DECREF(key);
      return nullptr;
    }
    PyTuple_SET_ITEM(key, i, s);
  }
  PyObject* child = PyDict_GetItemWithError(f->children, key);
  if (child != nullptr) {
    Py_DECREF(key);
    return Py_NewRef(child);
  }
  if (PyErr_Occurred()) {
    Py_DECREF(key);
    return nullptr;
  }
  std::vector<std::string_view> values;
  values.reserve(static_cast<std::size_t>(want));
  for (Py_ssize_t i = 0; i < want; ++i) {
    std::string_view v;
    if (!utf8_of(PyTuple_GET_ITEM(key, i), "a label value", v)) {
      Py_DECREF(key);
      return nullptr;
    }
    values.push_back(v);
  }
  child = make_child(f, values);
  if (child != nullptr && attached(child)) {
    // Another thread may have made this child while the GIL was released:
    // one child per label set either way.
    PyObject* kept = PyDict_SetDefault(f->children, key, child);
    Py_XINCREF(kept);
    Py_DECREF(child);
    child = kept;
  }
  Py_DECREF(key);
  return child;
}

PyObject* family_name(PyObject* self, void*) { return Py_NewRef(reinterpret_cast<FamilyObject*>(self)->name); }
PyObject* family_labelnames(PyObject* self, void*) {
  return Py_NewRef(reinterpret_cast<FamilyObject*>(self)->labelnames);
}

void family_dealloc(PyObject* self_) {
  auto* f = reinterpret_cast<FamilyObject*>(self_);
  PyTypeObject* type = Py_TYPE(self_);
  Py_XDECREF(f->name);
  Py_XDECREF(f->labelnames);
  Py_XDECREF(f->children);
  PyObject_Free(self_);
  Py_DECREF(type);
}

PyMethodDef family_methods[] = {
    {"labels", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(family_labels)),
     METH_FASTCALL | METH_KEYWORDS, "labels(*values) or labels(**values): the series of those label values"},
    {nullptr, nullptr, 0, nullptr}};
PyGetSetDef family_getset[] = {{"name", family_name, nullptr, "the family's name", nullptr},
                               {"labelnames", family_labelnames, nullptr, "the family's label names", nullptr},
                               {nullptr, nullptr, nullptr, nullptr, nullptr}};
PyType_Slot family_slots[] = {{Py_tp_methods, family_methods},
                              {Py_tp_getset, family_getset},
                              {Py_tp_dealloc, reinterpret_cast<void*>(family_dealloc)},
                              {Py_tp_doc, const_cast<char*>("A registered family: labels() gives its series.")},
                              {0, nullptr}};
PyType_Spec family_spec = {"shmetrics._shmetrics.Family", sizeof(FamilyObject), 0,
                           Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION, family_slots};

// A new family object; takes no reference from its arguments.
FamilyObject* new_family(Kind kind, bool flag, bool drop_nan, PyObject* name,
                         const std::vector<std::string>& labelnames) {
  auto* f = PyObject_New(FamilyObject, family_type);
  if (f == nullptr) return nullptr;
  f->kind = kind;
  f->flag = flag;
  f->drop_nan = drop_nan;
  f->name = Py_NewRef(name);
  f->labelnames = PyTuple_New(static_cast<Py_ssize_t>(labelnames.size()));
  f->children = PyDict_New();
  // The union's member is set by the caller.
  new (&f->counter) shmetrics::CounterFamily();
  if (f->labelnames == nullptr || f->children == nullptr) {
    Py_DECREF(f);
    return nullptr;
  }
  for (std::size_t i = 0; i < labelnames.size(); ++i) {
    PyObject* s = PyUnicode_FromStringAndSize(labelnames[i].data(), static_cast<Py_ssize_t>(labelnames[i].size()));
    if (s == nullptr) {
      Py_DECREF(f);
      return nullptr;
    }
    PyTuple_SET_ITEM(f->labelnames, static_cast<Py_ssize_t>(i), s);
  }
  return f;
}

// -------------------------------------------------------------- info, readyz

struct InfoObject {
  PyObject_HEAD
  shmetrics::Info handle;
  PyObject* labelnames;  // tuple of str
};
PyTypeObject* info_type = nullptr;

// set(values): this process's value, label values in the order of the
// family's label names; info(dict) in __init__.py orders a dict's.
PyObject* info_set(PyObject* self_, PyObject* arg) {
  auto* self = reinterpret_cast<InfoObject*>(self_);
  PyObject* seq = PySequence_Fast(arg, "set() takes a sequence of str label values");
  if (seq == nullptr) return nullptr;
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
  if (n != PyTuple_GET_SIZE(self->labelnames)) {
    Py_DECREF(seq);
    return PyErr_Format(PyExc_ValueError, "an info value takes %zd label values (%R), got %zd",
                        PyTuple_GET_SIZE(self->labelnames), self->labelnames, n);
  }
  std::vector<std::string_view> values;
  for (Py_ssize_t i = 0; i < n; ++i) {
    std::string_view v;
    if (!utf8_of(PySequence_Fast_GET_ITEM(seq, i), "an info label value", v)) {
      Py_DECREF(seq);
      return nullptr;
    }
    values.push_back(v);
  }
  self->handle.set(values);
  Py_DECREF(seq);
  Py_RETURN_NONE;
}

PyObject* info_clear(PyObject* self, PyObject*) {
  reinterpret_cast<InfoObject*>(self)->handle.clear();
  Py_RETURN_NONE;
}

PyObject* info_labelnames(PyObject* self, void*) { return Py_NewRef(reinterpret_cast<InfoObject*>(self)->labelnames); }

void info_dealloc(PyObject* self) {
  PyTypeObject* type = Py_TYPE(self);
  Py_XDECREF(reinterpret_cast<InfoObject*>(self)->labelnames);
  PyObject_Free(self);
  Py_DECREF(type);
}

PyMethodDef info_methods[] = {
    {"set", info_set, METH_O, "set(values): this process's value (label values in label-name order)"},
    {"clear", info_clear, METH_NOARGS, "clear(): removes this process's value"},
    {nullptr, nullptr, 0, nullptr}};
PyGetSetDef info_getset[] = {{"labelnames", info_labelnames, nullptr, "the info's label names", nullptr},
                             {nullptr, nullptr, nullptr, nullptr, nullptr}};
PyType_Slot info_slots[] = {{Py_tp_methods, info_methods},
                            {Py_tp_getset, info_getset},
                            {Py_tp_dealloc, reinterpret_cast<void*>(info_dealloc)},
                            {Py_tp_doc, const_cast<char*>("An info metric: one value per process.")},
                            {0, nullptr}};
PyType_Spec info_spec = {"shmetrics._shmetrics.Info", sizeof(InfoObject), 0,
                         Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION, info_slots};

struct ReadyzObject {
  PyObject_HEAD
  shmetrics::Readyz handle;
};
PyTypeObject* readyz_type = nullptr;

PyObject* readyz_observe(PyObject* self, PyObject* arg) {
  const int ok = PyObject_IsTrue(arg);
  if (ok < 0) return nullptr;
  reinterpret_cast<ReadyzObject*>(self)->handle.observe(ok != 0);
  Py_RETURN_NONE;
}

PyMethodDef readyz_methods[] = {
    {"observe", readyz_observe, METH_O, "observe(ok): records one readiness check's outcome"},
    {nullptr, nullptr, 0, nullptr}};
PyType_Slot readyz_slots[] = {{Py_tp_methods, readyz_methods},
                              {Py_tp_doc, const_cast<char*>("The segment's readyz recorder.")},
                              {0, nullptr}};
PyType_Spec readyz_spec = {"shmetrics._shmetrics.Readyz", sizeof(ReadyzObject), 0,
                           Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION, readyz_slots};

// ------------------------------------------------------------------ segment



struct SegmentObject {
  PyObject_HEAD
  shmetrics::Segment* segment;  // a copy of the process-wide segment
};
PyTypeObject* segment_type = nullptr;

// Segment(role, instance="default", *, name=None, directory=None, mode=0o600,
//         lock_timeout=1.0, <any Capacities field>=N)
PyObject* segment_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
  static const char* capacity_names[] = {
      "thread_slots", "process_records", "families", "series", "string_bytes", "info_families",
      "info_value_bytes", "readyz_short_window_seconds", "readyz_long_window_seconds", "gauge_series",
      "cell_pages", "cells"};
  shmetrics::SegmentOptions options;
  std::uint32_t* capacity_fields[] = {
      &options.capacities.thread_slots, &options.capacities.process_records, &options.capacities.families,
      &options.capacities.series, &options.capacities.string_bytes, &options.capacities.info_families,
      &options.capacities.info_value_bytes, &options.capacities.readyz_short_window_seconds,
      &options.capacities.readyz_long_window_seconds, &options.capacities.gauge_series,
      &options.capacities.cell_pages, &options.capacities.cells};
  static_assert(std::size(capacity_names) == 12);
  PyObject *role = nullptr, *instance = nullptr, *name = nullptr, *directory = nullptr, *mode = nullptr,
           *lock_timeout = nullptr;
  PyObject* capacities[12] = {};
  static const char* keywords[] = {"role", "instance", "name", "directory", "mode", "lock_timeout",
                                   "thread_slots", "process_records", "families", "series", "string_bytes",
                                   "info_families", "info_value_bytes", "readyz_short_window_seconds",
                                   "readyz_long_window_seconds", "gauge_series", "cell_pages", "cells", nullptr};
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OO$OOOOOOOOOOOOOOOO", const_cast<char**>(keywords), &role,
                                   &instance, &name, &directory, &mode, &lock_timeout, &capacities[0],
                                   &capacities[1], &capacities[2], &capacities[3], &capacities[4], &capacities[5],
                                   &capacities[6], &capacities[7], &capacities[8], &capacities[9], &capacities[10],
                                   &capacities[11]))
    return nullptr;
  auto optional_string = [](PyObject* o, const char* what, std::string& out) {
    return o == nullptr || o == Py_None || string_of(o, what, out);
  };
  if (!optional_string(role, "role", options.role) || !optional_string(instance, "instance", options.instance) ||
      !optional_string(name, "name", options.name) || !optional_string(directory, "directory", options.directory))
    return nullptr;
  if (mode != nullptr && mode != Py_None) {
    const long m = PyLong_AsLong(mode);
    if (m == -1 && PyErr_Occurred()) return nullptr;
    if (m < 0 || m > 07777) return PyErr_Format(PyExc_ValueError, "mode %R is invalid: expected 0 to 0o7777", mode);
    options.mode = static_cast<mode_t>(m);
  }
  if (lock_timeout != nullptr && lock_timeout != Py_None) {
    const double s = PyFloat_AsDouble(lock_timeout);
    if (s == -1.0 && PyErr_Occurred()) return nullptr;
    if (!(s >= 0 && s <= 3600))
      return PyErr_Format(PyExc_ValueError, "lock_timeout %R is invalid: expected 0 to 3600 seconds", lock_timeout);
    options.lock_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(s * 1000));
  }
  for (std::size_t i = 0; i < 12; ++i) {
    if (capacities[i] == nullptr || capacities[i] == Py_None) continue;
    const long long v = PyLong_AsLongLong(capacities[i]);
    if (v == -1 && PyErr_Occurred()) return nullptr;
    if (v < 0 || v > std::numeric_limits<std::uint32_t>::max())
      return PyErr_Format(PyExc_ValueError, "%s %R is out of range: expected 0 to 4294967295", capacity_names[i],
                          capacities[i]);
    *capacity_fields[i] = static_cast<std::uint32_t>(v);
  }
  shmetrics::Segment* segment = nullptr;
  // Opening may wait for the registration lock (lock_timeout): without the GIL.
  if (!without_gil([&] { segment = new shmetrics::Segment(shmetrics::Segment::open(options)); })) return nullptr;
  auto* self = reinterpret_cast<SegmentObject*>(type->tp_alloc(type, 0));
  if (self == nullptr) {
    delete segment;
    return nullptr;
  }
  self->segment = segment;
  return reinterpret_cast<PyObject*>(self);
}

void segment_dealloc(PyObject* self) {
  PyTypeObject* type = Py_TYPE(self);
  delete reinterpret_cast<SegmentObject*>(self)->segment;
  type->tp_free(self);
  Py_DECREF(type);
}

// What every family registration takes: its name, help and label names.
struct Definition {
  std::string name, help;
  std::vector<std::string> labelnames;
};

bool definition_of(PyObject* name, PyObject* help, PyObject* labelnames, Definition& d) {
  return string_of(name, "name", d.name) && string_of(help, "documentation", d.help) &&
         names_of(labelnames, d.labelnames);
}

// nan="raise" (the default) or "drop" (dropped and counted, as the
// prometheus_client backend needs).
bool drop_nan_of(const char* nan, bool& drop) {
  const std::string_view policy = nan;
  if (policy != "raise" && policy != "drop") {
    PyErr_Format(PyExc_ValueError, "nan \"%s\" is invalid: expected \"raise\" or \"drop\"", nan);
    return false;
  }
  drop = policy == "drop";
  return true;
}

// A family object of `kind` whose member `register_(family)` sets, without
// the GIL (registration may wait for the segment's lock); null with the
// Python error set when registration throws.
template <typename F>
PyObject* registered(Kind kind, bool flag, bool drop_nan, PyObject* name, const Definition& d, F&& register_) {
  FamilyObject* f = new_family(kind, flag, drop_nan, name, d.labelnames);
  if (f == nullptr) return nullptr;
  if (!without_gil([&] { register_(*f); })) {
    Py_DECREF(f);
    return nullptr;
  }
  return reinterpret_cast<PyObject*>(f);
}

const shmetrics::Segment& segment_of(PyObject* self) { return *reinterpret_cast<SegmentObject*>(self)->segment; }

// counter_family(name, documentation, labelnames=(), value_type="float", unit="")
PyObject* segment_counter_family(PyObject* self, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"name", "documentation", "labelnames", "value_type", "unit", nullptr};
  PyObject *name, *help, *labelnames = nullptr;
  const char *value_type = nullptr, *unit = "";
  Definition d;
  shmetrics::ValueType vt;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "UU|Ozs", const_cast<char**>(keywords), &name, &help, &labelnames,
                                   &value_type, &unit) ||
      !definition_of(name, help, labelnames, d) || !value_type_of(value_type, vt))
    return nullptr;
  return registered(Kind::kCounter, vt == shmetrics::ValueType::kDouble, false, name, d, [&](FamilyObject& f) {
    f.counter = segment_of(self).counter_family(d.name, d.help, d.labelnames, vt, unit);
  });
}

// gauge_family(name, documentation, labelnames=(), mode="all", value_type="float", unit="", nan="raise")
PyObject* segment_gauge_family(PyObject* self, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"name", "documentation", "labelnames", "mode", "value_type", "unit", "nan",
                                   nullptr};
  PyObject *name, *help, *labelnames = nullptr;
  const char *mode = "all", *value_type = nullptr, *unit = "", *nan = "raise";
  Definition d;
  shmetrics::ValueType vt;
  bool drop_nan = false;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "UU|Ozszs", const_cast<char**>(keywords), &name, &help,
                                   &labelnames, &mode, &value_type, &unit, &nan) ||
      !definition_of(name, help, labelnames, d) || !value_type_of(value_type, vt) || !drop_nan_of(nan, drop_nan))
    return nullptr;
  shmetrics::GaugeMode m;
  try {
    m = shmetrics::gauge_mode_from_name(mode);
  } catch (...) {
    raise_current();
    return nullptr;
  }
  return registered(Kind::kGauge, vt == shmetrics::ValueType::kInteger, drop_nan, name, d, [&](FamilyObject& f) {
    f.gauge = segment_of(self).gauge_family(d.name, d.help, d.labelnames, m, vt, unit);
  });
}

// histogram_family(name, documentation, labelnames=(), buckets=None, unit="", nan="raise")
PyObject* segment_histogram_family(PyObject* self, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"name", "documentation", "labelnames", "buckets", "unit", "nan", nullptr};
  PyObject *name, *help, *labelnames = nullptr, *buckets = nullptr;
  const char *unit = "", *nan = "raise";
  Definition d;
  bool drop_nan = false;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "UU|OOss", const_cast<char**>(keywords), &name, &help, &labelnames,
                                   &buckets, &unit, &nan) ||
      !definition_of(name, help, labelnames, d) || !drop_nan_of(nan, drop_nan))
    return nullptr;
  std::vector<double> bounds;
  if (buckets != nullptr && buckets != Py_None) {
    PyObject* seq = PySequence_Fast(buckets, "buckets must be a sequence of numbers");
    if (seq == nullptr) return nullptr;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); ++i) {
      PyObject* item = PySequence_Fast_GET_ITEM(seq, i);
      const double b = PyUnicode_Check(item) ? -1.0 : PyFloat_AsDouble(item);
      if (b == -1.0 && (PyUnicode_Check(item) || PyErr_Occurred())) {
        if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_TypeError)) {  // OverflowError, KeyboardInterrupt...
          Py_DECREF(seq);
          return nullptr;
        }
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "histogram %U: bucket %R is not a number", name, item);
        Py_DECREF(seq);
        return nullptr;
      }
      bounds.push_back(b);
    }
    Py_DECREF(seq);
    if (bounds.empty())
      return PyErr_Format(PyExc_ValueError, "histogram %U: buckets is empty: expected at least one bound", name);
  }
  return registered(Kind::kHistogram, false, drop_nan, name, d, [&](FamilyObject& f) {
    f.histogram = segment_of(self).histogram_family(d.name, d.help, d.labelnames, std::move(bounds), unit);
  });
}

// summary_family(name, documentation, labelnames=(), unit="", nan="raise"):
// its series are Histogram objects without buckets (count and sum).
PyObject* segment_summary_family(PyObject* self, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"name", "documentation", "labelnames", "unit", "nan", nullptr};
  PyObject *name, *help, *labelnames = nullptr;
  const char *unit = "", *nan = "raise";
  Definition d;
  bool drop_nan = false;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "UU|Oss", const_cast<char**>(keywords), &name, &help, &labelnames,
                                   &unit, &nan) ||
      !definition_of(name, help, labelnames, d) || !drop_nan_of(nan, drop_nan))
    return nullptr;
  return registered(Kind::kHistogram, false, drop_nan, name, d, [&](FamilyObject& f) {
    f.histogram = segment_of(self).summary_family(d.name, d.help, d.labelnames, unit);
  });
}

// info(name, documentation, labelnames)
PyObject* segment_info(PyObject* self, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"name", "documentation", "labelnames", nullptr};
  PyObject *name, *help, *labelnames = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "UUO", const_cast<char**>(keywords), &name, &help, &labelnames))
    return nullptr;
  // One pass over labelnames (a generator gives its names once).
  PyObject* names = PyUnicode_Check(labelnames) ? Py_NewRef(labelnames) : PySequence_Tuple(labelnames);
  if (names == nullptr) return nullptr;
  Definition d;
  if (!definition_of(name, help, names, d)) {
    Py_DECREF(names);
    return nullptr;
  }
  auto* o = PyObject_New(InfoObject, info_type);
  if (o == nullptr) {
    Py_DECREF(names);
    return nullptr;
  }
  new (&o->handle) shmetrics::Info();
  o->labelnames = names;
  if (!without_gil([&] { o->handle = segment_of(self).info(d.name, d.help, d.labelnames); })) {
    Py_DECREF(o);
    return nullptr;
  }
  return reinterpret_cast<PyObject*>(o);
}

PyObject* segment_readyz(PyObject* self, PyObject*) {
  auto* o = PyObject_New(ReadyzObject, readyz_type);
  if (o == nullptr) return nullptr;
  try {
    new (&o->handle) shmetrics::Readyz(reinterpret_cast<SegmentObject*>(self)->segment->readyz());
  } catch (...) {
    new (&o->handle) shmetrics::Readyz();
    Py_DECREF(o);
    raise_current();
    return nullptr;
  }
  return reinterpret_cast<PyObject*>(o);
}

PyObject* segment_path(PyObject* self, void*) {
  const std::string& p = reinterpret_cast<SegmentObject*>(self)->segment->path();
  return PyUnicode_DecodeFSDefaultAndSize(p.data(), static_cast<Py_ssize_t>(p.size()));
}

PyMethodDef segment_methods[] = {
    {"counter_family", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(segment_counter_family)),
     METH_VARARGS | METH_KEYWORDS,
     "counter_family(name, documentation, labelnames=(), value_type='float', unit='')"},
    {"gauge_family", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(segment_gauge_family)),
     METH_VARARGS | METH_KEYWORDS,
     "gauge_family(name, documentation, labelnames=(), mode='all', value_type='float', unit='', nan='raise')"},
    {"histogram_family", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(segment_histogram_family)),
     METH_VARARGS | METH_KEYWORDS,
     "histogram_family(name, documentation, labelnames=(), buckets=None, unit='', nan='raise')"},
    {"summary_family", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(segment_summary_family)),
     METH_VARARGS | METH_KEYWORDS,
     "summary_family(name, documentation, labelnames=(), unit='', nan='raise'): count and sum, no quantiles"},
    {"info", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(segment_info)), METH_VARARGS | METH_KEYWORDS,
     "info(name, documentation, labelnames)"},
    {"readyz", segment_readyz, METH_NOARGS, "readyz(): the segment's readyz recorder"},
    {nullptr, nullptr, 0, nullptr}};
PyGetSetDef segment_getset[] = {{"path", segment_path, nullptr, "the segment file's path", nullptr},
                                {nullptr, nullptr, nullptr, nullptr, nullptr}};
PyType_Slot segment_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(segment_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(segment_dealloc)},
    {Py_tp_methods, segment_methods},
    {Py_tp_getset, segment_getset},
    {Py_tp_doc, const_cast<char*>("Segment(role, instance='default', *, name=None, directory=None, mode=0o600, "
                                  "lock_timeout=1.0, **capacities): one role's segment, opened or created")},
    {0, nullptr}};
PyType_Spec segment_spec = {"shmetrics._shmetrics.Segment", sizeof(SegmentObject), 0, Py_TPFLAGS_DEFAULT,
                            segment_slots};

PyObject* default_buckets(PyObject*, PyObject*) {
  const std::vector<double> b = shmetrics::default_buckets();
  PyObject* t = PyTuple_New(static_cast<Py_ssize_t>(b.size()));
  if (t == nullptr) return nullptr;
  for (std::size_t i = 0; i < b.size(); ++i) {
    PyObject* f = PyFloat_FromDouble(b[i]);
    if (f == nullptr) {
      Py_DECREF(t);
      return nullptr;
    }
    PyTuple_SET_ITEM(t, static_cast<Py_ssize_t>(i), f);
  }
  return t;
}

PyMethodDef module_methods[] = {
    {"default_buckets", default_buckets, METH_NOARGS, "the library's default bucket bounds"},
    {nullptr, nullptr, 0, nullptr}};

int add_type(PyObject* module, PyType_Spec& spec, PyTypeObject*& out) {
  out = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&spec));
  if (out == nullptr) return -1;
  const char* dot = std::strrchr(spec.name, '.');
  return PyModule_AddObjectRef(module, dot + 1, reinterpret_cast<PyObject*>(out));
}

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "shmetrics._shmetrics",
                          "The shmetrics writer library (use the shmetrics package).", -1, module_methods,
                          nullptr, nullptr, nullptr, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__shmetrics(void) {
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
  segment_error = PyErr_NewExceptionWithDoc(
      "shmetrics.SegmentError",
      "A segment could not be created, opened, trusted or registered in (the message says why).", PyExc_OSError,
      nullptr);
  if (segment_error == nullptr || PyModule_AddObjectRef(module, "SegmentError", segment_error) < 0 ||
      add_type(module, counter_spec, counter_type) < 0 || add_type(module, gauge_spec, gauge_type) < 0 ||
      add_type(module, histogram_spec, histogram_type) < 0 || add_type(module, family_spec, family_type) < 0 ||
      add_type(module, info_spec, info_type) < 0 || add_type(module, readyz_spec, readyz_type) < 0 ||
      add_type(module, segment_spec, segment_type) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
