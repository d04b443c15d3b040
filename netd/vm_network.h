// A VM's bridged network made real from its plan (network_plan.h), and taken down again.
#pragma once

#include "base/unique_fd.h"
#include "netd/network_plan.h"

namespace fcvm::netd {

// The MAC of tap0, the guest's gateway: the same in every namespace, so the guest's neighbour
// cache, frozen in a snapshot, stays right in its clones.
inline constexpr char kGatewayMac[] = "02:fc:00:00:00:01";

// Builds the namespace, veth pair, addresses, routes, TAP and rules; returns the TAP for the VMM.
// On failure, what was made is removed again and the error rethrown.
UniqueFd buildNetwork(const NetworkPlan& plan);
// Removes what `plan` describes, as far as it exists; repeating it is harmless. Every step is
// tried; the first failure is then thrown (the caller keeps its record, to try again later).
void tearDownNetwork(const NetworkPlan& plan);

}  // namespace fcvm::netd
