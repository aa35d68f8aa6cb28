#include "server_flags.h"

#include "prefork.h"

#include <cstdlib>
#include <iostream>
#include <string_view>

namespace shmetrics::examples {

ServerFlags parse_server_flags(int argc, char** argv, const char* program, int default_port,
                               bool judge) {
  ServerFlags f;
  f.port = default_port;
  auto fail = [&](const std::string& message) {
    std::cerr << program << ": " << message << "\n(see " << program << " --help)\n";
    std::exit(2);
  };
  auto number = [&](const std::string& flag, const std::string& v, long lo, long hi) {
    char* end = nullptr;
    long n = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || n < lo || n > hi)
      fail(flag + " \"" + v + "\" is invalid: expected an integer from " + std::to_string(lo) +
           " to " + std::to_string(hi));
    return n;
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << "Usage: " << program << " --rbac-map FILE [FLAG]...\n"
                << "A preforked " << (judge ? "Judge" : "Ops")
                << " server whose workers record RBAC" << (judge ? " and readyz" : "")
                << " metrics into the role's shmetrics segment.\n\n"
                << "  --listen HOST:PORT   address to serve on (default 127.0.0.1:" << default_port
                << "; port 0 picks one, logged as event=listening)\n"
                << "  --workers N          worker processes, 1-64 (default 4)\n"
                << "  --instance NAME      segment instance (default default): the segment is NAME."
                << (judge ? "judge" : "ops") << " in $SHMETRICS_SEGMENT_DIR,\n"
                << "                       else in /dev/shm/shmetrics-<uid>. If it cannot be opened the\n"
                << "                       server logs event=metrics_disabled and serves without metrics\n"
                << "  --rbac-map FILE      the RBAC map (JSON; see README.md); required\n"
                << "  --reload-sec N       re-read the map at most every N seconds per worker (default 1)\n";
      if (judge)
        std::cout << "  --readyz-file PATH   GET /readyz is ready while PATH exists\n"
                  << "  --readyz-tcp HOST:PORT\n"
                  << "                       GET /readyz is ready while HOST:PORT accepts a connection\n"
                  << "                       within 500 ms (with neither flag, always ready)\n";
      std::cout << "\nCallers present scopes in the X-Scopes header, separated by spaces or commas.\n"
                << "SIGTERM or SIGINT stops the master and its workers.\n";
      std::exit(0);
    }
    if (i + 1 >= argc) fail(a + " needs a value");
    std::string v = argv[++i];
    if (a == "--listen") parse_host_port(a, v, f.host, f.port);
    else if (a == "--workers") f.workers = static_cast<int>(number(a, v, 1, 64));
    else if (a == "--instance") f.instance = v;
    else if (a == "--rbac-map") f.rbac_map = v;
    else if (a == "--reload-sec") f.reload_sec = number(a, v, 0, 86400);
    else if (judge && a == "--readyz-file") f.readyz_file = v;
    else if (judge && a == "--readyz-tcp") {
      std::string host;
      int port;
      parse_host_port(a, v, host, port);
      f.readyz_tcp = v;
    } else fail("unknown flag \"" + a + "\"");
  }
  if (f.rbac_map.empty()) fail("--rbac-map FILE is required");
  if (!f.readyz_file.empty() && !f.readyz_tcp.empty())
    fail("--readyz-file and --readyz-tcp exclude each other");
  return f;
}

}  // namespace shmetrics::examples
