<?php
// A PHP-FPM application counting its requests in a shmetrics segment, through
// PHP's FFI (bindings/php). Every worker writes the same counters; the
// exporter serves the totals, a killed or recycled worker's included.
//
// Routes (?route=...): /work, /pid (the worker's pid); anything else is
// counted as "other" (label values never come from the request as given:
// one series per distinct value would let a client fill the segment).
declare(strict_types=1);

if (!class_exists(Shmetrics\Segment::class, false)) {  // not preloaded (preload.php)
    require_once (getenv('SHMETRICS_PHP_DIR') ?: '/usr/share/shmetrics/php') . '/Shmetrics.php';
}

$start = hrtime(true);
// Opening and registering again in every request is cheap: the process keeps
// the segment mapped, and the library returns the families it has.
$segment = Shmetrics\Segment::open(getenv('SHMETRICS_ROLE') ?: 'ops', getenv('SHMETRICS_INSTANCE') ?: 'php-fpm');
$requests = $segment->counter('app_php_requests_total', 'Requests answered, by route and status.', ['route', 'status']);
$latency = $segment->histogram('app_php_request_seconds', 'Time to answer a request.', ['route'],
    [.001, .005, .01, .05, .1, .5, 1], 'seconds');

$route = $_GET['route'] ?? '';
switch ($route) {
    case '/work':
        $status = 200;
        $body = "done\n";
        break;
    case '/pid':
        $status = 200;
        $body = getmypid() . "\n";
        break;
    default:
        $route = 'other';
        $status = 404;
        $body = "not found\n";
}
http_response_code($status);
header('Content-Type: text/plain');
echo $body;
$requests->labels($route, (string) $status)->inc();
$latency->labels($route)->observe((hrtime(true) - $start) / 1e9);
