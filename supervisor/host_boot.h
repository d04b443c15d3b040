// Whether the host restarted since the supervisor last started: the kernel's boot id, kept in a
// stamp file in the data dir (which a reboot keeps), against the running kernel's.
#pragma once

#include <filesystem>
#include <string>

namespace fcvm::supervisor {

// The running kernel's boot id (/proc/sys/kernel/random/boot_id), one line.
std::string currentBootId();

// True if `stamp` names another boot than `bootId`; then, and when it is missing, writes
// `bootId` there (atomically). A missing stamp is a first start, not a restart.
bool hostRestartedSince(const std::filesystem::path& stamp, const std::string& bootId);

}  // namespace fcvm::supervisor
