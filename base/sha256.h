// SHA-256 digests (OpenSSL), as lowercase hex: content addresses for artifacts and caches.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace fcvm {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  Sha256& update(std::string_view data);
  // Hashes the file's bytes; throws fcvm::SysError if it cannot be read.
  Sha256& updateFile(const std::filesystem::path& path);
  std::string hex();  // finishes the digest

 private:
  void* ctx_;  // EVP_MD_CTX, kept out of this header
};

std::string sha256Hex(std::string_view data);
std::string sha256File(const std::filesystem::path& path);

}  // namespace fcvm
