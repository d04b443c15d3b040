#include "setup/vmlinux.h"

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/subprocess.h"

namespace fcvm::setup {
namespace {

struct Compression {
  std::string magic;
  const char* tool;
};

const std::vector<Compression>& compressions() {
  static const std::vector<Compression> kAll = {
      {std::string("\x02\x21\x4c\x18", 4), "lz4"},
      {std::string("\x1f\x8b\x08", 3), "gzip"},
      {std::string("\xfd\x37\x7a\x58\x5a\x00", 6), "xz"},
      {std::string("\x28\xb5\x2f\xfd", 4), "zstd"},
  };
  return kAll;
}

bool isElf(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in && std::string(magic, 4) ==
                   "\x7f"
                   "ELF";
}

}  // namespace

void extractVmlinux(const std::filesystem::path& vmlinuz, const std::filesystem::path& vmlinux) {
  std::ifstream in(vmlinuz, std::ios::binary);
  if (!in) throw SysError(errno, "open " + vmlinuz.string());
  std::string image((std::istreambuf_iterator<char>(in)), {});
  for (const auto& c : compressions()) {
    for (size_t at = image.find(c.magic); at != std::string::npos;
         at = image.find(c.magic, at + 1)) {
      // The payload is followed by the rest of the bzImage, which the decompressors report as
      // trailing garbage after a complete stream: judge by the output, not the exit code.
      auto script = fmt::format("tail -c +{} '{}' | {} -dc > '{}' 2>/dev/null; true", at + 1,
                                vmlinuz.string(), c.tool, vmlinux.string());
      runCommand({"sh", "-c", script}, CommandOptions::withTimeout(std::chrono::seconds(120)));
      std::error_code ec;
      if (isElf(vmlinux) && std::filesystem::file_size(vmlinux, ec) > (1u << 20)) return;
    }
  }
  std::filesystem::remove(vmlinux);
  throw Error(fmt::format("{}: no compressed kernel payload found (tried lz4, gzip, xz, zstd)",
                          vmlinuz.string()));
}

}  // namespace fcvm::setup
