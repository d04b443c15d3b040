#include "ipc/prepared_image.h"

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/small_file.h"
#include "base/unique_fd.h"

namespace fcvm::ipc {
namespace {

constexpr size_t kMaxText = 4096;
constexpr size_t kMaxHealthcheckWords = 256;

std::string textField(const nlohmann::json& j, const char* name, const std::filesystem::path& file,
                      bool mayBeEmpty) {
  if (!j.contains(name) || !j[name].is_string()) {
    throw Error(fmt::format("{}: '{}' is missing or not text", file.string(), name));
  }
  auto value = j[name].get<std::string>();
  if ((!mayBeEmpty && value.empty()) || value.size() > kMaxText) {
    throw Error(fmt::format("{}: '{}' is empty or too long", file.string(), name));
  }
  return value;
}

}  // namespace

std::string formatPreparedImage(const PreparedImage& image) {
  return nlohmann::json{{"digest", image.digest},
                        {"reference", image.reference},
                        {"disk", image.disk.string()},
                        {"healthcheck", image.healthcheck},
                        {"built", image.built}}
             .dump() +
         "\n";
}

PreparedImage parsePreparedImage(std::string_view text, const std::filesystem::path& file) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) throw Error(fmt::format("{} is not a JSON object", file.string()));
  PreparedImage image;
  image.digest = textField(j, "digest", file, false);
  image.reference = textField(j, "reference", file, false);
  image.disk = textField(j, "disk", file, false);
  if (!image.disk.is_absolute()) {
    throw Error(fmt::format("{}: the disk is not an absolute path", file.string()));
  }
  const auto& check = j.value("healthcheck", nlohmann::json::array());
  if (!check.is_array() || check.size() > kMaxHealthcheckWords) {
    throw Error(fmt::format("{}: 'healthcheck' is not a list of words", file.string()));
  }
  for (const auto& word : check) {
    if (!word.is_string() || word.get<std::string>().size() > kMaxText) {
      throw Error(fmt::format("{}: 'healthcheck' is not a list of words", file.string()));
    }
    image.healthcheck.push_back(word.get<std::string>());
  }
  image.built = j.value("built", false);
  return image;
}

void writePreparedImage(const PreparedImage& image, const std::filesystem::path& file) {
  auto text = formatPreparedImage(image);
  auto tmp = file.string() + ".tmp";
  UniqueFd fd(static_cast<int>(
      checkSys(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600),
               "create {}", tmp)));
  checkSys(::write(fd.get(), text.data(), text.size()), "write {}", tmp);
  fd.reset();
  checkSys(::rename(tmp.c_str(), file.c_str()), "rename {}", tmp);
}

PreparedImage readPreparedImage(const std::filesystem::path& file) {
  return parsePreparedImage(readSmallFile(file, 64 << 10), file);
}

}  // namespace fcvm::ipc
