#include "map_file.h"

#include <openssl/evp.h>

#include <cerrno>
#include <fcntl.h>
#include <stdexcept>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace rbac {
namespace {

[[noreturn]] void fail_errno(const char* what) {
  throw std::runtime_error(std::string(what) + ": " + std::generic_category().message(errno));
}

// Closes the descriptor on every way out of read_map_file.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() { ::close(fd_); }
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string sha256_hex(const std::string& bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("SHA-256 of the map file failed in OpenSSL");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 0xf];
  }
  return hex;
}

}  // namespace

MapFileSnapshot read_map_file(const std::string& path) {
  // O_NONBLOCK: opening a FIFO put in the file's place must not hang the worker.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail_errno("cannot open");
  FileDescriptor file(fd);
  struct stat info {};
  if (::fstat(file.get(), &info) != 0) fail_errno("cannot stat");
  if (!S_ISREG(info.st_mode))
    throw std::runtime_error(S_ISDIR(info.st_mode) ? "not a regular file: a directory"
                                                   : "not a regular file");
  MapFileSnapshot snapshot;
  char buffer[16384];
  for (;;) {
    ssize_t n = ::read(file.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_errno("cannot read");
    if (n == 0) break;
    if (snapshot.bytes.size() + static_cast<std::size_t>(n) > kMaxMapFileBytes)
      throw std::runtime_error("larger than " + std::to_string(kMaxMapFileBytes) + " bytes");
    snapshot.bytes.append(buffer, static_cast<std::size_t>(n));
  }
  snapshot.sha256_hex = sha256_hex(snapshot.bytes);
  return snapshot;
}

}  // namespace rbac
