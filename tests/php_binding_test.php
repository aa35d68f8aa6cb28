<?php
// The PHP class (bindings/php/Shmetrics.php) from PHP's CLI, FFI enabled:
// what it writes, read back through the exporter (--once), and what it
// refuses, with which exception and message. Prints "N passed, M failed".
//
// Run: SHMETRICS_EXPORTER=<exporter> LD_LIBRARY_PATH=<build>/writer_lib
//      php -d ffi.enable=true tests/php_binding_test.php <build>/bindings/php
declare(strict_types=1);

require $argv[1] . '/Shmetrics.php';

$passed = 0;
$failed = 0;
function check(bool $ok, string $what): void
{
    global $passed, $failed;
    echo ($ok ? 'ok: ' : 'FAIL: ') . $what . "\n";
    $ok ? $passed++ : $failed++;
}

/** Runs $f; checks it throws $class with $message in its message. */
function refused(callable $f, string $class, string $message): void
{
    try {
        $f();
        check(false, "refused with $class ($message): nothing thrown");
    } catch (Throwable $e) {
        check($e instanceof $class && str_contains($e->getMessage(), $message),
            "refused with $class ($message): got " . get_class($e) . ': ' . $e->getMessage());
    }
}

/** The exporter's samples of a segment: "name{labels}" => value. */
function samples(string $path): array
{
    $out = [];
    exec(escapeshellarg(getenv('SHMETRICS_EXPORTER')) . ' --once ' . escapeshellarg($path) . ' 2>/dev/null', $lines, $rc);
    foreach ($lines as $line) {
        if ($line !== '' && $line[0] !== '#') {
            $at = strrpos($line, ' ');
            $out[substr($line, 0, $at)] = (float) substr($line, $at + 1);
        }
    }
    return $out;
}

