<?php
/*
 * shmetrics for PHP: PHP-FPM workers (or any PHP process) write metrics into
 * a shared segment that shmetrics-exporter serves, through PHP's FFI over
 * libshmetrics' C API (shmetrics/shmetrics_c.h). One store for every
 * worker, dead or alive: no APCu, no Redis, no evictions.
 *
 *   require '/usr/share/shmetrics/php/Shmetrics.php';
 *   $segment = Shmetrics\Segment::open('ops', 'shop');
 *   $requests = $segment->counter('http_requests_total', 'Requests served.', ['route']);
 *   $requests->labels('/cart')->inc();
 *
 * FFI must be allowed: ffi.enable=true, or (better, in production) the
 * declarations preloaded with opcache.preload=.../preload.php and
 * ffi.enable=preload, so no request parses them (README.md, "From PHP").
 * The declarations are shmetrics_ffi.h beside this file (the build makes it
 * from the C header), or $SHMETRICS_FFI_HEADER; the library is found as
 * its soname (the dynamic linker's path), named in that file.
 *
 * Errors: \InvalidArgumentException (Shmetrics\InvalidArgument) for what was
 * refused, with the library's message; Shmetrics\SegmentException (a
 * \RuntimeException) when the segment cannot be opened or has no room for a
 * family. A series refused for want of room is not an error: its updates are
 * dropped and counted by the exporter ($series->attached() tells).
 */
declare(strict_types=1);

namespace Shmetrics;

class InvalidArgument extends \InvalidArgumentException
{
}

class SegmentException extends \RuntimeException
{
}

/** The library, its declarations loaded once per process (or preloaded). */
final class Library
{
    private static ?\FFI $ffi = null;

    public static function ffi(): \FFI
    {
        if (self::$ffi === null) {
            try {
                self::$ffi = \FFI::scope('shmetrics');  // preloaded by preload.php
            } catch (\FFI\Exception $e) {
                $header = getenv('SHMETRICS_FFI_HEADER') ?: __DIR__ . '/shmetrics_ffi.h';
                self::$ffi = \FFI::load($header);
            }
        }
        return self::$ffi;
    }

    /** Throws for a status other than SHMETRICS_OK, with the library's message. */
    public static function check(int $status): void
    {
        if ($status === 0) {
            return;
        }
        $message = self::ffi()->shmetrics_last_error();  // const char*: a PHP string
        if ($status === 1) {
            throw new InvalidArgument($message);
        }
        throw new SegmentException($message);
    }

    /** A string passed as `const char*`, refused when it holds a NUL byte (C would cut it there). */
    public static function text(string $s, string $what): string
    {
        if (str_contains($s, "\0")) {
            throw new InvalidArgument("$what " . json_encode($s) . ' contains a NUL byte: expected text');
        }
        return $s;
    }

    /** A NUL-terminated copy of $s owned by PHP (keep it while C may read it). */
    public static function buffer(string $s, string $what): \FFI\CData
    {
        self::text($s, $what);
        $buffer = self::ffi()->new('char[' . (strlen($s) + 1) . ']');  // zeroed: NUL-terminated
        \FFI::memcpy($buffer, $s, strlen($s));
        return $buffer;
    }

    /** A `const char*` to a buffer's first byte. */
    public static function pointer(\FFI\CData $buffer): \FFI\CData
    {
        return self::ffi()->cast('const char*', \FFI::addr($buffer[0]));
    }

    /**
     * A `const char*[]` of the strings, and the buffers it points into (keep
     * both until the call returns). NUL bytes are refused: C would cut the
     * string there.
     *
     * @param list<string> $strings
     * @return array{0: ?\FFI\CData, 1: list<\FFI\CData>}
     */
    public static function strings(array $strings, string $what): array
    {
        if ($strings === []) {
            return [null, []];
        }
        $ffi = self::ffi();
        $array = $ffi->new('const char*[' . count($strings) . ']');
        $buffers = [];
        foreach (array_values($strings) as $i => $s) {
            if (!is_string($s)) {
                throw new InvalidArgument("$what must be strings, got " . get_debug_type($s));
            }
            $buffer = self::buffer($s, $what);
            $buffers[] = $buffer;
            $array[$i] = self::pointer($buffer);
        }
        return [$array, $buffers];
    }
}

/** One role's segment, mapped for the life of the process. */
final class Segment
{
    private const CAPACITIES = [
        'thread_slots', 'process_records', 'families', 'series', 'string_bytes', 'info_families',
        'info_value_bytes', 'readyz_short_window_seconds', 'readyz_long_window_seconds', 'gauge_series',
        'cell_pages', 'cells',
    ];

    private function __construct(private \FFI\CData $handle)
    {
    }

