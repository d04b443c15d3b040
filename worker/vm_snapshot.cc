#include "worker/vm_snapshot.h"

#include "base/error.h"
#include "ipc/rpc_error.h"

namespace fcvm::worker {
namespace {

constexpr char kStateFdName[] = "fcvm-state";

// Guest RAM stays in its memory file (the snapshot takes a copy of that file); only device state
// goes through the migration stream. Events make QEMU report the migration's end.
kj::Promise<void> setCapabilities(QmpClient& qmp) {
  nlohmann::json caps = nlohmann::json::array({{{"capability", "x-ignore-shared"}, {"state", true}},
                                               {{"capability", "events"}, {"state", true}}});
  return qmp.execute("migrate-set-capabilities", {{"capabilities", caps}}).ignoreResult();
}

bool migrationEnded(const nlohmann::json& data) {
  auto status = data.value("status", std::string());
  return status == "completed" || status == "failed" || status == "cancelled";
}

kj::Promise<void> migrate(QmpClient& qmp, int stateFd, const char* command, const char* uriKey) {
  return setCapabilities(qmp)
      .then([&qmp, stateFd] {
        return qmp.execute("getfd", {{"fdname", kStateFdName}}, stateFd).ignoreResult();
      })
      .then([&qmp, command, uriKey] {
        auto ended = qmp.waitForEvent("MIGRATION", migrationEnded);
        return qmp.execute(command, {{uriKey, std::string("fd:") + kStateFdName}})
            .then([ended = kj::mv(ended)](nlohmann::json) mutable { return kj::mv(ended); });
      })
      .then([](nlohmann::json data) {
        auto status = data.value("status", std::string());
        if (status != "completed") {
          ipc::throwRpcError(kj::str("QEMU could not migrate the device state: ", status.c_str()));
        }
      });
}

}  // namespace

kj::Promise<void> saveDeviceState(QmpClient& qmp, int stateFd) {
  return migrate(qmp, stateFd, "migrate", "uri");
}

kj::Promise<void> loadDeviceState(QmpClient& qmp, int stateFd) {
  return migrate(qmp, stateFd, "migrate-incoming", "uri");
}

}  // namespace fcvm::worker