$dir = sys_get_temp_dir() . '/shmphp-' . getmypid();
mkdir($dir);
try {
    $segment = Shmetrics\Segment::open('ops', 'php', ['directory' => $dir, 'capacities' => ['series' => 8, 'cells' => 32]]);
    check($segment->path() === "$dir/php.ops", 'the segment is DIR/INSTANCE.ROLE: ' . $segment->path());

    $requests = $segment->counter('php_requests_total', 'Requests.', ['route', 'method']);
    check($requests->labels('/a', 'GET') === $requests->labels('/a', 'GET'), 'a label set is resolved once');
    $requests->labels('/a', 'GET')->inc();
    $requests->labels('/a', 'GET')->inc(41);
    $seconds = $segment->counter('php_busy_seconds_total', 'Seconds.', [], 'float');
    $seconds->labels()->inc(0.25);
    $seconds->labels()->inc(2);
    $inflight = $segment->gauge('php_in_flight', 'In flight.', [], 'livesum', 'int');
    $inflight->labels()->inc(3);
    $inflight->labels()->dec();
    $temperature = $segment->gauge('php_temperature', 'Temperature.', ['room'], 'max');
    $temperature->labels('a')->set(21.5);
    $latency = $segment->histogram('php_latency_seconds', 'Latency.', [], [0.1, 1], 'seconds');
    $latency->labels()->observe(0.05);
    check($latency->labels()->time(fn () => 'x') === 'x', 'time() returns what its callable returned');
    $build = $segment->info('php_build_info', 'Build.', ['version', 'sapi']);
    $build->set(['sapi' => 'cli', 'version' => PHP_VERSION]);
    $readyz = $segment->readyz();
    $readyz->observe(true);
    $readyz->observe(false);

    $s = samples($segment->path());
    check(($s['php_requests_total{route="/a",method="GET"}'] ?? null) === 42.0, 'counter: 42');
    check(($s['php_busy_seconds_total'] ?? null) === 2.25, 'float counter: 2.25');
    check(($s['php_in_flight'] ?? null) === 2.0, 'integer gauge: 2');
    check(($s['php_temperature{room="a"}'] ?? null) === 21.5, 'gauge max: 21.5');
    check(($s['php_latency_seconds_count'] ?? null) === 2.0 && ($s['php_latency_seconds_bucket{le="0.1"}'] ?? null) === 2.0,
        'histogram: 2 observations under 0.1');
    check(($s['php_build_info{version="' . PHP_VERSION . '",sapi="cli"}'] ?? null) === 1.0, 'info, keyed by name');
    check(($s['readyz_checks_total'] ?? null) === 2.0 && ($s['readyz_failures_total'] ?? null) === 1.0, 'readyz');

    // A full segment refuses series without throwing; they are not kept.
    $many = $segment->counter('php_many_total', 'Many.', ['n']);
    $attached = [];
    for ($i = 0; $i < 4; $i++) {
        $c = $many->labels((string) $i);
        $c->inc();
        $attached[] = $c->attached();
    }
    // 8 series: 5 above, and 3 of these (32 cells: the series run out first).
    check($attached === [true, true, true, false], 'series past the capacity are refused: ' . json_encode($attached));
    check($many->labels('3') !== $many->labels('3'), 'a refused series is not kept');
    $s = samples($segment->path());
    // '3', and '3' twice more.
    check(($s['shmetrics_series_refused_total{role="once"}'] ?? null) === 3.0,
        'the refusals are counted: ' . json_encode($s['shmetrics_series_refused_total{role="once"}'] ?? null));

    refused(fn () => $requests->labels('/a'), Shmetrics\InvalidArgument::class, 'labels() takes 2 label values (route, method), got 1');
    // Named arguments go by name; the cache cannot mix label sets up.
    check($requests->labels(method: 'GET', route: '/a') === $requests->labels('/a', 'GET'), 'labels by name are the same series');
    refused(fn () => $requests->labels(verb: 'GET', path: '/a'), Shmetrics\InvalidArgument::class, 'takes the label names (route, method)');
    refused(fn () => $requests->labels("/a\0GET"), Shmetrics\InvalidArgument::class, 'takes 2 label values');
    $one = $segment->counter('php_one_total', 'One.', ['a']);
    refused(fn () => $one->labels(), Shmetrics\InvalidArgument::class, 'takes 1 label values');
    refused(fn () => $requests->labels('/a', 'GET')->inc(1e20), Shmetrics\InvalidArgument::class, 'not an integer below 2**64');
    $other = Shmetrics\Segment::open('ops', 'php-gauges', ['directory' => $dir]);  // $segment is full
    $started = $other->gauge('php_started_seconds', 'Start.', [], 'max', 'int');
    $started->labels()->setToCurrentTime();
    $level = $other->gauge('php_level', 'Level.', [], 'livesum', 'int');
    $level->labels()->dec(PHP_INT_MIN);
    refused(fn () => $requests->labels('/a', "G\0ET"), Shmetrics\InvalidArgument::class, 'contains a NUL byte');
    refused(fn () => $requests->labels('/a', 'GET')->inc(-1), Shmetrics\InvalidArgument::class, 'is negative');
    refused(fn () => $requests->labels('/a', 'GET')->inc(0.5), Shmetrics\InvalidArgument::class, 'not an integer below 2**64');
    refused(fn () => $seconds->labels()->inc(NAN), Shmetrics\InvalidArgument::class, 'expected a finite number');
    refused(fn () => $inflight->labels()->set(0.5), Shmetrics\InvalidArgument::class, '64-bit integers');
    refused(fn () => $temperature->labels('a')->set(NAN), Shmetrics\InvalidArgument::class, 'expected a number');
    refused(fn () => $latency->labels()->observe(NAN), Shmetrics\InvalidArgument::class, 'expected a number');
    refused(fn () => $build->set(['version' => '1']), Shmetrics\InvalidArgument::class, 'keyed by the label names');
    refused(fn () => $segment->counter('bad name', 'B.'), Shmetrics\InvalidArgument::class, 'metric name "bad name" is invalid');
    refused(fn () => $segment->counter("ok_total\0x", 'B.'), Shmetrics\InvalidArgument::class, 'contains a NUL byte');
    refused(fn () => $segment->counter('php_requests_total', 'Requests.', ['route']), Shmetrics\InvalidArgument::class,
        'already registered');
    refused(fn () => $segment->counter('x_total', 'X.', [], 'decimal'), Shmetrics\InvalidArgument::class, 'expected "int" or "float"');
    refused(fn () => $segment->gauge('g', 'G.', [], 'livesmum'), Shmetrics\InvalidArgument::class, 'gauge mode "livesmum" is invalid');
    refused(fn () => $segment->histogram('h', 'H.', [], [1, 0.5]), Shmetrics\InvalidArgument::class, 'not strictly increasing');
    refused(fn () => $segment->histogram('h', 'H.', [], ['x']), Shmetrics\InvalidArgument::class, 'is not a number');
    refused(fn () => Shmetrics\Segment::open('ops', 'x', ['directory' => '/proc/nonexistent']), Shmetrics\SegmentException::class,
        'cannot create segment directory');
    refused(fn () => Shmetrics\Segment::open('ops', 'x', ['capacities' => ['seris' => 1]]), Shmetrics\InvalidArgument::class,
        'capacity "seris" is unknown');
    refused(fn () => Shmetrics\Segment::open('ops', 'x', ['capacities' => ['series' => -1]]), Shmetrics\InvalidArgument::class,
        'expected an integer from 0 to 4294967295');
    refused(fn () => Shmetrics\Segment::open('ops', 'x', ['dir' => '/tmp']), Shmetrics\InvalidArgument::class, 'option "dir" is unknown');
    // Refusals wrote nothing.
    $s = samples($segment->path());
    check(($s['php_requests_total{route="/a",method="GET"}'] ?? null) === 42.0, 'nothing refused was counted');
    $g = samples($other->path());
    check(abs(($g['php_started_seconds'] ?? 0) - time()) <= 60, 'an integer gauge set to the current time');
    check(($g['php_level'] ?? null) === -9.2233720368547758E18, 'dec(PHP_INT_MIN) wraps as 64-bit sums do: ' . json_encode($g['php_level'] ?? null));
} finally {
    array_map('unlink', glob("$dir/*") ?: []);
    rmdir($dir);
}
echo "$passed passed, $failed failed\n";
exit($failed === 0 ? 0 : 1);
