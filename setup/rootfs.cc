#include "setup/rootfs.h"

#include <sys/stat.h>

#include <fstream>
#include <map>

#include "base/error.h"
#include "base/sha256.h"
#include "base/subprocess.h"

namespace fcvm::setup {
namespace {

constexpr int kRecipeVersion = 1;
constexpr const char* kSuite = "bookworm";
constexpr const char* kImageSize = "1G";
constexpr auto kDebootstrapTimeout = std::chrono::minutes(20);

const char* const kPackages =
    "podman,crun,conmon,fuse3,iproute2,containernetworking-plugins,e2fsprogs,ca-certificates";

// Podman for a guest without systemd: cgroupfs, file events, crun, host network by default (the
// default CNI bridge does not work in this guest).
const std::map<std::string, std::string>& configFiles() {
  static const std::map<std::string, std::string> kFiles = {
      {"etc/containers/containers.conf",
       "# Written by fcvm setup: PID 1 is fc-agent, not systemd.\n"
       "[containers]\n"
       "netns = \"host\"\n"
       "log_driver = \"k8s-file\"\n"
       "[engine]\n"
       "cgroup_manager = \"cgroupfs\"\n"
       "events_logger = \"file\"\n"
       "runtime = \"crun\"\n"},
      {"etc/containers/storage.conf",
       "[storage]\n"
       "driver = \"overlay\"\n"
       "runroot = \"/run/containers/storage\"\n"
       "graphroot = \"/var/lib/containers/storage\"\n"
       "[storage.options]\n"
       "# The host's images, prepared per digest and attached read-only (fc-agent mounts it).\n"
       "additionalimagestores = [\"/var/lib/fcvm-images\"]\n"},
      {"etc/hostname", "fcvm\n"},
      {"etc/hosts", "127.0.0.1 localhost fcvm\n::1 localhost\n"},
      {"etc/resolv.conf", ""},
  };
  return kFiles;
}

void runLogged(const std::vector<std::string>& argv, CommandOptions options) {
  auto r = runCommand(argv, options);
  if (r.exitCode != 0) {
    throw Error(fmt::format("{} failed (exit {}{}); see {}", argv[0], r.exitCode,
                            r.timedOut ? ", timed out" : "", options.outputFile));
  }
}

}  // namespace

RootfsArtifact ensureRootfs(const ArtifactStore& store, const RootfsOptions& options) {
  Sha256 recipe;
  recipe.update(fmt::format("rootfs v{}\n{} {}\n{}\n{}\n", kRecipeVersion, kSuite, options.mirror,
                            kPackages, kImageSize));
  for (const auto& [path, content] : configFiles()) recipe.update(path + "\n" + content);
  std::string key = recipe.hex().substr(0, 24);
  auto image = store.path("rootfs", key) / "rootfs.ext4";
  auto used = [](const std::filesystem::path& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
  };
  if (store.has("rootfs", key) && !options.force) return {key, image, used(image), false};

  auto staging = store.stage("rootfs", key);
  auto tree = staging.dir() / "tree";
  std::filesystem::create_directories(options.packageCache);
  CommandOptions run = CommandOptions::withTimeout(kDebootstrapTimeout);
  run.outputFile = options.logFile;
  runLogged({"debootstrap", "--variant=minbase", "--cache-dir=" + options.packageCache.string(),
             std::string("--include=") + kPackages, kSuite, tree.string(), options.mirror},
            run);
  for (const auto& [path, content] : configFiles()) {
    std::filesystem::create_directories((tree / path).parent_path());
    std::ofstream(tree / path) << content;
  }
  std::filesystem::create_directories(tree / "var/lib/fcvm-images");
  // Package lists and caches are not needed in a guest and only cost space in every copy.
  for (const char* dir : {"var/cache/apt/archives", "var/lib/apt/lists"}) {
    for (const auto& e : std::filesystem::directory_iterator(tree / dir)) {
      if (e.is_regular_file()) std::filesystem::remove(e.path());
    }
  }
  runLogged({"mkfs.ext4", "-q", "-F", "-L", "fcvm-root", "-d", tree.string(),
             (staging.dir() / "rootfs.ext4").string(), kImageSize},
            run);
  std::filesystem::remove_all(tree);
  staging.commit();
  return {key, image, used(image), true};
}

}  // namespace fcvm::setup
