#include "prefork.h"

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace shmetrics::examples {

namespace {

void log_line(const std::string& name, const std::string& fields) {
  std::string line = "event=" + fields + " server=" + name + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

int bind_listener(const PreforkOptions& o, int& bound_port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(o.port));
  if (::inet_pton(AF_INET, o.host.c_str(), &addr.sin_addr) != 1) {
    errno = EINVAL;
    ::close(fd);
    return -1;
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd, o.backlog) != 0) {
    int err = errno;
    ::close(fd);
    errno = err;
    return -1;
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  bound_port = ntohs(addr.sin_port);
  return fd;
}

}  // namespace

void parse_host_port(const std::string& flag, const std::string& value, std::string& host, int& port) {
  auto colon = value.rfind(':');
  char* end = nullptr;
  long p = colon == std::string::npos ? -1 : std::strtol(value.c_str() + colon + 1, &end, 10);
  if (colon == std::string::npos || colon == 0 || end == nullptr || *end != '\0' || p < 0 || p > 65535) {
    std::cerr << flag << " \"" << value << "\" is invalid: expected HOST:PORT with PORT 0-65535\n";
    std::exit(2);
  }
  host = value.substr(0, colon);
  port = static_cast<int>(p);
}

int run_preforked(const PreforkOptions& o,
                  const std::function<void(int listen_fd, int worker_number)>& worker_main) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGCHLD);
  sigprocmask(SIG_BLOCK, &signals, nullptr);

  int port = 0;
  int fd = bind_listener(o, port);
  if (fd < 0) {
    log_line(o.name, "listen_failed address=" + o.host + ":" + std::to_string(o.port) +
                         " reason=\"" + std::strerror(errno) + "\"");
    return 1;
  }
  log_line(o.name, "listening address=" + o.host + ":" + std::to_string(port) +
                       " workers=" + std::to_string(o.workers));

  std::map<pid_t, int> workers;  // pid -> worker number
  auto start = [&](int number) {
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid == 0) {
      sigprocmask(SIG_UNBLOCK, &signals, nullptr);
      worker_main(fd, number);
      ::_exit(0);
    }
    if (pid > 0) workers[pid] = number;
    else log_line(o.name, "fork_failed reason=\"" + std::string(std::strerror(errno)) + "\"");
  };
  for (int n = 0; n < o.workers; ++n) start(n);

  // Restarts are rate-limited so a worker that dies at once cannot fork-bomb.
  auto last_restart = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  for (;;) {
    siginfo_t info{};
    if (::sigwaitinfo(&signals, &info) < 0) continue;
    if (info.si_signo == SIGCHLD) {
      int status = 0;
      pid_t pid;
      while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
        auto it = workers.find(pid);
        if (it == workers.end()) continue;
        int number = it->second;
        workers.erase(it);
        log_line(o.name, "worker_died pid=" + std::to_string(pid) + " status=" +
                             (WIFSIGNALED(status) ? "signal_" + std::to_string(WTERMSIG(status))
                                                  : "exit_" + std::to_string(WEXITSTATUS(status))));
        auto now = std::chrono::steady_clock::now();
        if (now - last_restart < std::chrono::milliseconds(100))
          ::usleep(100'000);
        last_restart = std::chrono::steady_clock::now();
        start(number);
      }
      continue;
    }
    log_line(o.name, std::string("stopping signal=") + (info.si_signo == SIGTERM ? "SIGTERM" : "SIGINT"));
    for (const auto& [pid, number] : workers) ::kill(pid, SIGTERM);
    for (const auto& [pid, number] : workers) {
      int status;
      ::waitpid(pid, &status, 0);
    }
    log_line(o.name, "stopped");
    return 0;
  }
}

}  // namespace shmetrics::examples
