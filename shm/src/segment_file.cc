#include <shmetrics/shm/segment_file.h>
#include <shmetrics/shm/robust_mutex.h>
#include <shmetrics/shm/test_hooks.h>

#include <boost/interprocess/mapped_region.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <mutex>
#include <tuple>
#include <utility>
#include <vector>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/sem.h>
#include <sys/stat.h>
#include <unistd.h>

namespace shmetrics::shm {

namespace bip = boost::interprocess;

namespace {

constexpr const char* kShmDir = "/dev/shm";
constexpr const char* kDirectoryVariable = "SHMETRICS_SEGMENT_DIR";
constexpr const char* kChooseDirectory =
    "$SHMETRICS_SEGMENT_DIR, SegmentOptions::directory, or the exporter's --segment-dir";

std::string errno_text(int err) { return std::strerror(err); }

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '-';
}

std::string check_part(std::string_view what, std::string_view part) {
  bool ok = !part.empty() && part.size() <= 64;
  for (char c : part) ok = ok && is_name_char(c);
  if (ok) return "";
  return std::string(what) + " \"" + std::string(part) +
         "\" is invalid: must be 1-64 characters of [A-Za-z0-9_-]";
}

std::string octal_mode(mode_t mode) {
  char b[8];
  std::snprintf(b, sizeof b, "0%03o", static_cast<unsigned>(mode & 07777));
  return b;
}

// A segment path split into its directory and file name, both checked.
struct Location {
  std::string directory;
  std::string name;
};

Location locate(const std::string& path) {
  const auto slash = path.rfind('/');
  if (path.empty() || path.front() != '/' || slash + 1 == path.size())
    throw SegmentError("segment path \"" + path + "\" is invalid: expected an absolute path to a file, "
                       "e.g. /dev/shm/shmetrics-1000/default.ops");
  Location at{slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
  if (std::string err = check_segment_name(at.name); !err.empty()) throw SegmentError(err);
  return at;
}

// A segment directory, opened O_PATH (no permission on it needed beyond
// search) after checking that only its owner can create files in it: a real
// directory (a symlink, FIFO or file planted under its name is refused), not
// writable by group or others, and a directory named shmetrics-<N> owned by
// uid N. Writers also require it to be theirs or root's, and create it when
// missing.
class SegmentDirectory {
 public:
  SegmentDirectory(const std::string& dir, bool create, mode_t segment_mode) {
    const std::string base = dir.substr(dir.rfind('/') + 1);
    if (base == "." || base == "..")
      throw SegmentError("segment directory " + dir + " is invalid: expected a path that does not end in . or ..");
    // Group search when a group may read the segments (0640): nothing more.
    const mode_t group_search = (segment_mode & 0040) != 0 ? 0010 : 0;
    fd_ = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd_ < 0 && errno == ENOENT && create) {
      // Only where nobody else decides what the parent is: a parent of
      // another user's (reached through a symlink it planted, say) would let
      // that user choose where our directory goes.
      const std::string parent = dir.rfind('/') == 0 ? "/" : dir.substr(0, dir.rfind('/'));
      struct stat p {};
      if (::stat(parent.c_str(), &p) == 0 && p.st_uid != 0 && p.st_uid != ::geteuid())
        throw SegmentError("refusing to create segment directory " + dir + ": its parent " + parent +
                           " belongs to uid " + std::to_string(p.st_uid) +
                           ", neither this user nor root (expected a parent such as /dev/shm or /run)");
      if (::mkdir(dir.c_str(), 0700 | group_search) != 0 && errno != EEXIST)
        throw SegmentError("cannot create segment directory " + dir + ": " + errno_text(errno));
      fd_ = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd_ < 0) {
      const int err = errno;
      if (err == ENOENT)
        throw SegmentError("segment directory " + dir + " does not exist", /*missing=*/true);
      throw SegmentError("cannot open segment directory " + dir + ": " + errno_text(err) +
                         (err == ENOTDIR || err == ELOOP
                              ? std::string(" (a file or symbolic link is in its place: have its owner or "
                                            "root remove it, or choose another directory: ") +
                                    kChooseDirectory + ")"
                              : std::string()));
    }
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      const int err = errno;
      ::close(fd_);
      throw SegmentError("cannot stat segment directory " + dir + ": " + errno_text(err));
    }
    owner_ = st.st_uid;
    std::string why;
    if (!S_ISDIR(st.st_mode)) {
      why = "is not a directory";
    } else if ((st.st_mode & 022) != 0) {
      why = "is writable by group or others (mode " + octal_mode(st.st_mode) +
            "): anyone could plant a segment in it";
    } else if (create && st.st_uid != ::geteuid() && st.st_uid != 0) {
      why = "is owned by uid " + std::to_string(st.st_uid) + ", not by this process's uid " +
            std::to_string(::geteuid()) + " or root";
    } else if (base.size() > 10 && base.rfind("shmetrics-", 0) == 0 &&
               base.find_first_not_of("0123456789", 10) == std::string::npos &&
               base.substr(10) != std::to_string(st.st_uid)) {
      // The default directory's form, shmetrics-<uid> (another name, such as
      // shmetrics-myapp, says nothing about its owner).
      why = "is owned by uid " + std::to_string(st.st_uid) + " but its name says uid " + base.substr(10) +
            " (planted by another user?)";
    }
    if (!why.empty()) {
      ::close(fd_);
      throw SegmentError("segment directory " + dir + " " + why + "; refusing to use it (have its owner or "
                         "root remove it, or choose another directory: " + kChooseDirectory + ")");
    }
    // A directory of ours whose segments a group may read lets the group
    // search it (the umask may have stripped that bit at mkdir; a directory
    // made for 0600 segments gains it when 0640 ones are asked for). The
    // change goes through the checked descriptor, never through the path.
    if (create && st.st_uid == ::geteuid() && (st.st_mode & group_search) != group_search) {
      const std::string proc = "/proc/self/fd/" + std::to_string(fd_);
      if (::chmod(proc.c_str(), (st.st_mode & 0777) | group_search) != 0) {
        const int err = errno;
        ::close(fd_);
        throw SegmentError("cannot let the group search segment directory " + dir + " (mode " +
                           octal_mode(st.st_mode) + ", a 0640 segment needs 0710): " + errno_text(err));
      }
    }
  }
  ~SegmentDirectory() { ::close(fd_); }
  SegmentDirectory(const SegmentDirectory&) = delete;
  SegmentDirectory& operator=(const SegmentDirectory&) = delete;

