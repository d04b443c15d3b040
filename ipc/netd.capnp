# fcvm-worker -> fcvm-netd, the only privileged network component. netd checks every request
# against records it keeps itself; names of netns/TAP devices are chosen by netd, never by callers.
@0xd236c57f6723e5de;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("fcvm::rpc");

using Common = import "common.capnp";

struct NetworkInfo {
  netns @0 :Text;
  tap @1 :Text;
  guestIp @2 :Text;
  hostIp @3 :Text;
  prefixLength @4 :UInt8;
}

# Held by the worker for the VM's life; dropping it tears the network down.
interface Network {
  info @0 () -> (info :NetworkInfo);
}

interface Netd {
  createNetwork @0 (vmId :Text, ports :List(Common.PortMapping)) -> (network :Network);
}
