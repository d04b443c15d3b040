#include "agent/podman_launcher.h"

#include <gtest/gtest.h>
#include <kj/exception.h>

namespace fcvm::agent {
namespace {

using Argv = std::vector<std::string>;

TEST(PodmanRunArgv, MinimalPlan) {
  EXPECT_EQ(podmanRunArgv(RunPlan{.image = "localhost/app:1"}),
            (Argv{"podman", "run", "--rm", "--name", "fcvm", "--network", "none",
                  "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--pull", "never",
                  "--sdnotify", "conmon", "--uts", "host", "localhost/app:1"}));
}

TEST(PodmanRunArgv, FullPlan) {
  RunPlan plan{.image = "img",
               .command = {"--not-an-option", "x"},
               .env = {"A=1", "B="},
               .user = "1000:1000",
               .workdir = "/srv",
               .privileged = true,
               .volumes = {{"v0", "/data", true}, {"v1", "/rw", false}},
               .network = NetworkMode::kHost};
  EXPECT_EQ(podmanRunArgv(plan), (Argv{"podman",   "run",
                                       "--rm",     "--name",
                                       "fcvm",     "--network",
                                       "host",     "--cgroup-manager",
                                       "cgroupfs", "--events-backend",
                                       "file",     "--pull",
                                       "never",    "--sdnotify",
                                       "conmon",   "--uts",
                                       "host",     "--privileged",
                                       "-u",       "1000:1000",
                                       "-w",       "/srv",
                                       "-e",       "A=1",
                                       "-e",       "B=",
                                       "-v",       "/run/fcvm/volumes/v0:/data:ro,rslave",
                                       "-v",       "/run/fcvm/volumes/v1:/rw:rslave",
                                       "img",      "--not-an-option",
                                       "x"}));
}

TEST(PodmanRunArgv, RejectsBadInput) {
  EXPECT_THROW(podmanRunArgv(RunPlan{}), kj::Exception);
  EXPECT_THROW(podmanRunArgv(RunPlan{.image = "i", .env = {"NOEQUALS"}}), kj::Exception);
  EXPECT_THROW(podmanRunArgv(RunPlan{.image = "i", .env = {"=v"}}), kj::Exception);
  for (const auto& v : std::vector<VolumeSpec>{{"../x", "/d", false},
                                               {"..", "/d", false},
                                               {"a/b", "/d", false},
                                               {"", "/d", false},
                                               {"t", "relative", false},
                                               {"t", "/a:/b", false},
                                               {"t", "/a/../etc", false}}) {
    EXPECT_THROW(podmanRunArgv(RunPlan{.image = "i", .volumes = {v}}), kj::Exception)
        << v.hostTag << " " << v.guestPath;
  }
}

TEST(PodmanExecArgv, Flags) {
  EXPECT_EQ(podmanExecArgv(ExecRequest{.id = 1, .inContainer = true, .command = {"ls", "-l"}}),
            (Argv{"podman", "exec", "fcvm", "ls", "-l"}));
  EXPECT_EQ(podmanExecArgv(ExecRequest{.id = 1,
                                       .inContainer = true,
                                       .command = {"sh"},
                                       .env = {"T=1"},
                                       .tty = true,
                                       .stdin = true}),
            (Argv{"podman", "exec", "-i", "-t", "-e", "T=1", "fcvm", "sh"}));
}

}  // namespace
}  // namespace fcvm::agent
