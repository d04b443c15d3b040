# fcvm host (worker) <-> fc-agent (guest PID 1). One connected byte stream: in the guest the
# virtio-serial port named "fcvm.control" (found under /sys/class/virtio-ports/*/name), on the
# host the Unix socket behind QEMU's chardev. Plain Cap'n Proto messages in the standard stream
# framing (capnp::writeMessage), no RPC: the guest is untrusted, so every frame is bounded
# (maxFrameWords, maxSegments) and every field is checked by the receiver before use.
#
# Order: each side's first message is `hello`; a protocolVersion mismatch closes the channel.
# Host -> agent: hello, runPlan (once), execRequest, stdin, windowSize, setClock, powerOff,
#   freeze / thaw (around a snapshot), and in a guest restored from a snapshot: hello, resume.
# Agent -> host: hello, containerStarted, output, exit, log, stdinAck, frozen.
#
# Snapshots. `freeze`: the agent syncs and freezes the guest's file systems, answers `frozen`, and
# from then on sends nothing (output waits in the pipes) until it is thawed; the host sends
# nothing either. Both directions of the byte stream are thus at a frame boundary while the VM is
# paused and saved. The source VM goes on with `thaw`. A clone restored from the snapshot has the
# same frozen agent, now on a new host connection: that host sends `hello` (the agent answers
# with its own) and then `resume`, which gives the clone its own identity, clock and volume
# servers; the agent ends the exec streams of the source's host (their clients are the source's),
# mounts the volumes anew and thaws.
# Stdin is flow-controlled per stream: the host keeps at most stdinWindowBytes of a stream's
# stdin un-acknowledged; the agent acks bytes once the process took them (or they were dropped
# because it closed its stdin). A slow reader thus never blocks the channel for other streams.
# Stream 0 is the container; exec streams use the ids the host chose in execRequest.id (> 0).
@0xf70759a2514604ac;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("fcvm::agent::wire");

const protocolVersion :UInt32 = 2;

# Bounds every receiver enforces (a frame beyond them closes the channel).
const maxFrameWords :UInt32 = 131072;   # 1 MiB per frame, header excluded
const maxSegments :UInt32 = 16;
const maxNestingDepth :UInt32 = 16;
const maxDataBytes :UInt32 = 65536;     # output.data and stdin.data
const maxTextBytes :UInt32 = 4096;      # any one Text field (paths, env entries, arguments)
const maxListItems :UInt32 = 1024;      # any one List (command, env, volumes)
const stdinWindowBytes :UInt32 = 1048576;  # un-acked stdin bytes per stream
const containerStream :UInt32 = 0;
const machineIdBytes :UInt32 = 32;        # resume.machineId: lowercase hex
const maxEntropyBytes :UInt32 = 512;      # resume.entropy

struct Hello {
  protocolVersion @0 :UInt32;
  agentVersion @1 :Text;            # the sender's build version, for logs
}

enum NetworkMode {
  none @0;
  host @1;
}

# Each volume has two virtio-serial ports, "fcvm.volume.<hostTag>.0" and ".1"; its server is on
# one of them (`port`). A clone's server is on the other one, and the port its snapshot used is
# connected to nothing: whatever the source's client still had under way there goes nowhere, and
# the clone's new client starts a clean stream.
struct Volume {
  hostTag @0 :Text;                 # names the volume's ports and mount point: v0, v1, ...
  guestPath @1 :Text;               # absolute path inside the container
  readOnly @2 :Bool;
  port @3 :UInt8;                   # 0 or 1: which of its two ports the server is on
}

# The guest's network interface (the VM's virtio-net device, eth0): a static address, a default
# route and the resolvers; the container shares it (podman --network host).
struct GuestNetwork {
  address @0 :Text;                 # IPv4, e.g. 172.30.0.2
  prefixLength @1 :UInt8;           # 1..30
  gateway @2 :Text;                 # IPv4
  nameservers @3 :List(Text);       # IPv4, at most 3 (resolv.conf)
}

