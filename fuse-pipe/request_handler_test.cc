#include "fuse-pipe/request_handler.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>

#include "fuse-pipe/passthrough_fs.h"
#include "fuse-pipe/test_util.h"

namespace fcvm::fusepipe {
namespace {

using BodyFn = std::function<void(WireWriter&)>;

std::string readHostFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class RequestHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directory(root());
    // Something outside the root that escapes would reach.
    std::ofstream(tmp_ / "secret") << "outside";
    std::filesystem::create_directory(tmp_ / "outside-dir");
    fs_ = std::make_unique<PassthroughFs>(root(), PassthroughOptions{});
  }

  std::string root() const { return tmp_ / "root"; }

  std::vector<uint8_t> call(Opcode opcode, const BodyFn& body, bool readOnly = false) {
    return callAs(
        Credentials{.uid = ::getuid(), .gid = ::getgid(), .pid = 1, .umask = 022, .groups = {}},
        opcode, body, readOnly);
  }
  std::vector<uint8_t> callAs(const Credentials& caller, Opcode opcode, const BodyFn& body,
                              bool readOnly = false) {
    WireWriter w;
    encodeCredentials(w, caller);
    body(w);
    Frame frame{.header = {.opcode = static_cast<uint16_t>(opcode), .requestId = 1},
                .payload = w.take()};
    auto reply = RequestHandler(*fs_, readOnly).handle(frame);
    EXPECT_TRUE(reply) << "no reply to " << opcodeName(frame.header.opcode);
    return reply ? *reply : std::vector<uint8_t>{};
  }

  static Errno errnoOf(const std::vector<uint8_t>& reply) {
    WireReader r(reply);
    int32_t e = r.i32();
    return r.failed() ? -1 : e;
  }

  Errno lookup(InodeId parent, std::string_view name, Entry* out = nullptr) {
    auto reply = call(Opcode::kLookup, [&](WireWriter& w) {
      w.u64(parent.value);
      w.string(name);
    });
    WireReader r(reply);
    Errno e = r.i32();
    if (e == 0 && out) *out = decodeEntry(r);
    return e;
  }

  Errno open(InodeId inode, uint32_t flags, HandleId* out = nullptr, bool readOnly = false) {
    auto reply = call(
        Opcode::kOpen,
        [&](WireWriter& w) {
          w.u64(inode.value);
          w.u32(flags);
        },
        readOnly);
    WireReader r(reply);
    Errno e = r.i32();
    if (e == 0 && out) *out = HandleId{r.u64()};
    return e;
  }

  testing::TempDir tmp_;
  std::unique_ptr<PassthroughFs> fs_;
};

TEST_F(RequestHandlerTest, UnknownOpcodeGetsEnosys) {
  Frame frame{.header = {.opcode = 999, .requestId = 1}, .payload = {}};
  auto reply = RequestHandler(*fs_, false).handle(frame);
  ASSERT_TRUE(reply);
  EXPECT_EQ(errnoOf(*reply), ENOSYS);
  frame.header.opcode = static_cast<uint16_t>(Opcode::kHello);  // only valid as the first frame
  EXPECT_EQ(errnoOf(*RequestHandler(*fs_, false).handle(frame)), ENOSYS);
}

TEST_F(RequestHandlerTest, TruncatedOrPaddedBodiesGetEproto) {
  EXPECT_EQ(errnoOf(call(Opcode::kLookup, [](WireWriter& w) { w.u32(1); })), EPROTO);
  EXPECT_EQ(errnoOf(call(Opcode::kGetattr,
                         [](WireWriter& w) {
                           w.u64(1);
                           w.u8(0);
                           w.u64(0);
                           w.u8(0);  // one byte too many
                         })),
            EPROTO);
  // A name whose length runs past the end of the frame.
  EXPECT_EQ(errnoOf(call(Opcode::kMkdir,
                         [](WireWriter& w) {
                           w.u64(1);
                           w.u32(200);
                           w.u8('x');
                         })),
            EPROTO);
  // No credentials at all.
  Frame frame{.header = {.opcode = static_cast<uint16_t>(Opcode::kStatfs)}, .payload = {1, 2}};
  EXPECT_EQ(errnoOf(*RequestHandler(*fs_, false).handle(frame)), EPROTO);
}