    /**
     * Opens the segment INSTANCE.ROLE, creating it when absent (the same
     * segment again when this process opened it before).
     *
     * @param array{directory?: string, name?: string, mode?: int, lock_timeout_ms?: int,
     *              capacities?: array<string, int>} $options
     */
    public static function open(string $role, string $instance = 'default', array $options = []): self
    {
        $ffi = Library::ffi();
        $o = $ffi->new('shmetrics_options');
        $ffi->shmetrics_options_init(\FFI::addr($o));
        $keep = [];  // the strings' buffers, alive until the call returns
        $set = function (string $field, string $value) use ($o, &$keep): void {
            $keep[] = $buffer = Library::buffer($value, $field);
            $o->{$field} = Library::pointer($buffer);
        };
        $set('role', $role);
        $set('instance', $instance);
        foreach (['directory', 'name'] as $field) {
            if (isset($options[$field])) {
                $set($field, $options[$field]);
            }
        }
        foreach (['mode', 'lock_timeout_ms'] as $field) {
            if (isset($options[$field])) {
                $o->{$field} = self::uint32($options[$field], $field);
            }
        }
        foreach ($options['capacities'] ?? [] as $name => $value) {
            if (!in_array($name, self::CAPACITIES, true)) {
                throw new InvalidArgument("capacity \"$name\" is unknown: expected one of " . implode(', ', self::CAPACITIES));
            }
            $o->capacities->{$name} = self::uint32($value, $name);
        }
        $unknown = array_diff(array_keys($options), ['directory', 'name', 'mode', 'lock_timeout_ms', 'capacities']);
        if ($unknown !== []) {
            throw new InvalidArgument('option "' . implode('", "', $unknown) . '" is unknown: expected directory, name, mode, lock_timeout_ms or capacities');
        }
        $handle = $ffi->new('shmetrics_segment');
        Library::check($ffi->shmetrics_open(\FFI::addr($o), \FFI::addr($handle)));
        return new self($handle);
    }

    private static function uint32(mixed $value, string $what): int
    {
        if (!is_int($value) || $value < 0 || $value > 0xFFFFFFFF) {
            throw new InvalidArgument("$what " . var_export($value, true) . ' is invalid: expected an integer from 0 to 4294967295');
        }
        return $value;
    }

    public function path(): string
    {
        return Library::ffi()->shmetrics_segment_path($this->handle);  // const char*: a PHP string
    }

    /** @param list<string> $labelNames  $valueType: 'int' (exact 64-bit counts) or 'float' */
    public function counter(string $name, string $help, array $labelNames = [], string $valueType = 'int',
                            string $unit = ''): CounterFamily
    {
        $ffi = Library::ffi();
        [$names, $keep] = Library::strings($labelNames, 'label names');
        $out = $ffi->new('shmetrics_counter_family');
        Library::check($ffi->shmetrics_counter_family_register($this->handle, Library::text($name, 'name'), Library::text($help, 'help'), $names,
            count($labelNames), self::valueType($valueType), $unit === '' ? null : Library::text($unit, 'unit'), \FFI::addr($out)));
        return new CounterFamily($out, array_values($labelNames), $valueType === 'float');
    }

    /** @param list<string> $labelNames  $mode: livesum, livemax, livemin, liveall, sum, max, min, all, mostrecent, livemostrecent */
    public function gauge(string $name, string $help, array $labelNames = [], string $mode = 'livesum',
                          string $valueType = 'float', string $unit = ''): GaugeFamily
    {
        $ffi = Library::ffi();
        [$names, $keep] = Library::strings($labelNames, 'label names');
        $out = $ffi->new('shmetrics_gauge_family');
        Library::check($ffi->shmetrics_gauge_family_register($this->handle, Library::text($name, 'name'), Library::text($help, 'help'), $names,
            count($labelNames), Library::text($mode, 'mode'), self::valueType($valueType), $unit === '' ? null : Library::text($unit, 'unit'), \FFI::addr($out)));
        return new GaugeFamily($out, array_values($labelNames), $valueType === 'int');
    }

    /**
     * @param list<string> $labelNames
     * @param list<float|int> $buckets finite, increasing; [] for the Prometheus clients' defaults
     */
    public function histogram(string $name, string $help, array $labelNames = [], array $buckets = [],
                              string $unit = ''): HistogramFamily
    {
        $ffi = Library::ffi();
        [$names, $keep] = Library::strings($labelNames, 'label names');
        $bounds = null;
        if ($buckets !== []) {
            $bounds = $ffi->new('double[' . count($buckets) . ']');
            foreach (array_values($buckets) as $i => $b) {
                if (!is_int($b) && !is_float($b)) {
                    throw new InvalidArgument("histogram $name: bucket " . var_export($b, true) . ' is not a number');
                }
                $bounds[$i] = (float) $b;
            }
        }
        $out = $ffi->new('shmetrics_histogram_family');
        Library::check($ffi->shmetrics_histogram_family_register($this->handle, Library::text($name, 'name'), Library::text($help, 'help'), $names,
            count($labelNames), $bounds, count($buckets), $unit === '' ? null : Library::text($unit, 'unit'), \FFI::addr($out)));
        return new HistogramFamily($out, array_values($labelNames));
    }