struct RunPlan {
  image @0 :Text;                   # image reference podman in the guest can resolve
  command @1 :List(Text);           # empty: the image's default command
  env @2 :List(Text);               # NAME=VALUE
  user @3 :Text;                    # empty: the image's user
  workdir @4 :Text;                 # empty: the image's workdir
  privileged @5 :Bool;
  volumes @6 :List(Volume);
  network @7 :NetworkMode;
  clockRealtimeNs @8 :Int64;        # 0: leave the guest clock alone
  hostname @9 :Text;                # the guest's (and the container's) hostname; empty: leave it
  hasGuestNetwork @10 :Bool;        # network == host: eth0 is configured from guestNetwork
  guestNetwork @11 :GuestNetwork;
}

enum OutputKind {
  stdout @0;
  stderr @1;                        # never sent for a tty stream (the pty merges both)
}

struct Output {
  streamId @0 :UInt32;
  kind @1 :OutputKind;
  data @2 :Data;                    # 1..maxDataBytes bytes
}

struct Exit {
  streamId @0 :UInt32;
  code @1 :Int32;                   # exit status; 128+n when killed by signal n; 127: could not start
  signal @2 :Int32;                 # n when killed by a signal, else 0
}

struct ExecRequest {
  id @0 :UInt32;                    # the new stream's id: > 0 and not in use
  inContainer @1 :Bool;             # podman exec in the container; else directly in the guest OS
  command @2 :List(Text);           # not empty
  env @3 :List(Text);               # NAME=VALUE
  tty @4 :Bool;                     # run on a pty (stdout only, no stderr)
  rows @5 :UInt16;
  cols @6 :UInt16;
  stdin @7 :Bool;                   # the host will send Stdin frames; else stdin is /dev/null
}

struct Stdin {
  streamId @0 :UInt32;
  data @1 :Data;                    # at most maxDataBytes
  eof @2 :Bool;                     # after data: close the stream's stdin
}

struct WindowSize {
  streamId @0 :UInt32;
  rows @1 :UInt16;
  cols @2 :UInt16;
}

struct SetClock {
  realtimeNs @0 :Int64;             # CLOCK_REALTIME, e.g. after a snapshot restore
}

struct StdinAck {
  streamId @0 :UInt32;
  bytes @1 :UInt32;                 # stdin bytes of this stream now consumed (or dropped)
}

struct Frozen {
  error @0 :Text;                   # empty: frozen; else why not (and nothing was held)
}

struct Thaw {
  realtimeNs @0 :Int64;             # CLOCK_REALTIME after the pause; 0: leave it
}

struct Resume {
  realtimeNs @0 :Int64;             # the guest clock stood still since the snapshot
  hostname @1 :Text;                # the clone's name
  machineId @2 :Text;               # machineIdBytes lowercase hex digits, for /etc/machine-id
  entropy @3 :Data;                 # 32..maxEntropyBytes random bytes to reseed the guest RNG
  # The --map volumes (as in the run plan), each now served on its other port by a server of the
  # clone's own: the agent ends the source's clients and mounts each volume anew over the old
  # mount, which the container sees through mount propagation.
  volumes @4 :List(Volume);
}

struct Log {
  line @0 :Text;                    # the agent's own diagnostics, one line
}

struct Message {
  union {
    hello @0 :Hello;
    runPlan @1 :RunPlan;
    containerStarted @2 :Void;
    output @3 :Output;
    exit @4 :Exit;
    execRequest @5 :ExecRequest;
    stdin @6 :Stdin;
    windowSize @7 :WindowSize;
    setClock @8 :SetClock;
    powerOff @9 :Void;
    log @10 :Log;
    stdinAck @11 :StdinAck;
    freeze @12 :Void;
    frozen @13 :Frozen;
    thaw @14 :Thaw;
    resume @15 :Resume;
  }
}
