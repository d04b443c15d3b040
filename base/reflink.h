// Whether a directory's file system can clone files (FICLONE), which VM disks rely on.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace fcvm {

// nullopt when files in `dir` can be reflinked; otherwise why not, e.g. "Operation not supported".
std::optional<std::string> whyNoReflink(const std::filesystem::path& dir);

}  // namespace fcvm
