// The Debian mirror this host's apt is configured with, so guest images come from the same place
// (and nothing else is contacted).
#pragma once

#include <filesystem>
#include <string>

namespace fcvm::setup {

// The first "deb" source for `suite` in /etc/apt/sources.list and sources.list.d (one-line and
// deb822 formats). Throws fcvm::Error when none is configured.
std::string hostDebianMirror(const std::string& suite,
                             const std::filesystem::path& aptDir = "/etc/apt");

}  // namespace fcvm::setup
