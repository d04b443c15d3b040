// A VM's container image as its worker prepared it (worker/image_cache.h), written once per VM as
// <vm dir>/image.json by the preparing step (`fcvm-worker --prepare-image`), before the supervisor
// decides how the VM starts: its digest is part of a start-up snapshot's key, and the worker that
// boots (or restores) the VM reads it back instead of preparing the image again.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace fcvm::ipc {

struct PreparedImage {
  std::string digest;          // podman's image id, or the archive's sha256
  std::string reference;       // how the guest names it (an archive's image: by its id)
  std::filesystem::path disk;  // ext4 image holding a podman storage root with the image
  // The image's own HEALTHCHECK as a command to run in the container; empty if it has none.
  std::vector<std::string> healthcheck;
  bool built = false;  // prepared now, not found in the cache
};

std::string formatPreparedImage(const PreparedImage& image);
// Checks every field; throws fcvm::Error naming `file` for text that does not check out.
PreparedImage parsePreparedImage(std::string_view text, const std::filesystem::path& file);

void writePreparedImage(const PreparedImage& image, const std::filesystem::path& file);
PreparedImage readPreparedImage(const std::filesystem::path& file);

}  // namespace fcvm::ipc
