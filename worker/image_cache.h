// Container images from the host, prepared once per image digest as a read-only disk that the
// guest's podman uses as an additional image store: a second VM with the same image does no
// export or unpack work before podman starts the container.
//
// Sources: an image in host podman storage (e.g. localhost/busybox:latest) or an
// oci-archive:PATH / docker-archive:PATH.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace fcvm::worker {

struct PreparedImage {
  std::string digest;          // podman's image id, or the archive's sha256
  std::string reference;       // how the guest names it (an archive's image: by its id)
  std::filesystem::path disk;  // ext4 image holding a podman storage root with the image
  // The image's own HEALTHCHECK as a command to run in the container; empty if it has none.
  std::vector<std::string> healthcheck;
  bool built = false;
};

class ImageCache {
 public:
  explicit ImageCache(std::filesystem::path dir);  // <data dir>/images

  // Takes a per-digest lock, so concurrent VMs with the same image prepare it once. Throws
  // fcvm::Error naming the image when it does not exist or cannot be exported.
  PreparedImage prepare(const std::string& image, const std::string& logFile);

 private:
  std::filesystem::path dir_;
};

}  // namespace fcvm::worker
