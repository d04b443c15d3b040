// Loading the kernel modules the initramfs carries (virtio transports, virtio_blk,
// virtio_console, ext4 dependencies, overlay, fuse...), in the order `fcvm setup` listed them.
#pragma once

#include <string>
#include <vector>

namespace fcvm::agent {

// The module list: one path per line, relative to `baseDir` unless absolute; blank lines and
// lines starting with '#' are skipped. Throws kj::Exception if the file cannot be read.
std::vector<std::string> readModuleList(const std::string& listPath, const std::string& baseDir);

// finit_module() of each listed file, in order. A module already loaded (EEXIST) is fine; any
// other failure is reported on stderr and the rest still load. Returns the number of failures.
int loadModules(const std::string& listPath, const std::string& baseDir);

}  // namespace fcvm::agent
