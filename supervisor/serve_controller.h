// The supervisor's side of snapshot serving: one fcvm-uffd-server process per served snapshot,
// started on demand (`snapshot serve`, or the first clone that needs one), tracked by pid plus
// start time and by pidfd, reached over its PageServer socket, and re-adopted by a restarted
// supervisor from its record under <data dir>/serves/<id>.json.
//
// Lifetime of a serve process: it runs until it is stopped (`snapshot stop`, the end of a
// foreground `snapshot serve`, `snapshot rm -f`), which stops the snapshot's clones first; or
// until it dies. A clone's QEMU maps the image itself, so clones run on after a serve process
// dies; the serve is then shown as failed, with the reason, until a new one is started.
#pragma once

#include <kj/async-io.h>
#include <kj/async-unix.h>

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/paths.h"
#include "base/unique_fd.h"
#include "ipc/records.h"
#include "ipc/uffd.capnp.h"

namespace fcvm::supervisor {

struct ServeView {
  std::string id;
  std::string snapshotId;
  uint32_t ownerUid = 0;
  ipc::ProcessId process;
  std::string state;   // starting, serving, failed
  std::string reason;  // why it failed
  int64_t startedAtNs = 0;
};

// What starting a serve needs to know of its snapshot.
struct ServedSnapshot {
  std::string id;
  uint32_t ownerUid = 0;
  std::filesystem::path dir;
};

class ServeController : private kj::TaskSet::ErrorHandler {
 public:
  ServeController(kj::AsyncIoContext& io, Paths paths);
  ~ServeController();

  // Reconnects to the serve processes of a previous supervisor; forgets dead ones. `liveClones`
  // gives a snapshot's running clones, which its serve process is told to keep.
  void adopt(const std::function<std::vector<std::string>(const std::string&)>& liveClones);

  // The serve of `snapshot`, started if none runs; resolves once it serves.
  kj::Promise<ServeView> ensure(const ServedSnapshot& snapshot);
  // The memory image for the clone `vmId`'s QEMU, from the snapshot's serve (started if need be).
  kj::Promise<UniqueFd> attachClone(const ServedSnapshot& snapshot, const std::string& vmId);
  void detachClone(const std::string& snapshotId, const std::string& vmId);
  // Stops the snapshot's serve process (its clones must have been stopped); resolves once it has
  // exited. At once if none runs.
  kj::Promise<void> stop(const std::string& snapshotId);
  // Resolves once the serve of `snapshotId` that runs now has ended, however it ended.
  kj::Promise<void> whenGone(const std::string& snapshotId);
  // Forgets a failed serve's record (its snapshot is removed).
  void forget(const std::string& snapshotId);

  std::optional<ServeView> find(const std::string& snapshotId);
  std::optional<ServeView> findByPid(int32_t pid);
  std::vector<ServeView> list();

 private:
  struct Serve;

  kj::Promise<ServeView> start(const ServedSnapshot& snapshot);
  void track(Serve& serve);
  void connect(Serve& serve);
  void exited(const std::string& snapshotId);
  void refresh();  // handles serves that died but whose exit event has not come yet
  void saveRecord(const Serve& serve) const;
  void taskFailed(kj::Exception&& e) override;

  kj::AsyncIoContext& io_;
  const Paths paths_;
  std::map<std::string, kj::Own<Serve>> serves_;  // by snapshot id: starting or serving
  std::map<std::string, ServeView> failed_;       // by snapshot id: died, until restarted
  kj::TaskSet tasks_{*this};
};

}  // namespace fcvm::supervisor
