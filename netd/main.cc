// fcvm-netd: the one privileged process that changes the host's networking, for fcvm-supervisor,
// which starts it. Not meant to be run by hand.
#include <kj/exception.h>

#include <CLI/CLI.hpp>

#include "base/error.h"
#include "base/log.h"
#include "netd/netd_daemon.h"

int main(int argc, char** argv) {
  CLI::App app{"fcvm-netd: builds and removes VMs' networks for fcvm-supervisor (started by it)"};
  std::string dataDir, runtimeDir, logLevel = "info";
  int readyFd = -1;
  app.add_option("--data-dir", dataDir, "The supervisor's data dir")->required();
  app.add_option("--runtime-dir", runtimeDir, "The supervisor's runtime dir")->required();
  app.add_option("--ready-fd", readyFd, "Write 'ready' or 'error: ...' to this fd");
  app.add_option("--log-level", logLevel, "trace|debug|info|warn|error")->capture_default_str();
  std::string logFile;
  app.add_option("--log-file", logFile, "Append logs here (capped, rotated) instead of stderr");
  bool removeAll = false;
  app.add_flag("--remove-all", removeAll,
               "Remove every network on record and exit (no netd may be running for this data "
               "dir)");
  CLI11_PARSE(app, argc, argv);
  try {
    fcvm::initLogging("netd", {fcvm::parseLogLevel(logLevel), logFile});
    fcvm::netd::NetdOptions options;
    options.paths.dataDir = dataDir;
    options.paths.runtimeDir = runtimeDir;
    if (readyFd >= 0) options.readyFd = readyFd;
    if (removeAll) return fcvm::netd::removeAllNetworks(options);
    return fcvm::netd::runNetd(options);
  } catch (const fcvm::Error& e) {
    spdlog::error("{}", e.what());
  } catch (const kj::Exception& e) {
    spdlog::error("{}", e.getDescription().cStr());
  }
  return 1;
}