TEST_F(RequestHandlerTest, ForgetWithoutValidBodyIsIgnoredWithoutReply) {
  Frame frame{.header = {.opcode = static_cast<uint16_t>(Opcode::kForget)}, .payload = {1}};
  EXPECT_FALSE(RequestHandler(*fs_, false).handle(frame));
}

TEST_F(RequestHandlerTest, InvalidNamesAreRefusedBeforeReachingTheFilesystem) {
  std::string nul("a\0b", 3);
  for (std::string name :
       {std::string(""), std::string("."), std::string(".."), std::string("a/b"),
        std::string("/etc"), nul, std::string(kMaxNameLength + 1, 'x'), std::string(1024, 'x')}) {
    SCOPED_TRACE(name);
    Errno e = lookup(kRootInode, name);
    // An overlong name is ENAMETOOLONG, as on a local file system; the others are EINVAL.
    EXPECT_EQ(e, name.size() > kMaxNameLength ? ENAMETOOLONG : EINVAL);
    EXPECT_EQ(errnoOf(call(Opcode::kMkdir,
                           [&](WireWriter& w) {
                             w.u64(kRootInode.value);
                             w.string(name);
                             w.u32(0755);
                           })),
              name.size() > kMaxNameLength ? ENAMETOOLONG : EINVAL);
  }
  // Longer than any path: a protocol error.
  EXPECT_EQ(lookup(kRootInode, std::string(kMaxPathLength + 1, 'x')), EPROTO);
  EXPECT_TRUE(std::filesystem::is_empty(root()));
}

TEST_F(RequestHandlerTest, UnknownIdsGetErrorsNotCrashes) {
  EXPECT_EQ(lookup(InodeId{12345}, "x"), ESTALE);
  EXPECT_EQ(lookup(InodeId{0}, "x"), ESTALE);
  EXPECT_EQ(lookup(InodeId{~0ULL}, "x"), ESTALE);
  EXPECT_EQ(open(InodeId{0xdeadbeef}, O_RDONLY), ESTALE);
  EXPECT_EQ(errnoOf(call(Opcode::kRead,
                         [](WireWriter& w) {
                           w.u64(77);
                           w.u64(0);
                           w.u32(10);
                         })),
            EBADF);
  EXPECT_EQ(errnoOf(call(Opcode::kRelease, [](WireWriter& w) { w.u64(77); })), EBADF);
  EXPECT_EQ(errnoOf(call(Opcode::kReaddir,
                         [](WireWriter& w) {
                           w.u64(5);
                           w.u64(0);
                           w.u32(4096);
                         })),
            EBADF);
}

TEST_F(RequestHandlerTest, OversizedReadIsRefused) {
  EXPECT_EQ(errnoOf(call(Opcode::kRead,
                         [](WireWriter& w) {
                           w.u64(1);
                           w.u64(0);
                           w.u32(kMaxIoSize + 1);
                         })),
            EINVAL);
}

TEST_F(RequestHandlerTest, SymlinksAreNeverFollowedOnTheHost) {
  std::filesystem::create_symlink("/", std::filesystem::path(root()) / "to-host-root");
  std::filesystem::create_symlink("..", std::filesystem::path(root()) / "to-parent");
  std::filesystem::create_symlink("../secret", std::filesystem::path(root()) / "to-secret");
  for (const char* link : {"to-host-root", "to-parent", "to-secret"}) {
    SCOPED_TRACE(link);
    Entry entry;
    ASSERT_EQ(lookup(kRootInode, link, &entry), 0);
    EXPECT_TRUE(S_ISLNK(entry.attr.mode));
    // Looking up inside a symlink, opening it or reading it as a directory all fail.
    EXPECT_EQ(lookup(entry.inode, "etc"), ENOTDIR);
    EXPECT_EQ(lookup(entry.inode, "secret"), ENOTDIR);
    EXPECT_EQ(open(entry.inode, O_RDONLY), ELOOP);
    EXPECT_EQ(errnoOf(call(Opcode::kOpendir, [&](WireWriter& w) { w.u64(entry.inode.value); })),
              ENOTDIR);
    EXPECT_EQ(errnoOf(call(Opcode::kMkdir,
                           [&](WireWriter& w) {
                             w.u64(entry.inode.value);
                             w.string("planted");
                             w.u32(0755);
                           })),
              ENOTDIR);
  }
  EXPECT_FALSE(std::filesystem::exists(tmp_.path() / "planted"));
  EXPECT_FALSE(std::filesystem::exists(tmp_.path() / "outside-dir" / "planted"));
  EXPECT_EQ(readHostFile(tmp_ / "secret"), "outside");
}

