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
}
