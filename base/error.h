// Errors that reach the user as one clear line: what failed, on what, and why.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace fcvm {

// An operation that failed for a reason the user can act on. The message is the whole line the
// user sees, e.g. "open /var/lib/fcvm/vms/x.json: Permission denied".
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// A failed system call: keeps errno so callers can branch on it (ENOENT, EEXIST, ...).
class SysError : public Error {
 public:
  SysError(int err, const std::string& context);
  int code() const { return code_; }

 private:
  int code_;
};

// errno text for err, thread-safe.
std::string errnoText(int err);

// Throws SysError(errno, context) when ret is -1; returns ret otherwise. Retries on EINTR when
// called through retryEintr below.
template <typename... Args>
long checkSys(long ret, fmt::format_string<Args...> context, Args&&... args) {
  if (ret == -1) throw SysError(errno, fmt::format(context, std::forward<Args>(args)...));
  return ret;
}

template <typename F>
auto retryEintr(F&& f) {
  for (;;) {
    auto r = f();
    if (!(r == -1 && errno == EINTR)) return r;
  }
}

}  // namespace fcvm
