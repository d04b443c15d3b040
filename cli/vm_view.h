// How VMs, snapshots, serve processes and disk usage are shown to users: the tables of `ls`,
// `snapshot ls` and `system df` and their JSON (`--json`, `inspect`).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "ipc/supervisor.capnp.h"

namespace fcvm::cli {

nlohmann::json vmToJson(rpc::VmInfo::Reader vm);
// inspect's "memory" of a running VM: the guest's figures are null when it did not answer.
nlohmann::json vmMemoryToJson(rpc::VmMemory::Reader memory);
std::string vmTable(capnp::List<rpc::VmInfo>::Reader vms);
nlohmann::json snapshotToJson(rpc::SnapshotInfo::Reader snapshot);
std::string snapshotTable(capnp::List<rpc::SnapshotInfo>::Reader snapshots);
nlohmann::json serveToJson(rpc::ServeInfo::Reader serve);
std::string serveTable(capnp::List<rpc::ServeInfo>::Reader serves);
nlohmann::json diskUsageToJson(capnp::List<rpc::DiskUsage>::Reader usage);
std::string diskUsageTable(capnp::List<rpc::DiskUsage>::Reader usage);
nlohmann::json storageItemsToJson(capnp::List<rpc::StorageItem>::Reader items);
std::string storageItemsTable(capnp::List<rpc::StorageItem>::Reader items);
nlohmann::json pruneReportToJson(rpc::PruneReport::Reader report);
std::string pruneReportText(rpc::PruneReport::Reader report);
std::string formatTimestamp(int64_t unixNs);  // RFC 3339, UTC
std::string formatBytes(uint64_t bytes);      // 0 B, 512 KiB, 1.5 GiB

}  // namespace fcvm::cli
