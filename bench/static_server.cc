// shmetrics-bench-static-server: the exporter_wrk peer. The same cpp-httplib
// the exporter uses, configured as the exporter configures it (8 pool threads,
// TCP_NODELAY, keep-alive 100 requests / 5 s, 5 s timeouts, listen backlog 128,
// the body sent through a fixed-length content provider), answering
// GET /metrics with a static body: the bytes of one exporter scrape.
//
// Usage: shmetrics-bench-static-server BODY_FILE [HOST]
// Prints "port N" on stdout once listening; stops on SIGTERM or SIGINT.
#include <httplib.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <pthread.h>
#include <sstream>
#include <sys/socket.h>
#include <thread>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: shmetrics-bench-static-server BODY_FILE [HOST]\n");
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", argv[1]);
    return 2;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  auto body = std::make_shared<const std::string>(buffer.str());
  const std::string host = argc > 2 ? argv[2] : "127.0.0.1";

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  httplib::Server server;
  server.new_task_queue = [] { return new httplib::ThreadPool(8); };
  server.set_read_timeout(5, 0);
  server.set_write_timeout(5, 0);
  server.set_tcp_nodelay(true);
  server.set_keep_alive_max_count(100);
  server.set_keep_alive_timeout(5);
  server.set_payload_max_length(4096);
  server.Get("/metrics", [body](const httplib::Request&, httplib::Response& res) {
    res.set_content_provider(body->size(), "text/plain; version=0.0.4; charset=utf-8",
                             [body](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
                               if (offset > body->size()) return false;
                               return sink.write(body->data() + offset,
                                                 std::min(length, body->size() - offset));
                             });
  });
  int port = server.bind_to_any_port(host);
  if (port <= 0) {
    std::fprintf(stderr, "cannot bind %s\n", host.c_str());
    return 1;
  }
  std::printf("port %d\n", port);
  std::fflush(stdout);
  std::thread serving([&] { server.listen_after_bind(); });
  int sig = 0;
  sigwait(&stop_signals, &sig);
  server.stop();
  serving.join();
  return 0;
}
