#include "uffd-server/sealed_image.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/file_copy.h"

namespace fcvm::uffd {

SealedImage loadSealedImage(int file, const std::string& name) {
  SealedImage image;
  image.memfd.reset(
      ::memfd_create(("fcvm-snapshot-" + name).c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!image.memfd) throw SysError(errno, "memfd_create for snapshot " + name);
  image.dataBytes = copySparse(file, image.memfd.get(), "snapshot memory " + name);
  struct stat st {};
  checkSys(::fstat(image.memfd.get(), &st), "stat the memfd of {}", name);
  image.size = static_cast<uint64_t>(st.st_size);
  checkSys(::fcntl(image.memfd.get(), F_ADD_SEALS,
                   F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL),
           "seal the memory of {}", name);
  return image;
}

}  // namespace fcvm::uffd
