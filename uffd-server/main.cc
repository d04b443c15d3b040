// fcvm-uffd-server: serves one snapshot's memory to its clones, for fcvm-supervisor, which starts
// it. Not meant to be run by hand.
#include <kj/exception.h>

#include <CLI/CLI.hpp>

#include "base/error.h"
#include "base/log.h"
#include "uffd-server/page_server.h"

int main(int argc, char** argv) {
  CLI::App app{
      "fcvm-uffd-server: serves a snapshot's memory to its clones (started by "
      "fcvm-supervisor, not by hand)"};
  fcvm::uffd::ServerOptions options;
  std::string image, socket, uffdSocket, logLevel = "info";
  int readyFd = -1;
  unsigned owner = 0;
  app.add_option("--snapshot-id", options.snapshotId, "The snapshot's id")->required();
  app.add_option("--image", image, "The snapshot's memory image")->required();
  app.add_option("--socket", socket, "The supervisor's socket to this server")->required();
  app.add_option("--uffd-socket", uffdSocket, "Where Firecracker peers connect")->required();
  app.add_option("--owner", owner, "The snapshot owner's uid")->required();
  app.add_option("--ready-fd", readyFd, "Write 'ready' or 'error: ...' to this fd");
  app.add_option("--log-level", logLevel, "trace|debug|info|warn|error")->capture_default_str();
  std::string logFile;
  app.add_option("--log-file", logFile, "Append logs here (capped, rotated) instead of stderr");
  CLI11_PARSE(app, argc, argv);
  try {
    fcvm::initLogging("uffd-server", {fcvm::parseLogLevel(logLevel), logFile});
    options.image = image;
    options.socket = socket;
    options.uffdSocket = uffdSocket;
    options.owner = owner;
    if (readyFd >= 0) options.readyFd = readyFd;
    return fcvm::uffd::runPageServer(options);
  } catch (const fcvm::Error& e) {
    spdlog::error("{}", e.what());
  } catch (const kj::Exception& e) {
    spdlog::error("{}", e.getDescription().cStr());
  }
  return 1;
}
