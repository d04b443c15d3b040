#include "base/capped_file.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "base/error.h"

namespace fcvm {
namespace {

UniqueFd openForAppend(const std::filesystem::path& path, int extraFlags) {
  return UniqueFd(static_cast<int>(
      checkSys(::open(path.c_str(),
                      O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | extraFlags, 0600),
               "open {}", path.string())));
}

}  // namespace

std::filesystem::path previousLogOf(const std::filesystem::path& path) {
  auto previous = path;
  previous += ".1";
  return previous;
}

CappedFile::CappedFile(std::filesystem::path path, uint64_t cap, std::function<void(int)> onRotate)
    : path_(std::move(path)),
      cap_(cap),
      onRotate_(std::move(onRotate)),
      fd_(openForAppend(path_, 0)) {
  struct stat st {};
  checkSys(::fstat(fd_.get(), &st), "stat {}", path_.string());
  size_ = static_cast<uint64_t>(st.st_size);
}

void CappedFile::rotate() {
  auto previous = previousLogOf(path_);
  checkSys(::rename(path_.c_str(), previous.c_str()), "rename {}", path_.string());
  fd_ = openForAppend(path_, O_TRUNC);
  size_ = 0;
  if (onRotate_) onRotate_(fd_.get());
}

void CappedFile::append(std::span<const iovec> pieces) {
  size_t want = 0;
  for (const auto& piece : pieces) want += piece.iov_len;
  if (want == 0) return;
  if (size_ > 0 && size_ + want > cap_ / 2) rotate();
  ssize_t n = retryEintr(
      [&] { return ::writev(fd_.get(), pieces.data(), static_cast<int>(pieces.size())); });
  checkSys(n, "write {}", path_.string());
  size_ += static_cast<uint64_t>(n);
  if (static_cast<size_t>(n) != want) throw Error("short write to " + path_.string());
}

void CappedFile::append(std::string_view bytes) {
  iovec piece{const_cast<char*>(bytes.data()), bytes.size()};
  append(std::span<const iovec>(&piece, 1));
}

uint64_t logCapFromEnvironment(const char* name, uint64_t fallback, uint64_t least) {
  const char* text = std::getenv(name);
  if (text == nullptr) return fallback;
  char* end = nullptr;
  errno = 0;
  unsigned long long cap = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || cap < least) {
    spdlog::warn("{}={} is not a number of bytes >= {}; using {}", name, text, least, fallback);
    return fallback;
  }
  return cap;
}

}  // namespace fcvm
