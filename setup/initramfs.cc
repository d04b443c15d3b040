#include "setup/initramfs.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "base/error.h"
#include "base/sha256.h"
#include "base/subprocess.h"

namespace fcvm::setup {
namespace {

constexpr int kFormatVersion = 3;

std::string moduleName(const std::string& path) {
  std::string name = std::filesystem::path(path).filename().string();
  name = name.substr(0, name.find(".ko"));
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

}  // namespace

const std::vector<std::string>& guestModules() {
  static const std::vector<std::string> kModules = {
      "virtio_mmio", "virtio_console", "virtio_blk", "virtio_net", "vmw_vsock_virtio_transport",
      "fuse",        "overlay"};
  return kModules;
}

std::vector<std::string> moduleLoadOrder(const std::filesystem::path& modulesDir,
                                         const std::vector<std::string>& wanted) {
  std::ifstream in(modulesDir / "modules.dep");
  if (!in) throw SysError(errno, "open " + (modulesDir / "modules.dep").string());
  std::map<std::string, std::string> pathOf;
  std::map<std::string, std::vector<std::string>> depsOf;
  for (std::string line; std::getline(in, line);) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string path = line.substr(0, colon);
    std::string name = moduleName(path);
    pathOf[name] = path;
    std::istringstream deps(line.substr(colon + 1));
    for (std::string dep; deps >> dep;) depsOf[name].push_back(moduleName(dep));
  }
  // A module another kernel configuration builds in needs no loading (modules.builtin, where the
  // package ships one).
  std::set<std::string> builtIn;
  std::ifstream builtins(modulesDir / "modules.builtin");
  for (std::string line; std::getline(builtins, line);) builtIn.insert(moduleName(line));
  std::vector<std::string> order;
  std::set<std::string> done;
  std::function<void(const std::string&)> visit = [&](const std::string& name) {
    if (done.count(name) || (builtIn.count(name) && !pathOf.count(name))) return;
    auto it = pathOf.find(name);
    if (it == pathOf.end()) throw Error(fmt::format("kernel module '{}' not found", name));
    done.insert(name);
    for (const auto& dep : depsOf[name]) visit(dep);
    order.push_back(it->second);
  };
  for (const auto& name : wanted) visit(moduleName(name));
  return order;
}

void makeInitramfsTree(const std::filesystem::path& tree) {
  for (const char* d : {"dev", "proc", "sys", "run", "tmp", "newroot", "fcvm/modules"}) {
    std::filesystem::create_directories(tree / d);
  }
  checkSys(::mknod((tree / "dev" / "console").c_str(), S_IFCHR | 0600, makedev(5, 1)),
           "mknod {}/dev/console", tree.string());
}

void addInitramfsModules(const std::filesystem::path& tree, const std::filesystem::path& modulesDir,
                         const std::vector<std::string>& modules) {
  std::ofstream order(tree / "fcvm" / "modules.order");
  for (const auto& m : modules) {
    auto name = std::filesystem::path(m).filename();
    std::filesystem::copy_file(modulesDir / m, tree / "fcvm" / "modules" / name);
    order << "modules/" << name.string() << "\n";  // relative to /fcvm
  }
  order.close();
  if (!order) throw Error("write " + (tree / "fcvm" / "modules.order").string());
}

void packInitramfs(const std::filesystem::path& tree, const std::filesystem::path& out) {
  auto r = runCommand({"sh", "-c",
                       fmt::format("cd '{}' && find . | LC_ALL=C sort | cpio -o -H newc "
                                   "--quiet --owner=0:0 > '{}'",
                                   tree.string(), out.string())},
                      CommandOptions::withTimeout(std::chrono::seconds(60)));
  if (r.exitCode != 0) throw Error("cpio failed: " + r.output);
}

InitramfsArtifact ensureInitramfs(const ArtifactStore& store, const KernelArtifact& kernel,
                                  const std::filesystem::path& agentBinary, bool force) {
  if (!std::filesystem::exists(agentBinary)) {
    throw Error(
        fmt::format("fc-agent not found at {} (build it with `make build`)", agentBinary.string()));
  }
  auto modules = moduleLoadOrder(kernel.modules, guestModules());
  Sha256 recipe;
  recipe.update(fmt::format("initramfs v{}\nkernel {}\n", kFormatVersion, kernel.key));
  for (const auto& m : modules) recipe.update(m + "\n");
  recipe.updateFile(agentBinary);
  std::string key = recipe.hex().substr(0, 24);
  auto image = store.path("initramfs", key) / "initramfs.cpio";
  if (store.has("initramfs", key) && !force) return {key, image, false};

  auto staging = store.stage("initramfs", key);
  auto tree = staging.dir() / "tree";
  makeInitramfsTree(tree);
  // Debug info is most of the agent's size and only slows the guest's unpacking of /init.
  auto strip =
      runCommand({"strip", "--strip-all", "-o", (tree / "init").string(), agentBinary.string()},
                 CommandOptions::withTimeout(std::chrono::seconds(60)));
  if (strip.exitCode != 0) throw Error("strip fc-agent: " + strip.output);
  std::filesystem::permissions(tree / "init", std::filesystem::perms(0755));
  addInitramfsModules(tree, kernel.modules, modules);
  packInitramfs(tree, staging.dir() / "initramfs.cpio");
  std::filesystem::remove_all(tree);
  staging.commit();
  return {key, image, true};
}

}  // namespace fcvm::setup
