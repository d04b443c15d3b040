// fuse-pipe: serve a host directory over a byte stream, or mount such a stream with FUSE.
//   fuse-pipe serve (--root DIR | --root-fd N) (--listen unix:PATH | --stream-fd N) [--read-only]
//                   [--sandbox [--user UID:GID[:GROUP,...]]]
//   fuse-pipe mount --connect unix:PATH MOUNTPOINT [--readers N] [-o allow_other]
#include <fcntl.h>
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
#include "fuse-pipe/sandbox.h"
#include "fuse-pipe/server.h"
#include "fuse-pipe/transport.h"

namespace fp = fcvm::fusepipe;

namespace {

void signalReady(int fd) {
  if (fd < 0) return;
  (void)!::write(fd, "1", 1);
  ::close(fd);
}

// Why serving could not start, for whoever waits on the ready fd (one line after "error: ").
void reportFailure(int fd, const std::string& why) {
  if (fd < 0) return;
  std::string line = "error: " + why.substr(0, 1000) + "\n";
  (void)!::write(fd, line.data(), line.size());
}

struct ServeArgs {
  fp::ServerOptions server;
  int rootFd = -1;     // instead of server.rootPath
  std::string listen;  // unix:PATH, or
  int streamFd = -1;   // one connected stream
  bool sandbox = false;
  std::string user;  // UID:GID[:GROUP,...], with sandbox
  int readyFd = -1;
};

// "UID:GID[:G1,G2,...]".
fcvm::Credentials parseUser(const std::string& text) {
  fcvm::Credentials c;
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t colon; (colon = text.find(':', start)) != std::string::npos; start = colon + 1) {
    parts.push_back(text.substr(start, colon - start));
  }
  parts.push_back(text.substr(start));
  auto number = [&](const std::string& s) {
    size_t used = 0;
    unsigned long v = s.empty() ? 0 : std::stoul(s, &used);
    if (s.empty() || used != s.size() || v > 0xfffffffeUL) {
      throw std::invalid_argument("--user: not UID:GID[:GROUP,...]: " + text);
    }
    return static_cast<uint32_t>(v);
  };
  if (parts.size() < 2 || parts.size() > 3) {
    throw std::invalid_argument("--user: not UID:GID[:GROUP,...]: " + text);
  }
  c.uid = number(parts[0]);
  c.gid = number(parts[1]);
  if (parts.size() == 3 && !parts[2].empty()) {
    std::string groups = parts[2] + ",";
    for (size_t from = 0, comma; (comma = groups.find(',', from)) != std::string::npos;
         from = comma + 1) {
      c.groups.push_back(number(groups.substr(from, comma - from)));
    }
  }
  return c;
}

int serve(ServeArgs args) {
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

  std::string shown = args.server.rootPath;
  if (args.rootFd >= 0) {
    args.server.rootPath = fmt::format("/proc/self/fd/{}", args.rootFd);
    shown = fmt::format("directory fd {}", args.rootFd);
  }
  fcvm::UniqueFd listener;
  if (args.streamFd < 0) listener = fp::listenEndpoint(fp::parseEndpoint(args.listen));
  if (args.sandbox) {
    int rootFd = args.rootFd;
    if (rootFd < 0) rootFd = ::open(args.server.rootPath.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootFd < 0) fp::throwErrno("open", args.server.rootPath);
    fp::SandboxOptions sandbox{.readOnly = args.server.readOnly, .user = std::nullopt};
    if (!args.user.empty()) sandbox.user = parseUser(args.user);
    args.server.rootPath = fp::enterSandbox(rootFd, sandbox);
    fp::confineServer(/*switchesCredentials=*/::geteuid() == 0);
  }
  spdlog::info("fuse-pipe: serving {}{}{} on {}", shown, args.server.readOnly ? " read-only" : "",
               args.sandbox ? " (sandboxed)" : "",
               args.streamFd >= 0 ? fmt::format("stream fd {}", args.streamFd) : args.listen);
  signalReady(args.readyFd);
  if (args.streamFd >= 0) {
    fp::serveStream(fcvm::UniqueFd(args.streamFd), args.server, stopFd.get());
  } else {
    fp::Server server(std::move(listener), args.server);
    server.run(stopFd.get());
  }
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

  ServeArgs serveArgs;
  CLI::App* serveCmd = app.add_subcommand("serve", "serve a directory to fuse-pipe clients");
  auto* root = serveCmd->add_option("--root", serveArgs.server.rootPath, "directory to serve")
                   ->check(CLI::ExistingDirectory);
  auto* rootFd =
      serveCmd->add_option("--root-fd", serveArgs.rootFd, "an inherited fd of the directory");
  root->excludes(rootFd);
  serveCmd->add_option("--listen", serveArgs.listen, "unix:PATH: accept clients there");
  serveCmd->add_option("--stream-fd", serveArgs.streamFd,
                       "serve this one connected stream (a VM channel) and exit when it ends");
  serveCmd->add_flag("--read-only", serveArgs.server.readOnly, "refuse every mutation with EROFS");
  serveCmd->add_option("--workers", serveArgs.server.workersPerSession, "threads per connection")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  serveCmd->add_flag("--sandbox", serveArgs.sandbox,
                     "confine the server to the directory (as PID 1 of new PID and mount "
                     "namespaces: see sandbox.h)");
  serveCmd
      ->add_option("--user", serveArgs.user,
                   "with --sandbox: serve as UID:GID[:GROUP,...] instead of as each caller")
      ->needs("--sandbox");
  serveCmd->add_option("--ready-fd", serveArgs.readyFd,
                       "write '1' to and close this fd once listening");

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
    if (*serveCmd) {
      if (serveArgs.server.rootPath.empty() == (serveArgs.rootFd < 0)) {
        throw std::invalid_argument("serve needs one of --root and --root-fd");
      }
      if (serveArgs.listen.empty() == (serveArgs.streamFd < 0)) {
        throw std::invalid_argument("serve needs one of --listen and --stream-fd");
      }
      int readyFd = serveArgs.readyFd;
      try {
        return serve(std::move(serveArgs));
      } catch (const std::exception& e) {
        reportFailure(readyFd, e.what());
        throw;
      }
    }
    mountOptions.fuseOptions = fuseOptions;
    return mount(connect, mountOptions);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
}
