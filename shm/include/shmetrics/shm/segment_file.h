// Creating, opening and mapping a segment file, and the fcntl byte locks that
// prove ownership. Bytes and syscalls only: no metric semantics here.
#pragma once

#include <shmetrics/shm/layout.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
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

// "shmetrics.<instance>.<role>"; throws std::invalid_argument when either part is
// not 1-64 characters of [A-Za-z0-9_-].
std::string segment_name(std::string_view instance, std::string_view role);

// "" when `name` can name a segment (1-255 characters of [A-Za-z0-9._-], not
// starting with '.'), else a message saying why not.
std::string check_segment_name(std::string_view name);

// Renders capacities as "{thread_slots=64, process_records=64, ...}" for messages.
std::string describe(const Capacities& capacities);

// Checks a copy of a header against the file it came from: magic, layout
// version, capacities within limits, recorded offsets equal to the computed
// geometry, and the file large enough. Returns "" and fills `geometry` when
// trustworthy, else one line naming what is wrong (both sides where there are two).
std::string check_header(const Header& header, std::uint64_t file_bytes, Geometry& geometry);

// A mapping of one segment file and the descriptor it came from. Not
// copyable. fcntl locks belong to the process and closing *any* descriptor of
// a file drops them all, so a descriptor of a file this process writes is never
// closed (it is kept for the life of the process), and readers inside a
// writing process map through the writer's descriptor.
//
// Thread-safe: its accessors may be called from any thread; the mapping it
// gives is shared memory, accessed under the protocol of layout.h.
class MappedSegment {
 public:
  MappedSegment(const MappedSegment&) = delete;
  MappedSegment& operator=(const MappedSegment&) = delete;
  ~MappedSegment();

  const std::string& name() const { return name_; }
  int fd() const { return fd_; }
  std::uint8_t* base() const { return base_; }
  std::uint64_t size_bytes() const { return size_bytes_; }
  ino_t inode() const { return inode_; }
  uid_t owner_uid() const { return owner_uid_; }
  const Geometry& geometry() const { return geometry_; }
  const Capacities& capacities() const { return capacities_; }
  Header* header() const { return reinterpret_cast<Header*>(base_); }
  // True when this read-only mapping goes through the descriptor of a writer
  // in this process: that process's own records are then live although
  // F_GETLK cannot show its own locks.
  bool through_writer_descriptor() const { return through_writer_; }

  // Opens the segment `name` for writing, creating it with `capacities` and
  // file mode `mode` when it does not exist. Creation is complete before the
  // name appears (O_TMPFILE, then linkat), so of several concurrent creators
  // exactly one publishes and the others open it. Refused: an existing segment
  // of another layout version or capacities, one owned by another user or
  // writable by group or others, anything but a regular file. Throws
  // SegmentError.
  static std::unique_ptr<MappedSegment> open_or_create(const std::string& name,
                                                        const Capacities& capacities,
                                                        mode_t mode);

  // Maps an existing segment read-only, trusting nothing but the header check.
  // The exporter's view; throws SegmentError (missing() when absent). Never
  // blocks on a FIFO or follows a symlink planted under the name.
  static std::unique_ptr<MappedSegment> open_read_only(const std::string& name);

 private:
  struct Region;  // the Boost.Interprocess mapped_region behind base_
  MappedSegment();
  static std::unique_ptr<MappedSegment> map(const std::string& name, int fd, bool owns_fd,
                                            bool writable);
  std::unique_ptr<Region> region_;
  std::string name_;
  int fd_ = -1;
  bool owns_fd_ = false;
  bool through_writer_ = false;
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

// The inode behind /dev/shm/<name> now, or 0 when there is none. Lets a reader
// notice a segment removed and created anew under the same name.
ino_t current_inode(const std::string& name);

// Removes /dev/shm/<name>; true if it existed.
bool remove_segment(const std::string& name);

// Replaces the segment `name` with a new, empty one (a counter reset): refuses,
// naming their pids, while any slot or record of the old segment is held by a
// live process — this one included. A process that claims between the check
// and the replacement writes into the old, unnamed segment; stop writers
// first. Throws SegmentError.
void recreate_segment(const std::string& name, const Capacities& capacities, mode_t mode);

// fcntl write lock on one byte of `fd`, without waiting. True when this process
// now holds it; false when another live process does. Throws on other errors.
bool try_lock_byte(int fd, std::uint64_t byte);
void unlock_byte(int fd, std::uint64_t byte);

// Who holds a write lock on `byte`, by F_GETLK. A process never sees its own
// locks this way. pid is 0 when the holder is in another pid namespace.
struct LockHolder {
  bool held = false;
  pid_t pid = 0;
};
LockHolder lock_holder(int fd, std::uint64_t byte);

// What a wait for one of the segment's robust, process-shared mutexes gave.
enum class LockResult {
  kLocked,     // held
  kRecovered,  // held; its previous holder died holding it (made consistent)
  kTimedOut,   // not held: `timeout` passed (or the mutex is unrecoverable)
};

// Takes a robust mutex of the segment, waiting at most `timeout`. Every wait
// on a segment mutex goes through here, so a holder that died (kRecovered)
// or stopped (kTimedOut) is handled the same way everywhere; the caller
// decides what a dead holder left behind.
LockResult lock_robust(pthread_mutex_t& mutex, std::chrono::milliseconds timeout);

// Takes the segment's registration lock, waiting at most `timeout`.
// Returns false on timeout. A lock whose holder died is recovered: the
// registration protocol publishes by a count written last, so whatever the
// dead holder left half-done is invisible and simply overwritten.
bool lock_registration(Header& header, std::chrono::milliseconds timeout);
void unlock_registration(Header& header);

// Tells ThreadSanitizer (when built with it) that `mutex`, a robust mutex whose
// lock returned EOWNERDEAD, is now held by the calling thread.
void note_recovered_lock(pthread_mutex_t* mutex);

}  // namespace shmetrics::shm
