#include "setup/guest_kernel.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "base/error.h"
#include "base/subprocess.h"
#include "setup/vmlinux.h"

namespace fcvm::setup {
namespace {

using nlohmann::json;

constexpr auto kAptTimeout = std::chrono::minutes(10);

std::string run(const std::vector<std::string>& argv, const CommandOptions& options) {
  auto r = runCommand(argv, options);
  if (r.exitCode != 0) {
    throw Error(fmt::format("{} failed (exit {}{}): {}", argv[0], r.exitCode,
                            r.timedOut ? ", timed out" : "", r.output.substr(0, 400)));
  }
  return r.output;
}

// linux-image-<abi>-<flavour>, e.g. linux-image-6.1.0-57-amd64 or linux-image-6.12.12+bpo-amd64;
// the version part has no '-', so -amd64 never matches a -cloud-amd64 package.
std::regex concretePackage(const KernelPackage& kernel) {
  return std::regex("linux-image-[0-9][^-\\s]*(-[0-9]+)?-" + kernel.flavour);
}

// The concrete kernel package behind the meta package, and its candidate version.
std::pair<std::string, std::string> resolvePackage(const KernelPackage& kernel) {
  auto timeout = CommandOptions::withTimeout(std::chrono::seconds(30));
  auto depends = run({"apt-cache", "depends", "--important", kernel.metaPackage}, timeout);
  std::smatch m;
  static const std::regex kDep(R"(Depends:\s*(\S+))");
  std::string package;
  for (auto it = std::sregex_iterator(depends.begin(), depends.end(), kDep);
       it != std::sregex_iterator(); ++it) {
    std::string name = (*it)[1];
    if (std::regex_match(name, concretePackage(kernel))) package = name;
  }
  if (package.empty()) {
    throw Error(
        fmt::format("apt-cache does not know {} (run apt-get update?)", kernel.metaPackage));
  }
  auto show = run({"apt-cache", "show", "--no-all-versions", package}, timeout);
  static const std::regex kVersion(R"((^|\n)Version:\s*([^\s]+))");
  if (!std::regex_search(show, m, kVersion)) throw Error("no version for " + package);
  return {package, m[2]};
}

// apt-cache takes seconds; its answer only changes when apt's package lists do (apt-get update
// renames files into /var/lib/apt/lists, which moves the directory's mtime).
std::pair<std::string, std::string> resolvePackageCached(const ArtifactStore& store,
                                                         const KernelPackage& kernel) {
  std::error_code ec;
  auto lists = std::filesystem::last_write_time("/var/lib/apt/lists", ec);
  auto stamp = ec ? std::string() : std::to_string(lists.time_since_epoch().count());
  auto cache = store.path("kernel", "." + kernel.metaPackage + ".resolved.json");
  if (!stamp.empty()) {
    try {
      std::ifstream in(cache);
      json j = json::parse(in);
      if (j.at("lists") == stamp) return {j.at("package"), j.at("version")};
    } catch (const json::exception&) {
      // no cache yet, or a damaged one: ask apt
    }
  }
  auto resolved = resolvePackage(kernel);
  if (!stamp.empty()) {
    std::filesystem::create_directories(cache.parent_path());
    std::ofstream(cache)
        << json{{"lists", stamp}, {"package", resolved.first}, {"version", resolved.second}}.dump()
        << "\n";
  }
  return resolved;
}

std::string keyOf(const std::string& package, const std::string& version) {
  std::string key = package + "_" + version;
  for (char& c : key) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') c = '_';
  }
  return key;
}

KernelArtifact describe(const ArtifactStore& store, const std::string& key) {
  auto dir = store.path("kernel", key);
  std::ifstream in(dir / "artifact.json");
  json meta = json::parse(in);
  return {key, meta.at("package"), meta.at("version"), dir / "vmlinux", dir / "modules", false};
}

std::optional<std::string> newestStored(const ArtifactStore& store, const KernelPackage& kernel) {
  std::optional<std::string> newest;
  std::filesystem::file_time_type newestTime;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(store.path("kernel", ""), ec)) {
    auto name = e.path().filename().string();
    if (name.starts_with(".") || !std::filesystem::exists(e.path() / "artifact.json")) continue;
    if (!std::regex_match(describe(store, name).package, concretePackage(kernel))) continue;
    auto t = std::filesystem::last_write_time(e.path());
    if (!newest || t > newestTime) newest = name, newestTime = t;
  }
  return newest;
}

}  // namespace

KernelArtifact ensureKernel(const ArtifactStore& store, bool force, const std::string& logFile,
                            const KernelPackage& kernel) {
  std::string package, version;
  try {
    std::tie(package, version) = resolvePackageCached(store, kernel);
  } catch (const Error& e) {
    if (auto stored = newestStored(store, kernel); stored && !force) {
      return describe(store, *stored);
    }
    throw;
  }
  std::string key = keyOf(package, version);
  if (store.has("kernel", key) && !force) return describe(store, key);

  auto staging = store.stage("kernel", key);
  const auto& dir = staging.dir();
  CommandOptions options = CommandOptions::withTimeout(kAptTimeout);
  options.cwd = dir.string();
  options.outputFile = logFile;
  // Downloads as root into our own directory: no need for apt's sandbox user.
  run({"apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", package + "=" + version},
      options);
  std::filesystem::path deb;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".deb") deb = e.path();
  }
  if (deb.empty()) throw Error("apt-get download left no .deb for " + package);
  run({"dpkg-deb", "-x", deb.string(), (dir / "unpacked").string()}, options);

  std::filesystem::path vmlinuz;
  for (const auto& e : std::filesystem::directory_iterator(dir / "unpacked" / "boot")) {
    if (e.path().filename().string().starts_with("vmlinuz-")) vmlinuz = e.path();
  }
  if (vmlinuz.empty()) throw Error(package + " has no /boot/vmlinuz-*");
  std::string release = vmlinuz.filename().string().substr(std::string("vmlinuz-").size());
  extractVmlinux(vmlinuz, dir / "vmlinux");
  // The package ships no modules.dep: depmod writes it at install time, which we never do.
  run({"depmod", "-b", (dir / "unpacked").string(), release}, options);
  std::filesystem::rename(dir / "unpacked" / "lib" / "modules" / release, dir / "modules");
  std::filesystem::copy_file(dir / "unpacked" / "boot" / ("config-" + release), dir / "config");
  std::filesystem::remove_all(dir / "unpacked");
  std::filesystem::remove(deb);
  std::ofstream(dir / "artifact.json")
      << json{{"package", package}, {"version", version}, {"release", release}}.dump(2) << "\n";
  staging.commit();
  auto artifact = describe(store, key);
  artifact.built = true;
  return artifact;
}

}  // namespace fcvm::setup
