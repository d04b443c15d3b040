#include "netd/request_decoder.h"

#include "base/error.h"
#include "ipc/vm_spec.h"

namespace fcvm::netd {

NetworkRequest decodeNetworkRequest(rpc::NetworkRequest::Reader in) {
  NetworkRequest request;
  request.vmId = std::string(in.getVmId().cStr(), in.getVmId().size());
  request.ports = ipc::decodePorts(in.getPorts());
  if (in.getDns().size() > 3) throw Error("more than 3 resolvers");
  for (auto d : in.getDns()) request.dns.emplace_back(d.cStr(), d.size());
  request.instance = "0000";    // netd's own tag replaces it
  planNetwork(request, 0, "");  // checks every field before anything else happens
  return request;
}

}  // namespace fcvm::netd
