# CLI <-> fcvm-supervisor, over the supervisor's Unix socket.
# The supervisor knows the caller from SO_PEERCRED; no method takes a uid. A non-root caller
# sees and touches only VMs it owns; a VM it does not own is answered as if it did not exist.
@0xf1a27374dbed6941;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("fcvm::rpc");

using Common = import "common.capnp";

struct VmInfo {
  id @0 :Text;
  name @1 :Text;
  ownerUid @2 :UInt32;
  state @3 :Common.VmState;
  health @4 :Common.Health;
  hasExitCode @5 :Bool;
  exitCode @6 :Int32;
  reason @7 :Text;
  image @8 :Text;
  network @9 :Text;
  workerPid @10 :Int32;
  createdAtNs @11 :Int64;
  updatedAtNs @12 :Int64;
}

struct SupervisorStatus {
  version @0 :Text;
  pid @1 :Int32;
  uid @2 :UInt32;
  startedAtNs @3 :Int64;
  dataDir @4 :Text;
  runtimeDir @5 :Text;
  socket @6 :Text;
  vmCount @7 :UInt32;        # VMs visible to the caller
  stateEpoch @8 :UInt64;     # how many supervisors have written the state table
  adoptedVms @9 :UInt32;     # live VMs re-adopted at start
}

interface Supervisor {
  status @0 () -> (status :SupervisorStatus);
  listVms @1 () -> (vms :List(VmInfo));
  getVm @2 (name :Text) -> (vm :VmInfo);
  # Removes the records of a VM that is stopped or failed.
  removeVm @3 (name :Text) -> ();
  # Stops the supervisor; allowed to root and to the uid the supervisor runs as.
  shutdown @4 () -> ();
}