// A hard link to a symlink inode links the symlink itself; following it on the host would plant
// a link to a file outside the root inside it.
TEST_F(RequestHandlerTest, LinkOfASymlinkDoesNotFollowIt) {
  std::filesystem::create_symlink(tmp_ / "secret", std::filesystem::path(root()) / "abs");
  std::filesystem::create_symlink("../secret", std::filesystem::path(root()) / "rel");
  for (const char* link : {"abs", "rel"}) {
    SCOPED_TRACE(link);
    Entry symlink;
    ASSERT_EQ(lookup(kRootInode, link, &symlink), 0);
    std::string copy = std::string(link) + "-hardlink";
    Entry linked;
    auto reply = call(Opcode::kLink, [&](WireWriter& w) {
      w.u64(symlink.inode.value);
      w.u64(kRootInode.value);
      w.string(copy);
    });
    WireReader r(reply);
    ASSERT_EQ(r.i32(), 0);
    linked = decodeEntry(r);
    EXPECT_TRUE(S_ISLNK(linked.attr.mode));
    EXPECT_EQ(linked.inode, symlink.inode);
    EXPECT_TRUE(std::filesystem::is_symlink(root() + "/" + copy));
  }
  EXPECT_EQ(std::filesystem::hard_link_count(tmp_ / "secret"), 1u);
}

TEST_F(RequestHandlerTest, CreateRefusesToFollowAPlantedSymlink) {
  std::filesystem::create_symlink("../secret", std::filesystem::path(root()) / "trap");
  auto reply = call(Opcode::kCreate, [](WireWriter& w) {
    w.u64(kRootInode.value);
    w.string("trap");
    w.u32(0644);
    w.u32(O_WRONLY | O_TRUNC);
  });
  EXPECT_NE(errnoOf(reply), 0);
  EXPECT_EQ(readHostFile(tmp_ / "secret"), "outside");
}

TEST_F(RequestHandlerTest, CreateOpensAnExistingFileButNoFifoOrDevice) {
  auto create = [&](const char* name, uint32_t flags) {
    return errnoOf(call(Opcode::kCreate, [&](WireWriter& w) {
      w.u64(kRootInode.value);
      w.string(name);
      w.u32(0644);
      w.u32(flags);
    }));
  };
  std::ofstream(root() + "/existing") << "old data";
  EXPECT_EQ(create("existing", O_WRONLY | O_EXCL), EEXIST);
  EXPECT_EQ(create("existing", O_WRONLY | O_TRUNC), 0);
  EXPECT_EQ(std::filesystem::file_size(root() + "/existing"), 0u);
  EXPECT_EQ(create("new", O_WRONLY), 0);
  EXPECT_TRUE(std::filesystem::is_regular_file(root() + "/new"));

  // An existing fifo would block the open until a writer came; a device node would open the
  // host's device.
  ASSERT_EQ(::mkfifo((root() + "/fifo").c_str(), 0644), 0);
  EXPECT_EQ(create("fifo", O_RDONLY), ENXIO);
  std::filesystem::create_directory(root() + "/dir");
  EXPECT_EQ(create("dir", O_RDONLY), EISDIR);
  if (::mknod((root() + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3)) != 0) {
    GTEST_FAIL() << "cannot create a device node here to test creating over one";
  }
  EXPECT_EQ(create("null", O_WRONLY), EACCES);
}

