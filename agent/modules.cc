#include "agent/modules.h"

#include <fcntl.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace fcvm::agent {

std::vector<std::string> readModuleList(const std::string& listPath, const std::string& baseDir) {
  std::ifstream in(listPath);
  KJ_REQUIRE(in.good(), "cannot read the module list", listPath);
  std::vector<std::string> modules;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    modules.push_back(line[0] == '/' ? line : baseDir + "/" + line);
  }
  return modules;
}

int loadModules(const std::string& listPath, const std::string& baseDir) {
  int failures = 0;
  for (const auto& path : readModuleList(listPath, baseDir)) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      fprintf(stderr, "fc-agent: open module %s: %s\n", path.c_str(), strerror(errno));
      ++failures;
      continue;
    }
    kj::AutoCloseFd owned(fd);
    if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST) {
      fprintf(stderr, "fc-agent: load module %s: %s\n", path.c_str(), strerror(errno));
      ++failures;
    }
  }
  return failures;
}

}  // namespace fcvm::agent
