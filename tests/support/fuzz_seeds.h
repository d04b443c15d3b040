// The `-write_seeds=DIR` flag every fcvm fuzzer takes (in LLVMFuzzerInitialize): writes the
// target's seed corpus into DIR and exits, so run-fuzz starts from valid inputs.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>

namespace fcvm::testing {

// The corpus files seed0, seed1, ... in a directory. For a target whose first input byte picks
// the decoder, add(selector, bytes) puts that byte first.
class SeedWriter {
 public:
  explicit SeedWriter(std::string dir) : dir_(std::move(dir)) {}
  void add(std::string_view bytes) {
    std::ofstream(dir_ + "/seed" + std::to_string(next_++), std::ios::binary) << bytes;
  }
  void add(uint8_t selector, std::string_view bytes) {
    add(std::string(1, static_cast<char>(selector)) + std::string(bytes));
  }

 private:
  std::string dir_;
  int next_ = 0;
};

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