TEST_F(RequestHandlerTest, ReadOnlyRefusesEveryMutation) {
  std::ofstream(root() + "/file") << "data";
  std::filesystem::create_directory(root() + "/dir");
  Entry file;
  ASSERT_EQ(lookup(kRootInode, "file", &file), 0);
  const bool ro = true;
  auto nameBody = [](const char* name) {
    return [name](WireWriter& w) {
      w.u64(kRootInode.value);
      w.string(name);
    };
  };
  EXPECT_EQ(errnoOf(call(
                Opcode::kMkdir,
                [](WireWriter& w) {
                  w.u64(kRootInode.value);
                  w.string("new");
                  w.u32(0755);
                },
                ro)),
            EROFS);
  EXPECT_EQ(errnoOf(call(Opcode::kUnlink, nameBody("file"), ro)), EROFS);
  EXPECT_EQ(errnoOf(call(Opcode::kRmdir, nameBody("dir"), ro)), EROFS);
  EXPECT_EQ(errnoOf(call(
                Opcode::kCreate,
                [](WireWriter& w) {
                  w.u64(kRootInode.value);
                  w.string("new");
                  w.u32(0644);
                  w.u32(O_RDONLY);
                },
                ro)),
            EROFS);
  EXPECT_EQ(errnoOf(call(
                Opcode::kRename,
                [](WireWriter& w) {
                  w.u64(kRootInode.value);
                  w.string("file");
                  w.u64(kRootInode.value);
                  w.string("moved");
                  w.u32(0);
                },
                ro)),
            EROFS);
  EXPECT_EQ(errnoOf(call(
                Opcode::kSetattr,
                [&](WireWriter& w) {
                  w.u64(file.inode.value);
                  w.u32(kSetSize);
                  w.u8(0);
                  w.u64(0);
                  for (int i = 0; i < 3; ++i) w.u32(0);
                  w.u64(0);
                  w.i64(0);
                  w.u32(0);
                  w.i64(0);
                  w.u32(0);
                },
                ro)),
            EROFS);
  EXPECT_EQ(open(file.inode, O_WRONLY, nullptr, ro), EROFS);
  EXPECT_EQ(open(file.inode, O_RDWR, nullptr, ro), EROFS);
  EXPECT_EQ(open(file.inode, O_RDONLY | O_TRUNC, nullptr, ro), EROFS);
  HandleId handle;
  ASSERT_EQ(open(file.inode, O_RDONLY, &handle, ro), 0);
  EXPECT_EQ(errnoOf(call(
                Opcode::kWrite,
                [&](WireWriter& w) {
                  w.u64(handle.value);
                  w.u64(0);
                  w.string("x");
                },
                ro)),
            EROFS);
  auto statfs = call(
      Opcode::kStatfs, [](WireWriter& w) { w.u64(kRootInode.value); }, ro);
  WireReader r(statfs);
  ASSERT_EQ(r.i32(), 0);
  EXPECT_TRUE(decodeStatfs(r).flags & ST_RDONLY);
  EXPECT_EQ(readHostFile(root() + "/file"), "data");
  EXPECT_TRUE(std::filesystem::exists(root() + "/dir"));
}

TEST_F(RequestHandlerTest, ForgetDropsInodesButNeverTheRoot) {
  std::ofstream(root() + "/f") << "x";
  Entry e;
  ASSERT_EQ(lookup(kRootInode, "f", &e), 0);
  ASSERT_EQ(lookup(kRootInode, "f", &e), 0);
  EXPECT_EQ(fs_->inodeCount(), 2u);
  auto forget = [&](InodeId id, uint64_t n) {
    WireWriter w;
    encodeCredentials(w, Credentials{});
    w.u64(id.value);
    w.u64(n);
    Frame frame{.header = {.opcode = static_cast<uint16_t>(Opcode::kForget)}, .payload = w.take()};
    EXPECT_FALSE(RequestHandler(*fs_, false).handle(frame));
  };
  forget(e.inode, 1);
  EXPECT_EQ(fs_->inodeCount(), 2u);  // one lookup left
  forget(e.inode, 1);
  EXPECT_EQ(fs_->inodeCount(), 1u);
  forget(kRootInode, ~0ULL);
  forget(InodeId{999}, 1);
  EXPECT_EQ(fs_->inodeCount(), 1u);
  EXPECT_EQ(lookup(kRootInode, "f", &e), 0);  // the root still works
  EXPECT_NE(e.inode, InodeId{2});             // ids are not reused
}

