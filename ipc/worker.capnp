# fcvm-supervisor <-> fcvm-worker (one worker per VM). The worker is spawned by the supervisor
# with this connection on a fixed fd; it serves exactly one VM and reports back through Events.
@0xb2beaae239a058d7;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("fcvm::rpc");

using Common = import "common.capnp";

interface WorkerEvents {
  stateChanged @0 (state :Common.VmState, health :Common.Health, reason :Text,
                   hasExitCode :Bool, exitCode :Int32) -> ();
}

interface Worker {
  # Prepares the disk, starts the VMM and the guest; returns once the VM is booting.
  start @0 (id :Text, spec :Common.VmSpec, events :WorkerEvents) -> ();
  # Asks the guest to power off, then kills the VMM after timeoutMs.
  stop @1 (timeoutMs :UInt32) -> ();
}
