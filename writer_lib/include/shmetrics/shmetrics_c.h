/* shmetrics' C API: what any language's binding (Python, PHP's FFI, Ruby,
 * C itself) calls to write metrics into a shared segment that
 * shmetrics-exporter serves.
 *
 * The usual life of a worker process:
 *
 *   shmetrics_options o;
 *   shmetrics_options_init(&o);
 *   o.instance = "shop"; o.role = "ops";
 *   shmetrics_segment seg;
 *   if (shmetrics_open(&o, &seg) != SHMETRICS_OK) { puts(shmetrics_last_error()); ... }
 *   const char* labels[] = {"method"};
 *   shmetrics_counter_family requests;
 *   shmetrics_counter_family_register(seg, "http_requests_total", "Requests served.", labels, 1,
 *                                     SHMETRICS_INTEGER, NULL, &requests);
 *   const char* get[] = {"GET"};
 *   shmetrics_counter c;
 *   shmetrics_counter_labels(requests, get, 1, &c);   -- once, then keep c
 *   shmetrics_counter_inc(c, 1);                       -- on every request
 *
 * Rules:
 * - Registration and label resolution return a status: SHMETRICS_OK, or an
 *   error code with a message for this thread in shmetrics_last_error(). They
 *   may allocate and take the segment's registration lock: call them once,
 *   keep the handle.
 * - Updates (inc, set, observe, ...) return nothing and never fail: an
 *   invalid value (NaN, a negative counter increment, ...) or a handle whose
 *   series was refused (the segment was full) drops the update and counts it
 *   in the exporter's shmetrics_* metrics. They take no lock, make no system
 *   call once the thread's slot is set up, and allocate nothing.
 * - Handles are small values: copy them freely, across threads, and across
 *   fork() (a child writes to its own cells, as with the C++ API). A handle
 *   that no successful call filled in (zeroed, say) is detached: its updates
 *   are dropped. A failed call fills its output with a detached handle.
 * - Segments stay mapped for the life of the process; there is nothing to
 *   close. Everything is thread-safe.
 * - Strings are NUL-terminated UTF-8. No C++ exception crosses this API.
 *
 * Link with -lshmetrics (pkg-config shmetrics). */
#ifndef SHMETRICS_SHMETRICS_C_H
#define SHMETRICS_SHMETRICS_C_H

/* SHMETRICS_FFI_DECLARATIONS: the build preprocesses this header with it
 * into plain declarations for PHP's FFI (bindings/php), which knows the
 * standard integer types and cannot read system headers. */
#ifndef SHMETRICS_FFI_DECLARATIONS
#include <stddef.h>
#include <stdint.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum shmetrics_status {
  SHMETRICS_OK = 0,
  /* An argument was refused: a name, help, label names or values, bounds,
   * a mode, a value type, a null pointer. */
  SHMETRICS_ERR_INVALID = 1,
  /* The segment cannot be created, opened or trusted, has no room for
   * another family, or its registration lock could not be had in time. */
  SHMETRICS_ERR_SEGMENT = 2,
  /* Out of memory. */
  SHMETRICS_ERR_MEMORY = 3,
  /* Anything else; the message says what. */
  SHMETRICS_ERR_INTERNAL = 4
} shmetrics_status;

/* The message of this thread's last failed call ("" when none failed yet):
 * what was wrong and what was expected. Valid until this thread's next
 * failed call. */
const char* shmetrics_last_error(void);

typedef enum shmetrics_value_type {
  SHMETRICS_INTEGER = 1, /* counters' default: exact 64-bit counts */
  SHMETRICS_DOUBLE = 2,  /* gauges' default */
  /* Not a value type: makes any int a value of this type, so a wrong one
   * passed from C (or another language) is refused, not undefined. */
  SHMETRICS_VALUE_TYPE_RANGE_ = 0x7fffffff
} shmetrics_value_type;

/* What a segment can hold, fixed when it is created (see Capacities in
 * shmetrics/shm/layout.h for each field). */
typedef struct shmetrics_capacities {
  uint32_t thread_slots;
  uint32_t process_records;
  uint32_t families;
  uint32_t series;
  uint32_t string_bytes;
  uint32_t info_families;
  uint32_t info_value_bytes;
  uint32_t readyz_short_window_seconds;
  uint32_t readyz_long_window_seconds;
  uint32_t gauge_series;
  uint32_t cell_pages;
  uint32_t cells;
} shmetrics_capacities;

typedef struct shmetrics_options {
  const char* instance;  /* default "default" */
  const char* role;      /* the segment is INSTANCE.ROLE */
  const char* name;      /* or this name (or absolute path) instead; NULL: none */
  const char* directory; /* NULL: $SHMETRICS_SEGMENT_DIR, else /dev/shm/shmetrics-EUID */
  shmetrics_capacities capacities;
  uint32_t mode;            /* file mode at creation, default 0600 */
  uint32_t lock_timeout_ms; /* registration lock wait, default 1000 */
} shmetrics_options;

/* Fills in the defaults. Call before setting fields. */
void shmetrics_options_init(shmetrics_options* options);

