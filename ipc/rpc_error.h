// How fcvm's errors cross a Cap'n Proto RPC boundary: a kj::Exception whose description is exactly
// the one line the user should read (KJ_EXCEPTION would prefix the expression's text).
#pragma once

#include <kj/exception.h>
#include <kj/string.h>

#include <string>
#include <string_view>

namespace fcvm::ipc {

inline kj::Exception rpcError(kj::StringPtr message,
                              kj::Exception::Type type = kj::Exception::Type::FAILED) {
  return kj::Exception(type, __FILE__, __LINE__, kj::heapString(message));
}

[[noreturn]] inline void throwRpcError(kj::StringPtr message) {
  kj::throwFatalException(rpcError(message));
}

// A failed call's message without kj's "remote exception: ", which each RPC hop adds (a worker's
// error reaches the CLI through the supervisor with two).
inline std::string messageOf(const kj::Exception& e) {
  std::string text = e.getDescription().cStr();
  constexpr std::string_view kRemote = "remote exception: ";
  for (auto at = text.find(kRemote); at != std::string::npos; at = text.find(kRemote, at)) {
    text.erase(at, kRemote.size());
  }
  return text;
}

}  // namespace fcvm::ipc
