#include "worker/image_cache.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "base/paths.h"
#include "base/sha256.h"
#include "base/subprocess.h"
#include "base/unique_fd.h"
#include "ipc/vm_spec.h"

namespace fcvm::worker {
namespace {

constexpr auto kPodmanTimeout = std::chrono::minutes(10);

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

CommandResult mustRun(const std::vector<std::string>& argv, const CommandOptions& options,
                      const std::string& what) {
  auto r = runCommand(argv, options);
  if (r.exitCode != 0) {
    throw Error(fmt::format("{}: {} failed (exit {}): {}", what, argv[0], r.exitCode,
                            trim(r.output).substr(0, 400)));
  }
  return r;
}

uint64_t treeBytes(const std::filesystem::path& dir) {
  uint64_t total = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    struct stat st {};
    if (::lstat(e.path().c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

// How the guest names the prepared image, kept beside its disk (written before the disk is renamed
// into place, so a disk never exists without it).
void writeReference(const std::filesystem::path& dir, const std::string& reference) {
  std::ofstream out(dir / "reference");
  out << reference << "\n";
  if (!out) throw Error("write " + (dir / "reference").string());
}

// The HEALTHCHECK of the image `reference` in the podman store at `store`, as podman's Test list:
// ["CMD-SHELL", cmd] / ["CMD", argv...] / ["NONE"]; kept beside the disk like the reference.
void writeHealthcheck(const std::filesystem::path& dir, const std::string& inspectJson) {
  nlohmann::json test = nlohmann::json::array();
  auto images = nlohmann::json::parse(inspectJson);
  if (images.is_array() && !images.empty() && images[0].contains("Healthcheck") &&
      images[0]["Healthcheck"].is_object() && images[0]["Healthcheck"].contains("Test")) {
    test = images[0]["Healthcheck"]["Test"];
  }
  std::ofstream out(dir / "healthcheck.json");
  out << test.dump() << "\n";
  if (!out) throw Error("write " + (dir / "healthcheck.json").string());
}

std::vector<std::string> readHealthcheck(const std::filesystem::path& dir) {
  std::ifstream in(dir / "healthcheck.json");
  auto test = nlohmann::json::parse(in, nullptr, false);
  if (!test.is_array() || test.empty() || !test[0].is_string()) return {};
  std::vector<std::string> words;
  for (const auto& w : test) {
    if (!w.is_string()) return {};
    words.push_back(w.get<std::string>());
  }
  if (words[0] == "CMD-SHELL" && words.size() == 2) return {"/bin/sh", "-c", words[1]};
  if (words[0] == "CMD" && words.size() > 1) return {words.begin() + 1, words.end()};
  return {};  // NONE, or a form podman would not run either
}

std::string readReference(const std::filesystem::path& dir) {
  std::ifstream in(dir / "reference");
  std::string reference;
  if (!std::getline(in, reference) || reference.empty()) {
    throw Error("image cache entry " + dir.string() + " has no reference");
  }
  return reference;
}

// The line of podman's output that says what went wrong (rootless podman prints warnings first).
std::string podmanError(const std::string& output) {
  std::string last;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("Error: ")) return line.substr(7);
    if (!line.empty()) last = line;
  }
  return last;
}

std::string homeOf(uid_t uid) {
  std::vector<char> buffer(16384);
  passwd entry{};
  passwd* found = nullptr;
  if (::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) != 0 || found == nullptr) {
    return "/";
  }
  return entry.pw_dir;
}

// podman as the image's owner, in the owner's storage: the client's storage settings, nothing of
// the worker's environment.
CommandOptions asOwner(const ImageRequest& request, std::chrono::milliseconds timeout) {
  CommandOptions options = CommandOptions::withTimeout(timeout);
  options.credentials = request.owner;
  options.cwd = "/";
  std::vector<std::string> env = {
      "PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"};
  bool home = false;
  for (const auto& e : request.podmanEnv) {
    auto name = e.substr(0, e.find('='));
    const auto& allowed = ipc::podmanEnvNames();
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) continue;
    home |= name == "HOME";
    env.push_back(e);
  }
  if (!home) env.push_back("HOME=" + homeOf(request.owner.uid));
  options.environment = std::move(env);
  return options;
}

std::string whoseStorage(const Credentials& owner) {
  return owner.uid == 0 ? "root's podman storage"
                        : fmt::format("the podman storage of uid {}", owner.uid);
}

// The sha256 of the whole file behind `fd` (read from its start), copying the bytes to `copy`
// on the way if that is open.
std::string hashArchive(int fd, int copy, const std::string& what) {
  Sha256 hash;
  std::vector<char> buf(1 << 20);
  for (off_t offset = 0;;) {
    ssize_t n = retryEintr([&] { return ::pread(fd, buf.data(), buf.size(), offset); });
    checkSys(n, "read {}", what);
    if (n == 0) break;
    hash.update({buf.data(), static_cast<size_t>(n)});
    for (ssize_t done = 0; copy >= 0 && done < n;) {
      ssize_t w = retryEintr(
          [&] { return ::write(copy, buf.data() + done, static_cast<size_t>(n - done)); });
      checkSys(w, "copy {}", what);
      done += w;
    }
    offset += n;
  }
  return hash.hex();
}

}  // namespace