  int fd() const { return fd_; }
  uid_t owner() const { return owner_; }

 private:
  int fd_ = -1;
  uid_t owner_ = 0;
};

// The fourth argument of semctl, which the caller must define (semctl(2)).
union SemArg {
  int val;
  struct semid_ds* buf;
  unsigned short* array;
};

// The kernel's most semaphores per set (kernel.sem's first field, SEMMSL).
std::string semmsl() {
  std::FILE* f = std::fopen("/proc/sys/kernel/sem", "r");
  unsigned long n = 0;
  bool read = f != nullptr && std::fscanf(f, "%lu", &n) == 1;
  if (f != nullptr) std::fclose(f);
  return read ? std::to_string(n) : "unknown";
}

// The values of the token semaphores that spell `token`, 15 bits each.
std::uint16_t token_part(std::uint64_t token, std::uint32_t i) {
  return static_cast<std::uint16_t>((token >> (i * kTokenBitsPerSemaphore)) & 0x7fff);
}

// "" when `set` is a semaphore set owned by `owner` with `count` semaphores
// for slots and records, whose token semaphores spell `token`, else why not.
std::string check_semaphore_set(int set, uid_t owner, std::uint32_t count, std::uint64_t token) {
  struct semid_ds ds {};
  SemArg arg{};
  arg.buf = &ds;
  if (::semctl(set, 0, IPC_STAT, arg) != 0) {
    int err = errno;
    return "cannot read its semaphore set " + std::to_string(set) + ": " + errno_text(err) +
           (err == EINVAL || err == EIDRM ? " (removed? systemd-logind's RemoveIPC=yes removes a "
                                            "user's sets at logout; recreate the segment)"
            : err == EACCES ? " (its mode and group must let this user read it; a writer gives "
                              "it the segment file's when it opens the segment)"
                            : "");
  }
  if (ds.sem_perm.uid != owner || ds.sem_perm.cuid != owner)
    return "its semaphore set " + std::to_string(set) + " is owned by uid " +
           std::to_string(ds.sem_perm.uid) + ", not by the segment's owner " + std::to_string(owner);
  if (ds.sem_nsems != std::uint64_t{count} + kTokenSemaphores)
    return "its semaphore set " + std::to_string(set) + " has " + std::to_string(ds.sem_nsems) +
           " semaphores, expected " + std::to_string(std::uint64_t{count} + kTokenSemaphores) +
           " (thread_slots + process_records + " + std::to_string(kTokenSemaphores) + ")";
  for (std::uint32_t i = 0; i < kTokenSemaphores; ++i)
    if (::semctl(set, static_cast<int>(count + i), GETVAL) != token_part(token, i))
      return "semaphore set " + std::to_string(set) + " is not this segment's (it does not hold the "
             "segment's token: the id was reused, e.g. after the IPC namespace the segment was made "
             "in went away with its container; recreate the segment)";
  return "";
}

