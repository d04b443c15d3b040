// A snapshot's memory image held resident in a sealed memfd: its data extents copied from the
// image file (holes stay holes), then sealed against writing, growing and shrinking. Every clone's
// QEMU maps it private from an fd of its own, so all clones share its pages until they write, and
// nothing (a compromised QEMU included) can change the image or reach it by path.
#pragma once

#include <string>

#include "base/unique_fd.h"

namespace fcvm::uffd {

struct SealedImage {
  UniqueFd memfd;
  uint64_t size = 0;       // the image's size (guest RAM)
  uint64_t dataBytes = 0;  // what is resident: its data
};

// Reads the image behind `file` (open for reading) into a new sealed memfd named after `name`.
SealedImage loadSealedImage(int file, const std::string& name);

}  // namespace fcvm::uffd
