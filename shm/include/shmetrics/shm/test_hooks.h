// Named points where a test can park a process before killing it, to prove a
// death at that exact instruction leaves every other process unharmed. Off
// unless a test calls set_park_point(): then one relaxed load per point, and
// the points are all on slow paths (creation, registration, claims).
#pragma once

namespace shmetrics::shm {

// Parks this process at the point called `name`: it writes one byte to
// `report_fd`, then pauses until killed or, when `resume_fd` is given, until
// it reads one byte from `resume_fd` (and goes on). With kReportOnly it only
// writes the byte, every time the point is passed (a test counts them).
// nullptr disarms.
inline constexpr int kReportOnly = -2;
void set_park_point(const char* name, int report_fd, int resume_fd = -1);

// Called by the library at each named point.
void park_point(const char* name);

}  // namespace shmetrics::shm
