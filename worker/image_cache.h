// Container images from the host, prepared once per image digest as a read-only disk that the
// guest's podman uses as an additional image store: a second VM with the same image does no
// export or unpack work before podman starts the container.
//
// Sources, each read with the rights of the user who asked for the VM, never the worker's:
//  - an oci-archive:PATH / docker-archive:PATH, which the client opened and handed over as an fd;
//    its entry is keyed by the sha256 of the bytes loaded, so users with the same archive share it;
//  - an image in the owner's own podman storage (root's for root, rootless storage for any other
//    user), read by podman running as the owner; another user's entry is keyed by owner too, since
//    the content of a rootless store is whatever its owner made it.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/spawn.h"
#include "ipc/prepared_image.h"

namespace fcvm::worker {

struct ImageRequest {
  std::string image;   // as the user named it: localhost/app:1, oci-archive:PATH, ...
  int archiveFd = -1;  // for an archive image: the file, opened by the client
  Credentials owner;   // podman storage is read as this user
  // The client's storage settings for podman (HOME, XDG_*, CONTAINERS_*): ipc::podmanEnvNames.
  std::vector<std::string> podmanEnv;
};

using ipc::PreparedImage;

class ImageCache {
 public:
  explicit ImageCache(std::filesystem::path dir);  // <data dir>/images

  // Takes a per-entry lock, so concurrent VMs with the same image prepare it once. Throws
  // fcvm::Error naming the image when it does not exist, cannot be read by its owner, or cannot
  // be exported.
  PreparedImage prepare(const ImageRequest& request, const std::string& logFile);

 private:
  std::filesystem::path dir_;
};

}  // namespace fcvm::worker
