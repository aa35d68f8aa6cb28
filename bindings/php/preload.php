<?php
// opcache.preload for PHP-FPM: the Shmetrics classes compiled once, in the
// master, where ffi.enable=preload lets them call FFI. The declarations
// themselves are loaded by ffi.preload=.../shmetrics_ffi.h (FFI::load cannot
// run here alongside opcache.preload_user); the classes reach them through
// FFI::scope('shmetrics').
require_once __DIR__ . '/Shmetrics.php';
