// Creating, opening and mapping a segment file, and the semaphores that
// prove ownership. Bytes and syscalls only: no metric semantics here.
#pragma once

#include <shmetrics/shm/layout.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>

namespace shmetrics::shm {

// A segment could not be created, opened or trusted. what() is one line a
// person can act on. missing() tells "no segment of that name" apart.
class SegmentError : public std::runtime_error {
 public:
  SegmentError(const std::string& message, bool missing = false)
      : std::runtime_error(message), missing_(missing) {}
  bool missing() const noexcept { return missing_; }

 private:
  bool missing_;
};

// "<instance>.<role>"; throws std::invalid_argument when either part is
// not 1-64 characters of [A-Za-z0-9_-].
std::string segment_name(std::string_view instance, std::string_view role);

// "" when `name` can name a segment (1-255 characters of [A-Za-z0-9._-], not
// starting with '.'), else a message saying why not.
std::string check_segment_name(std::string_view name);

// Where segments live. /dev/shm is writable by every user, so a predictable
// file name there could be squatted; segments live in a directory only their
// user can create files in: $SHMETRICS_SEGMENT_DIR when set (an absolute
// path, e.g. a systemd RuntimeDirectory), else /dev/shm/shmetrics-<euid>,
// which writers create (mode 0700; 0710 for segments a group may read).
// Before use a directory is checked: a real directory (not a symlink), not
// writable by group or others, owned by the user or root; one named
// shmetrics-<N> must belong to uid N.
std::string default_segment_directory();

// Creates segment directory `directory` when missing, as a writer of
// segments of mode `segment_mode` would, and checks it as above. Throws
// SegmentError naming what is wrong.
void prepare_segment_directory(const std::string& directory, mode_t segment_mode);

// "<directory>/<name>", after checking both (an absolute directory, a valid
// name); an empty directory is the default one. A `name` holding a '/' must
// be an absolute path and is taken as it is (its file name checked), whatever
// `directory` says. Throws std::invalid_argument.
std::string segment_path(std::string_view directory, std::string_view name);

// Renders capacities as "{thread_slots=64, process_records=64, ...}" for messages.
std::string describe(const Capacities& capacities);

// Checks a copy of a header against the file it came from: magic, layout
// version, capacities within limits, recorded offsets equal to the computed
// geometry, and the file large enough. Returns "" and fills `geometry` when
// trustworthy, else one line naming what is wrong (both sides where there are two).
std::string check_header(const Header& header, std::uint64_t file_bytes, Geometry& geometry);

// A mapping of one segment file and the descriptor it came from. Not
// copyable. A process that writes a segment keeps its descriptor for the life
// of the process, and readers inside it map through that descriptor (one
// descriptor per written file, however often it is opened).
//
// Thread-safe: its accessors may be called from any thread; the mapping it
// gives is shared memory, accessed under the protocol of layout.h.
class MappedSegment {
 public:
  MappedSegment(const MappedSegment&) = delete;
  MappedSegment& operator=(const MappedSegment&) = delete;
  ~MappedSegment();

  // The segment file's path, as opened.
  const std::string& path() const { return path_; }
  int fd() const { return fd_; }
  std::uint8_t* base() const { return base_; }
  std::uint64_t size_bytes() const { return size_bytes_; }
  ino_t inode() const { return inode_; }
  uid_t owner_uid() const { return owner_uid_; }
  const Geometry& geometry() const { return geometry_; }
  const Capacities& capacities() const { return capacities_; }
  Header* header() const { return reinterpret_cast<Header*>(base_); }
  // The System V semaphore set of the slots' and records' ownership, read
  // from the header once and checked (owner, size) when mapped.
  int semaphore_set() const { return semaphore_set_; }
  // "" while that set is still there, the owner's and of its size, else why
  // not: a set removed under a live segment (ipcrm, systemd-logind's
  // RemoveIPC) leaves liveness unknowable. One semctl.
  std::string check_semaphores() const;

