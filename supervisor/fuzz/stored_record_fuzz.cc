// libFuzzer target: every file fcvm reads back from its data and storage directories, where a
// damaged disk, a downgrade or a hand edit can leave anything. The first input byte picks the
// decoder; the rest is the file:
//   0: a VM record (<data dir>/vms/<id>.json, RecordStore);
//   1: a snapshot's record (snapshots/<id>/snapshot.json, SnapshotStore);
//   2: a spec file (spec.bin, a Cap'n Proto VmSpec: the supervisor's and every clone's);
//   3: a snapshot's restore.json, whose machine a clone's worker turns into QEMU's command line;
//   4: a slot of the shared state table as a reader copies it out (VM, snapshot, serve records);
//   5: a VM's image.json (the prepared image, ipc/prepared_image.h), read by its worker.
// A refusal is an fcvm::Error or a JSON exception. Anything else escaping, a crash, or an accepted
// file that breaks what its readers rely on (ids and names of their form, states in range, a
// record that reads back as written, no QEMU option a worker did not write) is a finding.
//
// `stored_record_fuzz -write_seeds=DIR` writes a seed corpus of valid and nearly valid files.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/debug.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/ids.h"
#include "base/unique_fd.h"
#include "ipc/prepared_image.h"
#include "ipc/records.h"
#include "ipc/vm_spec.h"
#include "supervisor/record_format.h"
#include "supervisor/record_store.h"
#include "supervisor/snapshot_store.h"
#include "tests/support/fuzz_seeds.h"
#include "worker/machine_description.h"
#include "worker/qemu_vmm.h"

namespace {

using nlohmann::json;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "accepted file breaks a guarantee: %s\n", what);
    std::abort();
  }
}

const std::filesystem::path kFile = "/fuzz/record";