// A random token for a new set: 60 bits, never 0.
std::uint64_t new_token() {
  std::uint64_t token = 0;
  while (token == 0) {
    if (::getrandom(&token, sizeof token, 0) != static_cast<ssize_t>(sizeof token))
      token = static_cast<std::uint64_t>(::getpid()) << 32 ^ static_cast<std::uint64_t>(std::time(nullptr));
    token &= kTokenMask;
  }
  return token;
}

// The IPC namespace this process is in: device and inode of
// /proc/self/ns/ipc ({0, 0} when /proc cannot tell).
std::pair<std::uint64_t, std::uint64_t> ipc_namespace() {
  struct stat st {};
  if (::stat("/proc/self/ns/ipc", &st) != 0) return {0, 0};
  return {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

// "" when a header naming the IPC namespace {device, inode} can be trusted
// with a set id of this process's namespace, else why not.
std::string check_ipc_namespace(std::uint64_t device, std::uint64_t inode) {
  const auto [own_device, own_inode] = ipc_namespace();
  if ((own_device == device && own_inode == inode) || own_inode == 0) return "";
  return "its semaphores live in another IPC namespace (ipc:[" + std::to_string(inode) +
         "]) than this process's (ipc:[" + std::to_string(own_inode) +
         "]): writers and the exporter must share one IPC namespace, as they share the segment "
         "(in Kubernetes, containers of one pod do; with Docker, --ipc=container:NAME)";
}

// Removes a semaphore set this process created; quiet (nothing to tell).
void remove_semaphore_set(int set) {
  if (set >= 0) ::semctl(set, 0, IPC_RMID);
}

// Writes a fresh header and initialises the registration lock. The file is
// still anonymous, so nobody else can see it half-written.
void initialise(std::uint8_t* base, const Capacities& caps, const Geometry& g, int semaphore_set,
                std::uint64_t token) {
  auto* h = new (base) Header{};
  h->layout_version = kLayoutVersion;
  h->header_bytes = sizeof(Header);
  h->capacities = caps;
  h->total_bytes = g.total_bytes;
  h->families_offset = g.families_offset;
  h->series_offset = g.series_offset;
  h->strings_offset = g.strings_offset;
  h->slots_offset = g.slots_offset;
  h->slot_stride = g.slot_stride;
  h->records_offset = g.records_offset;
  h->record_stride = g.record_stride;
  h->semaphore_set = semaphore_set;
  h->semaphore_count = caps.thread_slots + caps.process_records;
  std::tie(h->ipc_namespace_device, h->ipc_namespace_inode) = ipc_namespace();
  h->semaphore_token = token;
  park_point("create.mid_header");

  int rc = init_robust_mutex(h->registration_lock);
  if (rc == 0) rc = init_robust_mutex(h->fold_lock);
  if (rc != 0)
    throw SegmentError("cannot initialise the segment's locks: " + errno_text(rc));
  for (std::uint32_t b = 0; b < 2; ++b) {
    std::uint8_t* buffer = base + g.dead_buffer_offset(b);
    auto* marker = reinterpret_cast<DeadBufferHeader*>(buffer);
    marker->folded_record.store(kNoRecord, std::memory_order_relaxed);
    auto* cells = reinterpret_cast<GaugeCell*>(buffer + sizeof(DeadBufferHeader));
    for (std::uint32_t c = 0; c < caps.gauge_series; ++c) cells[c].value.store(kGaugeUnset, std::memory_order_relaxed);
  }
  // Magic last: a header without it was never finished.
  h->magic = kMagic;
}

// Creates the segment anonymously, fills it, and links it to its name. Returns
// false when another creator published first.
bool create_and_publish(const std::string& name, const SegmentDirectory& dir, const std::string& file,
                        const Capacities& caps, mode_t mode) {
  Geometry g;
  if (!compute_geometry(caps, g))
    throw SegmentError("cannot create segment \"" + name + "\": capacities " +
                       describe(caps) + " are out of range or exceed " +
                       std::to_string(kMaxSegmentBytes) + " bytes");
  int fd = ::openat(dir.fd(), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
  if (fd < 0)
    throw SegmentError("cannot create segment \"" + name + "\" in its directory: " + errno_text(errno) +
                       " (the directory must be writable by this user, on a file system with "
                       "O_TMPFILE such as tmpfs)");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  // fchmod, because the umask may have stripped bits from `mode`.
  if (::fchmod(fd, mode) != 0)
    throw SegmentError("cannot set mode of segment \"" + name + "\": " + errno_text(errno));
  // The ownership semaphores, with the file's mode and group: whoever may
  // read the segment may read them, only its owner may alter them. Removed
  // again unless this creator publishes the segment.
  const std::uint32_t semaphores = caps.thread_slots + caps.process_records;
  struct SemaphoreSet {
    int id;
    bool keep = false;
    ~SemaphoreSet() {
      if (!keep) remove_semaphore_set(id);
    }
  } set{::semget(IPC_PRIVATE, static_cast<int>(semaphores + kTokenSemaphores), IPC_CREAT | IPC_EXCL | (mode & 0777))};
  if (set.id < 0) {
    int err = errno;
    throw SegmentError("cannot create the " + std::to_string(semaphores + kTokenSemaphores) +
                       " semaphores of segment \"" + name + "\": " + errno_text(err) +
                       (err == EINVAL ? " (thread_slots + process_records + " + std::to_string(kTokenSemaphores) +
                                        " must not exceed the kernel's semaphores per set, kernel.sem SEMMSL = " +
                                        semmsl() + ")"
                        : err == ENOSPC ? " (the system's limit of semaphore sets or semaphores is "
                                          "reached: `ipcs -s` lists them)"
                                        : ""));
  }
  // The token, in the header and in the set's last semaphores.
  const std::uint64_t token = new_token();
  for (std::uint32_t i = 0; i < kTokenSemaphores; ++i) {
    SemArg value{};
    value.val = token_part(token, i);
    if (::semctl(set.id, static_cast<int>(semaphores + i), SETVAL, value) != 0)
      throw SegmentError("cannot write the token of segment \"" + name + "\"'s semaphores: " +
                         errno_text(errno));
  }
  struct stat file_stat {};
  if (::fstat(fd, &file_stat) == 0 && file_stat.st_gid != ::getegid()) {
    struct semid_ds ds {};
    SemArg arg{};
    arg.buf = &ds;
    if (::semctl(set.id, 0, IPC_STAT, arg) != 0 || (ds.sem_perm.gid = file_stat.st_gid, false) ||
        ::semctl(set.id, 0, IPC_SET, arg) != 0)
      throw SegmentError("cannot give the semaphores of segment \"" + name + "\" the file's group " +
                         std::to_string(file_stat.st_gid) + ": " + errno_text(errno));
  }
  // Reserve every page now: a full tmpfs fails here, not later with SIGBUS.
  if (int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(g.total_bytes)); rc != 0)
    throw SegmentError("cannot reserve " + std::to_string(g.total_bytes) +
                       " bytes for segment \"" + name + "\": " + errno_text(rc) +
                       " (is its file system full? lower the capacities)");
  void* base = ::mmap(nullptr, g.total_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED)
    throw SegmentError("cannot map new segment \"" + name + "\": " + errno_text(errno));
  try {
    initialise(static_cast<std::uint8_t*>(base), caps, g, set.id, token);
  } catch (...) {
    ::munmap(base, g.total_bytes);
    throw;
  }
  ::munmap(base, g.total_bytes);

  park_point("create.before_link");
  std::string proc = "/proc/self/fd/" + std::to_string(fd);
  if (::linkat(AT_FDCWD, proc.c_str(), dir.fd(), file.c_str(), AT_SYMLINK_FOLLOW) == 0) {
    set.keep = true;
    return true;
  }
  if (errno == EEXIST) return false;
  throw SegmentError("cannot publish segment \"" + name + "\": " +
                     errno_text(errno));
}

}  // namespace

struct MappedSegment::Region {
  bip::mapped_region region;
};

namespace {

// Lets Boost.Interprocess map a descriptor we opened ourselves (with
// O_NOFOLLOW, O_NONBLOCK and a regular-file check its shm_open lacks).
struct DescriptorMappable {
  int fd;
  bip::mapping_handle_t get_mapping_handle() const {
    return bip::ipcdetail::mapping_handle_from_file_handle(fd);
  }
};

// The files this process writes, and their descriptors, kept for the life of
// the process (the mapping outlives every handle); in-process readers map
// through them instead of opening the file again.
struct WrittenFile {
  std::string path;
  int fd;
  dev_t device;
  ino_t inode;
};
std::mutex g_files_mutex;
std::vector<WrittenFile> g_written_files;

bool is_written_file(dev_t device, ino_t inode) {
  std::lock_guard lock(g_files_mutex);
  for (const auto& w : g_written_files)
    if (w.device == device && w.inode == inode) return true;
  return false;
}

// The writer descriptor of `path` when this process writes the file now under
// that path, else -1.
int writer_descriptor(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return -1;
  std::lock_guard lock(g_files_mutex);
  for (const auto& w : g_written_files)
    if (w.path == path && w.device == st.st_dev && w.inode == st.st_ino) return w.fd;
  return -1;
}

// Opens segment `name` of `dir` without following symlinks or blocking on a
// FIFO, and only if it is a regular file.
int open_segment_file(const SegmentDirectory& dir, const std::string& name, const std::string& file,
                      bool writable) {
  int fd = ::openat(dir.fd(), file.c_str(),
                    (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) throw SegmentError("segment \"" + name + "\" does not exist", true);
    throw SegmentError("cannot open segment \"" + name + "\": " + errno_text(err) +
                       (err == ELOOP ? " (it is a symbolic link)" : ""));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw SegmentError("segment \"" + name + "\" is not a regular file");
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

}  // namespace

MappedSegment::MappedSegment() = default;

std::string MappedSegment::check_semaphores() const {
  return check_semaphore_set(semaphore_set_, owner_uid_, capacities_.thread_slots + capacities_.process_records,
                             semaphore_token_);
}

MappedSegment::~MappedSegment() {
  region_.reset();
  if (owns_fd_ && !is_written_file(device_, inode_)) ::close(fd_);
}

void lock_descriptor_table() { g_files_mutex.lock(); }
void unlock_descriptor_table() { g_files_mutex.unlock(); }

std::unique_ptr<MappedSegment> MappedSegment::map(const std::string& name, int fd, bool owns_fd,
                                                  bool writable) {
  auto out = std::unique_ptr<MappedSegment>(new MappedSegment());
  out->path_ = name;
  out->fd_ = fd;
  out->owns_fd_ = owns_fd;  // from here on the destructor closes it (or keeps it)
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    throw SegmentError("cannot stat segment \"" + name + "\": " + errno_text(errno));
  out->device_ = st.st_dev;
  out->inode_ = st.st_ino;
  out->owner_uid_ = st.st_uid;
  auto file_bytes = static_cast<std::uint64_t>(st.st_size);
  alignas(Header) unsigned char copy[sizeof(Header)] = {};
  if (file_bytes >= sizeof(Header) &&
      ::pread(fd, copy, sizeof copy, 0) != static_cast<ssize_t>(sizeof copy))
    throw SegmentError("cannot read the header of segment \"" + name + "\": " + errno_text(errno));
  const auto& header = *reinterpret_cast<const Header*>(copy);
  std::string err = check_header(header, file_bytes, out->geometry_);
  if (!err.empty()) throw SegmentError("segment \"" + name + "\" is invalid: " + err);
  out->capacities_ = header.capacities;
  if (header.semaphore_count != header.capacities.thread_slots + header.capacities.process_records)
    throw SegmentError("segment \"" + name + "\" is invalid: semaphore_count " +
                       std::to_string(header.semaphore_count) + " is not thread_slots + process_records");
  std::string why = check_ipc_namespace(header.ipc_namespace_device, header.ipc_namespace_inode);
  if (why.empty())
    why = check_semaphore_set(header.semaphore_set, st.st_uid, header.semaphore_count, header.semaphore_token);
  if (!why.empty()) throw SegmentError("segment \"" + name + "\" is unusable: " + why);
  out->semaphore_set_ = header.semaphore_set;
  out->semaphore_token_ = header.semaphore_token;
  try {
    out->region_ = std::make_unique<Region>();
    out->region_->region = bip::mapped_region(DescriptorMappable{fd},
                                              writable ? bip::read_write : bip::read_only, 0,
                                              out->geometry_.total_bytes);
  } catch (const bip::interprocess_exception& e) {
    throw SegmentError("cannot map segment \"" + name + "\": " + e.what());
  }
  out->base_ = static_cast<std::uint8_t*>(out->region_->region.get_address());
  out->size_bytes_ = out->geometry_.total_bytes;
  return out;
}

std::string segment_name(std::string_view instance, std::string_view role) {
  std::string err = check_part("instance", instance);
  if (err.empty()) err = check_part("role", role);
  if (!err.empty()) throw std::invalid_argument(err);
  return std::string(instance) + "." + std::string(role);
}

std::string default_segment_directory() {
  const char* dir = std::getenv(kDirectoryVariable);
  if (dir != nullptr && *dir != '\0') return dir;
  return std::string(kShmDir) + "/shmetrics-" + std::to_string(::geteuid());
}

void prepare_segment_directory(const std::string& directory, mode_t segment_mode) {
  SegmentDirectory dir(directory, /*create=*/true, segment_mode);
}

std::string segment_path(std::string_view directory, std::string_view name) {
  if (const auto slash = name.rfind('/'); slash != std::string_view::npos) {
    if (name.front() != '/')
      throw std::invalid_argument("segment \"" + std::string(name) +
                                  "\" is invalid: expected a name or an absolute path");
    return segment_path(slash == 0 ? "/" : name.substr(0, slash), name.substr(slash + 1));
  }
  std::string dir = directory.empty() ? default_segment_directory() : std::string(directory);
  if (dir.empty() || dir.front() != '/')
    throw std::invalid_argument("segment directory \"" + dir + "\" is invalid: expected an absolute path" +
                                (directory.empty() ? std::string(" (from ") + kDirectoryVariable + ")" : ""));
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  // (SegmentDirectory refuses these too, at every open: refused here, a
  // flag or variable naming one fails at once instead of every scrape.)
  if (const std::string base = dir.substr(dir.rfind('/') + 1); base == "." || base == "..")
    throw std::invalid_argument("segment directory \"" + dir + "\" is invalid: expected a path that does not end in "
                                ". or .." + (directory.empty() ? std::string(" (from ") + kDirectoryVariable + ")" : ""));
  if (std::string err = check_segment_name(name); !err.empty()) throw std::invalid_argument(err);
  return (dir == "/" ? "" : dir) + "/" + std::string(name);
}

std::string check_segment_name(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 255 && name.front() != '.';
  for (char c : name) ok = ok && (is_name_char(c) || c == '.');
  if (ok) return "";
  return "segment name \"" + std::string(name) +
         "\" is invalid: must be 1-255 characters of [A-Za-z0-9._-], not starting with '.'";
}

std::string describe(const Capacities& c) {
  return "{thread_slots=" + std::to_string(c.thread_slots) +
         ", process_records=" + std::to_string(c.process_records) +
         ", families=" + std::to_string(c.families) + ", series=" + std::to_string(c.series) +
         ", string_bytes=" + std::to_string(c.string_bytes) +
         ", info_families=" + std::to_string(c.info_families) +
         ", info_value_bytes=" + std::to_string(c.info_value_bytes) +
         ", readyz_short_window_seconds=" + std::to_string(c.readyz_short_window_seconds) +
         ", readyz_long_window_seconds=" + std::to_string(c.readyz_long_window_seconds) +
         ", gauge_series=" + std::to_string(c.gauge_series) +
         ", cell_pages=" + std::to_string(c.cell_pages) + ", cells=" + std::to_string(c.cells) + "}";
}

std::string check_header(const Header& h, std::uint64_t file_bytes, Geometry& g) {
  if (file_bytes < sizeof(Header))
    return "file is " + std::to_string(file_bytes) + " bytes, smaller than a header (" +
           std::to_string(sizeof(Header)) + " bytes)";
  if (h.magic != kMagic) return "bad magic: not a shmetrics segment (or not finished)";
  if (h.layout_version != kLayoutVersion)
    return "segment has layout version " + std::to_string(h.layout_version) +
           " but this build speaks layout version " + std::to_string(kLayoutVersion);
  if (h.header_bytes != sizeof(Header))
    return "header is " + std::to_string(h.header_bytes) + " bytes, expected " +
           std::to_string(sizeof(Header));
  if (!compute_geometry(h.capacities, g))
    return "capacities " + describe(h.capacities) + " are out of range";
  if (h.total_bytes != g.total_bytes || h.families_offset != g.families_offset ||
      h.series_offset != g.series_offset || h.strings_offset != g.strings_offset ||
      h.slots_offset != g.slots_offset || h.slot_stride != g.slot_stride ||
      h.records_offset != g.records_offset || h.record_stride != g.record_stride)
    return "region offsets in the header do not match its capacities " +
           describe(h.capacities);
  if (file_bytes < g.total_bytes)
    return "file is " + std::to_string(file_bytes) + " bytes but its capacities need " +
           std::to_string(g.total_bytes);
  return "";
}

std::unique_ptr<MappedSegment> MappedSegment::open_or_create(const std::string& path,
                                                             const Capacities& capacities,
                                                             mode_t mode) {
  const Location at = locate(path);
  SegmentDirectory dir(at.directory, /*create=*/true, mode);
  // Creators race through linkat(); losers and late comers open what was published.
  for (int attempt = 0;; ++attempt) {
    int fd;
    try {
      fd = open_segment_file(dir, path, at.name, /*writable=*/true);
    } catch (const SegmentError& e) {
      if (!e.missing() || attempt >= 3) throw;
      create_and_publish(path, dir, at.name, capacities, mode);
      continue;
    }
    auto out = map(path, fd, /*owns_fd=*/true, /*writable=*/true);
    if (!(out->capacities() == capacities))
      throw SegmentError("segment \"" + path + "\" has capacities " + describe(out->capacities()) +
                         " but this process asked for " + describe(capacities));
    struct stat st {};
    ::fstat(fd, &st);
    if (st.st_uid != ::geteuid())
      throw SegmentError("segment \"" + path + "\" is owned by uid " + std::to_string(st.st_uid) +
                         ", not by this process's uid " + std::to_string(::geteuid()) +
                         ": refusing to write into a segment another user controls");
    if (st.st_mode & 022)
      throw SegmentError("segment \"" + path + "\" is writable by group or others (mode " +
                         octal_mode(st.st_mode) +
                         "): refusing to trust it; remove it and let a writer create it anew");
    // The set's mode and group follow the file's (an operator's chmod or
    // chgrp of the file reaches the exporter's view of the set too).
    {
      struct semid_ds ds {};
      SemArg arg{};
      arg.buf = &ds;
      if (::semctl(out->semaphore_set_, 0, IPC_STAT, arg) == 0 &&
          ((ds.sem_perm.mode & 0777) != (st.st_mode & 0777) || ds.sem_perm.gid != st.st_gid)) {
        ds.sem_perm.mode = static_cast<unsigned short>(st.st_mode & 0777);
        ds.sem_perm.gid = st.st_gid;
        ::semctl(out->semaphore_set_, 0, IPC_SET, arg);
      }
    }
    std::lock_guard lock(g_files_mutex);
    g_written_files.push_back({path, fd, out->device_, out->inode_});
    return out;
  }
}

std::unique_ptr<MappedSegment> MappedSegment::open_read_only(const std::string& path) {
  const Location at = locate(path);
  if (int fd = writer_descriptor(path); fd >= 0) return map(path, fd, /*owns_fd=*/false, /*writable=*/false);
  SegmentDirectory dir(at.directory, /*create=*/false, 0);
  int fd = open_segment_file(dir, path, at.name, /*writable=*/false);
  struct stat st {};
  if (::fstat(fd, &st) != 0 || (st.st_uid != dir.owner() && dir.owner() != 0)) {
    ::close(fd);
    throw SegmentError("segment \"" + path + "\" is owned by uid " + std::to_string(st.st_uid) +
                       ", not by its directory's owner " + std::to_string(dir.owner()));
  }
  return map(path, fd, /*owns_fd=*/true, /*writable=*/false);
}

ino_t current_inode(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_ino;
}

bool remove_segment(const std::string& path) {
  // The set named in the header goes too, if it is the file owner's and of
  // the header's size (so a forged header cannot name another set).
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd >= 0) {
    struct stat st {};
    alignas(Header) unsigned char copy[sizeof(Header)] = {};
    const auto& h = *reinterpret_cast<const Header*>(copy);
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_uid == ::geteuid() || ::geteuid() == 0) &&
        ::pread(fd, copy, sizeof copy, 0) == static_cast<ssize_t>(sizeof copy) &&
        check_ipc_namespace(h.ipc_namespace_device, h.ipc_namespace_inode).empty() &&
        check_semaphore_set(h.semaphore_set, st.st_uid, h.semaphore_count, h.semaphore_token).empty())
      remove_semaphore_set(h.semaphore_set);
    ::close(fd);
  }
  return ::unlink(path.c_str()) == 0;
}

