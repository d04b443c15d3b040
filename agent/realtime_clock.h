// Setting the guest's wall clock (at start from the run plan, and after a snapshot restore).
#pragma once

#include <cstdint>

namespace fcvm::agent {

class RealtimeClock {
 public:
  virtual ~RealtimeClock() = default;
  virtual void set(int64_t realtimeNs) = 0;  // throws kj::Exception on failure
};

// clock_settime(CLOCK_REALTIME); needs CAP_SYS_TIME (the guest's PID 1 has it).
class SystemRealtimeClock : public RealtimeClock {
 public:
  void set(int64_t realtimeNs) override;
};

}  // namespace fcvm::agent