  // Opens the segment file `path` (absolute; in a checked segment directory,
  // created when missing) for writing, creating it with `capacities` and
  // file mode `mode` when it does not exist. Creation is complete before the
  // name appears (O_TMPFILE, then linkat), so of several concurrent creators
  // exactly one publishes and the others open it. The segment's semaphore set
  // is created with it (same mode and group). Refused: an existing segment
  // of another layout version or capacities, one owned by another user or
  // writable by group or others, anything but a regular file, a semaphore
  // set that is gone or not the segment owner's. Throws SegmentError.
  static std::unique_ptr<MappedSegment> open_or_create(const std::string& path,
                                                        const Capacities& capacities,
                                                        mode_t mode);

  // Maps an existing segment read-only, trusting nothing but the header check.
  // The exporter's view; throws SegmentError (missing() when absent). Never
  // blocks on a FIFO or follows a symlink planted under the name; its
  // directory is checked as default_segment_directory() says, and the file
  // must belong to the directory's owner (or the directory to root).
  static std::unique_ptr<MappedSegment> open_read_only(const std::string& path);

 private:
  struct Region;  // the Boost.Interprocess mapped_region behind base_
  MappedSegment();
  static std::unique_ptr<MappedSegment> map(const std::string& path, int fd, bool owns_fd,
                                            bool writable);
  std::unique_ptr<Region> region_;
  std::string path_;
  int fd_ = -1;
  bool owns_fd_ = false;
  int semaphore_set_ = -1;
  std::uint64_t semaphore_token_ = 0;
  std::uint8_t* base_ = nullptr;
  std::uint64_t size_bytes_ = 0;
  dev_t device_ = 0;
  ino_t inode_ = 0;
  uid_t owner_uid_ = 0;
  Geometry geometry_{};
  Capacities capacities_{};
};

// Around fork(): the process-wide table of descriptors stays consistent in the
// child. libshmetrics calls these from its pthread_atfork handlers.
void lock_descriptor_table();
void unlock_descriptor_table();

// The inode behind `path` now, or 0 when there is none. Lets a reader
// notice a segment removed and created anew under the same name. When 0,
// errno is stat(2)'s (ENOENT: nothing at the path).
ino_t current_inode(const std::string& path);

// Removes the segment file `path` and its semaphore set (when the set is the file owner's
// and the right size); true if the file existed.
bool remove_segment(const std::string& path);

// Replaces the segment file `path` with a new, empty one (a counter reset): refuses,
// naming their pids, while any slot or record of the old segment is held by a
// live process — this one included. A process that claims between the check
// and the replacement writes into the old, unnamed segment; stop writers
// first. Throws SegmentError.
void recreate_segment(const std::string& path, const Capacities& capacities, mode_t mode);

// The ownership semaphores of layout.h ("Ownership"), numbered by
// Geometry::slot_semaphore / record_semaphore.
//
// Claims semaphore `n` of `set` for this process without waiting: true when
// this process now owns it, false when a live process (this one included)
// does. Throws SegmentError on other errors (the set removed, say).
bool try_claim(int set, std::uint32_t n);
// Hands back a claim this process holds.
void release_claim(int set, std::uint32_t n);

// Whether a live process owns semaphore `n`, and which: the pid of the last
// operation on it, as this pid namespace sees it (0 when the owner is in
// another one). `error` when the set cannot be read (it is then unknown).
struct ClaimHolder {
  bool held = false;
  pid_t pid = 0;
  bool error = false;
};
ClaimHolder claim_holder(int set, std::uint32_t n);
// How many of semaphores [0, count) of `set` a live process owns now, read
// in one semctl(GETALL); nullopt when the set cannot be read or has fewer.
std::optional<std::uint32_t> claims_held(int set, std::uint32_t count);


}  // namespace shmetrics::shm
