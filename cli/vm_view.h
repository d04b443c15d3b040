// How VMs are shown to users: the `ls` table and the JSON of `ls --json` and `inspect`.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "ipc/supervisor.capnp.h"

namespace fcvm::cli {

nlohmann::json vmToJson(rpc::VmInfo::Reader vm);
std::string vmTable(capnp::List<rpc::VmInfo>::Reader vms);
std::string formatTimestamp(int64_t unixNs);  // RFC 3339, UTC

}  // namespace fcvm::cli
