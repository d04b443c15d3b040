#include "base/rate_limit.h"

#include <algorithm>

namespace fcvm {

RateLimit::RateLimit(double burst, double perSecond)
    : burst_(burst), perSecond_(perSecond), tokens_(burst), last_(Clock::now()) {}

bool RateLimit::allow(Clock::time_point now) {
  if (now > last_) {
    std::chrono::duration<double> elapsed = now - last_;
    tokens_ = std::min(burst_, tokens_ + elapsed.count() * perSecond_);
    last_ = now;
  }
  if (tokens_ >= 1) {
    tokens_ -= 1;
    return true;
  }
  ++refused_;
  return false;
}

uint64_t RateLimit::takeRefused() {
  uint64_t n = refused_;
  refused_ = 0;
  return n;
}

}  // namespace fcvm