// Random bodies for every opcode: whatever they decode to, the handler answers and survives.
TEST_F(RequestHandlerTest, RandomBodiesNeverCrash) {
  std::ofstream(root() + "/f") << "x";
  std::mt19937 random(12345);
  for (uint16_t opcode = 0; opcode <= 40; ++opcode) {
    if (opcode == static_cast<uint16_t>(Opcode::kForget)) continue;  // no reply by design
    // Device nodes are refused (tested below); never risk creating one at random as root.
    if (opcode == static_cast<uint16_t>(Opcode::kMknod)) continue;
    for (int round = 0; round < 200; ++round) {
      WireWriter w;
      encodeCredentials(
          w,
          Credentials{.uid = ::getuid(), .gid = ::getgid(), .pid = 0, .umask = 022, .groups = {}});
      size_t length = random() % 64;
      for (size_t i = 0; i < length; ++i) {
        // Mostly small numbers, so that ids and lengths sometimes hit real things.
        w.u8(random() % 4 == 0 ? static_cast<uint8_t>(random())
                               : static_cast<uint8_t>(random() % 3));
      }
      Frame frame{.header = {.opcode = opcode}, .payload = w.take()};
      // A lock wait could block forever here; the session runs those with a cancellation
      // (session_test covers it).
      if (isBlockingRequest(frame)) continue;
      auto reply = RequestHandler(*fs_, round % 2 == 0).handle(frame);
      ASSERT_TRUE(reply);
      EXPECT_GE(errnoOf(*reply), 0);
    }
  }
  // Whatever the random requests did, it was inside the root.
  EXPECT_EQ(readHostFile(tmp_ / "secret"), "outside");
  EXPECT_TRUE(std::filesystem::is_empty(tmp_.path() / "outside-dir"));
}

// A client's device node is a placeholder on the host (a regular file), shown to the client as
// the node it made; nothing opens a device through the server, placeholder or real.
TEST_F(RequestHandlerTest, DeviceNodesArePlaceholdersAndNeverOpened) {
  auto mknod = [&](const char* name, uint32_t mode, dev_t rdev, uint32_t uid) {
    return callAs(Credentials{.uid = uid, .gid = uid, .pid = 1, .umask = 022, .groups = {}},
                  Opcode::kMknod, [&](WireWriter& w) {
                    w.u64(kRootInode.value);
                    w.string(name);
                    w.u32(mode);
                    w.u64(rdev);
                  });
  };
  auto reply = mknod("sda", S_IFBLK | 0660, makedev(8, 0), 0);
  ASSERT_EQ(errnoOf(reply), 0);
  WireReader r(std::span<const uint8_t>(reply).subspan(4));
  Entry made = decodeEntry(r);
  EXPECT_TRUE(S_ISBLK(made.attr.mode));
  EXPECT_EQ(made.attr.mode & 07777, 0640u);  // the caller's umask applies
  EXPECT_EQ(made.attr.rdev, makedev(8, 0));
  struct stat host {};
  ASSERT_EQ(::lstat((root() + "/sda").c_str(), &host), 0);
  EXPECT_TRUE(S_ISREG(host.st_mode)) << "a real device node on the host";
  EXPECT_EQ(host.st_size, 0);
  EXPECT_EQ(open(made.inode, O_RDWR), EACCES);
  // Its record is the server's: not listed, read, set or removed by the client.
  EXPECT_EQ(errnoOf(call(Opcode::kGetxattr,
                         [&](WireWriter& w) {
                           w.u64(made.inode.value);
                           w.string("user.fcvm.device");
                           w.u32(64);
                         })),
            ENODATA);
  // An unprivileged caller makes none, as the kernel would refuse it.
  EXPECT_EQ(errnoOf(mknod("null", S_IFCHR | 0666, makedev(1, 3), 1000)), EPERM);
  EXPECT_FALSE(std::filesystem::exists(root() + "/null"));

  if (::mknod((root() + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3)) != 0) {
    GTEST_FAIL() << "cannot create a device node here to test opening one";
  }
  Entry entry;
  ASSERT_EQ(lookup(kRootInode, "null", &entry), 0);
  EXPECT_EQ(open(entry.inode, O_RDWR), EACCES);
}

