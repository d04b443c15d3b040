// The `-write_seeds=DIR` flag every fcvm fuzzer takes (in LLVMFuzzerInitialize): writes the
// target's seed corpus into DIR and exits, so run-fuzz starts from valid inputs.
#pragma once

#include <cstdlib>
#include <cstring>
#include <string>

namespace fcvm::testing {

template <typename WriteSeeds>
void writeSeedsIfAsked(int argc, char** argv, WriteSeeds writeSeeds) {
  constexpr char kFlag[] = "-write_seeds=";
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], kFlag, sizeof kFlag - 1) == 0) {
      writeSeeds(std::string(argv[i] + sizeof kFlag - 1));
      std::exit(0);
    }
  }
}

}  // namespace fcvm::testing
