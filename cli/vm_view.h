// How VMs, snapshots and serve processes are shown to users: the tables of `ls` and `snapshot ls`
// and their JSON (`--json`, `inspect`).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "ipc/supervisor.capnp.h"

namespace fcvm::cli {

nlohmann::json vmToJson(rpc::VmInfo::Reader vm);
std::string vmTable(capnp::List<rpc::VmInfo>::Reader vms);
nlohmann::json snapshotToJson(rpc::SnapshotInfo::Reader snapshot);
std::string snapshotTable(capnp::List<rpc::SnapshotInfo>::Reader snapshots);
nlohmann::json serveToJson(rpc::ServeInfo::Reader serve);
std::string serveTable(capnp::List<rpc::ServeInfo>::Reader serves);
std::string formatTimestamp(int64_t unixNs);  // RFC 3339, UTC

}  // namespace fcvm::cli
