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
  snapshot @13 :Text;        # a clone: the tag of the snapshot it was started from
  ports @14 :List(Common.PortMapping);  # published on the host
  volumes @15 :List(Common.Volume);     # --map directories
  restartPolicy @16 :Text;   # no, always, on-failure[:N], unless-stopped
  restartCount @17 :UInt32;  # how many times its restart policy started it again
}

# A snapshot's serve process (fcvm-uffd-server).
struct ServeInfo {
  id @0 :Text;
  snapshotTag @1 :Text;
  ownerUid @2 :UInt32;
  pid @3 :Int32;
  state @4 :Text;            # starting, serving, failed
  reason @5 :Text;           # why it failed
  startedAtNs @6 :Int64;
}

struct SnapshotInfo {
  id @0 :Text;
  tag @1 :Text;
  ownerUid @2 :UInt32;
  state @3 :Text;            # creating, ready
  sourceVm @4 :Text;
  image @5 :Text;
  createdAtNs @6 :Int64;
  pauseNs @7 :UInt64;        # how long the source VM was paused
  memoryBytes @8 :UInt64;    # guest memory in the image (its data)
  clones @9 :UInt32;         # clones running from it
  hasServe @10 :Bool;
  serve @11 :ServeInfo;
  volumes @12 :List(Common.Volume);  # the source's --map volumes, which each clone reopens
}

# Held by a foreground `fcvm snapshot serve`: when the last reference goes, the supervisor stops
# the snapshot's clones and its serve process.
interface ServeLease {
  # Resolves when the serve process has ended (stopped, or died).
  wait @0 () -> ();
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

# A VM started in the foreground. Held by the CLI that ran it: when the last reference goes (the
# CLI exits, is killed, or its connection drops), the supervisor stops the VM.
interface VmLease {
  # Resolves once the container has exited and the VM is cleaned up (its records and disk too
  # with autoRemove); all of the container's output has been written to the run's sink by then.
  wait @0 () -> (exit :Common.ExitStatus);
}

enum LogSource {
  container @0;  # the container's stdout and stderr
  console @1;    # the guest's serial console (kernel, fc-agent before its channel is up)
  worker @2;     # the VM's fcvm-worker: setup, QEMU, agent log lines, state changes
}

enum WaitCondition {
  running @0;   # the agent answered and the container was launched (or any later state)
  healthy @1;   # healthy, or ended
  ended @2;     # stopped or failed
}

interface Supervisor {
  status @0 () -> (status :SupervisorStatus);
  listVms @1 () -> (vms :List(VmInfo));
  getVm @2 (name :Text) -> (vm :VmInfo);
  # Removes a VM's records and disk. An active VM is refused unless `force`, which stops it first.
  removeVm @3 (name :Text, force :Bool) -> ();
  # Stops the supervisor; allowed to root and to the uid the supervisor runs as.
  shutdown @4 () -> ();

  # Creates the VM, prepares its image and disk and starts it. Returns once the VM is booting
  # (image or disk problems are errors here). Without `detach` the container's output goes to
  # `output` and the VM lives only as long as `lease`; with `detach` `output` is unused and
  # `lease` is null. The image is read with the caller's rights: an oci-archive:/docker-archive:
  # image comes as `imageArchive`, the file the client opened; an image in podman storage is
  # looked up by podman running as the caller, with the client's `podmanEnv` (HOME, XDG_*,
  # CONTAINERS_*: where that user's storage is). Each of `spec.volumes` comes as the directory
  # the client opened (`volumeDirs`, in the same order). A configuration run before starts from
  # its start-up snapshot, unless `noSnapshotCache` (supervisor/startup_cache.h).
  runVm @5 (spec :Common.VmSpec, output :Common.OutputSink, detach :Bool, autoRemove :Bool,
            imageArchive :Common.FileHandle, podmanEnv :List(Text),
            volumeDirs :List(Common.FileHandle), noSnapshotCache :Bool)
      -> (vm :VmInfo, lease :VmLease);
  # Runs a command in the VM's guest OS or container; waits for the guest agent if the VM is
  # still booting.
  exec @6 (name :Text, request :Common.ExecSpec, output :Common.OutputSink)
      -> (process :Common.Process);
  # Asks the guest to power off; kills the VM after timeoutMs. Resolves once it has stopped.
  stopVm @7 (name :Text, timeoutMs :UInt32) -> (vm :VmInfo);
  # The container's output so far, then (with `follow`) until it exits. Resolves at the end.
  # The console and worker logs are sent as stdout, without follow.
  logs @8 (name :Text, follow :Bool, output :Common.OutputSink, source :LogSource) -> ();
  # Resolves when the VM reaches `condition` (at once if it has); fails if it ended before.
  waitVm @9 (name :Text, condition :WaitCondition) -> (vm :VmInfo);

