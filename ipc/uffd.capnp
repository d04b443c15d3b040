# fcvm-supervisor <-> fcvm-uffd-server (one per served snapshot).
@0xf054fba16582d338;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("fcvm::rpc");

struct ServeStatus {
  snapshotId @0 :Text;
  clients @1 :UInt32;
  pagesServed @2 :UInt64;
}

interface PageServer {
  status @0 () -> (status :ServeStatus);
  # Stops serving once the last clone detaches.
  drain @1 () -> ();
}
