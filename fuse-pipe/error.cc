#include "fuse-pipe/error.h"

#include <string>

namespace fcvm::fusepipe {

void throwErrno(std::string_view operation, std::string_view subject, int err) {
  std::string context(operation);
  if (!subject.empty()) {
    context += ' ';
    context += subject;
  }
  throw std::system_error(err, std::generic_category(), context);
}

}  // namespace fcvm::fusepipe
