#include "ipc/activated_socket.h"

#include <sys/socket.h>
#include <systemd/sd-daemon.h>

#include <vector>

#include "base/error.h"

namespace fcvm::ipc {

std::optional<UniqueFd> takeActivatedSocket(const std::filesystem::path& expected) {
  int n = sd_listen_fds(/*unset_environment=*/1);
  if (n < 0) throw SysError(-n, "read the sockets systemd passed (LISTEN_FDS)");
  if (n == 0) return std::nullopt;
  // Ours from here on, whatever is wrong with them.
  std::vector<UniqueFd> passed;
  passed.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) passed.emplace_back(SD_LISTEN_FDS_START + i);
  if (n != 1) {
    throw Error(fmt::format("systemd passed {} sockets; fcvm-supervisor listens on one ({})", n,
                            expected.string()));
  }
  int r = sd_is_socket_unix(passed[0].get(), SOCK_STREAM, /*listening=*/1, expected.c_str(), 0);
  if (r < 0) throw SysError(-r, "check the socket systemd passed");
  if (r == 0) {
    throw Error(fmt::format(
        "the socket systemd passed is not a listening Unix stream socket at {}, where fcvm's "
        "clients look (see ListenStream= in fcvm-supervisor.socket)",
        expected.string()));
  }
  return std::move(passed[0]);
}

}  // namespace fcvm::ipc
