# fcvm-supervisor <-> fcvm-worker (one worker per VM). The supervisor spawns the worker with the
# VM's spec in a file; the worker prepares the image and disk, starts QEMU, then listens on
# <runtime dir>/vms/<id>/worker.sock (mode 0600) and says so on its ready fd. The supervisor
# connects and attaches; a restarted supervisor connects again and re-attaches, so a worker
# outlives the supervisor that started it.
@0xb2beaae239a058d7;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("fcvm::rpc");

using Common = import "common.capnp";

struct WorkerState {
  state @0 :Common.VmState;
  health @1 :Common.Health;
  reason @2 :Text;          # why it failed, or empty
  hasExitCode @3 :Bool;
  exitCode @4 :Int32;
}

interface WorkerEvents {
  stateChanged @0 (state :WorkerState) -> ();
}

interface Worker {
  # The first attach starts the guest's container and sends its output to `output` (may be null);
  # a later one (a restarted supervisor) only replaces `events`. The current state is reported at
  # once through `events`.
  attach @0 (events :WorkerEvents, output :Common.OutputSink) -> ();
  # Resolves with the container's exit status once the VM has powered off.
  wait @1 () -> (exit :Common.ExitStatus);
  exec @2 (request :Common.ExecSpec, output :Common.OutputSink) -> (process :Common.Process);
  logs @3 (follow :Bool, output :Common.OutputSink) -> ();
  # Asks the guest to power off, kills QEMU after timeoutMs; resolves once QEMU has exited.
  stop @4 (timeoutMs :UInt32) -> ();
  # Snapshots the running VM into three files the supervisor created (in the snapshot's staging
  # directory): the device state, a copy of guest memory (sparse) and a reflink of the disk. The
  # guest's file systems are frozen meanwhile and the VM paused for the copy; it goes on however
  # this ends. `restore` is what its clones need to start (JSON: its QEMU's machine, its health
  # check), which the supervisor keeps beside the files as restore.json.
  snapshot @5 (state :Common.FileHandle, memory :Common.FileHandle, disk :Common.FileHandle)
      -> (pauseNs :UInt64, memoryBytes :UInt64, restore :Text);
  # The same files, filled once when the booted guest is ready for its container and before it
  # starts it: a start-up snapshot (its `restore` says so). Sent before the first attach; the
  # container starts after it, however it ends.
  snapshotBeforeContainer @6 (state :Common.FileHandle, memory :Common.FileHandle,
                              disk :Common.FileHandle)
      -> (pauseNs :UInt64, memoryBytes :UInt64, restore :Text);
  # The VM's memory now: the VMM's from /proc, the guest's from its /proc/meminfo (an exec in the
  # guest OS, bounded in time; a guest that does not answer leaves guestReported false).
  memory @7 () -> (memory :Common.VmMemory);
}