// What `parse` accepted, or nullopt for a refusal (an fcvm::Error or a JSON exception); anything
// else escapes, a finding.
template <typename Parse>
auto accepted(Parse parse) -> std::optional<decltype(parse())> {
  try {
    return parse();
  } catch (const fcvm::Error&) {
    return std::nullopt;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

void fuzzVmRecord(std::string_view text) {
  auto parsed = accepted([&] { return fcvm::supervisor::parseVmRecord(text, kFile); });
  if (!parsed) return;
  const auto& r = *parsed;
  check(fcvm::ipc::isValid(r), "record valid as the state table's readers check it");
  check(fcvm::isHexId(r.id.view()), "id");
  check(fcvm::isValidName(r.name.view()), "name");
  check(r.state != fcvm::ipc::VmState::kFree, "state");
  check(r.worker.pid >= 0, "worker pid");
  check(r.snapshotId.empty() || fcvm::isHexId(r.snapshotId.view()), "snapshot id");
  auto written = fcvm::supervisor::formatVmRecord(r);
  check(
      fcvm::supervisor::formatVmRecord(fcvm::supervisor::parseVmRecord(written, kFile)) == written,
      "a VM record that does not read back as written");
}

void fuzzSnapshotMeta(std::string_view text) {
  auto parsed = accepted([&] { return fcvm::supervisor::parseSnapshotMeta(text, kFile); });
  if (!parsed) return;
  const auto& m = *parsed;
  check(fcvm::isHexId(m.id), "id");
  check(fcvm::isValidName(m.tag), "tag");
  check(fcvm::isHexId(m.sourceVmId) && fcvm::isValidName(m.sourceVmName), "source VM");
  auto written = fcvm::supervisor::formatSnapshotMeta(m);
  check(fcvm::supervisor::formatSnapshotMeta(fcvm::supervisor::parseSnapshotMeta(written, kFile)) ==
            written,
        "a snapshot record that does not read back as written");
}

// A spec file's bytes, as writeVmSpecFile writes them.
std::string specBytes(const fcvm::ipc::VmSpec& spec) {
  capnp::MallocMessageBuilder message;
  fcvm::ipc::encodeVmSpec(spec, message.initRoot<fcvm::rpc::VmSpec>());
  auto words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

fcvm::UniqueFd fileWith(std::string_view bytes) {
  fcvm::UniqueFd fd(::memfd_create("spec", MFD_CLOEXEC));
  if (!fd) std::abort();
  if (!bytes.empty() && ::write(fd.get(), bytes.data(), bytes.size()) != ssize_t(bytes.size())) {
    std::abort();
  }
  ::lseek(fd.get(), 0, SEEK_SET);
  return fd;
}

void fuzzSpec(std::string_view bytes) {
  fcvm::ipc::VmSpec spec;
  try {
    spec = fcvm::ipc::readVmSpec(fileWith(bytes).get(), "spec.bin");
  } catch (const fcvm::Error&) {
    return;
  }
  for (const auto* text : {&spec.name, &spec.image, &spec.workdir, &spec.user, &spec.healthCmd}) {
    check(text->find('\0') == std::string::npos, "a NUL in a text");
  }
  check(spec.name.empty() || fcvm::isValidName(spec.name), "name");
  check(spec.cpus >= 1 && spec.memoryMib >= 1, "CPUs and memory");
  // What the supervisor wrote, a clone reads back the same.
  auto again = fcvm::ipc::readVmSpec(fileWith(specBytes(spec)).get(), "spec.bin");
  check(again.name == spec.name && again.image == spec.image && again.command == spec.command &&
            again.env == spec.env && again.cpus == spec.cpus && again.memoryMib == spec.memoryMib &&
            again.network == spec.network && again.ports.size() == spec.ports.size() &&
            again.volumes.size() == spec.volumes.size() && again.dns == spec.dns,
        "a spec that does not read back as written");
}

// QEMU's reading of one option string ("a=b,c=d", ",," a comma inside a value): its keys.
std::vector<std::string> optionKeys(const std::string& option) {
  std::vector<std::string> keys;
  std::string part;
  auto flush = [&] {
    keys.push_back(part.substr(0, part.find('=')));
    part.clear();
  };
  for (size_t i = 0; i < option.size(); ++i) {
    if (option[i] == ',' && i + 1 < option.size() && option[i + 1] == ',') {
      part += ',';
      ++i;
    } else if (option[i] == ',') {
      flush();
    } else {
      part += option[i];
    }
  }
  flush();
  return keys;
}

// Every key a worker writes in an option string (qemu_vmm.cc), and the first word of each.
const std::set<std::string> kKeys = {"id",
                                     "file",
                                     "format",
                                     "if",
                                     "cache",
                                     "auto-read-only",
                                     "guest",
                                     "set",
                                     "snapshot",
                                     "readonly",
                                     "drive",
                                     "fd",
                                     "path",
                                     "chardev",
                                     "name",
                                     "max_ports",
                                     "netdev",
                                     "mac",
                                     "size",
                                     "mem-path",
                                     "share",
                                     "acpi",
                                     "x-option-roms",
                                     "rtc",
                                     "memory-backend",
                                     "mode",
                                     "on",
                                     "obsolete",
                                     "elevateprivileges",
                                     "spawn",
                                     "resourcecontrol",
                                     "microvm",
                                     "socket",
                                     "null",
                                     "tap",
                                     "virtio-blk-device",
                                     "virtio-serial-device",
                                     "virtserialport",
                                     "virtio-net-device",
                                     "memory-backend-file",
                                     "user",
                                     "net",
                                     "host",
                                     "dns"};

void fuzzRestore(std::string_view text) {
  auto restore = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (restore.is_discarded() || !restore.is_object() || !restore.contains("machine")) return;
  fcvm::worker::QemuConfig config;
  try {
    config = fcvm::worker::machineFromDescription(restore["machine"]);
  } catch (const fcvm::Error&) {
    return;
  }
  // What a clone's worker adds before it starts QEMU (worker_daemon.cc prepareClone).
  config.rootDisk = "/var/lib/fcvm/vms/0123456789abcdef/rootfs.ext4";
  config.memoryFile = "/dev/shm/fcvm-clone.mem";
  config.memoryShared = false;
  config.qmpSocket = "/run/fcvm/vms/0123456789abcdef/qmp.sock";
  config.consoleFd = 3;
  config.incoming = true;
  config.name = "/run/fcvm/vms/0123456789abcdef";
  if (config.network.mode == "bridged") config.network.tapFd = 4;
  for (auto& c : config.channels) c.fd = 5;
  auto argv = fcvm::worker::qemuCommandLine(config);
  check(argv.front() == fcvm::worker::QemuConfig{}.qemu, "another program than QEMU");
  static const std::set<std::string> kCommaOptions = {
      "-drive", "-device", "-chardev", "-object", "-netdev", "-M", "-sandbox", "-name", "-add-fd"};
  for (size_t i = 0; i < argv.size(); ++i) {
    check(argv[i].find('\0') == std::string::npos, "a NUL in QEMU's command line");
    if (i + 1 < argv.size() && kCommaOptions.contains(argv[i])) {
      auto keys = optionKeys(argv[i + 1]);
      std::set<std::string> seen;
      for (const auto& key : keys) {
        check(kKeys.contains(key), "an option string with a key no worker writes");
        check(seen.insert(key).second, "an option string with a key twice");
      }
    }
  }
  check(fcvm::worker::describeMachine(fcvm::worker::machineFromDescription(
            fcvm::worker::describeMachine(config))) == fcvm::worker::describeMachine(config),
        "a machine that does not read back as described");
}

void fuzzPreparedImage(std::string_view text) {
  auto parsed = accepted([&] { return fcvm::ipc::parsePreparedImage(text, kFile); });
  if (!parsed) return;
  check(!parsed->digest.empty() && !parsed->reference.empty(), "an empty digest or reference");
  check(parsed->disk.is_absolute(), "a relative image disk");
  auto written = fcvm::ipc::formatPreparedImage(*parsed);
  check(fcvm::ipc::formatPreparedImage(fcvm::ipc::parsePreparedImage(written, kFile)) == written,
        "a prepared image that does not read back as written");
}

template <typename Record>
void fuzzSlot(std::string_view bytes) {
  Record r;
  std::memcpy(static_cast<void*>(&r), bytes.data(), std::min(bytes.size(), sizeof r));
  if (!fcvm::ipc::isValid(r)) return;
  check(r.id.view().size() < r.id.capacity() + 1, "an id past its field");
}

void fuzzStateTableSlot(std::string_view bytes) {
  if (bytes.empty()) return;
  const auto which = static_cast<uint8_t>(bytes[0]) % 3;
  bytes.remove_prefix(1);
  if (which == 0) {
    fuzzSlot<fcvm::ipc::VmRecord>(bytes);
    fcvm::ipc::VmRecord r;
    std::memcpy(static_cast<void*>(&r), bytes.data(), std::min(bytes.size(), sizeof r));
    if (fcvm::ipc::isValid(r)) {
      // What `fcvm ls` prints from a slot.
      check(!fcvm::ipc::toString(r.state).empty() && !fcvm::ipc::toString(r.health).empty(),
            "a state or health without a name");
    }
  } else if (which == 1) {
    fuzzSlot<fcvm::ipc::SnapshotRecord>(bytes);
  } else {
    fuzzSlot<fcvm::ipc::ServeRecord>(bytes);
  }
}

void writeSeeds(const std::string& dir) {
  std::vector<std::pair<uint8_t, std::string>> seeds = {
      {0, R"({"version":1,"id":"0123456789abcdef","name":"web","owner_uid":1000,)"
          R"("state":"running","health":"healthy","image":"localhost/busybox:latest",)"
          R"("reason":"","network":"bridged","worker_pid":4242,"worker_start_time":99,)"
          R"("created_at_ns":1,"updated_at_ns":2,"exit_code":0,"snapshot_id":"fedcba9876543210",)"
          R"("restart_count":3,"auto_remove":true})"},
      {0, R"({"version":1,"id":"0123456789abcdef","name":"../x","owner_uid":0,"state":"free",)"
          R"("health":"none","image":"","reason":"","network":"","worker_pid":-1,)"
          R"("worker_start_time":0,"created_at_ns":0,"updated_at_ns":0})"},
      {0, R"({"version":2})"},
      {1, R"({"format":1,"id":"0123456789abcdef","tag":"base","owner_uid":1000,)"
          R"("created_at_ns":1,"source_vm_id":"fedcba9876543210","source_vm_name":"web",)"
          R"("image":"localhost/busybox:latest","pause_ns":5,"memory_bytes":4096,)"
          R"("qemu_version":"QEMU emulator version 7.2.15"})"},
      {1, R"({"format":1,"id":"../../etc","tag":"a b","owner_uid":0,"created_at_ns":0,)"
          R"("source_vm_id":"","source_vm_name":"","image":"","pause_ns":0,"memory_bytes":0,)"
          R"("qemu_version":""})"},
      {3, R"({"machine":{"qemu":"qemu-system-x86_64","accel":"tcg","cpus":1,"memory_mib":256,)"
          R"("kernel":"/var/lib/fcvm/k/vmlinux","initramfs":"/var/lib/fcvm/k/initrd",)"
          R"("kernel_command_line":"console=ttyS0 quiet","extra_disks":[{"path":"/i/a.ext4",)"
          R"("read_only":true}],"channels":["fcvm.control","fcvm.vol0.1"],)"
          R"("network":{"mode":"bridged","mac":"02:fc:00:11:22:33"}},"volumes":[{"port":1}]})"},
      {3,
       R"({"machine":{"qemu":"/tmp/x","accel":"tcg","cpus":1,"memory_mib":256,)"
       R"("kernel":"/k,x=y","initramfs":"/k/i","kernel_command_line":"a",)"
       R"("extra_disks":[{"path":"/d,file=/etc/shadow","read_only":false}],)"
       R"("channels":["a,path=/x"],"network":{"mode":"rootless","mac":"02:fc:00:11:22:33,x=1"}}})"},
      {4, std::string(1, '\0') + std::string(sizeof(fcvm::ipc::VmRecord), 'a')},
      {4, std::string(1, '\1') + std::string(sizeof(fcvm::ipc::SnapshotRecord), '\0')},
      {5, R"({"digest":"sha256:0123","reference":"localhost/app:1",)"
          R"("disk":"/var/lib/fcvm/storage/images/v4-0123/store.ext4",)"
          R"("healthcheck":["/bin/sh","-c","true"],"built":false})"},
      {5, R"({"digest":"","reference":"x","disk":"relative/store.ext4","healthcheck":[1]})"},
  };
  // A spec as the supervisor writes it.
  {
    fcvm::ipc::VmSpec spec;
    spec.name = "web";
    spec.image = "localhost/busybox:latest";
    spec.command = {"sh", "-c", "echo hi"};
    spec.env = {"A=1"};
    spec.network = "bridged";
    spec.ports = {{8080, 80, "tcp", "127.0.0.1"}};
    spec.dns = {"192.0.2.53"};
    seeds.emplace_back(2, specBytes(spec));
  }
  fcvm::testing::SeedWriter corpus(dir);
  for (const auto& [selector, content] : seeds) corpus.add(selector, content);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  fcvm::testing::writeSeedsIfAsked(*argc, *argv, writeSeeds);
  // A truncated spec file is refused with an exception; kj's log line about it is noise here.
  kj::_::Debug::setLogLevel(kj::LogSeverity::FATAL);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 6) {
    case 0:
      fuzzVmRecord(rest);
      break;
    case 1:
      fuzzSnapshotMeta(rest);
      break;
    case 2:
      fuzzSpec(rest);
      break;
    case 3:
      fuzzRestore(rest);
      break;
    case 4:
      fuzzStateTableSlot(rest);
      break;
    default:
      fuzzPreparedImage(rest);
      break;
  }
  return 0;
}
