# fcvm-supervisor -> fcvm-netd, the only process that changes the host's networking. netd takes
# requests only from the supervisor (its socket is root's, mode 0600), checks every field against
# records it keeps itself, and chooses every name and address; the supervisor names only the VM.
@0xd236c57f6723e5de;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("fcvm::rpc");

using Common = import "common.capnp";

struct NetworkRequest {
  vmId @0 :Text;                        # 16 hex digits
  ports @1 :List(Common.PortMapping);   # published on the host
  dns @2 :List(Text);                   # resolvers for the guest; empty: the host's
}

struct NetworkInfo {
  netns @0 :Text;        # under /run/netns
  hostIp @1 :Text;       # the host's end of the VM's veth
  nsIp @2 :Text;         # the namespace's end: where the host reaches the VM
  guestIp @3 :Text;      # the guest's address (the same in every VM's namespace)
  gateway @4 :Text;      # the guest's gateway and DNS (the TAP in the namespace)
  prefixLength @5 :UInt8;
}

interface Netd {
  # Builds the VM's namespace, TAP, veth pair, addresses, routes, NAT, published ports and
  # isolation rules. The TAP comes as `tap` (its fd, for QEMU `-netdev tap,fd=`); it lives as
  # long as some fd of it does. Fails with a clear reason (a port in use, a VM that already has
  # a network) and leaves nothing behind then.
  createNetwork @0 (request :NetworkRequest) -> (info :NetworkInfo, tap :Common.FileHandle);
  # Removes everything of the VM's network; a VM without one is no error.
  destroyNetwork @1 (vmId :Text) -> ();
  # After a supervisor restart: every network but those of `vmIds` is removed.
  retain @2 (vmIds :List(Text)) -> ();
  list @3 () -> (vmIds :List(Text));
}