TEST_F(RequestHandlerTest, FifosAndRegularFilesCanBeMadeWithMknod) {
  auto mknod = [&](const char* name, uint32_t mode) {
    return errnoOf(call(Opcode::kMknod, [&](WireWriter& w) {
      w.u64(kRootInode.value);
      w.string(name);
      w.u32(mode);
      w.u64(0);
    }));
  };
  EXPECT_EQ(mknod("fifo", S_IFIFO | 0644), 0);
  EXPECT_EQ(mknod("plain", S_IFREG | 0644), 0);
  EXPECT_TRUE(std::filesystem::is_fifo(root() + "/fifo"));
  EXPECT_TRUE(std::filesystem::is_regular_file(root() + "/plain"));
  // The client's kernel opens fifos itself; an open sent anyway must not block a server thread
  // until some host process opens the other end.
  Entry fifo;
  ASSERT_EQ(lookup(kRootInode, "fifo", &fifo), 0);
  EXPECT_EQ(open(fifo.inode, O_RDONLY), ENXIO);
}

TEST_F(RequestHandlerTest, XattrsOutsideUserAndAclNamespacesAreRefused) {
  std::ofstream(root() + "/f") << "x";
  Entry file;
  ASSERT_EQ(lookup(kRootInode, "f", &file), 0);
  for (const char* name :
       {"trusted.x", "security.capability", "system.other", "user.", "user.fcvm.device"}) {
    SCOPED_TRACE(name);
    EXPECT_EQ(errnoOf(call(Opcode::kSetxattr,
                           [&](WireWriter& w) {
                             w.u64(file.inode.value);
                             w.string(name);
                             w.string("v");
                             w.u32(0);
                           })),
              EPERM);
    EXPECT_EQ(errnoOf(call(Opcode::kGetxattr,
                           [&](WireWriter& w) {
                             w.u64(file.inode.value);
                             w.string(name);
                             w.u32(64);
                           })),
              ENODATA);
    EXPECT_EQ(errnoOf(call(Opcode::kRemovexattr,
                           [&](WireWriter& w) {
                             w.u64(file.inode.value);
                             w.string(name);
                           })),
              EPERM);
  }
}

TEST_F(RequestHandlerTest, ReaddirAndReaddirplusListEverythingAcrossCalls) {
  std::filesystem::create_directory(root() + "/d");
  std::set<std::string> expected = {".", ".."};
  for (int i = 0; i < 50; ++i) {
    std::string name = "file-" + std::to_string(i);
    std::ofstream(root() + "/d/" + name) << i;
    expected.insert(name);
  }
  Entry dir;
  ASSERT_EQ(lookup(kRootInode, "d", &dir), 0);
  size_t inodesBefore = fs_->inodeCount();
  for (Opcode op : {Opcode::kReaddir, Opcode::kReaddirplus}) {
    SCOPED_TRACE(opcodeName(static_cast<uint16_t>(op)));
    auto opened = call(Opcode::kOpendir, [&](WireWriter& w) { w.u64(dir.inode.value); });
    WireReader o(opened);
    ASSERT_EQ(o.i32(), 0);
    uint64_t handle = o.u64();
    std::set<std::string> listed;
    uint64_t offset = 0;
    size_t lookedUp = 0;
    while (true) {
      auto reply = call(op, [&](WireWriter& w) {
        w.u64(handle);
        w.u64(offset);
        w.u32(512);  // a few entries per call
      });
      WireReader r(reply);
      ASSERT_EQ(r.i32(), 0);
      uint32_t count = r.u32();
      if (count == 0) break;
      for (uint32_t i = 0; i < count; ++i) {
        DirEntry d;
        if (op == Opcode::kReaddir) {
          d = decodeDirEntry(r);
        } else {
          DirEntryPlus plus = decodeDirEntryPlus(r);
          d = plus.dirent;
          EXPECT_EQ(plus.entry.has_value(), d.name != "." && d.name != "..") << d.name;
          if (plus.entry) ++lookedUp;
        }
        EXPECT_TRUE(listed.insert(d.name).second) << "listed twice: " << d.name;
        offset = d.offset;
      }
      ASSERT_TRUE(r.finish());
    }
    EXPECT_EQ(listed, expected);
    if (op == Opcode::kReaddirplus) {
      EXPECT_EQ(lookedUp, 50u);
      EXPECT_EQ(fs_->inodeCount(), inodesBefore + 50);  // each looked-up entry is an inode now
    }
    EXPECT_EQ(errnoOf(call(Opcode::kReleasedir, [&](WireWriter& w) { w.u64(handle); })), 0);
  }
  EXPECT_EQ(fs_->openDirCount(), 0u);
}

