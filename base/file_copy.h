// Copying file contents between open fds the cheapest way the file systems allow: a reflink where
// they can share blocks, and for sparse files (guest memory) only the data, keeping the holes.
#pragma once

#include <cstdint>
#include <string>

namespace fcvm {

// Makes `to` (empty, opened for writing) a copy of `from`: a reflink (FICLONE) when the file
// system can share the blocks, else a full copy. True if it reflinked. `what` names the copy in
// errors.
bool cloneOrCopy(int from, int to, const std::string& what);

// Copies the data extents of `from` into `to` (empty, opened for writing) at the same offsets and
// gives `to` the same size, so holes stay holes. Works across file systems (tmpfs to disk).
// Returns the bytes of data copied.
uint64_t copySparse(int from, int to, const std::string& what);

}  // namespace fcvm