typedef struct shmetrics_segment { uint64_t opaque_[4]; } shmetrics_segment;
typedef struct shmetrics_counter_family { uint64_t opaque_[4]; } shmetrics_counter_family;
typedef struct shmetrics_counter { uint64_t opaque_[4]; } shmetrics_counter;
typedef struct shmetrics_gauge_family { uint64_t opaque_[4]; } shmetrics_gauge_family;
typedef struct shmetrics_gauge { uint64_t opaque_[4]; } shmetrics_gauge;
typedef struct shmetrics_histogram_family { uint64_t opaque_[4]; } shmetrics_histogram_family;
typedef struct shmetrics_histogram { uint64_t opaque_[4]; } shmetrics_histogram;
typedef struct shmetrics_info { uint64_t opaque_[4]; } shmetrics_info;
typedef struct shmetrics_readyz { uint64_t opaque_[4]; } shmetrics_readyz;

/* Opens the segment, creating it when absent; the same name twice in one
 * process gives the same segment. */
shmetrics_status shmetrics_open(const shmetrics_options* options, shmetrics_segment* out);
/* The segment file's path, or "" for a segment no successful open gave. */
const char* shmetrics_segment_path(shmetrics_segment segment);

/* Registration, as the C++ Segment's (names, help, label names and units
 * are checked; registering an existing name with the same definition gives
 * the same family, with another definition fails). `label_names` holds
 * `label_count` names (NULL when 0); `unit` may be NULL. */
shmetrics_status shmetrics_counter_family_register(shmetrics_segment segment, const char* name, const char* help,
                                                   const char* const* label_names, size_t label_count,
                                                   shmetrics_value_type value_type, const char* unit,
                                                   shmetrics_counter_family* out);
/* `mode` by its name: "livesum", "livemax", "livemin", "liveall", "sum",
 * "max", "min", "all", "mostrecent" or "livemostrecent" (prometheus_client's
 * multiprocess_mode names). */
shmetrics_status shmetrics_gauge_family_register(shmetrics_segment segment, const char* name, const char* help,
                                                 const char* const* label_names, size_t label_count,
                                                 const char* mode, shmetrics_value_type value_type,
                                                 const char* unit, shmetrics_gauge_family* out);
/* `bounds`: `bound_count` finite, strictly increasing bucket bounds (+Inf
 * implicit); bound_count 0 gives the Prometheus clients' defaults. */
shmetrics_status shmetrics_histogram_family_register(shmetrics_segment segment, const char* name, const char* help,
                                                     const char* const* label_names, size_t label_count,
                                                     const double* bounds, size_t bound_count, const char* unit,
                                                     shmetrics_histogram_family* out);
shmetrics_status shmetrics_info_register(shmetrics_segment segment, const char* name, const char* help,
                                         const char* const* label_names, size_t label_count, shmetrics_info* out);
shmetrics_status shmetrics_readyz_get(shmetrics_segment segment, shmetrics_readyz* out);

/* The series of these label values (as many as the family's label names),
 * registered on first use. When the segment has no room left, the handle is
 * still given (SHMETRICS_OK) but refused: its updates are dropped and
 * counted, as the C++ API does; shmetrics_*_attached() tells. */
shmetrics_status shmetrics_counter_labels(shmetrics_counter_family family, const char* const* values, size_t count,
                                          shmetrics_counter* out);
shmetrics_status shmetrics_gauge_labels(shmetrics_gauge_family family, const char* const* values, size_t count,
                                        shmetrics_gauge* out);
shmetrics_status shmetrics_histogram_labels(shmetrics_histogram_family family, const char* const* values,
                                            size_t count, shmetrics_histogram* out);
int shmetrics_counter_attached(shmetrics_counter counter);
int shmetrics_gauge_attached(shmetrics_gauge gauge);
int shmetrics_histogram_attached(shmetrics_histogram histogram);

/* Updates. */
void shmetrics_counter_inc(shmetrics_counter counter, uint64_t n);
void shmetrics_counter_add(shmetrics_counter counter, double v); /* v >= 0, finite; an integer family: whole */
void shmetrics_gauge_set(shmetrics_gauge gauge, double v);
void shmetrics_gauge_add(shmetrics_gauge gauge, double delta); /* inc with delta > 0, dec with delta < 0 */
void shmetrics_gauge_set_int(shmetrics_gauge gauge, int64_t v);
void shmetrics_gauge_add_int(shmetrics_gauge gauge, int64_t delta);
/* Seconds since the epoch: whole seconds for an integer family. */
void shmetrics_gauge_set_to_current_time(shmetrics_gauge gauge);
void shmetrics_histogram_observe(shmetrics_histogram histogram, double v);
/* `count` values, as many as the info's label names; a wrong one clears this
 * process's value and is counted. */
void shmetrics_info_set(shmetrics_info info, const char* const* values, size_t count);
void shmetrics_info_clear(shmetrics_info info);
void shmetrics_readyz_observe(shmetrics_readyz readyz, int ok);

#ifdef __cplusplus
}
#endif

#endif /* SHMETRICS_SHMETRICS_C_H */
