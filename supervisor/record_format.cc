#include "supervisor/record_format.h"

#include <fmt/format.h>

namespace fcvm::supervisor {

void checkRecordFormat(int found, int known, const std::filesystem::path& file) {
  if (found > known) {
    throw NewerFormatError(fmt::format(
        "{} is in format {}, newer than this fcvm's {}: a newer fcvm wrote it; run that one "
        "(fcvm never converts records back)",
        file.string(), found, known));
  }
  if (found < 1) throw Error(fmt::format("format {} is not a format", found));
}

}  // namespace fcvm::supervisor
