// A syscall allowlist for a confined process (libseccomp). Everything not allowed fails with
// EPERM rather than killing the process: a call the list forgot surfaces as an ordinary error in
// the process's log, and still never happens.
#pragma once

#include <seccomp.h>

#include <initializer_list>
#include <memory>
#include <string_view>

namespace fcvm {

class SeccompFilter {
 public:
  SeccompFilter();  // denies everything; throws fcvm::Error if libseccomp cannot start
  ~SeccompFilter();
  SeccompFilter(const SeccompFilter&) = delete;
  SeccompFilter& operator=(const SeccompFilter&) = delete;

  // Allows each named call (names unknown on this architecture are skipped).
  SeccompFilter& allow(std::initializer_list<const char*> names);
  // Allows `name` only when its arguments match every comparison.
  SeccompFilter& allowIf(const char* name, std::initializer_list<scmp_arg_cmp> arguments);
  // Makes `name` fail with `error` (e.g. ENOSYS for clone3, so that the C library falls back to
  // clone, whose flags a rule can inspect).
  SeccompFilter& failWith(const char* name, int error);

  // Sets no_new_privs and applies the filter to the calling process, all threads, for good.
  void load();

 private:
  struct Release {
    void operator()(void* ctx) const;
  };
  std::unique_ptr<void, Release> ctx_;
};

}  // namespace fcvm
