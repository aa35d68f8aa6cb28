// The command line of the example Ops and Judge servers.
#pragma once

#include <string>

namespace shmetrics::examples {

struct ServerFlags {
  std::string host = "127.0.0.1";
  int port = 0;
  int workers = 4;
  std::string instance = "default";
  std::string rbac_map;
  long reload_sec = 1;
  std::string readyz_file;  // judge: ready while this file exists
  std::string readyz_tcp;   // judge: ready while HOST:PORT accepts connections
};

// Parses argv; prints help and exits 0 on --help, exits 2 with a message on
// bad input. `judge` enables the readyz flags.
ServerFlags parse_server_flags(int argc, char** argv, const char* program, int default_port,
                               bool judge);

}  // namespace shmetrics::examples