TEST_F(RequestHandlerTest, LseekAcceptsOnlyDataAndHole) {
  std::ofstream(root() + "/f") << "x";
  Entry file;
  ASSERT_EQ(lookup(kRootInode, "f", &file), 0);
  HandleId handle;
  ASSERT_EQ(open(file.inode, O_RDONLY, &handle), 0);
  for (uint32_t whence : {0u, 1u, 2u, 5u, 0xffffffffu}) {
    EXPECT_EQ(errnoOf(call(Opcode::kLseek,
                           [&](WireWriter& w) {
                             w.u64(handle.value);
                             w.u64(0);
                             w.u32(whence);
                           })),
              EINVAL);
  }
  auto reply = call(Opcode::kLseek, [&](WireWriter& w) {
    w.u64(handle.value);
    w.u64(0);
    w.u32(SEEK_DATA);
  });
  WireReader r(reply);
  EXPECT_EQ(r.i32(), 0);
  EXPECT_EQ(r.u64(), 0u);
}

TEST(IsValidNameTest, AcceptsOrdinaryNamesOnly) {
  EXPECT_TRUE(isValidName("a"));
  EXPECT_TRUE(isValidName("..."));
  EXPECT_TRUE(isValidName(".hidden"));
  EXPECT_TRUE(isValidName(std::string(kMaxNameLength, 'n')));
  EXPECT_FALSE(isValidName(""));
  EXPECT_FALSE(isValidName("."));
  EXPECT_FALSE(isValidName(".."));
  EXPECT_FALSE(isValidName("a/b"));
  EXPECT_FALSE(isValidName(std::string("a\0", 2)));
  EXPECT_FALSE(isValidName(std::string(kMaxNameLength + 1, 'n')));
}

// Lock requests through the handler: each owner has its own lock description on the host.
class LockRequestTest : public RequestHandlerTest {
 protected:
  void SetUp() override {
    RequestHandlerTest::SetUp();
    std::ofstream(root() + "/f") << "0123456789";
    Entry entry;
    ASSERT_EQ(lookup(kRootInode, "f", &entry), 0);
    ASSERT_EQ(open(entry.inode, O_RDWR, &handle_), 0);
  }

  Errno setlk(uint64_t owner, uint32_t type, uint64_t start, uint64_t length, uint32_t flags = 0,
              uint32_t pid = 0) {
    return errnoOf(call(Opcode::kSetlk, [&](WireWriter& w) {
      w.u64(handle_.value);
      w.u64(owner);
      encodeLock(w, LockRange{.type = type, .start = start, .length = length, .pid = pid});
      w.u32(flags);
    }));
  }

  Errno getlk(uint64_t owner, LockRange& lock) {
    auto reply = call(Opcode::kGetlk, [&](WireWriter& w) {
      w.u64(handle_.value);
      w.u64(owner);
      encodeLock(w, lock);
    });
    WireReader r(reply);
    Errno e = r.i32();
    if (e == 0) lock = decodeLock(r);
    EXPECT_TRUE(e != 0 || r.finish());
    return e;
  }

  Errno flush(uint64_t owner) {
    return errnoOf(call(Opcode::kFlush, [&](WireWriter& w) {
      w.u64(handle_.value);
      w.u64(owner);
    }));
  }

  Errno flock(uint32_t operation) {
    return errnoOf(call(Opcode::kFlock, [&](WireWriter& w) {
      w.u64(handle_.value);
      w.u32(operation);
    }));
  }

  HandleId handle_;
};

