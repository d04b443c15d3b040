// The guest's side of a VM's network, the same for every VM and every clone (a clone's address is
// frozen in its memory): what the worker tells the guest agent, what netd builds the namespace's
// side of, and what the rootless user-mode stack emulates.
#pragma once

#include <cstdint>

namespace fcvm::ipc {

inline constexpr char kGuestAddress[] = "172.30.0.2";
inline constexpr char kGatewayAddress[] = "172.30.0.1";  // bridged: tap0; rootless: the stack
inline constexpr uint8_t kGuestPrefix = 24;
inline constexpr char kGuestSubnet[] = "172.30.0.0/24";
// Bridged: the gateway answers DNS (DNATed to the resolver). Rootless: the stack's own resolver.
inline constexpr char kRootlessDns[] = "172.30.0.3";

}  // namespace fcvm::ipc
