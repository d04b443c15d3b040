#include "base/seccomp_filter.h"

#include <errno.h>

#include <vector>

#include "base/error.h"

namespace fcvm {
namespace {

// -1 for a name this architecture does not have.
int syscallNumber(const char* name) {
  int nr = seccomp_syscall_resolve_name(name);
  return nr == __NR_SCMP_ERROR ? -1 : nr;
}

}  // namespace

void SeccompFilter::Release::operator()(void* ctx) const { seccomp_release(ctx); }

SeccompFilter::SeccompFilter() : ctx_(seccomp_init(SCMP_ACT_ERRNO(EPERM))) {
  if (!ctx_) throw Error("seccomp: cannot create a filter");
}

SeccompFilter::~SeccompFilter() = default;

SeccompFilter& SeccompFilter::allow(std::initializer_list<const char*> names) {
  for (const char* name : names) {
    int nr = syscallNumber(name);
    if (nr < 0) continue;
    int rc = seccomp_rule_add(ctx_.get(), SCMP_ACT_ALLOW, nr, 0);
    if (rc < 0) throw SysError(-rc, fmt::format("seccomp: allow {}", name));
  }
  return *this;
}

SeccompFilter& SeccompFilter::allowIf(const char* name,
                                      std::initializer_list<scmp_arg_cmp> arguments) {
  int nr = syscallNumber(name);
  if (nr < 0) return *this;
  std::vector<scmp_arg_cmp> args(arguments);
  int rc = seccomp_rule_add_array(ctx_.get(), SCMP_ACT_ALLOW, nr,
                                  static_cast<unsigned>(args.size()), args.data());
  if (rc < 0) throw SysError(-rc, fmt::format("seccomp: allow {} with arguments", name));
  return *this;
}

SeccompFilter& SeccompFilter::failWith(const char* name, int error) {
  int nr = syscallNumber(name);
  if (nr < 0) return *this;
  int rc = seccomp_rule_add(ctx_.get(), SCMP_ACT_ERRNO(static_cast<uint32_t>(error)), nr, 0);
  if (rc < 0) throw SysError(-rc, fmt::format("seccomp: {} fails", name));
  return *this;
}

void SeccompFilter::load() {
  // libseccomp sets no_new_privs itself (SCMP_FLTATR_CTL_NNP defaults to on). Every thread gets
  // the filter at once (TSYNC), or none does and this fails: no thread stays unconfined.
  int rc = seccomp_attr_set(ctx_.get(), SCMP_FLTATR_CTL_TSYNC, 1);
  if (rc < 0) throw SysError(-rc, "seccomp: synchronize the filter across threads");
  rc = seccomp_load(ctx_.get());
  if (rc < 0) throw SysError(-rc, "seccomp: load the filter");
}

}  // namespace fcvm