TEST_F(LockRequestTest, OwnersConflictAndGetlkNamesTheHolder) {
  ASSERT_EQ(setlk(1, F_WRLCK, 2, 3, 0, /*pid=*/4321), 0);
  EXPECT_EQ(setlk(1, F_WRLCK, 0, 10, 0, 4321), 0);  // an owner never conflicts with itself
  EXPECT_EQ(setlk(1, F_UNLCK, 5, 0), 0);            // keeps [0, 5)
  EXPECT_EQ(setlk(2, F_RDLCK, 4, 1), EAGAIN);
  EXPECT_EQ(setlk(2, F_RDLCK, 5, 1), 0);
  LockRange probe{.type = F_WRLCK, .start = 0, .length = 0, .pid = 0};
  ASSERT_EQ(getlk(2, probe), 0);
  EXPECT_EQ(probe.type, static_cast<uint32_t>(F_WRLCK));
  EXPECT_EQ(probe.start, 0u);
  EXPECT_EQ(probe.length, 5u);
  EXPECT_EQ(probe.pid, 4321u);
  EXPECT_EQ(fs_->lockOwnerCount(), 2u);
  // A close by owner 1 releases its locks.
  ASSERT_EQ(flush(1), 0);
  EXPECT_EQ(fs_->lockOwnerCount(), 1u);
  EXPECT_EQ(setlk(3, F_WRLCK, 0, 5), 0);
  // Unlocking what one does not hold creates nothing.
  EXPECT_EQ(setlk(9, F_UNLCK, 0, 0), 0);
  EXPECT_EQ(fs_->lockOwnerCount(), 2u);
}

TEST_F(LockRequestTest, BadLockRequestsAreRefused) {
  EXPECT_EQ(setlk(1, 77, 0, 0), EINVAL);                    // no such type
  EXPECT_EQ(setlk(1, F_WRLCK, 1ull << 63, 0), EINVAL);      // beyond off_t
  EXPECT_EQ(setlk(1, F_WRLCK, 0, 0, /*flags=*/2), EINVAL);  // unknown flag
  LockRange unlock{.type = F_UNLCK, .start = 0, .length = 0, .pid = 0};
  EXPECT_EQ(getlk(1, unlock), EINVAL);
  EXPECT_EQ(flock(LOCK_EX | LOCK_SH), EINVAL);
  EXPECT_EQ(flock(LOCK_EX | LOCK_NB), 0);
  EXPECT_EQ(flock(LOCK_UN), 0);
  EXPECT_EQ(errnoOf(call(Opcode::kSetlk,
                         [&](WireWriter& w) {
                           w.u64(12345);  // unknown handle
                           w.u64(1);
                           encodeLock(w, LockRange{.type = F_RDLCK});
                           w.u32(0);
                         })),
            EBADF);
  EXPECT_EQ(fs_->lockOwnerCount(), 0u);
}

TEST_F(LockRequestTest, BlockingRequestsAreRecognisedFromTheirFlags) {
  auto frame = [](Opcode opcode, const std::function<void(WireWriter&)>& body) {
    WireWriter w;
    encodeCredentials(w, Credentials{});
    body(w);
    return Frame{.header = {.opcode = static_cast<uint16_t>(opcode), .requestId = 1},
                 .payload = w.take()};
  };
  auto setlk = [&](uint32_t flags) {
    return frame(Opcode::kSetlk, [&](WireWriter& w) {
      w.u64(1);
      w.u64(1);
      encodeLock(w, LockRange{.type = F_WRLCK});
      w.u32(flags);
    });
  };
  EXPECT_TRUE(isBlockingRequest(setlk(kLockWait)));
  EXPECT_FALSE(isBlockingRequest(setlk(0)));
  auto flockFrame = [&](uint32_t op) {
    return frame(Opcode::kFlock, [&](WireWriter& w) {
      w.u64(1);
      w.u32(op);
    });
  };
  EXPECT_TRUE(isBlockingRequest(flockFrame(LOCK_EX)));
  EXPECT_FALSE(isBlockingRequest(flockFrame(LOCK_EX | LOCK_NB)));
  EXPECT_FALSE(isBlockingRequest(frame(Opcode::kSetlk, [](WireWriter& w) { w.u8(1); })));
  auto interrupt = frame(Opcode::kInterrupt, [](WireWriter& w) { w.u64(77); });
  EXPECT_EQ(decodeInterrupt(interrupt), std::optional<uint64_t>(77));
  interrupt.payload.push_back(0);  // one byte too many
  EXPECT_EQ(decodeInterrupt(interrupt), std::nullopt);
}

}  // namespace
}  // namespace fcvm::fusepipe
