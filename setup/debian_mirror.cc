#include "setup/debian_mirror.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <vector>

#include "base/error.h"

namespace fcvm::setup {
namespace {

std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// deb URI SUITE COMPONENTS... (with an optional [options] block after "deb").
std::optional<std::string> fromOneLine(std::istream& in, const std::string& suite) {
  for (std::string line; std::getline(in, line);) {
    line = line.substr(0, line.find('#'));
    auto w = words(line);
    if (w.size() < 3 || w[0] != "deb") continue;
    size_t i = 1;
    if (w[i].starts_with("[")) {
      while (i < w.size() && !w[i].ends_with("]")) ++i;
      ++i;
    }
    if (i + 1 < w.size() && w[i + 1] == suite) return w[i];
  }
  return std::nullopt;
}

// Stanzas of "Key: value" lines separated by blank lines.
std::optional<std::string> fromDeb822(std::istream& in, const std::string& suite) {
  std::map<std::string, std::string> stanza;
  auto match = [&]() -> std::optional<std::string> {
    if (!contains(words(stanza["Types"]), "deb") || !contains(words(stanza["Suites"]), suite) ||
        stanza["Enabled"] == "no") {
      return std::nullopt;
    }
    auto uris = words(stanza["URIs"]);
    if (uris.empty()) return std::nullopt;
    return uris[0];
  };
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("#")) continue;
    if (line.find_first_not_of(" \t\r") == std::string::npos) {
      if (auto m = match()) return m;
      stanza.clear();
      continue;
    }
    auto colon = line.find(':');
    if (colon == std::string::npos || line[0] == ' ') continue;
    stanza[line.substr(0, colon)] = line.substr(colon + 1);
  }
  return match();
}

}  // namespace

std::string hostDebianMirror(const std::string& suite, const std::filesystem::path& aptDir) {
  std::vector<std::filesystem::path> files;
  if (std::filesystem::exists(aptDir / "sources.list")) files.push_back(aptDir / "sources.list");
  std::error_code ec;
  std::vector<std::filesystem::path> extra;
  for (const auto& e : std::filesystem::directory_iterator(aptDir / "sources.list.d", ec)) {
    extra.push_back(e.path());
  }
  std::sort(extra.begin(), extra.end());
  files.insert(files.end(), extra.begin(), extra.end());
  for (const auto& file : files) {
    std::ifstream in(file);
    std::optional<std::string> uri;
    if (file.extension() == ".sources") {
      uri = fromDeb822(in, suite);
    } else if (file.extension() == ".list" || file.filename() == "sources.list") {
      uri = fromOneLine(in, suite);
    }
    if (uri) return *uri;
  }
  throw Error(fmt::format("no Debian mirror for '{}' configured in {}", suite, aptDir.string()));
}

}  // namespace fcvm::setup
