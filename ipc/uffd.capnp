# fcvm-supervisor <-> fcvm-uffd-server (one per served snapshot), over the server's socket
# (<runtime dir>/serves/<id>/server.sock, mode 0600: only the supervisor's uid reaches it).
#
# The server owns the snapshot's memory image while it runs: it holds it resident in a sealed
# memfd that nothing can write, and hands that to each clone's QEMU by fd (mapped private: all
# clones share its pages until they write). For Firecracker's UFFD backend it also serves page
# faults on its uffd socket. It runs until the supervisor stops it (after stopping the snapshot's
# clones), or it is killed; a clone whose QEMU already maps the image runs on either way.
@0xf054fba16582d338;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("fcvm::rpc");

using Common = import "common.capnp";

struct ServeStatus {
  snapshotId @0 :Text;
  clones @1 :List(Text);       # VM ids of the clones attached (QEMU path)
  uffdPeers @2 :UInt32;        # Firecracker peers being served now
  pagesServed @3 :UInt64;      # pages copied or zeroed for Firecracker peers
  memoryBytes @4 :UInt64;      # resident: the image's data
}

interface PageServer {
  status @0 () -> (status :ServeStatus);
  # The memory image for the clone `vmId`'s QEMU: a sealed memfd (it can only be mapped private),
  # whose fd comes with the capability. The clone counts as attached until detachClone.
  attachClone @1 (vmId :Text) -> (memory :Common.FileHandle);
  detachClone @2 (vmId :Text) -> ();
  # After a supervisor restart: the clones still alive; every other one is detached.
  retainClones @3 (vmIds :List(Text)) -> ();
  # Stops serving and exits once this has been answered.
  stop @4 () -> ();
}
