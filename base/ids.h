// Names and times the supervisor gives the things it makes: random ids, wall-clock stamps.
#pragma once

#include <cstdint>
#include <string>

namespace fcvm {

// 16 lowercase hex digits from the kernel's random pool: a VM's, snapshot's or serve's id.
std::string randomHexId();
// CLOCK_REALTIME in nanoseconds since the epoch, as records store times.
int64_t realtimeNs();

}  // namespace fcvm
