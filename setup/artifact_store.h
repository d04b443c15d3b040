// Content-addressed guest artifacts under <data dir>/storage/artifacts/<kind>/<key>/.
//
// An artifact is built in a staging directory and renamed into place only when complete and
// synced, so an interrupted `fcvm setup` leaves nothing a later run would trust: a key directory
// exists only if it is whole. current.json names the artifact set guests boot.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "base/unique_fd.h"

namespace fcvm::setup {

// The artifacts one guest boots from.
struct GuestArtifacts {
  std::filesystem::path kernel;     // ELF vmlinux
  std::filesystem::path initramfs;  // newc cpio with fc-agent as /init
  std::filesystem::path rootfs;     // ext4 image, never written by guests (each VM gets a copy)
  std::string kernelVersion;        // Debian package version, e.g. 6.1.192-2
};

class ArtifactStore {
 public:
  // Takes <root>.lock for the store's lifetime (one `fcvm setup` at a time) and removes staging
  // leftovers of interrupted runs.
  explicit ArtifactStore(std::filesystem::path root);

  std::filesystem::path path(std::string_view kind, std::string_view key) const;
  bool has(std::string_view kind, std::string_view key) const;

  // A directory to build one artifact in; removed unless commit() ran.
  class Staging {
   public:
    Staging(std::filesystem::path dir, std::filesystem::path final);
    ~Staging();
    Staging(Staging&&) = default;
    const std::filesystem::path& dir() const { return dir_; }
    // Syncs every file and renames the directory to its key.
    void commit();

   private:
    std::filesystem::path dir_;
    std::filesystem::path final_;
    bool committed_ = false;
  };
  Staging stage(std::string_view kind, std::string_view key) const;

  // The set recorded by the last complete `fcvm setup`, if any.
  std::optional<GuestArtifacts> current() const;
  void setCurrent(std::string_view kernelKey, std::string_view initramfsKey,
                  std::string_view rootfsKey, const std::string& kernelVersion) const;

 private:
  std::filesystem::path root_;
  UniqueFd lock_;
};

// The artifacts of `dataDir`'s last complete setup, without taking the store's lock (readers
// never block a running setup: they see the previous set until it is replaced).
std::optional<GuestArtifacts> currentArtifacts(const std::filesystem::path& dataDir);

}  // namespace fcvm::setup
