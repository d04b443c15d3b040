#include "supervisor/host_boot.h"

#include <fstream>

#include "base/error.h"

namespace fcvm::supervisor {

std::string currentBootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  if (!std::getline(in, id) || id.empty()) {
    throw Error("cannot read the host's boot id from /proc/sys/kernel/random/boot_id");
  }
  return id;
}

bool hostRestartedSince(const std::filesystem::path& stamp, const std::string& bootId) {
  std::string recorded;
  {
    std::ifstream in(stamp);
    std::getline(in, recorded);
  }
  if (recorded == bootId) return false;
  auto tmp = stamp;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << bootId << "\n";
    if (!out.flush()) throw Error("cannot write " + tmp.string());
  }
  std::error_code ec;
  std::filesystem::rename(tmp, stamp, ec);
  if (ec) throw Error(fmt::format("cannot write {}: {}", stamp.string(), ec.message()));
  return !recorded.empty();
}

}  // namespace fcvm::supervisor