  # Snapshots a running VM (by name, or by its worker's pid when `workerPid` is not 0) as `tag`.
  # The snapshot belongs to the VM's owner; the VM is paused for `pauseNs` and goes on.
  createSnapshot @10 (name :Text, workerPid :Int32, tag :Text) -> (snapshot :SnapshotInfo);
  listSnapshots @11 () -> (snapshots :List(SnapshotInfo));
  # Refused while clones of it run, unless `force`, which stops them (and its serve process).
  removeSnapshot @12 (tag :Text, force :Bool) -> ();
  # Starts the snapshot's serve process unless one runs. Without `detach` it lives as long as
  # `lease`; with it, until `stopServe`.
  serveSnapshot @13 (tag :Text, detach :Bool) -> (serve :ServeInfo, lease :ServeLease);
  # Stops the snapshot's clones, then its serve process.
  stopServe @14 (tag :Text) -> ();
  # Starts a clone of the snapshot `tag`, or of the one the serve process `servePid` serves; the
  # rest as runVm. A serve process is started if none runs.
  # `ports`: the clone's own published ports (the source's stay the source's).
  # The snapshot's volumes come as the directories the client opened (`volumeDirs`, in the order
  # of its `volumes`), and `snapshotId` says which snapshot the client looked at for them
  # (inspectSnapshot): a snapshot retaken under the same tag since is refused.
  runClone @15 (tag :Text, servePid :Int32, name :Text, output :Common.OutputSink, detach :Bool,
                autoRemove :Bool, ports :List(Common.PortMapping), snapshotId :Text,
                volumeDirs :List(Common.FileHandle)) -> (vm :VmInfo, lease :VmLease);
  listServes @16 () -> (serves :List(ServeInfo));
  # The snapshot `tag`, or the one the serve process `servePid` serves, as runClone finds it.
  inspectSnapshot @17 (tag :Text, servePid :Int32) -> (snapshot :SnapshotInfo);
  # What fcvm keeps on disk, by kind (`fcvm system df`): the caller's own VMs and snapshots (root:
  # all), and the shared artifacts and image disks.
  diskUsage @18 () -> (usage :List(DiskUsage), items :List(StorageItem));
  # Removes the caller's ended VMs (root: everyone's), then what nothing uses of the shared kinds
  # (root, or a user's own supervisor): artifacts, and with `all` image disks too.
  prune @19 (all :Bool) -> (report :PruneReport);
  # A running VM's memory, host and guest (`fcvm inspect`); fails for a VM that is not running.
  vmMemory @20 (name :Text) -> (memory :Common.VmMemory);
}

struct DiskUsage {
  kind @0 :Text;             # artifacts, images, vm_disks, snapshots, logs
  total @1 :UInt32;          # items of the kind
  active @2 :UInt32;         # in use
  bytes @3 :UInt64;          # allocated on disk
  reclaimable @4 :UInt64;    # what `fcvm system prune --all` would free
}

struct StorageItem {         # one of what DiskUsage counts (`fcvm system df -v`)
  kind @0 :Text;
  path @1 :Text;
  owner @2 :Text;            # the VM or snapshot id it belongs to; empty for shared items
  bytes @3 :UInt64;
  inUse @4 :Bool;
}

struct PruneReport {
  vms @0 :List(Text);        # names of the VMs removed
  artifacts @1 :UInt32;
  images @2 :UInt32;
  reclaimedBytes @3 :UInt64;
  skipped @4 :Text;          # why shared items were left this time, if they were
  startupSnapshots @5 :UInt32;  # start-up snapshots removed (those no VM runs from)
}