    /** @param list<string> $labelNames */
    public function info(string $name, string $help, array $labelNames): Info
    {
        $ffi = Library::ffi();
        [$names, $keep] = Library::strings($labelNames, 'label names');
        $out = $ffi->new('shmetrics_info');
        Library::check($ffi->shmetrics_info_register($this->handle, Library::text($name, 'name'), Library::text($help, 'help'), $names, count($labelNames),
            \FFI::addr($out)));
        return new Info($out, array_values($labelNames));
    }

    public function readyz(): Readyz
    {
        $ffi = Library::ffi();
        $out = $ffi->new('shmetrics_readyz');
        Library::check($ffi->shmetrics_readyz_get($this->handle, \FFI::addr($out)));
        return new Readyz($out);
    }

    private static function valueType(string $valueType): int
    {
        return match ($valueType) {
            'int' => 1,
            'float' => 2,
            default => throw new InvalidArgument("value type \"$valueType\" is invalid: expected \"int\" or \"float\""),
        };
    }
}

/** What the three kinds of family share: labels() resolves once per label set and process. */
abstract class Family
{
    /** @var array<string, object> the series of this process, by their label values */
    private array $series = [];

    /** @param list<string> $labelNames */
    public function __construct(protected \FFI\CData $handle, private array $labelNames)
    {
    }

    /**
     * The series of these label values, one for each label name, by position
     * (labels('/cart', 'GET')) or by name (labels(route: '/cart', method: 'GET')).
     */
    public function labels(string ...$values): object
    {
        if (count($values) !== count($this->labelNames)) {
            throw new InvalidArgument('labels() takes ' . count($this->labelNames) . ' label values ('
                . implode(', ', $this->labelNames) . '), got ' . count($values));
        }
        if (!array_is_list($values)) {  // named arguments: in the order of the label names
            $named = $values;
            $values = [];
            foreach ($this->labelNames as $name) {
                if (!array_key_exists($name, $named)) {
                    throw new InvalidArgument('labels() takes the label names (' . implode(', ', $this->labelNames)
                        . '), got (' . implode(', ', array_keys($named)) . ')');
                }
                $values[] = $named[$name];
            }
        }
        // Length-prefixed: no two lists of values share a key.
        $key = '';
        foreach ($values as $v) {
            $key .= strlen($v) . ':' . $v;
        }
        if (isset($this->series[$key])) {
            return $this->series[$key];
        }
        [$array, $keep] = Library::strings($values, 'label values');
        $series = $this->resolve($array, count($values));
        if ($series->attached()) {  // a refused one is not kept: outside values cannot grow this
            $this->series[$key] = $series;
        }
        return $series;
    }

    abstract protected function resolve(?\FFI\CData $values, int $count): object;
}

final class CounterFamily extends Family
{
    /** @param list<string> $labelNames */
    public function __construct(\FFI\CData $handle, array $labelNames, private bool $isDouble)
    {
        parent::__construct($handle, $labelNames);
    }

    protected function resolve(?\FFI\CData $values, int $count): Counter
    {
        $ffi = Library::ffi();
        $out = $ffi->new('shmetrics_counter');
        Library::check($ffi->shmetrics_counter_labels($this->handle, $values, $count, \FFI::addr($out)));
        return new Counter($out, $this->isDouble);
    }
}

final class Counter
{
    public function __construct(private \FFI\CData $handle, private bool $isDouble)
    {
    }

    /** Adds $n (>= 0; a float only for a 'float' family). */
    public function inc(int|float $n = 1): void
    {
        if (is_int($n)) {
            if ($n < 0) {
                throw new InvalidArgument("counter increment $n is negative: counters only go up");
            }
            Library::ffi()->shmetrics_counter_inc($this->handle, $n);
            return;
        }
        if (!is_finite($n) || $n < 0) {
            throw new InvalidArgument("counter increment $n is invalid: expected a finite number >= 0");
        }
        if (!$this->isDouble && (floor($n) !== $n || $n >= 18446744073709551616.0)) {
            throw new InvalidArgument("counter increment $n is not an integer below 2**64: the family counts 64-bit integers");
        }
        Library::ffi()->shmetrics_counter_add($this->handle, $n);
    }

    public function attached(): bool
    {
        return Library::ffi()->shmetrics_counter_attached($this->handle) !== 0;
    }
}

