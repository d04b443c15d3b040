#include "cli/fcvm_cli.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/supervisor_session.h"
#include "tests/support/temp_dir.h"

namespace fcvm::cli {
namespace {

struct Outcome {
  int code;
  std::string out;
  std::string err;
};

Outcome run(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
  args.insert(args.begin(), "fcvm");
  std::ostringstream out, err;
  Environment environment = [env](const char* name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  int code = runCli(args, {out, err, environment, 0});
  return {code, out.str(), err.str()};
}

// A failed call reads as one plain line: no "remote exception:" from any hop, and a connection
// that went away is said to be the supervisor's.
TEST(FcvmCliTest, FailedCallsReadAsOnePlainLine) {
  auto failed = [](kj::Exception::Type type, const char* text) {
    return describe(kj::Exception(type, __FILE__, __LINE__, kj::heapString(text)));
  };
  using Type = kj::Exception::Type;
  EXPECT_EQ(failed(Type::FAILED,
                   "remote exception: snapshot of VM 'v' failed: remote exception: VM 'v' is not "
                   "running"),
            "snapshot of VM 'v' failed: VM 'v' is not running");
  const std::string lost =
      "lost the connection to fcvm-supervisor (it stopped or restarted); `fcvm ls` shows what "
      "became of the VM";
  EXPECT_EQ(failed(Type::DISCONNECTED, "Peer disconnected."), lost);
  EXPECT_EQ(failed(Type::FAILED,
                   "::writev(fd, iov.begin(), iov.size()): Broken pipe; iovTotal = 40; iov.size() "
                   "= 2"),
            lost);
  // The supervisor's own words about a broken pipe elsewhere are passed on as they are.
  EXPECT_EQ(failed(Type::FAILED, "remote exception: write the log: Broken pipe"),
            "write the log: Broken pipe");
}

TEST(FcvmCliTest, EveryCommandAnswersHelp) {
  for (std::vector<std::string> cmd : {std::vector<std::string>{},
                                       {"version"},
                                       {"setup"},
                                       {"podman", "run"},
                                       {"ls"},
                                       {"inspect"},
                                       {"exec"},
                                       {"logs"},
                                       {"stop"},
                                       {"rm"},
                                       {"snapshot", "create"},
                                       {"snapshot", "serve"},
                                       {"snapshot", "run"},
                                       {"doctor"},
                                       {"system", "df"},
                                       {"system", "prune"},
                                       {"supervisor", "status"},
                                       {"supervisor", "start"},
                                       {"supervisor", "stop"}}) {
    cmd.push_back("--help");
    auto r = run(cmd);
    EXPECT_EQ(r.code, 0) << cmd[0];
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << cmd[0] << ": " << r.out;
  }
  auto runHelp = run({"podman", "run", "--help"});
  for (const char* flag : {"--mem", "--cpu", "--rootfs-size", "--accel", "--map", "-d"}) {
    EXPECT_NE(runHelp.out.find(flag), std::string::npos) << flag;
  }
}

TEST(FcvmCliTest, BadRunOptionsAreRefusedInOneLine) {
  // Refused before any VM is created.
  auto noGuestPath = run({"podman", "run", "--map", "/a", "img"});
  EXPECT_EQ(noGuestPath.code, kExitError);
  EXPECT_EQ(noGuestPath.err, "fcvm: error: --map /a: not HOSTDIR:GUESTPATH[:ro]\n");
  auto relative = run({"podman", "run", "-v", "/a:data:ro", "img"});
  EXPECT_EQ(relative.code, kExitError);
  EXPECT_EQ(relative.err, "fcvm: error: --map /a:data:ro: the guest path is not absolute\n");
  auto badPort = run({"podman", "run", "-p", "80", "img"});
  EXPECT_EQ(badPort.code, kExitError);
  EXPECT_EQ(
      badPort.err,
      "fcvm: error: -p 80: not HOSTPORT:GUESTPORT (use [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp])\n");
  EXPECT_EQ(run({"podman", "run", "--network", "wifi", "img"}).code, kExitUsage);
}

TEST(FcvmCliTest, UsageErrorsAreClear) {
  auto none = run({});
  EXPECT_EQ(none.code, kExitUsage);
  EXPECT_NE(none.err.find("fcvm: error: A subcommand is required"), std::string::npos) << none.err;
  auto bogus = run({"bogus"});
  EXPECT_EQ(bogus.code, kExitUsage);
  EXPECT_NE(bogus.err.find("bogus"), std::string::npos);
  auto noName = run({"inspect"});
  EXPECT_EQ(noName.code, kExitUsage);
  EXPECT_NE(noName.err.find("--name is required"), std::string::npos) << noName.err;
  EXPECT_EQ(run({"podman", "run", "--mem", "lots", "img"}).code, kExitUsage);
  // Either the VM's name or its worker's pid, and either a tag or a serve process's pid.
  auto both = run({"snapshot", "create", "--name", "a", "--pid", "12", "--tag", "t"});
  EXPECT_EQ(both.code, kExitError);
  EXPECT_EQ(both.err, "fcvm: error: give either --name or --pid\n");
  EXPECT_EQ(run({"snapshot", "create", "--name", "a"}).code, kExitUsage);  // no --tag
  auto neither = run({"snapshot", "run", "--name", "c"});
  EXPECT_EQ(neither.err, "fcvm: error: give either --from or --pid\n");
}

TEST(FcvmCliTest, VersionJsonIsJson) {
  auto r = run({"version", "--json"});
  ASSERT_EQ(r.code, 0);
  EXPECT_EQ(nlohmann::json::parse(r.out).at("version"), FCVM_VERSION);
}

TEST(FcvmCliTest, StatusDoesNotStartASupervisor) {
  testing::TempDir dir;
  std::map<std::string, std::string> env = {{"FCVM_DATA_DIR", (dir / "data").string()},
                                            {"FCVM_RUNTIME_DIR", (dir / "run").string()}};
  auto r = run({"supervisor", "status", "--json"}, env);
  EXPECT_EQ(r.code, kExitNotRunning);
  EXPECT_FALSE(nlohmann::json::parse(r.out).at("running").get<bool>());
  EXPECT_FALSE(std::filesystem::exists(dir / "run" / "supervisor.sock"));
  EXPECT_EQ(run({"supervisor", "stop"}, env).code, 0);
}

TEST(FcvmCliTest, UnreachableSocketIsOneClearLine) {
  auto r = run({"ls", "--socket", "/nonexistent/fcvm.sock"});
  EXPECT_EQ(r.code, kExitError);
  EXPECT_EQ(r.err, "fcvm: error: no fcvm-supervisor answers on /nonexistent/fcvm.sock\n");
}

}  // namespace
}  // namespace fcvm::cli
