// Files passed between processes as capabilities with an fd (ipc/common.capnp FileHandle), so the
// receiver acts on what the sender could open with its own rights, never on a path it would open
// with its own powers.
#pragma once

#include <kj/async.h>

#include <filesystem>
#include <string>

#include "base/unique_fd.h"
#include "ipc/common.capnp.h"

namespace fcvm::ipc {

// The sending side: the capability's server owns the fd until the capability is released.
rpc::FileHandle::Client fileHandle(UniqueFd fd);
// The same for a copy of `fd` (the caller keeps its own).
rpc::FileHandle::Client fileHandleOf(const UniqueFd& fd);

// Opens `path` for reading with this process's rights, for passing as a FileHandle. Throws
// fcvm::SysError ("open PATH: Permission denied") or fcvm::Error when it is not a regular file.
UniqueFd openRegularFile(const std::filesystem::path& path);

// Opens the directory `path` for reading with this process's rights (a --map volume). Throws
// fcvm::SysError ("open PATH: Permission denied") or fcvm::Error when it is not a directory.
UniqueFd openDirectory(const std::filesystem::path& path);

// The receiving side: a copy of the fd that came with `handle` (which must be a regular file).
// Rejects with a one-line reason naming `what` if no fd came with it or it is something else.
kj::Promise<UniqueFd> receiveFile(rpc::FileHandle::Client handle, std::string what);
// The same for a directory opened for reading (not O_PATH, which needs no read permission).
kj::Promise<UniqueFd> receiveDirectory(rpc::FileHandle::Client handle, std::string what);
// The same for an fd of any kind (a TAP device, a socket).
kj::Promise<UniqueFd> receiveFd(rpc::FileHandle::Client handle, std::string what);

}  // namespace fcvm::ipc