void recreate_segment(const std::string& path, const Capacities& capacities, mode_t mode) {
  const Location at = locate(path);
  const std::string& name = path;
  std::vector<std::string> holders;
  // This process writing the segment counts, whether or not it holds a claim
  // now: its handles would go on writing the old one.
  if (writer_descriptor(path) >= 0) holders.push_back(std::to_string(::getpid()) + " (this process)");
  try {
    auto old = MappedSegment::open_read_only(name);
    const std::uint32_t semaphores = old->capacities().thread_slots + old->capacities().process_records;
    for (std::uint32_t i = 0; i < semaphores; ++i) {
      ClaimHolder h = claim_holder(old->semaphore_set(), i);
      if (!h.held) continue;
      std::string who = h.pid == 0 ? "a process in another pid namespace" : std::to_string(h.pid);
      if (h.pid == ::getpid()) who += " (this process)";
      if (std::find(holders.begin(), holders.end(), who) == holders.end()) holders.push_back(who);
    }
  } catch (const SegmentError&) {
    // Missing or invalid: no writer can hold it (writers refuse invalid ones).
  }
  if (!holders.empty()) {
    std::string list;
    for (const auto& h : holders) list += (list.empty() ? "" : ", ") + h;
    throw SegmentError("cannot recreate segment \"" + name + "\": it is in use by live processes " +
                       list + "; stop them first");
  }
  SegmentDirectory dir(at.directory, /*create=*/true, mode);
  remove_segment(path);
  create_and_publish(path, dir, at.name, capacities, mode);
}

