// The format number on every file the supervisor keeps (VM records, snapshot records). A file
// written by a newer fcvm (after a downgrade) is refused, never ignored: ignoring it would let
// this fcvm reuse its names or clean up its files as leftovers.
#pragma once

#include <filesystem>

#include "base/error.h"

namespace fcvm::supervisor {

class NewerFormatError : public Error {
 public:
  using Error::Error;
};

// Throws NewerFormatError if `found` is newer than `known`, Error if it is not a format at all.
void checkRecordFormat(int found, int known, const std::filesystem::path& file);

}  // namespace fcvm::supervisor
