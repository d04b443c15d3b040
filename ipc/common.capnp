# Types shared by more than one trust boundary.
@0x9debf5dffa8c1f4d;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("fcvm::rpc");

enum VmState {
  creating @0;
  booting @1;
  running @2;
  healthy @3;
  stopped @4;
  failed @5;
  restarting @6;  # ended, and its restart policy starts it again (after a back-off delay)
}

enum Health {
  unknown @0;
  starting @1;
  healthy @2;
  unhealthy @3;
}

enum Accel {
  auto @0;
  kvm @1;
  tcg @2;
}

struct KeyValue {
  key @0 :Text;
  value @1 :Text;
}

struct Volume {
  hostPath @0 :Text;
  guestPath @1 :Text;
  readOnly @2 :Bool;
}

struct PortMapping {
  hostPort @0 :UInt16;
  guestPort @1 :UInt16;
  protocol @2 :Text;  # "tcp" or "udp"
  hostIp @3 :Text;    # the host address it is published on; empty: every address of the host
}

enum NetworkMode {
  auto @0;      # bridged for root, rootless for anyone else
  bridged @1;   # its own network namespace with a TAP, a veth to the host and NAT (fcvm-netd)
  rootless @2;  # a user-mode stack in the VMM: no privilege at all
  none @3;      # loopback only
}

# When a VM that ended is started again (podman's --restart). A stop or rm by its owner is final.
enum RestartPolicy {
  no @0;
  always @1;         # however it ended, and after a host restart
  onFailure @2;      # when it failed or its container exited non-zero; not after a host restart
  unlessStopped @3;  # as always (a stop by its owner is final for every policy)
}

# Desired configuration of one VM and its container, as the user asked for it.
struct VmSpec {
  name @0 :Text;
  image @1 :Text;
  command @2 :List(Text);
  env @3 :List(KeyValue);
  workdir @4 :Text;
  user @5 :Text;
  privileged @6 :Bool;
  cpus @7 :UInt8;
  memoryMib @8 :UInt32;
  rootfsSizeMib @9 :UInt32;
  accel @10 :Accel;
  volumes @11 :List(Volume);
  ports @12 :List(PortMapping);
  healthCmd @13 :Text;
  network @14 :NetworkMode;
  dns @15 :List(Text);      # resolvers for the guest instead of the host's (IPv4)
  healthCheck @16 :Text;    # http://[HOST]:PORT/PATH, GET from the host; 2xx/3xx is healthy
  restart @17 :RestartPolicy;
  restartMaxRetries @18 :UInt32;  # onFailure: at most this many restarts in a row; 0: no limit
}

# A file the client opened with its own rights, passed as an fd (SCM_RIGHTS) along with this
# capability: the receiver acts on what the client could open, never on a path with its own powers.
interface FileHandle {}

# A running VM's memory (`fcvm inspect`). The guest's figures are what its kernel reports
# (/proc/meminfo in the guest): its own word.
struct VmMemory {
  guestReported @0 :Bool;          # the guest answered; else `reason` says why not
  guestTotalBytes @1 :UInt64;      # MemTotal
  guestAvailableBytes @2 :UInt64;  # MemAvailable
  hostPssBytes @3 :UInt64;         # the VMM's proportional share of host memory (0: unknown)
  hostAnonBytes @4 :UInt64;        # of which its own anonymous memory (TCG: translated code)
  reason @5 :Text;                 # why a figure is missing, or empty
}

struct ExitStatus {
  code @0 :Int32;     # the exit status; 128+n when killed by signal n
  signal @1 :Int32;   # n when killed by a signal, else 0
}

enum OutputKind {
  stdout @0;
  stderr @1;
}

# Where a container's or command's output goes: the CLI's stdout/stderr. Each write resolves once
# the data is written, which is the flow control: a writer keeps few writes in flight.
interface OutputSink {
  write @0 (kind :OutputKind, data :Data) -> ();
}

struct ExecSpec {
  inContainer @0 :Bool;     # podman exec in the container; else in the guest OS
  command @1 :List(Text);   # not empty
  env @2 :List(Text);       # NAME=VALUE
  tty @3 :Bool;             # on a pty (stdout only)
  rows @4 :UInt16;
  cols @5 :UInt16;
  stdin @6 :Bool;           # writeStdin will be called; else stdin is /dev/null
}

# A command started by exec.
interface Process {
  # At most 64 KiB per call; resolves once the guest has room for more (flow control).
  writeStdin @0 (data :Data, eof :Bool) -> ();
  resize @1 (rows :UInt16, cols :UInt16) -> ();
  # Resolves when the command has exited and all its output was written to the sink.
  wait @2 () -> (exit :ExitStatus);
}