final class GaugeFamily extends Family
{
    /** @param list<string> $labelNames */
    public function __construct(\FFI\CData $handle, array $labelNames, private bool $integer)
    {
        parent::__construct($handle, $labelNames);
    }

    protected function resolve(?\FFI\CData $values, int $count): Gauge
    {
        $ffi = Library::ffi();
        $out = $ffi->new('shmetrics_gauge');
        Library::check($ffi->shmetrics_gauge_labels($this->handle, $values, $count, \FFI::addr($out)));
        return new Gauge($out, $this->integer);
    }
}

/** This process's value of a gauge series; the exporter combines the processes' by the family's mode. */
final class Gauge
{
    public function __construct(private \FFI\CData $handle, private bool $integer)
    {
    }

    public function set(int|float $v): void
    {
        if ($this->integer) {
            Library::ffi()->shmetrics_gauge_set_int($this->handle, $this->int($v));
            return;
        }
        Library::ffi()->shmetrics_gauge_set($this->handle, $this->float($v));
    }

    public function inc(int|float $delta = 1): void
    {
        if ($this->integer) {
            Library::ffi()->shmetrics_gauge_add_int($this->handle, $this->int($delta));
            return;
        }
        Library::ffi()->shmetrics_gauge_add($this->handle, $this->float($delta));
    }

    public function dec(int|float $delta = 1): void
    {
        if ($this->integer && $delta === PHP_INT_MIN) {
            // -PHP_INT_MIN is a float; as a 64-bit sum, subtracting it adds it.
            Library::ffi()->shmetrics_gauge_add_int($this->handle, PHP_INT_MIN);
            return;
        }
        $this->inc(-$delta);
    }

    public function setToCurrentTime(): void
    {
        Library::ffi()->shmetrics_gauge_set_to_current_time($this->handle);
    }

    public function attached(): bool
    {
        return Library::ffi()->shmetrics_gauge_attached($this->handle) !== 0;
    }

    private function int(int|float $v): int
    {
        if (is_float($v)) {
            if (floor($v) !== $v || $v < -9.2233720368547758E18 || $v >= 9.2233720368547758E18) {
                throw new InvalidArgument("gauge value $v is invalid: the family holds 64-bit integers");
            }
            return (int) $v;
        }
        return $v;
    }

    private function float(int|float $v): float
    {
        if (is_nan((float) $v)) {
            throw new InvalidArgument('gauge value NAN is invalid: expected a number');
        }
        return (float) $v;
    }
}

final class HistogramFamily extends Family
{
    protected function resolve(?\FFI\CData $values, int $count): Histogram
    {
        $ffi = Library::ffi();
        $out = $ffi->new('shmetrics_histogram');
        Library::check($ffi->shmetrics_histogram_labels($this->handle, $values, $count, \FFI::addr($out)));
        return new Histogram($out);
    }
}

final class Histogram
{
    public function __construct(private \FFI\CData $handle)
    {
    }

    public function observe(int|float $v): void
    {
        if (is_nan((float) $v)) {
            throw new InvalidArgument('observation NAN is invalid: expected a number');
        }
        Library::ffi()->shmetrics_histogram_observe($this->handle, (float) $v);
    }

    /** Calls $fn and observes the seconds it took (hrtime); returns what it returned. */
    public function time(callable $fn): mixed
    {
        $start = hrtime(true);
        try {
            return $fn();
        } finally {
            $this->observe((hrtime(true) - $start) / 1e9);
        }
    }

    public function attached(): bool
    {
        return Library::ffi()->shmetrics_histogram_attached($this->handle) !== 0;
    }
}

/** An info metric: this process's one value, shown while the process lives. */
final class Info
{
    /** @param list<string> $labelNames */
    public function __construct(private \FFI\CData $handle, private array $labelNames)
    {
    }

    /** @param array<string, string> $values by label name, every name given */
    public function set(array $values): void
    {
        $keys = array_keys($values);
        $want = $this->labelNames;
        sort($keys);
        sort($want);
        if ($keys !== $want) {
            throw new InvalidArgument('info values are keyed by the label names [' . implode(', ', $this->labelNames)
                . '], got [' . implode(', ', array_keys($values)) . ']');
        }
        $ordered = array_map(fn (string $name) => $values[$name], $this->labelNames);
        [$array, $keep] = Library::strings($ordered, 'info values');
        Library::ffi()->shmetrics_info_set($this->handle, $array, count($ordered));
    }

    public function clear(): void
    {
        Library::ffi()->shmetrics_info_clear($this->handle);
    }
}

final class Readyz
{
    public function __construct(private \FFI\CData $handle)
    {
    }

    public function observe(bool $ok): void
    {
        Library::ffi()->shmetrics_readyz_observe($this->handle, $ok ? 1 : 0);
    }
}