ImageCache::ImageCache(std::filesystem::path dir) : dir_(std::move(dir)) {
  ensureOwnedDirectory(dir_, 0755);
}

PreparedImage ImageCache::prepare(const ImageRequest& request, const std::string& logFile) {
  const std::string& image = request.image;
  PreparedImage prepared;
  std::string archiveName;  // the path the user gave, for messages
  bool isArchive = ipc::isArchiveImage(image);
  if (isArchive) archiveName = image.substr(image.find(':') + 1);
  std::string hostInspect;  // the owner's view of the image (a docker-format HEALTHCHECK is here)
  std::string key;
  if (isArchive) {
    if (request.archiveFd < 0) {
      throw Error(fmt::format("image archive {} was not handed over by the client", archiveName));
    }
    prepared.digest = hashArchive(request.archiveFd, -1, archiveName);
    key = prepared.digest.substr(0, 32);
  } else {
    auto r = runCommand({"podman", "image", "inspect", image},
                        asOwner(request, std::chrono::seconds(60)));
    if (r.exitCode != 0) {
      throw Error(fmt::format("image '{}' is not in {} ({}); podman import/load/pull it first",
                              image, whoseStorage(request.owner), podmanError(r.output)));
    }
    auto images = nlohmann::json::parse(r.output, nullptr, false);
    if (!images.is_array() || images.empty() || !images[0].contains("Id") ||
        !images[0]["Id"].is_string()) {
      throw Error(fmt::format("podman image inspect {}: unexpected output", image));
    }
    prepared.digest = images[0]["Id"].get<std::string>();
    hostInspect = r.output;
    // A rootless store holds whatever its owner put there: its entries are that owner's alone.
    key = (request.owner.uid == 0 ? "" : fmt::format("u{}-", request.owner.uid)) +
          prepared.digest.substr(0, 32);
  }
  prepared.reference = image;
  // The layout version leads the name, so entries of an older layout are simply not found.
  auto dir = dir_ / ("v4-" + key);
  prepared.disk = dir / "store.ext4";

  ensureOwnedDirectory(dir, 0755);
  UniqueFd lock(::open((dir / "lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock) throw SysError(errno, "open " + (dir / "lock").string());
  checkSys(retryEintr([&] { return ::flock(lock.get(), LOCK_EX); }), "lock {}", dir.string());
  if (std::filesystem::exists(prepared.disk)) {
    prepared.reference = readReference(dir);
    prepared.healthcheck = readHealthcheck(dir);
    return prepared;
  }

  auto staging = dir / "staging";
  std::filesystem::remove_all(staging);
  std::filesystem::create_directories(staging);
  auto quick = CommandOptions::withTimeout(std::chrono::seconds(60));
  CommandOptions slow = CommandOptions::withTimeout(kPodmanTimeout);
  slow.outputFile = logFile;
  // What `podman load` reads: a private copy, so the bytes loaded are the bytes hashed.
  auto archive = (staging / "image.tar").string();
  if (isArchive) {
    UniqueFd copy(static_cast<int>(
        checkSys(::open(archive.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600),
                 "create {}", archive)));
    if (hashArchive(request.archiveFd, copy.get(), archiveName) != prepared.digest) {
      throw Error(
          fmt::format("image archive {} changed while it was read; run again", archiveName));
    }
  } else {
    auto save = asOwner(request, kPodmanTimeout);
    save.outputFile = archive;  // stdout: podman, as the owner, writes through our fd
    save.errorFile = logFile;
    auto r = runCommand({"podman", "save", "--format", "oci-archive", image}, save);
    if (r.exitCode != 0) {
      throw Error(fmt::format("export {} from {} failed (exit {}); see {}", image,
                              whoseStorage(request.owner), r.exitCode, logFile));
    }
  }
  // A podman storage root of its own, in the layout the guest's podman (overlay driver) reads.
  // Podman limits the runroot path to 50 characters, so it gets a short one of its own.
  auto store = staging / "store";
  char runrootTemplate[] = "/tmp/fcvm-rr-XXXXXX";
  if (::mkdtemp(runrootTemplate) == nullptr) throw SysError(errno, "mkdtemp /tmp/fcvm-rr-*");
  std::filesystem::path runroot = runrootTemplate;
  struct RemoveRunroot {
    std::filesystem::path path;
    ~RemoveRunroot() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  } removeRunroot{runroot};
  mustRun({"podman", "--root", store.string(), "--runroot", runroot.string(), "--storage-driver",
           "overlay", "load", "-q", "-i", archive},
          slow, "load " + image);
  auto loaded = mustRun({"podman", "--root", store.string(), "--runroot", runroot.string(),
                         "--storage-driver", "overlay", "images", "-q", "--no-trunc"},
                        quick, "list " + image);
  auto id = trim(loaded.output);
  id = id.substr(0, id.find('\n'));
  if (id.starts_with("sha256:")) id = id.substr(7);
  if (id.empty()) throw Error(fmt::format("load {}: no image in the archive", image));
  if (isArchive) {
    // The guest names an archive's image by its id: the archive's own tags may be absent.
    prepared.reference = id;
  } else {
    // Keep the host's name for it, whatever the archive recorded.
    mustRun({"podman", "--root", store.string(), "--runroot", runroot.string(), "--storage-driver",
             "overlay", "tag", id, image},
            quick, "tag " + image);
  }
  auto bytes = treeBytes(store);
  auto sizeMib = static_cast<uint64_t>(std::ceil(bytes * 1.3 / 1048576.0)) + 32;
  auto tmpDisk = staging / "store.ext4";
  mustRun({"mkfs.ext4", "-q", "-F", "-L", "fcvm-images", "-d", store.string(), tmpDisk.string(),
           std::to_string(sizeMib) + "M"},
          slow, "pack " + image);
  auto inspected = mustRun({"podman", "--root", store.string(), "--runroot", runroot.string(),
                            "--storage-driver", "overlay", "image", "inspect", id},
                           quick, "inspect " + image);
  // `podman save` writes OCI, which has no HEALTHCHECK: take a host image's from the host.
  writeHealthcheck(dir, isArchive ? inspected.output : hostInspect);
  writeReference(dir, prepared.reference);
  std::filesystem::rename(tmpDisk, prepared.disk);
  prepared.healthcheck = readHealthcheck(dir);
  std::filesystem::remove_all(staging);
  prepared.built = true;
  return prepared;
}

}  // namespace fcvm::worker
