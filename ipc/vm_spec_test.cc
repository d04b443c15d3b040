#include "ipc/vm_spec.h"

#include <capnp/message.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "base/error.h"

namespace fcvm::ipc {
namespace {

std::string errorOf(const std::string& text) {
  try {
    parseVolumeMapping(text);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(VolumeMappingTest, HostDirGuestPathAndMode) {
  EXPECT_EQ(parseVolumeMapping("/srv/data:/data"), (VolumeMapping{"/srv/data", "/data", false}));
  EXPECT_EQ(parseVolumeMapping("/srv/data/:/data:ro"), (VolumeMapping{"/srv/data", "/data", true}));
  EXPECT_EQ(parseVolumeMapping("/a:b/:/c:rw"), (VolumeMapping{"/a:b", "/c", false}));
  // Relative to the working directory, as the user typed it.
  char cwd[4096];
  ASSERT_NE(::getcwd(cwd, sizeof cwd), nullptr);
  EXPECT_EQ(parseVolumeMapping("some/dir:/x").hostPath, std::string(cwd) + "/some/dir");
}

TEST(VolumeMappingTest, BadMappingsNameTheProblem) {
  EXPECT_EQ(errorOf("/a"), "--map /a: not HOSTDIR:GUESTPATH[:ro]");
  EXPECT_EQ(errorOf(":/b"), "--map :/b: not HOSTDIR:GUESTPATH[:ro]");
  EXPECT_EQ(errorOf("/a:"), "--map /a:: not HOSTDIR:GUESTPATH[:ro]");
  EXPECT_EQ(errorOf("/a:b"), "--map /a:b: the guest path is not absolute");
  EXPECT_EQ(errorOf("/a:/b/../c"), "--map /a:/b/../c: the guest path has a '..' component");
  EXPECT_EQ(errorOf("/a:/"), "--map /a:/: the guest path is the container's root");
  EXPECT_EQ(errorOf("/a:/b,c"), "--map /a:/b,c: the guest path has a ':' or ','");
}

TEST(VolumeMappingTest, DecodedSpecsAreCheckedLikeTheCommandLine) {
  VmSpec spec;
  spec.name = "v";
  spec.image = "img";
  spec.volumes = {{"/a", "/data", true}, {"/b", "/other", false}};
  capnp::MallocMessageBuilder message;
  encodeVmSpec(spec, message.initRoot<rpc::VmSpec>());
  auto decoded = decodeVmSpec(message.getRoot<rpc::VmSpec>().asReader());
  EXPECT_EQ(decoded.volumes, spec.volumes);

  spec.volumes.push_back({"/c", "/data", false});
  capnp::MallocMessageBuilder twice;
  encodeVmSpec(spec, twice.initRoot<rpc::VmSpec>());
  EXPECT_THROW(decodeVmSpec(twice.getRoot<rpc::VmSpec>().asReader()), Error);
  spec.volumes = {{"relative", "/data", false}};
  capnp::MallocMessageBuilder relative;
  encodeVmSpec(spec, relative.initRoot<rpc::VmSpec>());
  EXPECT_THROW(decodeVmSpec(relative.getRoot<rpc::VmSpec>().asReader()), Error);
}

TEST(RestartPolicyTest, PodmansSpellingsRoundTripThroughTheWire) {
  using Kind = RestartPolicy::Kind;
  EXPECT_EQ(parseRestartPolicy("no"), (RestartPolicy{Kind::kNo, 0}));
  EXPECT_EQ(parseRestartPolicy("always"), (RestartPolicy{Kind::kAlways, 0}));
  EXPECT_EQ(parseRestartPolicy("on-failure"), (RestartPolicy{Kind::kOnFailure, 0}));
  EXPECT_EQ(parseRestartPolicy("on-failure:3"), (RestartPolicy{Kind::kOnFailure, 3}));
  EXPECT_EQ(parseRestartPolicy("unless-stopped"), (RestartPolicy{Kind::kUnlessStopped, 0}));
  for (const char* text : {"no", "always", "on-failure", "on-failure:3", "unless-stopped"}) {
    VmSpec spec;
    spec.image = "img";
    spec.restart = parseRestartPolicy(text);
    EXPECT_EQ(toString(spec.restart), text);
    capnp::MallocMessageBuilder message;
    encodeVmSpec(spec, message.initRoot<rpc::VmSpec>());
    EXPECT_EQ(decodeVmSpec(message.getRoot<rpc::VmSpec>().asReader()).restart, spec.restart);
  }
}

TEST(RestartPolicyTest, BadPoliciesNameTheProblem) {
  auto errorOf = [](const std::string& text) -> std::string {
    try {
      parseRestartPolicy(text);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(errorOf("sometimes"),
            "--restart sometimes: use no, always, on-failure[:N] or unless-stopped");
  EXPECT_EQ(errorOf("always:2"), "--restart always:2: only on-failure takes a retry count");
  EXPECT_EQ(errorOf("on-failure:"), "--restart on-failure:: '' is not a retry count");
  EXPECT_EQ(errorOf("on-failure:-1"), "--restart on-failure:-1: '-1' is not a retry count");

  VmSpec spec;  // a count with another policy, as a client could send it
  spec.image = "img";
  spec.restart = {RestartPolicy::Kind::kAlways, 2};
  capnp::MallocMessageBuilder message;
  encodeVmSpec(spec, message.initRoot<rpc::VmSpec>());
  EXPECT_THROW(decodeVmSpec(message.getRoot<rpc::VmSpec>().asReader()), Error);
}

}  // namespace
}  // namespace fcvm::ipc
