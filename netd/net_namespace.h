// Named network namespaces, as `ip netns` keeps them: /run/netns/<name> is a bind mount of the
// namespace, so it lives on without a process in it until it is deleted.
#pragma once

#include <exception>
#include <functional>
#include <string>
#include <thread>

#include "base/unique_fd.h"

namespace fcvm::netd {

constexpr char kNetnsDir[] = "/run/netns";

// Creates the namespace `name`; throws if it exists.
void createNetns(const std::string& name);
// Unmounts and removes it (the kernel frees it once nothing else holds it); idempotent.
void deleteNetns(const std::string& name);
bool netnsExists(const std::string& name);
UniqueFd openNetns(const std::string& name);

// Runs `work` on a thread of its own that has entered the namespace `netnsFd`, so this thread's
// namespace never changes; rethrows what `work` throws.
void runInNetns(int netnsFd, const std::function<void()>& work);

// A TAP device `name` in the calling thread's namespace, for a VMM: not persistent (it goes when
// the last fd does), without packet info, with virtio-net headers.
UniqueFd openTap(const std::string& name);

// Writes a sysctl under /proc/sys (in the calling thread's network namespace for net.*).
void writeSysctl(const std::string& path, const std::string& value);

}  // namespace fcvm::netd
