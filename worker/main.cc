// fcvm-worker: runs one VM for fcvm-supervisor, which starts it. Not meant to be run by hand.
#include <kj/exception.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "base/error.h"
#include "base/log.h"
#include "worker/worker_daemon.h"

int main(int argc, char** argv) {
  CLI::App app{"fcvm-worker: runs one VM for fcvm-supervisor (started by it, not by hand)"};
  std::string id, dataDir, runtimeDir, memoryDir, logLevel = "info";
  int readyFd = -1, imageFd = -1;
  std::string owner = "0:0";
  app.add_option("--id", id, "The VM's id")->required();
  app.add_option("--data-dir", dataDir, "The supervisor's data dir")->required();
  app.add_option("--runtime-dir", runtimeDir, "The supervisor's runtime dir")->required();
  app.add_option("--memory-dir", memoryDir, "Where guest RAM files go (tmpfs)")->required();
  app.add_option("--ready-fd", readyFd, "Write 'ready' or 'error: ...' to this fd");
  app.add_option("--owner", owner, "UID:GID of the VM's owner, whose rights read host images")
      ->capture_default_str();
  app.add_option("--image-fd", imageFd, "The image archive the client opened");
  std::string restoreDir;
  int memoryFd = -1;
  app.add_option("--restore-dir", restoreDir, "Start a clone of the snapshot in this directory");
  app.add_option("--memory-fd", memoryFd, "The snapshot's memory image, for a clone");
  int tapFd = -1;
  app.add_option("--tap-fd", tapFd, "The VM's TAP (bridged network), from fcvm-netd");
  std::vector<int> volumeFds;
  app.add_option("--volume-fd", volumeFds,
                 "Each --map directory of the spec in order, as the client opened it");
  app.add_option("--log-level", logLevel, "trace|debug|info|warn|error")->capture_default_str();
  std::string configFile;
  app.add_option("--config", configFile, "The host's fcvm configuration file (the jail's uids)");
  bool prepareImage = false, imagePrepared = false;
  app.add_flag("--prepare-image", prepareImage,
               "Only prepare the VM's image and write <vm dir>/image.json");
  app.add_flag("--image-prepared", imagePrepared,
               "The image is prepared: read <vm dir>/image.json");
  std::string logFile;
  app.add_option("--log-file", logFile, "Append logs here (capped, rotated) instead of stderr");
  CLI11_PARSE(app, argc, argv);
  try {
    fcvm::initLogging("worker", {fcvm::parseLogLevel(logLevel), logFile});
    fcvm::worker::WorkerOptions options;
    options.paths = {dataDir, runtimeDir, memoryDir, configFile};
    options.id = id;
    if (readyFd >= 0) options.readyFd = readyFd;
    unsigned uid = 0, gid = 0;
    if (std::sscanf(owner.c_str(), "%u:%u", &uid, &gid) != 2) {
      throw fcvm::Error("--owner must be UID:GID, not " + owner);
    }
    options.owner = fcvm::Credentials::ofUser(uid, gid);
    options.imageFd = imageFd;
    options.restoreDir = restoreDir;
    options.memoryFd = memoryFd;
    options.tapFd = tapFd;
    options.volumeFds = volumeFds;
    options.imagePrepared = imagePrepared;
    if (prepareImage) return fcvm::worker::prepareImageOnly(options);
    return fcvm::worker::runWorker(options);
  } catch (const fcvm::Error& e) {
    spdlog::error("{}", e.what());
  } catch (const kj::Exception& e) {
    spdlog::error("{}", e.getDescription().cStr());
  }
  return 1;
}
