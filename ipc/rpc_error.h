// How fcvm's errors cross a Cap'n Proto RPC boundary: a kj::Exception whose description is exactly
// the one line the user should read (KJ_EXCEPTION would prefix the expression's text).
#pragma once

#include <kj/exception.h>
#include <kj/string.h>

namespace fcvm::ipc {

inline kj::Exception rpcError(kj::StringPtr message,
                              kj::Exception::Type type = kj::Exception::Type::FAILED) {
  return kj::Exception(type, __FILE__, __LINE__, kj::heapString(message));
}

[[noreturn]] inline void throwRpcError(kj::StringPtr message) {
  kj::throwFatalException(rpcError(message));
}

}  // namespace fcvm::ipc
