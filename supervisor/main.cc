// fcvm-supervisor: one per host (root) or per user. Usually started by the fcvm CLI on demand.
#include <kj/exception.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include "base/error.h"
#include "base/log.h"
#include "supervisor/supervisor_daemon.h"

int main(int argc, char** argv) {
  CLI::App app{"fcvm-supervisor: owns fcvm's VMs, state and records on this host"};
  std::string dataDir, runtimeDir, logFile, logLevel = "info";
  int readyFd = -1;
  app.add_option("--data-dir", dataDir, "Durable records and artifacts (default: see fcvm --help)");
  app.add_option("--runtime-dir", runtimeDir, "Socket, locks and the shared state table");
  app.add_option("--log-file", logFile, "Append logs here (capped, rotated) instead of stderr");
  app.add_option("--log-level", logLevel, "trace|debug|info|warn|error")->capture_default_str();
  app.add_option("--ready-fd", readyFd, "Write 'ready' to this fd once listening (used by fcvm)");
  CLI11_PARSE(app, argc, argv);

  try {
    fcvm::initLogging("supervisor", {fcvm::parseLogLevel(logLevel), logFile});
    auto paths = fcvm::Paths::resolve(::geteuid(), fcvm::processEnvironment());
    if (!dataDir.empty()) paths.dataDir = dataDir;
    if (!runtimeDir.empty()) paths.runtimeDir = runtimeDir;
    fcvm::supervisor::DaemonOptions options{paths, std::nullopt};
    if (readyFd >= 0) options.readyFd = readyFd;
    return fcvm::supervisor::runSupervisor(options);
  } catch (const fcvm::Error& e) {
    spdlog::error("{}", e.what());
    return 1;
  } catch (const kj::Exception& e) {
    spdlog::error("{}", e.getDescription().cStr());
    return 1;
  }
}