namespace {

// One operation on semaphore `n`, never waiting.
struct sembuf semaphore_op(std::uint32_t n, short op, short flags) {
  struct sembuf b {};
  b.sem_num = static_cast<unsigned short>(n);
  b.sem_op = op;
  b.sem_flg = static_cast<short>(flags | IPC_NOWAIT);
  return b;
}

}  // namespace

bool try_claim(int set, std::uint32_t n) {
  // Atomically: wait for zero (nobody owns it), then add 1, undone by the
  // kernel when this process dies.
  struct sembuf ops[2] = {semaphore_op(n, 0, 0), semaphore_op(n, 1, SEM_UNDO)};
  for (;;) {
    if (::semop(set, ops, 2) == 0) return true;
    if (errno == EAGAIN) return false;
    if (errno != EINTR) break;
  }
  throw SegmentError("semop claiming semaphore " + std::to_string(n) + " of set " + std::to_string(set) +
                     " failed: " + errno_text(errno));
}

void release_claim(int set, std::uint32_t n) {
  struct sembuf op = semaphore_op(n, -1, SEM_UNDO);
  while (::semop(set, &op, 1) != 0 && errno == EINTR) {
  }
}

std::optional<std::uint32_t> claims_held(int set, std::uint32_t count) {
  struct semid_ds ds {};
  SemArg stat{};
  stat.buf = &ds;
  if (::semctl(set, 0, IPC_STAT, stat) != 0 || ds.sem_nsems < count) return std::nullopt;
  std::vector<unsigned short> values(ds.sem_nsems);
  SemArg all{};
  all.array = values.data();
  if (::semctl(set, 0, GETALL, all) != 0) return std::nullopt;
  // A claim adds 1 with SEM_UNDO (try_claim): above 0 while its owner lives.
  return static_cast<std::uint32_t>(
      std::count_if(values.begin(), values.begin() + count, [](unsigned short v) { return v != 0; }));
}

ClaimHolder claim_holder(int set, std::uint32_t n) {
  int value = ::semctl(set, static_cast<int>(n), GETVAL);
  if (value < 0) return {false, 0, true};
  if (value == 0) return {};
  int pid = ::semctl(set, static_cast<int>(n), GETPID);
  return {true, pid > 0 ? pid : 0, false};
}

}  // namespace shmetrics::shm
