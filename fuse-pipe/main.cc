// fuse-pipe: serve a host directory over a byte stream, or mount such a stream with FUSE.
//   fuse-pipe serve --root DIR --listen unix:PATH [--read-only]
//   fuse-pipe mount --connect unix:PATH MOUNTPOINT [--readers N] [-o allow_other]
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "fuse-pipe/client_connection.h"
#include "fuse-pipe/endpoint.h"
#include "fuse-pipe/error.h"
#include "fuse-pipe/fuse_client.h"
#include "fuse-pipe/server.h"
#include "fuse-pipe/transport.h"

namespace fp = fcvm::fusepipe;

namespace {

void signalReady(int fd) {
  if (fd < 0) return;
  (void)!::write(fd, "1", 1);
  ::close(fd);
}

int serve(const fp::ServerOptions& options, const std::string& listen, int readyFd) {
  // Block the stop signals in every thread (threads inherit the mask) and read them from an fd.
  sigset_t stopSignals;
  sigemptyset(&stopSignals);
  sigaddset(&stopSignals, SIGINT);
  sigaddset(&stopSignals, SIGTERM);
  sigaddset(&stopSignals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stopSignals, nullptr);
  (void)::signal(SIGPIPE, SIG_IGN);
  // A client write past the host's file size limit must fail with EFBIG, not kill the server.
  (void)::signal(SIGXFSZ, SIG_IGN);
  fcvm::UniqueFd stopFd(::signalfd(-1, &stopSignals, SFD_CLOEXEC));
  if (!stopFd) fp::throwErrno("signalfd", "");

  // Every inode the client looks up holds an O_PATH fd: allow as many as the hard limit does.
  rlimit files;
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }

  fp::Endpoint endpoint = fp::parseEndpoint(listen);
  fp::Server server(fp::listenEndpoint(endpoint), options);
  spdlog::info("fuse-pipe: serving {}{} on {}", options.rootPath,
               options.readOnly ? " read-only" : "", listen);
  signalReady(readyFd);
  server.run(stopFd.get());
  spdlog::info("fuse-pipe: stopping");
  return 0;
}

int mount(const std::string& connect, fp::MountOptions options) {
  fcvm::UniqueFd stream = fp::connectEndpoint(fp::parseEndpoint(connect));
  fp::Hello server = fp::clientHandshake(stream.get());
  // A read-only server is mounted read-only, so the kernel refuses writes before asking.
  if (server.flags & fp::kHelloReadOnly) options.fuseOptions.push_back("ro");
  fp::ClientConnection connection(std::move(stream));
  fp::runMount(connection, options);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fuse-pipe: a host directory served over one byte stream and mounted with FUSE"};
  app.require_subcommand(1);
  std::string logLevel = "info";
  app.add_option("--log-level", logLevel, "trace, debug, info, warn, error or off")
      ->capture_default_str();

  fp::ServerOptions serverOptions;
  std::string listen;
  int serveReadyFd = -1;
  CLI::App* serveCmd = app.add_subcommand("serve", "serve a directory to fuse-pipe clients");
  serveCmd->add_option("--root", serverOptions.rootPath, "directory to serve")
      ->required()
      ->check(CLI::ExistingDirectory);
  serveCmd->add_option("--listen", listen, "unix:PATH")->required();
  serveCmd->add_flag("--read-only", serverOptions.readOnly, "refuse every mutation with EROFS");
  serveCmd->add_option("--workers", serverOptions.workersPerSession, "threads per connection")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  serveCmd->add_option("--ready-fd", serveReadyFd, "write '1' to and close this fd once listening");

  fp::MountOptions mountOptions;
  std::string connect;
  std::vector<std::string> fuseOptions;
  CLI::App* mountCmd = app.add_subcommand("mount", "mount a fuse-pipe server (foreground)");
  mountCmd->add_option("--connect", connect, "unix:PATH")->required();
  mountCmd->add_option("mountpoint", mountOptions.mountpoint, "where to mount")
      ->required()
      ->check(CLI::ExistingDirectory);
  mountCmd->add_option("--readers", mountOptions.readers, "/dev/fuse reader threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  mountCmd->add_option("-o", fuseOptions, "FUSE mount options, e.g. allow_other")->delimiter(',');
  mountCmd
      ->add_option("--cache-timeout", mountOptions.cacheTimeoutSeconds,
                   "seconds the kernel caches attributes and names")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  mountCmd->add_option("--ready-fd", mountOptions.readyFd,
                       "write '1' to and close this fd once mounted");

  CLI11_PARSE(app, argc, argv);

  auto logger = spdlog::stderr_color_mt("fuse-pipe");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(logLevel));

  try {
    if (*serveCmd) return serve(serverOptions, listen, serveReadyFd);
    mountOptions.fuseOptions = fuseOptions;
    return mount(connect, mountOptions);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
}
