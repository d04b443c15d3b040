// Where fcvm's own binaries are: installed side by side, so each finds the others beside itself.
#pragma once

#include <filesystem>

namespace fcvm {

// The program `name` beside the running executable, unless the environment variable `override`
// names another path.
std::filesystem::path siblingBinary(const char* name, const char* override);

}  // namespace fcvm
